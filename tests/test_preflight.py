"""The preflight compiles the run for a TPU slice (libtpu, no TPU): names, collectives, fit.

Compiles are few and tiny (a one-block ViT on v3-8's 8 devices): the base step and the SAM
step of each grouping (their collectives), and an oversized batch that does not fit a core's
HBM with one remedy.
"""

import collections
import json
import os
import subprocess
import sys

import pytest

from sam_jax.compilation import preflight, summary, topology
from tests import tiny_digits_config

pytest.importorskip("libtpu")
os.environ["ALLOW_MULTIPLE_LIBTPU_LOAD"] = "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOUD_NAMES = {"v2-8": "v2:2x2", "v3-8": "v3:2x2", "v3-128": "v3:8x8", "v3-256": "v3:8x16",
               "v4-8": "v4:2x2x1", "v4-128": "v4:4x4x4", "v5litepod-256": "v5e:16x16",
               "v5e-8": "v5e:2x4", "v5p-128": "v5p:4x4x4", "v6e-64": "v6e:8x8",
               "v3:8x16": "v3:8x16"}


def _config(**changes):
  """The tiny digits ViT, one block, at 8 px: a few seconds of XLA work per compile."""
  config = tiny_digits_config.get_config()
  config.eval_batch_size = 16
  config.model.update(variant="Ti/4", hidden_size=16, mlp_dim=16, num_heads=2, num_layers=1,
                      dropout_rate=0.0)
  for key, value in changes.items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  return config


@pytest.mark.parametrize("name", sorted(CLOUD_NAMES))
def test_slice_names_resolve_to_libtpu_topologies_with_their_devices(name):
  tpu_slice = topology.resolve(name)
  assert tpu_slice.topology == CLOUD_NAMES[name]
  devices = topology.devices(tpu_slice)
  per_chip = len(devices) // tpu_slice.chips
  # JAX sees each TensorCore of v2/v3 as a device, one megacore per chip of v4/v5p.
  assert per_chip == (2 if tpu_slice.chip.libtpu in ("v2", "v3") else 1)
  cores = int(name.split("-")[1]) if "-" in name else 2 * tpu_slice.chips
  assert tpu_slice.chips * tpu_slice.chip.cores_in_name == cores


@pytest.mark.parametrize("name", ["v3-7", "v9-8", "tpu", "v5e:3x3"])
def test_a_bad_slice_name_lists_the_valid_forms(name):
  with pytest.raises(ValueError, match=r"GEN-N .*v3-8 to v3-2048.*v5litepod = v5e"):
    topology.resolve(name)


def _bytes_by_group(collectives):
  """(kind, group size) -> bytes, without the no-op collectives over one device."""
  return collections.Counter({(c.kind, c.group_size): c.bytes for c in collectives
                              if c.group_size > 1})


def test_the_report_and_the_collectives_sam_adds_for_its_grouping():
  """Batch 32 on 8 devices (4 per core): the base step compiled and reported; then the base and
  SAM steps of groups of 2 (within one device), 8 (two devices) and 32 (global SAM) lowered:
  SAM adds the all-reduce of its ascent gradient over its group's devices, or nothing (the
  program's collectives: one per parameter array, which XLA then combines)."""
  report = preflight.preflight(_config(**{"sam.rho": 0.0, "batch_size": 32}), "v3-8",
                               config_name="tiny", evaluate=False)
  text, data = summary.format_report(report), summary.to_dict(report)
  memory = report.train.memory
  assert report.train.total_bytes == (memory["argument"] + memory["output"] - memory["alias"]
                                      + memory["temp"] + memory["generated_code"])
  assert memory["alias"] > 0  # The donated state is written in place.
  assert data["fits"] and "verdict: fits" in text
  step = report.step_seconds(report.train)
  assert data["derived"]["train"]["run_seconds"] == pytest.approx(step * report.num_train_steps)
  assert report.model_flops <= report.train.flops  # XLA counts the elementwise work too.
  assert {c.kind for c in report.train.collectives} == {"all-reduce"}

  devices = topology.devices(topology.resolve("v3-8"))
  parameter_bytes = report.state_bytes["parameters"]  # float32.
  for m, group in ((2, None), (8, 2), (32, 8)):
    base, sam = (_bytes_by_group(preflight.lowered_collectives(preflight.build(
        _config(**{"sam.m": m, "sam.rho": rho, "batch_size": 32}), devices)))
        for rho in (0.0, 0.05))  # The same mesh: m's group of devices on its "member" axis.
    added = {key: sam[key] - base[key] for key in sam if sam[key] != base[key]}
    assert not base - sam, m  # SAM removes none of the base step's collectives.
    assert added == ({} if group is None else {("all-reduce", group): parameter_bytes}), m


def test_a_step_of_k_micro_batches_counts_k_passes_in_less_memory():
  """XLA counts a loop's body once; the preflight counts the micro-batch loop k times, so 4
  micro-batches (of 16 per core) cost the FLOPs of the step without accumulation, to the
  optimizer update outside the loop, then counted 4 times; in fewer temporaries."""
  devices = topology.devices(topology.resolve("v3-8"))
  whole, micro = (preflight.compile_setup(preflight.build(
      _config(**{"sam.rho": 0.05, "sam.m": 4, "batch_size": 512, "accumulation_steps": k}),
      devices)) for k in (1, 4))
  assert (whole.loop_trips, micro.loop_trips) == (1, 4)
  # An upper bound, and a close one (XLA's own count of the loop would be about a quarter; the
  # tiny model's update, 3 times too many, is 6% here).
  assert whole.flops <= micro.flops <= 1.1 * whole.flops
  assert micro.memory["temp"] < whole.memory["temp"]


def test_one_device_of_a_slice_judged_against_a_smaller_memory():
  """``num_devices=1``: one v3 core's program (no collective over several devices), its
  verdict against ``hbm_bytes`` rather than the core's 16 GiB; a device count the slice lacks
  is refused in one line."""
  config = _config(**{"sam.rho": 0.0, "batch_size": 8})
  report = preflight.preflight(config, "v3-8", num_devices=1, hbm_bytes=2**20, remedies=(),
                               evaluate=False)
  assert report.num_devices == 1 and report.peaks.hbm_bytes == 2**20
  assert all(c.group_size == 1 for c in report.train.program_collectives)
  total = report.train.total_bytes
  assert total is not None and total > 2**20 and not report.verdict
  assert preflight.preflight(config, "v3-8", num_devices=1, hbm_bytes=total, remedies=(),
                             evaluate=False).verdict
  with pytest.raises(ValueError, match=r"--devices=9 must be 1 to 8, the devices of v3-8"):
    preflight.preflight(config, "v3-8", num_devices=9)


def test_the_calibrated_efficiency_is_the_compiled_roofline_over_big_visions_step():
  """big_vision's Mixer-B/16 (configs/mlp_mixer_i1k.py: 2h11m on v3-128, batch 4096, no SAM,
  300 epochs of 99% of ImageNet's train split) against this library's run compiled for it."""
  with open(os.path.join(ROOT, "benchmarks/preflight/mixer_b16_v3-128_base.json"),
            encoding="utf-8") as f:
    compiled = json.load(f)
  assert (compiled["slice"]["name"], compiled["batch_size"], compiled["sam"],
          compiled["num_train_steps"]) == ("v3-128", 4096, False, 300 * 1_268_355 // 4096)
  train, peaks = compiled["train"], compiled["peaks"]
  roofline = max(train["flops"] / peaks["flops"], train["bytes_accessed"] / peaks["hbm_bandwidth"])
  measured = (2 * 3600 + 11 * 60) / compiled["num_train_steps"]
  assert preflight.CALIBRATED_EFFICIENCY == pytest.approx(roofline / measured, abs=5e-4)


def _run_preflight(*flags, env_python=""):
  env = dict(os.environ, PYTHONPATH=ROOT, ALLOW_MULTIPLE_LIBTPU_LOAD="1")
  command = [sys.executable, "-c", env_python + "from sam_jax import preflight; "
             "preflight.cli.run('sam_jax.preflight', preflight.main, preflight.EXIT_CODES)",
             *flags]
  return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,
                        timeout=1200, check=False)


def test_an_oversized_batch_does_not_fit_and_names_the_remedies():
  """200,000 digits per core of the default ViT: out of HBM even after XLA's own
  rematerialisation (48,000 fit); the bf16 remedy is compiled and reported with its verdict,
  and gradient accumulation with the fewest micro-batches that fit."""
  result = _run_preflight("--config=configs/default.py", "--topology=v3-8",
                          f"--config.batch_size={8 * 200_000}", "--config.sam.rho=0",
                          "--remedies=bf16,accumulation")
  assert result.returncode == 6, result.stdout + result.stderr[-3000:]
  assert "DOES NOT FIT" in result.stdout and "verdict: does not fit" in result.stdout
  assert "RESOURCE_EXHAUSTED" in result.stdout
  remedies = result.stdout.split("remedies (each compiled):")[1].splitlines()
  assert remedies[1].split()[0] == "bf16" and " GiB" in remedies[1]
  assert ("DOES NOT FIT" in remedies[1]) != remedies[1].endswith("ms projected")
  # 92.6 GiB of temporaries over 16 GiB: the search starts at 8 micro-batches (25,000 each).
  assert remedies[2].startswith("  accumulation 8 ") and ": fits," in remedies[2], remedies
  assert remedies[2].endswith("(8 passes at 1/8 of the batch)")


def test_without_libtpu_the_preflight_exits_2_naming_what_to_install():
  result = _run_preflight("--config=configs/default.py", "--topology=v3-8",
                          env_python="import sys; sys.modules['libtpu'] = None; ")
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1] == (
      f"sam_jax.preflight: {topology.LIBTPU_HINT}")
