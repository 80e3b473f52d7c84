"""The paper configs on TPU slices: docs/scale.md's table, from the model and from compiles.

    cd REPO && ALLOW_MULTIPLE_LIBTPU_LOAD=1 PYTHONPATH=. python benchmarks/preflight_table.py

Without compiling (seconds each): the state each core holds (parameters and Adam's moments,
replicated), the model's FLOPs per core per step (``compilation.model_flops``) and the step
and run time the preflight projects from them at the calibrated MFU (``preflight.CALIBRATED_MFU``;
a compile can only make it longer, when its roofline is slower). Columns from a compile (memory per core,
fit, XLA's FLOPs, collectives, compile time) are read from ``benchmarks/preflight/NAME.json``,
written by ``python -m sam_jax.preflight ... --json=benchmarks/preflight/NAME.json`` with NAME =
``CONFIG_SLICE_base|sam``; a row without one says "not compiled".
"""

import importlib.util
import json
import pathlib

import jax
import numpy as np

from sam_jax.compilation import model_flops, preflight, topology

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = ("vit_s16", "vit_b16", "vit_s32", "vit_b32", "mixer_s16", "mixer_b16", "mixer_s32",
           "mixer_b32", "resnet50", "resnet101", "resnet152")
SLICES = ("v3-64", "v3-256", "v4-128", "v5litepod-256")


def _config(name: str):
  spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _gib(tree) -> float:
  return sum(x.size * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)) / 2**30


def _compiled(name: str) -> str:
  path = ROOT / "benchmarks" / "preflight" / f"{name}.json"
  if not path.exists():
    return "not compiled | | |"
  report = json.loads(path.read_text())
  train = report["derived"]["train"]
  collectives = ", ".join(f"{c['kind']}/{c['group_size']} x{c['count']}"
                          for c in report["train"]["collectives"])
  return (f"{'fits' if report['fits'] else 'does not fit'} {train['total_bytes'] / 2**30:.2f} "
          f"GiB | {report['train']['flops']:.2e} | {collectives} | "
          f"{report['train']['compile_seconds'] / 60:.0f} min")


def main() -> None:
  devices = {s: topology.devices(topology.resolve(s)) for s in SLICES}
  print(f"| config | slice | SAM | state GiB/core | model FLOPs/core/step | projected step, run "
        f"(MFU {preflight.CALIBRATED_MFU}) | "
        "compiled: fits, GiB/core | XLA FLOPs | collectives (kind/group xcount) | compile |")
  print("|" + "---|" * 10)
  for name in CONFIGS:
    config = _config(name)
    setup = preflight.build(config, devices["v3-64"])
    state = setup.abstract_state()
    forward = model_flops.forward_flops(
        setup.model, {"params": state.params, **state.model_state}, setup.config.image_size)
    for s in SLICES:
      peaks = topology.device_peaks(topology.resolve(s), len(devices[s]))
      for sam in (False, True):
        flops = (model_flops.train_flops_per_example(forward, sam) * setup.config.batch_size
                 / len(devices[s]))
        step = flops / (peaks.flops * preflight.CALIBRATED_MFU)
        row = f"{name}_{s}_{'sam' if sam else 'base'}"
        print(f"| {name} | {s} | {'yes' if sam else 'no'} | "
              f"{_gib((state.params, state.opt_state)):.2f} | {flops:.2e} | "
              f"{1e3 * step:.0f} ms, {step * setup.config.num_train_steps / 3600:.1f} h | "
              f"{_compiled(row)} |")


if __name__ == "__main__":
  main()
