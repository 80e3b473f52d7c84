"""A preflight ``Report`` as text for a person and as a JSON-ready dict for a table."""

import dataclasses
from typing import Any

from sam_jax.compilation import preflight, programs, topology

GIB = topology.GIB


def _size(n: float | None) -> str:
  if n is None:
    return "?"
  return f"{n / 2**20:.1f} MiB" if n < GIB else f"{n / GIB:.2f} GiB"


def _duration(seconds: float) -> str:
  hours, rest = divmod(int(round(seconds)), 3600)
  return f"{hours}h{rest // 60:02d}m"


def _fit_line(report: preflight.Report, program: programs.Program) -> str:
  total, hbm = program.total_bytes, report.peaks.hbm_bytes
  verdict = "fits" if report.fits(program) else "DOES NOT FIT"
  share = "" if total is None else f" ({100 * total / hbm:.0f}%)"
  at_least = ">= " if program.error and total is not None else ""
  return f"{at_least}{_size(total)} of {_size(hbm)}{share}: {verdict}"


def _memory_lines(report: preflight.Report) -> list[str]:
  lines = [f"  {name:<30}{_size(size):>11}" for name, size in report.state_bytes.items()]
  lines.append(f"  {'batch':<30}{_size(report.batch_bytes):>11}")
  m = report.train.memory
  if m:
    lines += [f"  {'arguments (XLA)':<30}{_size(m['argument']):>11}",
              f"  {'temporaries':<30}{_size(m['temp']):>11}",
              f"  {'outputs less aliased':<30}{_size(m['output'] - m['alias']):>11}"
              f"  (outputs {_size(m['output'])}, written over donated arguments "
              f"{_size(m['alias'])})",
              f"  {'generated code':<30}{_size(m['generated_code']):>11}"]
  lines.append(f"  {'total':<30}{_fit_line(report, report.train)}")
  if report.train.error:
    lines.append(f"  XLA: {report.train.error.splitlines()[0]}")
  return lines


def _compute_lines(report: preflight.Report) -> list[str]:
  train, peaks = report.train, report.peaks
  if train.error:
    return ["  (not compiled: out of memory)"]
  roofline = report.roofline_seconds(train)
  bound = "compute" if train.flops / peaks.flops >= train.bytes_accessed / peaks.hbm_bandwidth \
      else "memory"
  step = report.step_seconds(train)
  return [
      f"  FLOPs, XLA                    {train.flops:.3e}",
      f"  FLOPs, model                  {report.model_flops:.3e}  (matmuls, forward + backward"
      f"{', x2 SAM' if report.sam else ''})",
      f"  bytes accessed                {train.bytes_accessed:.3e}",
      f"  roofline per step             {1e3 * roofline:.1f} ms ({bound}-bound at "
      f"{peaks.flops / 1e12:.1f} TFLOP/s, {peaks.hbm_bandwidth / 1e9:.0f} GB/s per core)",
      f"  projected step                {1e3 * step:.1f} ms (the roofline at the calibrated "
      f"efficiency {preflight.CALIBRATED_EFFICIENCY}, a measured run's; docs/scale.md)",
      f"  projected run                 {_duration(step * report.num_train_steps)} for "
      f"{report.num_train_steps:,} steps, assuming MFU {100 * report.mfu(train):.0f}%",
      f"  compile time here             {train.compile_seconds:.0f} s"]


def _collective_lines(program: programs.Program) -> list[str]:
  lines = []
  for title, found in (("as compiled", program.collectives),
                       ("as the program asks (before XLA's passes)", program.program_collectives)):
    lines.append(f"  {title}:")
    lines += [f"    {c.kind} over {c.group_size} devices: {c.count} x, "
              f"{c.bytes / 2**20:.2f} MiB" for c in found] or ["    none"]
  return lines


def _remedy_lines(report: preflight.Report) -> list[str]:
  lines = [f"  {name:<30}{_fit_line(report, program)}"
           + ("" if program.error else
              f", XLA FLOPs {program.flops:.3e}, step {1e3 * report.step_seconds(program):.1f} "
              "ms projected")
           + (f" ({program.loop_trips} passes at 1/{program.loop_trips} of the batch)"
              if program.loop_trips > 1 else "")
           for name, program in report.remedies.items()]
  return lines or ["  none compiled"]


def format_report(report: preflight.Report) -> str:
  """The report as the preflight prints it."""
  s, g = report.slice, report.groups
  per_core = report.batch_size // report.num_devices
  lines = [f"{report.config_name} on {s.name} (libtpu {s.topology}: {s.chips} chips, "
           f"{report.num_devices} devices), batch {report.batch_size} ({per_core} per core), "
           + (f"SAM with {g.groups_per_device} group(s) per device over {g.devices_per_group} "
              f"device(s)" if report.sam else "no SAM"),
           "train step, per core:", *_memory_lines(report)]
  if report.eval is not None:
    lines.append(f"eval step, per core:             {_fit_line(report, report.eval)}")
  lines += ["compute per core per step:", *_compute_lines(report),
            "collectives of the train step per step:", *_collective_lines(report.train)]
  if not report.fits(report.train):
    lines += ["remedies (each compiled):", *_remedy_lines(report)]
  lines.append("verdict: " + ("fits" if report.verdict else "does not fit"))
  return "\n".join(lines)


def to_dict(report: preflight.Report) -> dict[str, Any]:
  """The report's fields, the derived figures and the verdict, for JSON."""
  def derived(program: programs.Program) -> dict[str, Any]:
    out = {"total_bytes": program.total_bytes, "fits": report.fits(program)}
    if not program.error:
      out.update(roofline_seconds=report.roofline_seconds(program),
                 step_seconds=report.step_seconds(program), mfu=report.mfu(program),
                 run_seconds=report.step_seconds(program) * report.num_train_steps)
    return out

  programs_ = {"train": report.train, "eval": report.eval, **report.remedies}
  return {**dataclasses.asdict(report), "calibrated_efficiency": preflight.CALIBRATED_EFFICIENCY,
          "fits": report.verdict,
          "derived": {k: derived(p) for k, p in programs_.items() if p is not None}}
