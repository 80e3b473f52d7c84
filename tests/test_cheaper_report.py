"""The fit regime's cheaper-SAM report (experiments/cifar10/cheaper_fit.py) on synthetic rows."""

import pathlib
import re
import struct

import numpy as np
import pytest

from tests.test_cifar10_study import _module

STUDY = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "cifar10"
PAGE = STUDY.parent.parent / "docs" / "cheaper_sam.md"


@pytest.fixture(name="report")
def _report(tmp_path, monkeypatch):
  monkeypatch.syspath_prepend(str(STUDY))  # report.py imports its neighbours.
  report = _module("report")
  monkeypatch.setattr(report.cheaper_fit, "FIGURE", str(tmp_path / "figure" / "gain_cost.png"))
  return report


def _row(model, seed, accuracy, lam, cpu, kind="sam", rho=0.5, alpha=None, resumed=None):
  """A fit row: 8,000 steps, ``cpu`` training CPU seconds for those after ``resumed``."""
  return {"model": model, "seed": seed, "kind": kind, "rho": rho, "test_accuracy": accuracy,
          "lambda_max": lam, "corruption_mean": accuracy - 0.1, "train_accuracy": 0.9,
          "train_cpu_seconds": cpu, "resumed_from_step": resumed,
          "config": {"num_train_steps": 8000, "sam": {"looksam_alpha": alpha or 0.7}}}


def _rows() -> list[dict]:
  """Base 0.1 s/step; SAM gains 5, 6, 4 points (ViT) and 5 (Mixer) at 2x the base step."""
  rows = [_row(m, s, 0.40 + 0.01 * s, 80.0, 760.0 + 40 * s, rho=0.0)
          for m in ("vit", "mixer") for s in range(3)]
  rows += [_row(m, s, a, 4.0, 1600.0) for m in ("vit", "mixer")
           for s, a in zip(range(3), (0.45, 0.47, 0.46))]
  rows += [_row("vit", 0, 0.38, 2.0, 1600.0, rho=0.2)]  # A sweep rho the study did not pick.
  # ViT LookSAM: +3 points in every seed (60% of SAM's +5), lambda_max 42 (half of SAM's
  # reduction), 1.1x the base step.
  rows += [_row("vit", s, 0.43 + 0.01 * s, 42.0, 880.0, "looksam", alpha=0.2) for s in range(3)]
  # ViT AE-SAM, seed 0: +4 of SAM's +5 (80%) but 1.4x. Momentum-SAM, seed 0 resumed at step
  # 4,000: 400 s for 4,000 steps (1.0x), -1 point (-20%).
  rows += [_row("vit", 0, 0.44, 10.0, 1120.0, "aesam"),
           _row("vit", 0, 0.39, 100.0, 400.0, "msam", rho=3.0, resumed=4000)]
  rows += [_row("mixer", 0, 0.42, 61.0, 880.0, "aesam")]  # +2 of +5 (40%) at 1.1x.
  return rows


def _section(report, rows):
  return report.cheaper_fit.section(rows, report.groups(rows, report.chosen_rho(rows)))


def test_shares_and_costs_against_hand_computed_values(report):
  text = _section(report, _rows())
  lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
  # optimizer, rho, accuracy, gain, share, lambda_max, its share, corruption, train, cost.
  assert "| SAM | 0.5 | 0.460 ± 0.010 (3) | 5.0 ± 1.0 (3) | 100% | 4.0 ± 0.0 (3) | 100% |" in text
  assert ("| LookSAM (alpha 0.2) | 0.5 | 0.440 ± 0.010 (3) | 3.0 ± 0.0 (3) | 60% | "
          "42.0 ± 0.0 (3) | 50% | 0.340 ± 0.010 (3) | 0.900 ± 0.000 (3) | 1.10 ± 0.00 (3) |") in text
  assert "| AE-SAM | 0.5 | 0.440 (1) | 4.0 (1) | 80% | 10.0 (1) | 92% |" in text
  assert "| Momentum-SAM (rho 3) | 3 | 0.390 (1) | -1.0 (1) | -20% | 100.0 (1) | -26% |" in text
  assert "| AE-SAM | 0.5 | 0.420 (1) | 2.0 (1) | 40% | 61.0 (1) | 25% |" in text  # Mixer.
  # The base's cost column is its rows' spread around their own mean (0.095, 0.1, 0.105 s).
  assert "| 0.900 ± 0.000 (3) | 1.00 ± 0.05 (3) |" in lines["| base"]
  assert text.index("#### ViT") < text.index("#### Mixer")
  assert "loaded 2-core machine" in text


def test_verdict_states_the_rule_and_picks_the_cheap_kind_with_the_largest_share(report):
  text = _section(report, _rows())
  verdict = next(p for p in text.split("\n\n") if p.startswith("**Verdict.**"))
  assert "at least 50% of SAM's on the same seeds" in verdict and "at most 1.2x" in verdict
  # AE-SAM keeps more (80%) but costs 1.4x: LookSAM is the ViT's answer.
  assert ("ViT: **LookSAM (alpha 0.2)** keeps 60% of SAM's gain (+3.0 of +5.0 points) at 1.10x "
          "the base step (AE-SAM 80% at 1.40x, LookSAM (alpha 0.2) 60% at 1.10x, Momentum-SAM "
          "(rho 3) -20% at 1.00x).") in verdict
  assert "Mixer: **no kind** keeps 50% of SAM's gain within 1.2x the base step" in verdict
  assert verdict.endswith("Provisional: fewer than 3 paired seeds for ViT AE-SAM (1), "
                          "ViT Momentum-SAM (rho 3) (1), Mixer AE-SAM (1).")
  rows = _rows() + [_row("vit", s, 0.44, 10.0, 1120.0, "aesam") for s in (1, 2)]
  rows += [_row("vit", s, 0.39, 100.0, 800.0, "msam", rho=3.0) for s in (1, 2)]
  rows += [_row("mixer", s, 0.42, 61.0, 880.0, "aesam") for s in (1, 2)]
  assert "Provisional" not in _section(report, rows)


def test_a_kind_whose_cost_no_row_measured_is_undecided(report):
  """A row measured after resuming a finished run (resumed at the last step) has no cost."""
  rows = _rows() + [_row("mixer", 0, 0.46, 5.0, 2.0, "looksam", alpha=0.2, resumed=8000)]
  verdict = next(p for p in _section(report, rows).split("\n\n") if p.startswith("**Verdict.**"))
  assert ("Mixer: undecided: LookSAM (alpha 0.2) keeps 50% of SAM's gain or more, at a cost per "
          "step no row has measured yet") in verdict
  assert "LookSAM (alpha 0.2) 120% at a cost not yet measured" in verdict


def _apply(config, command: str):
  """``config`` with the command's ``--config.KEY=VALUE`` overrides, each cast to the key's type."""
  for key, value in re.findall(r"--config\.(\S+)=(\S+)", command):
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[leaf] = type(node[leaf])(value)
  return config


def test_missing_rows_give_the_command_for_each(report, monkeypatch):
  base_and_sam = [r for r in _rows() if r["kind"] == "sam"]
  text = _section(report, base_and_sam)
  assert text.startswith("No fit-regime rows of the cheaper kinds paired with base and SAM yet.")
  commands = re.findall(r"^python .*$", text, flags=re.M)
  assert len(commands) == 18 and "Rows still to run (18 of 18)" in text
  assert all(c.endswith("--config.data_dir=/tmp/cifar10") for c in commands)
  # Each command trains the row its name says (run.py's run_name on its overrides).
  monkeypatch.syspath_prepend(str(STUDY))
  run, config = _module("run"), _module("config")
  names = {run.run_name(_apply(config.get_config(f"{c.split(':')[1].split()[0]}"), c))
           for c in commands}
  assert {"vit_looksam_alpha0.2_rho0.5_seed0", "mixer_aesam_rho0.5_seed2",
          "vit_msam_rho3_seed1"} <= names and len(names) == 18
  # With some of the rows: only the others are listed, under the tables.
  text = _section(report, _rows())
  assert "Rows still to run (12 of 18)" in text
  assert "--config.sam.kind=looksam --config.sam.looksam.alpha=0.2" in text  # Mixer's.
  assert ("vit,fit --config.sam.rho=0.5 --config.seed=0 --config.sam.kind=aesam"
          not in text)
  assert "vit,fit --config.sam.rho=3 --config.seed=1 --config.sam.kind=msam" in text


def test_figure_and_page_are_rewritten_identically(report, tmp_path):
  figure = pathlib.Path(report.cheaper_fit.FIGURE)
  page = PAGE.read_text()
  once = report._replace(page, "cheap-fit", _section(report, _rows()))
  png = figure.read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n"
  assert struct.unpack(">II", png[16:24]) == (1200, 504)  # Two panels (ViT, Mixer) at 120 dpi.
  assert "![gain_cost.png](cheaper_sam/gain_cost.png)" in once
  twice = report._replace(once, "cheap-fit", _section(report, _rows()))
  assert twice == once and figure.read_bytes() == png
  # Everything outside the fit part, the short regime's table included, is kept.
  outside = lambda text: re.sub(r"tables:cheap-fit:begin -->.*<!-- tables:cheap-fit:end",
                                "", text, flags=re.S)
  assert outside(once) == outside(page)
  assert "## The short regime" in once and "<!-- tables:cheap:begin -->" in once
