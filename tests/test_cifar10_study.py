"""The CIFAR-10 study's scripts: one run end to end on a generated image folder, and the report."""

import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.test_input_pipeline import make_folder

STUDY = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "cifar10"
CLASSES = [f"c{i}" for i in range(10)]


def _module(name: str):
  """experiments/cifar10/NAME.py, loaded once per process (run.py defines absl flags)."""
  key = f"cifar10_study_{name}"
  if key not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, STUDY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[key] = module
  return sys.modules[key]


def _command(tmp_path, config: str, *overrides: str) -> list[str]:
  """run.py on tiny settings (6 steps of 8 images) and the generated folder ``tmp_path/data``."""
  return [sys.executable, str(STUDY / "run.py"), f"--config={STUDY / 'config.py'}:{config}",
             "--config.sam.rho=0.1", "--config.seed=3", f"--config.data_dir={tmp_path / 'data'}",
             "--config.num_train_steps=6", "--config.optimizer.warmup_steps=2",
             "--config.log_every_steps=2", "--config.eval_every_steps=6",
             "--config.checkpoint_every_steps=6", "--config.batch_size=8",
             "--config.eval_batch_size=8", "--config.analysis.batch_size=8",
             "--config.analysis.ntk.batch_size=8", "--config.analysis.hessian.num_steps=4",
             *overrides, f"--workdir_root={tmp_path / 'runs'}",
             f"--results_dir={tmp_path / 'rows'}"]


ENV = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
           PYTHONPATH=str(STUDY.parent.parent))


def _run(tmp_path, config: str, *overrides: str) -> subprocess.CompletedProcess:
  return subprocess.run(_command(tmp_path, config, *overrides), env=ENV, capture_output=True,
                        text=True, timeout=600)


def test_one_run_writes_its_row(tmp_path):
  make_folder(str(tmp_path / "data"), "train", CLASSES, per_class=3, size=(32, 32))
  make_folder(str(tmp_path / "data"), "test", CLASSES, per_class=2, size=(32, 32))
  done = _run(tmp_path, "mixer", "--config.model.num_blocks=1")
  assert done.returncode == 0, done.stderr[-3000:]
  row = json.loads((tmp_path / "rows" / "short" / "mixer_rho0.1_seed3.json").read_text())
  assert (row["model"], row["rho"], row["seed"], row["step"]) == ("mixer", 0.1, 3, 6)
  correct = row["test_accuracy"] * 20  # 20 test images.
  assert correct == pytest.approx(round(correct), abs=1e-5)
  assert set(row["active_fraction"]) == {"MixerBlock_0/token_mixing",
                                          "MixerBlock_0/channel_mixing"}
  for key in ("train_loss", "lambda_max", "ntk_kappa_init", "ntk_kappa_trained"):
    assert np.isfinite(row[key]) and row[key] > 0, key
  assert row["ntk_kappa_init"] >= 1
  assert 0 < row["train_cpu_seconds"] <= row["total_cpu_seconds"]
  assert "train_accuracy" not in row  # The fit regime's measurements only.
  assert row["resumed_from_step"] == 0


def test_a_stopped_run_writes_no_row_and_resumes(tmp_path):
  make_folder(str(tmp_path / "data"), "train", CLASSES, per_class=3, size=(32, 32))
  make_folder(str(tmp_path / "data"), "test", CLASSES, per_class=2, size=(32, 32))
  steps = ("--config.model.num_blocks=1", "--config.num_train_steps=600",
           "--config.checkpoint_every_steps=5", "--config.eval_every_steps=600")
  log = tmp_path / "log"
  with open(log, "w") as f:
    proc = subprocess.Popen(_command(tmp_path, "mixer", *steps), env=ENV, stderr=f)
  checkpoints = tmp_path / "runs" / "short" / "mixer_rho0.1_seed3" / "checkpoints"
  deadline = time.time() + 300
  while not (checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())):
    assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  proc.wait(timeout=300)
  stderr = log.read_text()
  assert proc.returncode == 75, stderr[-3000:]  # cli.EXIT_STOPPED.
  stopped = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
  assert f"stopped at step {stopped} of 600; no row written" in stderr
  assert 0 < stopped < 600 and not (tmp_path / "rows").exists()
  done = _run(tmp_path, "mixer", *steps)
  assert done.returncode == 0, done.stderr[-3000:]
  row = json.loads((tmp_path / "rows" / "short" / "mixer_rho0.1_seed3.json").read_text())
  assert (row["step"], row["resumed_from_step"]) == (600, stopped)


def test_a_fit_run_measures_the_subset_blocks_attention_and_corruptions(tmp_path):
  data = tmp_path / "data"
  make_folder(str(data), "train", CLASSES, per_class=3, size=(32, 32))
  make_folder(str(data), "test", CLASSES, per_class=2, size=(32, 32))
  corrupt = _module("corrupt")
  done = _run(tmp_path, "vit,fit", "--config.train_split=train[:2/class]")
  assert done.returncode != 0 and "corrupt.py --data_dir=" in done.stderr  # Before training.
  assert not (tmp_path / "runs").exists()
  # Stand-ins for corrupt.py's splits (it needs imagecorruptions): copies of two test images
  # per class, so each split's accuracy must equal the test accuracy.
  for split in corrupt.split_names():
    shutil.copytree(data / "test", data / split)
  done = _run(tmp_path, "vit,fit", "--config.train_split=train[:2/class]",
              "--config.model.num_layers=2")
  assert done.returncode == 0, done.stderr[-3000:]
  row = json.loads((tmp_path / "rows" / "fit" / "vit_rho0.1_seed3.json").read_text())
  assert row["step"] == 6 and row["config"]["train_split"] == "train[:2/class]"
  assert len(row["corruption_accuracy"]) == 65
  assert list(row["corruption_accuracy"].values()) == pytest.approx([row["test_accuracy"]] * 65)
  assert row["train_accuracy"] * 20 == pytest.approx(round(row["train_accuracy"] * 20))
  assert row["train_loss_clean"] > 0
  assert list(row["block_lambda_max"]) == ["embedding", "block_0", "block_1"]
  assert all(v > 0 for v in row["block_lambda_max"].values())
  assert np.array(row["attention_maps"]).shape == (8, 8, 8)  # 8 images, 8x8 patches.
  assert set(row["weight_norm"]) >= {"embedding", "head"}


def test_bad_data_dir_fails_before_training(tmp_path):
  done = subprocess.run([sys.executable, str(STUDY / "run.py"),
                         f"--config={STUDY / 'config.py'}:vit", f"--config.data_dir={tmp_path}",
                         f"--workdir_root={tmp_path / 'runs'}"],
                        env=dict(os.environ, PYTHONPATH=str(STUDY.parent.parent)),
                        capture_output=True, text=True, timeout=300)
  assert done.returncode != 0 and "must be a folder with train/ and test/" in done.stderr
  assert not (tmp_path / "runs").exists()
  for bad in ("convnext", "vit,long", "resnet,fit,lamb", "vit,fit,sgd,x"):
    with pytest.raises(ValueError, match=rf"config.py:{bad}: expected MODEL\[,REGIME\[,OPTIMIZER"):
      _module("config").get_config(bad)


def test_run_names_tell_the_settings_apart(monkeypatch):
  monkeypatch.syspath_prepend(str(STUDY))  # run.py imports corrupt.py beside it.
  run = _module("run")
  config = _module("config").get_config("vit,fit")
  assert run.run_name(config) == "vit_rho0.1_seed0"
  config.sam.kind = "looksam"
  assert run.run_name(config) == "vit_looksam_rho0.1_seed0"
  config.sam.looksam.alpha = 0.2
  assert run.run_name(config) == "vit_looksam_alpha0.2_rho0.1_seed0"
  config.sam.looksam.alpha, config.sam.looksam_alpha = 0.7, 0.3  # The old key, moved.
  assert run.run_name(config) == "vit_looksam_alpha0.3_rho0.1_seed0"
  control = _module("config").get_config("resnet,fit,adamw")
  assert (control.optimizer.name, control.optimizer.learning_rate) == ("adamw", 2e-3)
  assert run.run_name(control) == "resnet_adamw_rho0.1_seed0"
  assert run.run_name(_module("config").get_config("resnet,fit,sgd")) == "resnet_rho0.1_seed0"


def _row(model, rho, seed, accuracy, lam):
  return {"model": model, "rho": rho, "seed": seed, "test_accuracy": accuracy,
          "train_loss": 1.0 + rho, "lambda_max": lam, "ntk_kappa_init": 100.0,
          "active_fraction": {"MixerBlock_0/token_mixing": 0.4 - rho,
                              "MixerBlock_0/channel_mixing": 0.6, "MixerBlock_1/token_mixing": 0.5},
          "total_cpu_seconds": 360.0, "total_wall_seconds": 200.0}


def test_report_picks_rho_and_summarises_seeds(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(STUDY))  # report.py imports rows.py and claims.py beside it.
  report = _module("report")
  rows = [_row(m, 0.0, s, 0.5 + 0.01 * s, 100.0 + s) for m in report.MODELS for s in range(3)]
  rows += [_row(m, rho, 0, acc, 10.0) for m in report.MODELS
           for rho, acc in ((0.05, 0.55), (0.1, 0.6), (0.2, 0.52))]
  rows += [_row(m, 0.1, s, 0.58, 12.0) for m in report.MODELS for s in (1, 2)]
  rows += [_row("vit", 0.2, 1, 0.9, 1.0)]  # A seed of a rho the sweep did not pick.
  assert report.chosen_rho(rows) == {m: 0.1 for m in report.MODELS}
  groups = report.groups(rows, report.chosen_rho(rows))
  assert [r["seed"] for r in groups[("vit", "SAM")]] == [0, 1, 2]
  assert report.first_block_active(rows[-1]) == pytest.approx((0.2 + 0.6) / 2)
  # A ViT's units share the "Transformer/" prefix: the first block is encoderblock_0 alone.
  vit_units = {f"Transformer/encoderblock_{i}/MlpBlock_0": 0.3 - 0.1 * i for i in range(3)}
  assert report.first_block_active({"active_fraction": vit_units}) == pytest.approx(0.3)
  assert report.stat([1.0, 2.0, 3.0], "{:.2f}") == "2.00 ± 1.00 (3)"
  monkeypatch.setattr(report, "FIGURES", str(tmp_path / "figures"))
  text = report.generated(rows)  # The short regime: its main table, sweep and budget.
  assert "| ViT | SAM | 0.1 | 0.587 ± 0.012 (3) |" in text
  assert "| Mixer | 0.2 | 0.520 |" in text  # The sweep lists every seed-0 rho.
  assert f"{len(rows)} runs, {len(rows) * 0.1:.2f} CPU-hours" in text
  assert "claims" not in text and not (tmp_path / "figures").exists()


def test_report_tables_the_cheaper_kinds_against_base_and_sam(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(STUDY))
  report = _module("report")
  timed = lambda row, seconds, **extra: row | {"step": 1000, "train_cpu_seconds": seconds} | extra
  rows = [timed(_row("vit", 0.0, s, 0.5, 100.0), 200.0) for s in range(2)]
  rows += [timed(_row("vit", 0.1, s, 0.6, 10.0), 400.0) for s in range(2)]
  rows += [timed(_row("vit", 0.1, s, 0.55, 55.0), 240.0, kind="looksam") for s in range(2)]
  rows += [timed(_row("vit", 0.1, 0, 0.5, 120.0), 300.0, kind="aesam", sam_fraction=0.4)]
  rows += [timed(_row("vit", 0.1, 0, 0.45, 70.0), 240.0, kind="looksam",  # Its own line.
                 config={"sam": {"looksam_alpha": 0.2}})]  # A committed row's old key.
  assert report.chosen_rho(rows) == {"vit": 0.1}  # The cheaper kinds are not in the sweep.
  assert report.cheaper([r for r in rows if report.kind(r) == "sam"]) is None
  assert "LookSAM" not in report.generated(rows)  # Left to the cheaper-SAM page.
  text = report.cheaper(rows)
  assert "4 runs, 0.40 CPU-hours" in text  # The cheaper kinds' rows alone.
  assert ("| ViT | LookSAM | 0.1 | 0.550 ± 0.000 (2) | 1.100 ± 0.000 (2) | 55.0 ± 0.0 (2) | 50% "
          "| 0.240 | 1.20 |  |") in text
  assert "| ViT | LookSAM (alpha 0.2) | 0.1 | 0.450 (1) | 1.100 (1) | 70.0 (1) | 33% |" in text
  assert "| ViT | AE-SAM | 0.1 | 0.500 (1) | 1.100 (1) | 120.0 (1) | -22% | 0.300 | 1.50 | 0.40 |" in text
  assert "| ViT | SAM | 0.1 | 0.600 ± 0.000 (2) | 1.100 ± 0.000 (2) | 10.0 ± 0.0 (2) | 100% |" in text


def _fit_row(model, rho, seed, data_dir):
  config = _module("config").get_config(f"{model},fit")
  config.data_dir = data_dir
  blocks = ["embedding", "block_0", "block_3"]
  sam = rho > 0
  return _row(model, rho, seed, 0.6 + 0.1 * sam + 0.01 * seed, 50.0 - 40 * sam) | {
      "train_accuracy": 0.99 - 0.1 * sam, "train_loss_clean": 0.05 + 0.2 * sam,
      "block_lambda_max": {b: (3 - i) * (20.0 - 15 * sam) for i, b in enumerate(blocks)},
      "weight_norm": {"embedding": 5.0 + sam, "total": 30.0 + 10 * sam},
      "activation_norm": {"b0": 2.0, "b1": 4.0 + sam},
      "corruption_accuracy": {f"{c}_{v}": 0.5 - 0.05 * v + 0.1 * sam
                              for c in ("fog", "snow") for v in range(1, 6)},
      "corruption_mean": 0.35 + 0.1 * sam, "config": config.to_dict(),
      **({"attention_maps": np.full((8, 8, 8), 1.0 + seed).tolist()} if model == "vit" else {})}


def test_report_of_the_fit_regime_covers_the_claims(tmp_path, monkeypatch):
  data = str(tmp_path / "data")
  make_folder(data, "train", CLASSES, per_class=1, size=(32, 32))  # The class folders.
  make_folder(data, "test", CLASSES, per_class=1, size=(32, 32))
  monkeypatch.syspath_prepend(str(STUDY))
  report = _module("report")
  rows = [_fit_row(m, rho, s, data) for m in report.MODELS for rho in (0.0, 0.1) for s in (0, 1)]
  monkeypatch.setattr(report, "FIGURES", str(tmp_path / "figures"))
  text = report.generated(rows, "fit")
  assert ("| ViT | SAM | 0.1 | 0.705 ± 0.007 (2) | 0.890 ± 0.000 (2) | 0.250 ± 0.000 (2) |"
          in text)
  # Per block: embedding, first, last; severities average the corruptions.
  assert "| ViT | base | 50.0 ± 0.0 (2) | 60.0 ± 0.0 (2) | 40.0 ± 0.0 (2) | 20.0 ± 0.0 (2) |" in text
  assert ("| Mixer | SAM | 0.705 ± 0.007 (2) | 0.550 ± 0.000 (2) | 0.500 ± 0.000 (2) | "
          "0.450 ± 0.000 (2) | 0.400 ± 0.000 (2) | 0.350 ± 0.000 (2) | 0.450 ± 0.000 (2) |") in text
  # The claims table: numbers per model, a verdict per model from the seed pairs.
  assert ("| C4: SAM lowers lambda_max | ViT 738.8 -> 20.9; Mixer 1644.4 -> 22.5; ResNet 179.8 "
          "-> 42.0 | ViT 50 ± 0 -> 10 ± 0 (paired change -40 ± 0); Mixer 50 ± 0 -> 10 ± 0 (paired "
          "change -40 ± 0); ResNet 50 ± 0 -> 10 ± 0 (paired change -40 ± 0) | "
          "ViT: holds (n = 2; p < 0.001); Mixer: holds (n = 2; p < 0.001); ResNet: holds (n = 2; "
          "p < 0.001) |") in text
  assert "| C10: SAM raises the weight norm |" in text
  assert "ViT 30 ± 0 -> 40 ± 0 (paired change 10 ± 0);" in text
  figures = sorted(os.listdir(tmp_path / "figures" / "fit"))
  assert {"train_accuracy.png", "attention_vit.png", "block_lambda_max_resnet.png",
          "corruptions_mixer.png"} <= set(figures)


def test_claims_verdicts_pair_runs_by_seed(monkeypatch):
  monkeypatch.syspath_prepend(str(STUDY))
  claims = _module("claims")
  row = lambda model, seed, accuracy, lam: {"model": model, "seed": seed,
                                            "test_accuracy": accuracy, "lambda_max": lam}
  g = {("vit", "base"): [row("vit", s, 0.50, 80.0) for s in range(3)],
       # Seed 1 is worse with SAM: the gain holds in 2 of the 3 seed pairs.
       ("vit", "SAM"): [row("vit", s, a, 20.0) for s, a in zip(range(3), (0.6, 0.45, 0.55))],
       ("resnet", "base"): [row("resnet", s, 0.7, l) for s, l in zip(range(3), (10, 90, 10))]}
  accuracy = lambda r: r["test_accuracy"]
  # The change per seed pair: +0.1, -0.05, +0.05: t = mean / (std / sqrt(3)), and with 2
  # degrees of freedom the two-sided p is 1 - |t| / sqrt(2 + t^2).
  t = (0.1 / 3) / (np.std([0.1, -0.05, 0.05], ddof=1) / np.sqrt(3))
  p = 1 - t / np.sqrt(2 + t * t)
  assert claims.paired(g, "vit", accuracy, +1) == (
      "ViT 0.5 ± 0 -> 0.533 ± 0.0764 (paired change 0.0333 ± 0.0764)",
      f"mixed (2 of 3 seeds; p = {p:.2g}, not significant)")
  assert claims.paired(g, "vit", lambda r: r["lambda_max"], -1)[1] == "holds (p < 0.001)"
  assert claims.paired(g, "vit", lambda r: r["lambda_max"], +1)[1] == (
      "does not hold (p < 0.001)")
  assert claims.paired(g, "resnet", accuracy, +1) is None  # No SAM runs yet.
  # ViT above ResNet in seeds 0 and 2 only; one seed of a pair missing narrows n.
  assert claims.ordered(g, "base", lambda r: r["lambda_max"], ("vit", "resnet"))[1].startswith(
      "mixed (2 of 3 seeds; p = ")
  g[("resnet", "base")].pop()
  assert claims.ordered(g, "base", lambda r: r["lambda_max"], ("vit", "resnet"))[1].startswith(
      "mixed (1 of 2 seeds; p = ")
  assert claims.verdict([True]) == "holds (n = 1)"  # No p from one seed.
  uniform, peaked = np.ones((2, 8, 8)), np.zeros((2, 8, 8))
  peaked[:, 3, 4] = 1.0
  assert claims.map_entropy({"attention_maps": uniform.tolist()}) == pytest.approx(np.log(64))
  assert claims.map_entropy({"attention_maps": peaked.tolist()}) == pytest.approx(0.0)


def test_spread_measures_against_closed_forms(monkeypatch):
  monkeypatch.syspath_prepend(str(STUDY))
  claims = _module("claims")
  # Logarithms 0, 1, 2: mean 1, std 1; t_{0.975, 2} = 0.95 / sqrt(2 * 0.975 * 0.025).
  half = 0.95 / np.sqrt(2 * 0.975 * 0.025) * np.sqrt(1 + 1 / 3)
  assert claims.prediction_interval(np.exp([0.0, 1.0, 2.0])) == pytest.approx(
      (np.exp(1 - half), np.exp(1 + half)))
  text, verdict = claims.kappa_spread({"vit": [5.0, 6.0, 7.0], "mixer": [2.0, 9.0],
                                       "resnet": [1.0, 3.0]})
  assert text.startswith("ViT median 6 (range 5-7, 3 seeds), Mixer median 6 (range 2-9, 2 seeds)")
  # Mixer against ResNet: 2 > 1, 2 < 3, 9 > 1, 9 > 3.
  assert "ViT > ResNet in 100.0% of seed pairs" in verdict
  assert "Mixer > ResNet in 75.0% of seed pairs" in verdict
  assert claims.kappa_spread({"vit": [1.0]}) is None


def test_optimizer_control_rows_are_kept_apart(monkeypatch):
  monkeypatch.syspath_prepend(str(STUDY))
  report, claims = _module("report"), _module("claims")
  with_train = lambda row, **extra: row | {"train_accuracy": 0.9} | extra
  rows = [with_train(_row(m, rho, s, 0.5 + rho, 100.0 + s - 900 * rho))
          for m in report.MODELS for rho in (0.0, 0.1) for s in range(3)]
  adamw = {"config": {"optimizer": {"name": "adamw"}}}
  control = [with_train(_row("resnet", rho, s, 0.4 + rho, 150.0 + s - 1400 * rho), **adamw)
             for rho in (0.0, 0.1) for s in range(3)]
  assert [report.is_control(r) for r in rows + control] == [False] * 18 + [True] * 6
  assert report.optimizer(rows[0]) == "adamw" and report.optimizer(rows[-1]) == "sgd"
  # The control leaves the study's own tables as they were; only the budget counts it.
  main = lambda text: text.split("#### Budget")[0]
  assert main(report.generated(rows + control)) == main(report.generated(rows))
  g = report.groups(rows, report.chosen_rho(rows))
  gc = report.groups(control, report.chosen_rho(control))
  assert claims.control_lines(g, {}) == []
  lines = {line[0].split(" (")[0]: line[2:] for line in claims.control_lines(g, gc)}
  # AdamW ResNet base 150-152 against ViT and Mixer 100-102: still the sharpest.
  text, verdict = lines["Control: without SAM, the ResNet trained with AdamW"]
  assert text == "ResNet 151 ± 1, ViT 101 ± 1, Mixer 101 ± 1" and verdict.startswith("holds (p ")
  assert lines["Control: SAM lowers lambda_max of the ResNet trained with adamw"][1].startswith(
      "holds")
  table = report.control_table(g, gc)
  assert "| ResNet | sgd | base | 0 | 0.500 ± 0.000 (3) |" in table
  assert "| ResNet | adamw | SAM | 0.1 | 0.500 ± 0.000 (3) | 0.900 ± 0.000 (3) |" in table
  assert "| ViT |" not in table  # No control of the ViT: its own runs stay out.
