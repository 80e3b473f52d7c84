"""Preflight: the run's train and eval steps compiled for a TPU slice, before paying for it.

``preflight(config, slice_name)`` builds the exact steps training would run on the slice's
devices (``build``, through ``training.setup.build``; parameters and optimizer state
abstract, never allocated), compiles them (``Setup.programs``) for the TPU (``programs``)
and returns a ``Report``: per core the state, batch, temporaries and outputs against the
core's HBM and a verdict; FLOPs per step (XLA's beside the model's, ``model_flops``); a
roofline time per step and the projected one

    t_roofline = max(XLA FLOPs / peak FLOP/s, bytes accessed / HBM bytes/s)    (per core)
    t_step     = t_roofline / CALIBRATED_EFFICIENCY

(the fraction of its roofline a measured run attained), the run's projected wall time
``num_train_steps * t_step`` and the model-FLOPs utilisation it assumes,
``model FLOPs / (peak * t_step)``; the compiled step's collectives. A run that does not fit is
compiled again with each remedy (``REMEDIES``) to say which fit.
"""

import dataclasses
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np

from sam_jax.compilation import model_flops, programs, topology
from sam_jax.config import defaults
from sam_jax.data import input_pipeline
from sam_jax.parallel import Devices
from sam_jax.training import setup as setup_lib
from sam_jax.training import train_step

# The fraction of its compiled roofline a real run attains (docs/scale.md, "Calibration"):
# big_vision's configs/mlp_mixer_i1k.py, "Achieves 76.3% top-1 accuracy on the test split in
# 2h11m on TPU v3-128 with 300 epochs" (Mixer-B/16, batch 4096, no SAM: 92,897 steps, 84.6 ms
# each), against this library's run compiled for v3-128 (this preflight's
# benchmarks/preflight/mixer_b16_v3-128_base.json: roofline 39.5 ms): 39.5 / 84.6.
CALIBRATED_EFFICIENCY = 0.467
# Config overrides that cut memory, each compiled when a run does not fit.
REMEDIES: dict[str, dict[str, Any]] = {
    "remat": {"model.remat": True},                 # Rematerialised blocks.
    "bf16": {"model.dtype": "bfloat16"},            # bf16 activations.
    "remat+bf16": {"model.remat": True, "model.dtype": "bfloat16"},
}
# The remedy that keeps the algorithm: the fewest micro-batches (``accumulation_steps``) that fit.
ACCUMULATION = "accumulation"


def build(config: ml_collections.ConfigDict, devices: Devices) -> setup_lib.Setup:
  """``setup.build`` of ``config`` (completed here) on ``devices``; a config without
  ``num_classes`` gets its dataset's."""
  config = defaults.complete(config)
  num_classes = config.num_classes or input_pipeline.get_info(config).num_classes
  return setup_lib.build(config, devices, num_classes=num_classes)


def _bytes(tree: Any) -> int:
  return sum(x.size * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


@dataclasses.dataclass(frozen=True)
class Report:
  """What one config needs on one slice (figures per core unless named otherwise)."""
  config_name: str
  slice: topology.Slice
  num_devices: int
  peaks: topology.DevicePeaks
  batch_size: int
  sam: bool
  groups: train_step.SamGroups
  num_train_steps: int
  state_bytes: dict[str, int]          # parameters, optimizer state, other state.
  batch_bytes: int                     # The train batch's share of one core.
  model_flops: float                   # Analytic, per core per step.
  train: programs.Program
  eval: programs.Program | None
  remedies: dict[str, programs.Program] = dataclasses.field(default_factory=dict)

  def fits(self, program: programs.Program) -> bool:
    total = program.total_bytes
    return program.error is None and total is not None and total <= self.peaks.hbm_bytes

  @property
  def verdict(self) -> bool:
    return self.fits(self.train) and (self.eval is None or self.fits(self.eval))

  def roofline_seconds(self, program: programs.Program) -> float:
    return max(program.flops / self.peaks.flops, program.bytes_accessed / self.peaks.hbm_bandwidth)

  def step_seconds(self, program: programs.Program) -> float:
    """Projected: the roofline at the calibrated efficiency (a remedy's own FLOPs, e.g.
    remat's recomputation, count through its roofline)."""
    return self.roofline_seconds(program) / CALIBRATED_EFFICIENCY

  def mfu(self, program: programs.Program) -> float:
    return self.model_flops / (self.peaks.flops * self.step_seconds(program))


def _step_and_args(setup: setup_lib.Setup, train: bool) -> tuple[Callable, tuple[Any, Any]]:
  """The program compiled (``Setup.programs``) and its abstract arguments: the train step,
  with SAM every k-th step the SAM one (the larger); or the eval step."""
  found = setup.programs()
  name = ("train_sam" if "train_sam" in found else "train") if train else "eval"
  return found[name], (setup.abstract_state(), setup.abstract_batch(train))


def compile_setup(setup: setup_lib.Setup, train: bool = True) -> programs.Program:
  """The train (or eval) step of ``setup`` compiled on abstract arguments."""
  return programs.compile_program(*_step_and_args(setup, train), setup.mesh.devices.size,
                                  setup.groups.micro_batches if train else 1)


def lowered_collectives(setup: setup_lib.Setup,
                        train: bool = True) -> tuple[programs.Collective, ...]:
  """The collectives the train (or eval) step of ``setup`` asks for, lowered, not compiled."""
  step, args = _step_and_args(setup, train)
  return programs.lowered_collectives(step.lower(*args), setup.mesh.devices.size)


def with_overrides(config: ml_collections.ConfigDict,
                   overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of ``config`` with the dotted keys of ``overrides`` set."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  return config


def accumulation(config: ml_collections.ConfigDict, devices: Devices,
                 report: Report) -> tuple[str, programs.Program] | None:
  """The fewest micro-batches k whose train step fits, compiled: from the power of two at or
  above the bytes the report's train step needs over the core's HBM (temporaries shrink about
  as 1/k; smaller k are not compiled), doubling while it does not fit and the config accepts k
  (micro-batches of whole SAM groups); the last one compiled, or None if none could be.
  Its cost: k passes at 1/k of the batch, in its FLOPs and roofline (``programs``)."""
  k, needed = 2 * config.accumulation_steps, report.train.total_bytes or 0
  while k * report.peaks.hbm_bytes < needed * config.accumulation_steps:
    k *= 2
  found = None
  while config.batch_size % (len(devices) * k) == 0:
    try:
      setup = build(with_overrides(config, {"accumulation_steps": k}), devices)
    except ValueError:  # A micro-batch smaller than a SAM group, or a SAM kind that refuses.
      break
    found = (f"{ACCUMULATION} {k}", compile_setup(setup))
    if report.fits(found[1]):
      break
    k *= 2
  return found


def preflight(config: ml_collections.ConfigDict, slice_name: str, *, config_name: str = "",
              remedies: Sequence[str] = (*REMEDIES, ACCUMULATION), evaluate: bool = True,
              num_devices: int | None = None, hbm_bytes: int | None = None) -> Report:
  """The ``Report`` of ``config`` on the slice ``slice_name`` (``topology.resolve``), or on its
  first ``num_devices`` devices (e.g. 1: one chip), judged against ``hbm_bytes`` per device
  (default: the chip's share; less, e.g. a GPU's 80 GiB on a v5p chip's 95); if the train
  step does not fit, each of ``remedies`` (``REMEDIES`` names, ``ACCUMULATION``) compiled too.

  Raises:
    ValueError: an unknown slice or remedy, or a config that cannot run on it (one line).
    topology.LibtpuMissing: libtpu is not installed.
  """
  unknown = sorted(set(remedies) - {*REMEDIES, ACCUMULATION})
  if unknown:
    raise ValueError(f"unknown remedies {unknown}; valid: {[*REMEDIES, ACCUMULATION]}.")
  tpu_slice = topology.resolve(slice_name)
  slice_devices = topology.devices(tpu_slice)
  if num_devices is not None and not 1 <= num_devices <= len(slice_devices):
    raise ValueError(f"--devices={num_devices} must be 1 to {len(slice_devices)}, the devices "
                     f"of {slice_name}.")
  devices = slice_devices[:num_devices]
  peaks = topology.device_peaks(tpu_slice, len(slice_devices))
  if hbm_bytes is not None:
    peaks = dataclasses.replace(peaks, hbm_bytes=hbm_bytes)
  setup = build(config, devices)
  config = setup.config
  state = setup.abstract_state()
  forward = model_flops.forward_flops(setup.model, {"params": state.params, **state.model_state},
                                      config.image_size)
  sam = config.sam.rho > 0
  evaluated = evaluate and "eval" in setup.programs()
  report = Report(
      config_name, tpu_slice, len(devices), peaks, config.batch_size, sam, setup.groups,
      config.num_train_steps,
      {"parameters": _bytes(state.params), "optimizer state": _bytes(state.opt_state),
       "other state": _bytes((state.model_state, state.step, state.rng))},
      _bytes(setup.abstract_batch(True)) // len(devices),
      model_flops.train_flops_per_example(forward, sam) * config.batch_size // len(devices),
      compile_setup(setup), compile_setup(setup, False) if evaluated else None)
  if remedies and not report.fits(report.train):
    found = {name: compile_setup(build(with_overrides(config, o), devices))
             for name, o in REMEDIES.items() if name in remedies}
    if ACCUMULATION in remedies:
      found.update(filter(None, [accumulation(config, devices, report)]))
    report = dataclasses.replace(report, remedies=found)
  return report
