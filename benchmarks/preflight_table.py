"""The paper configs on TPU slices: docs/scale.md's two tables, from compiles and from the model.

    cd REPO && ALLOW_MULTIPLE_LIBTPU_LOAD=1 PYTHONPATH=. python benchmarks/preflight_table.py

Compiled: one row per ``benchmarks/preflight/CONFIG_SLICE_base|sam.json``, written by
``python -m sam_jax.preflight --config=configs/CONFIG.py [--config.sam.rho=0] --topology=SLICE
--json=benchmarks/preflight/CONFIG_SLICE_base|sam.json``: fit and memory per core, XLA's and the
model's FLOPs per core per step, the roofline, the projected step and run (the roofline at
``preflight.CALIBRATED_EFFICIENCY``, recomputed here so that every row uses the current
constant), the MFU that assumes, the collectives as compiled and the compile time here.
Runs compiled for one device against a smaller memory (``--devices=1 --hbm_gib=80``) go to a
table of their own: the memory of one step of the whole batch and the fewest micro-batches of
gradient accumulation that fit.

From the model (no compile, seconds each): every paper config on every slice of ``SLICES``,
the state each core holds (parameters and Adam's moments, replicated), the model's FLOPs per
core per step (``compilation.model_flops``) and the step and run they project to if the step is
compute-bound (model FLOPs / (peak x ``CALIBRATED_EFFICIENCY``); a compile's roofline can only
be slower).
"""

import importlib.util
import json
import pathlib

import jax
import numpy as np

from sam_jax.compilation import model_flops, preflight, topology

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPILED = ROOT / "benchmarks" / "preflight"
CONFIGS = ("vit_s16", "vit_b16", "vit_s32", "vit_b32", "mixer_s16", "mixer_b16", "mixer_s32",
           "mixer_b32", "resnet50", "resnet101", "resnet152")
SLICES = ("v3-128", "v3-256", "v4-128", "v5litepod-256")
EFFICIENCY = preflight.CALIBRATED_EFFICIENCY


def _config(name: str):
  spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _gib(tree) -> float:
  return sum(x.size * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)) / 2**30


def _collectives(program: dict) -> str:
  return ", ".join(f"{c['kind']}/{c['group_size']} x{c['count']} {c['bytes'] / 2**20:.0f} MiB"
                   for c in program["collectives"] if c["group_size"] > 1) or "none"


def _compiled_row(report: dict) -> str:
  """One compiled run: its figures as the preflight's report gives them (per core)."""
  train, peaks, steps = report["train"], report["peaks"], report["num_train_steps"]
  total = report["derived"]["train"]["total_bytes"]
  fit = f"{'yes' if report['derived']['train']['fits'] else 'NO'}, {total / 2**30:.2f}"
  minutes = " + ".join(f"{report[p]['compile_seconds'] / 60:.1f}" for p in ("train", "eval")
                       if report[p])
  name = pathlib.Path(report["config_name"]).stem
  head = f"| {name} | {report['slice']['name']} | {'yes' if report['sam'] else 'no'} | {fit}"
  if train["error"]:
    return f"{head} | | {report['model_flops']:.2e} | | | | | {minutes} |"
  compute = train["flops"] / peaks["flops"]
  memory = train["bytes_accessed"] / peaks["hbm_bandwidth"]
  step = max(compute, memory) / EFFICIENCY
  mfu = report["model_flops"] / (peaks["flops"] * step)
  return (f"{head} | {train['flops']:.2e} | {report['model_flops']:.2e} | "
          f"{1e3 * max(compute, memory):.1f} ({'compute' if compute >= memory else 'memory'}) | "
          f"{1e3 * step:.0f} ms, {step * steps / 3600:.1f} h | {100 * mfu:.0f}% | "
          f"{_collectives(train)} | {minutes} |")


def _reports(one_device: bool) -> list[dict]:
  """The compiled reports: of whole slices, or of one device (``--devices=1``)."""
  reports = [json.loads(path.read_text()) for path in sorted(COMPILED.glob("*.json"))]
  return [r for r in reports if (r["num_devices"] == 1) == one_device]


def compiled_table() -> None:
  print("| config | slice | SAM | fits, GiB/core | XLA FLOPs/core/step | model FLOPs | "
        f"roofline ms (bound) | projected step, run (efficiency {EFFICIENCY}) | MFU | "
        "collectives as compiled (kind/devices xcount bytes) | compile min (train + eval) |")
  print("|" + "---|" * 11)
  for report in _reports(one_device=False):
    print(_compiled_row(report))


def budget_table() -> None:
  """One device judged against a smaller memory (``--hbm_gib``): the batch in one step, and
  the fewest micro-batches that fit (the accumulation remedy)."""
  print("| config | SAM | device, budget | one step of the batch | micro-batches k | GiB with k | "
        f"step at k, run (efficiency {EFFICIENCY}) | compile min (k = 1, k) |")
  print("|" + "---|" * 8)
  for report in _reports(one_device=True):
    budget, train = report["peaks"]["hbm_bytes"] / 2**30, report["derived"]["train"]
    remedy = next((name for name in report["remedies"] if name.startswith("accumulation")), "")
    fit = report["derived"].get(remedy, {})
    k = remedy.split()[-1] if remedy else "none"
    step = fit.get("roofline_seconds", 0) / EFFICIENCY
    minutes = ", ".join(f"{p['compile_seconds'] / 60:.1f}"
                        for p in (report["train"], report["remedies"].get(remedy)) if p)
    print(f"| {pathlib.Path(report['config_name']).stem} | {'yes' if report['sam'] else 'no'} "
          f"| {report['slice']['chip']['libtpu']} chip, {budget:.0f} GiB | "
          f"{'>= ' if report['train']['error'] else ''}{train['total_bytes'] / 2**30:.1f} GiB | "
          f"{k} | {fit.get('total_bytes', 0) / 2**30:.1f} | {step:.2f} s, "
          f"{step * report['num_train_steps'] / 3600:.0f} h | {minutes} |")


def model_table() -> None:
  devices = {s: topology.devices(topology.resolve(s)) for s in SLICES}
  print(f"| config | slice | SAM | state GiB/core | model FLOPs/core/step | step, run if "
        f"compute-bound (efficiency {EFFICIENCY}) |")
  print("|" + "---|" * 6)
  for name in CONFIGS:
    config = _config(name)
    setup = preflight.build(config, devices[SLICES[0]])
    state = setup.abstract_state()
    forward = model_flops.forward_flops(
        setup.model, {"params": state.params, **state.model_state}, setup.config.image_size)
    for s in SLICES:
      peaks = topology.device_peaks(topology.resolve(s), len(devices[s]))
      for sam in (False, True):
        flops = (model_flops.train_flops_per_example(forward, sam) * setup.config.batch_size
                 / len(devices[s]))
        step = flops / (peaks.flops * EFFICIENCY)
        print(f"| {name} | {s} | {'yes' if sam else 'no'} | "
              f"{_gib((state.params, state.opt_state)):.2f} | {flops:.2e} | "
              f"{1e3 * step:.0f} ms, {step * setup.config.num_train_steps / 3600:.1f} h |")


if __name__ == "__main__":
  compiled_table()
  print()
  budget_table()
  print()
  model_table()
