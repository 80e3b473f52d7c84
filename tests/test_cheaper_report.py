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


def _row(model, seed, accuracy, lam, kind="sam", rho=0.5, alpha=None, fraction=None):
  """A fit row (AE-SAM's with ``fraction``, its SAM steps' share)."""
  return {"model": model, "seed": seed, "kind": kind, "rho": rho, "test_accuracy": accuracy,
          "lambda_max": lam, "corruption_mean": accuracy - 0.1, "train_accuracy": 0.9,
          **({} if fraction is None else {"sam_fraction": fraction}),
          "config": {"num_train_steps": 8000, "sam": {"looksam_alpha": alpha or 0.7}}}


def _rows() -> list[dict]:
  """SAM gains 5, 6, 4 points (ViT) and 5 (Mixer)."""
  rows = [_row(m, s, 0.40 + 0.01 * s, 80.0, rho=0.0) for m in ("vit", "mixer") for s in range(3)]
  rows += [_row(m, s, a, 4.0) for m in ("vit", "mixer")
           for s, a in zip(range(3), (0.45, 0.47, 0.46))]
  rows += [_row("vit", 0, 0.38, 2.0, rho=0.2)]  # A sweep rho the study did not pick.
  # ViT LookSAM: +3 points in every seed (60% of SAM's +5), lambda_max 42 (half of SAM's
  # reduction).
  rows += [_row("vit", s, 0.43 + 0.01 * s, 42.0, "looksam", alpha=0.2) for s in range(3)]
  # ViT AE-SAM, seed 0: +4 of SAM's +5 (80%), SAM on half its steps. Momentum-SAM, seed 0:
  # -1 point (-20%).
  rows += [_row("vit", 0, 0.44, 10.0, "aesam", fraction=0.5),
           _row("vit", 0, 0.39, 100.0, "msam", rho=3.0)]
  rows += [_row("mixer", 0, 0.42, 61.0, "aesam", fraction=0.125)]  # +2 of +5 (40%).
  return rows


def _costs(**missing) -> dict:
  """A step-cost record (benchmarks/sam_overhead.py --study) with these CPU ratios to base:
  SAM 2, LookSAM 1.1, Momentum-SAM 1, AE-SAM 1.8 (trigger on) and 1 (off), so AE-SAM's
  step costs 1.4x at a SAM fraction of 0.5 and 1.1x at 0.125; ``missing``: model -> the
  variants it lacks."""
  ratios = {"base": 1.0, "sam": 2.0, "looksam_k5": 1.1, "msam": 1.0, "aesam_sam": 1.8,
            "aesam_erm": 1.0}
  variant = lambda r: {"cpu_ratio": {"median": r, "min": r - 0.1, "max": r + 0.1},
                       "wall_ratio": {"median": r, "min": r, "max": r}}
  return {"command": "python benchmarks/sam_overhead.py --study=vit,mixer", "date": "today",
          "machine": {"cpu": "Some CPU", "cores": 2, "jax": "0.10.2"}, "blocks": 20,
          "steps_per_block": 10, "load_average_start": [4.5, 4, 4],
          "load_average_end": [5, 4, 4],
          "models": {m: {k: variant(r) for k, r in ratios.items() if k not in missing.get(m, ())}
                     for m in ("vit", "mixer")}}


def _section(report, rows, costs=None):
  costs = _costs() if costs is None else costs
  return report.cheaper_fit.section(rows, report.groups(rows, report.chosen_rho(rows)), costs)


def _verdict(text: str) -> str:
  return next(p for p in text.split("\n\n") if p.startswith("**Verdict.**"))


def test_shares_and_costs_against_hand_computed_values(report):
  text = _section(report, _rows())
  lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
  # optimizer, rho, accuracy, gain, share, lambda_max, its share, corruption, train, AE-SAM's
  # SAM-step fraction, cost.
  assert "| SAM | 0.5 | 0.460 ± 0.010 (3) | 5.0 ± 1.0 (3) | 100% | 4.0 ± 0.0 (3) | 100% |" in text
  assert ("| LookSAM (alpha 0.2) | 0.5 | 0.440 ± 0.010 (3) | 3.0 ± 0.0 (3) | 60% | "
          "42.0 ± 0.0 (3) | 50% | 0.340 ± 0.010 (3) | 0.900 ± 0.000 (3) |  | 1.10 |") in text
  assert ("| AE-SAM | 0.5 | 0.440 (1) | 4.0 (1) | 80% | 10.0 (1) | 92% | 0.340 (1) | 0.900 (1) "
          "| 0.50 (1) | 1.40 |") in text
  assert ("| Momentum-SAM (rho 3) | 3 | 0.390 (1) | -1.0 (1) | -20% | 100.0 (1) | -26% | 0.290 "
          "(1) | 0.900 (1) |  | 1.00 |") in text
  assert ("| AE-SAM | 0.5 | 0.420 (1) | 2.0 (1) | 40% | 61.0 (1) | 25% | 0.320 (1) | 0.900 (1) "
          "| 0.12 (1) | 1.10 |") in text  # Mixer: 0.125 x 1.8 + 0.875 x 1.
  assert lines["| base"].endswith("| 0.900 ± 0.000 (3) |  | 1.00 |")
  assert lines["| SAM"].endswith("|  | 2.00 |")
  assert text.index("#### ViT") < text.index("#### Mixer")
  assert ("measured side by side in one process, `experiments/cifar10/results/fit/step_cost/"
          "step_cost.json` (`benchmarks/sam_overhead.py --study`): the median of 20 interleaved "
          "blocks of 10 steps (today, Some CPU, 2 cores, load average 4.5 at start and 5.0 at "
          "end, jax 0.10.2;") in text


def test_aesam_cost_mixes_its_two_steps_at_each_rows_fraction(report):
  rows = _rows() + [_row("vit", 1, 0.45, 10.0, "aesam", fraction=0.25),
                    _row("vit", 2, 0.44, 10.0, "aesam", fraction=0.75)]
  # 0.5, 0.25, 0.75 of SAM steps: 1.4, 1.2 and 1.6x the base step.
  assert "| 0.50 ± 0.25 (3) | 1.40 ± 0.20 (3) |" in _section(report, rows)
  costs = [report.cheaper_fit.cost(r, {"aesam_sam": 1.8, "aesam_erm": 1.0}) for r in rows[-2:]]
  assert costs == pytest.approx([1.2, 1.6])
  assert np.isnan(report.cheaper_fit.cost(_row("vit", 1, 0.45, 10.0, "aesam"),  # No fraction.
                                          {"aesam_sam": 1.8, "aesam_erm": 1.0}))


def test_verdict_states_the_rule_and_picks_the_cheap_kind_with_the_largest_share(report):
  verdict = _verdict(_section(report, _rows()))
  assert "at least 50% of SAM's on the same seeds" in verdict and "at most 1.2x" in verdict
  # AE-SAM keeps more (80%) but costs 1.4x: LookSAM is the ViT's answer.
  assert ("ViT: **LookSAM (alpha 0.2)** keeps 60% of SAM's gain (+3.0 of +5.0 points) at 1.10x "
          "the base step (AE-SAM 80% at 1.40x, LookSAM (alpha 0.2) 60% at 1.10x, Momentum-SAM "
          "(rho 3) -20% at 1.00x).") in verdict
  assert "Mixer: **no kind** keeps 50% of SAM's gain within 1.2x the base step" in verdict
  assert verdict.endswith("Provisional: fewer than 3 paired seeds for ViT AE-SAM (1), "
                          "ViT Momentum-SAM (rho 3) (1), Mixer AE-SAM (1).")
  rows = _rows() + [_row("vit", s, 0.44, 10.0, "aesam", fraction=0.5) for s in (1, 2)]
  rows += [_row("vit", s, 0.39, 100.0, "msam", rho=3.0) for s in (1, 2)]
  rows += [_row("mixer", s, 0.42, 61.0, "aesam", fraction=0.125) for s in (1, 2)]
  assert "Provisional" not in _section(report, rows)


def test_a_kind_whose_step_cost_is_not_measured_is_undecided(report):
  # ViT's LookSAM (60%) lacks its cost, and no cheap kind keeps more: undecided.
  text = _section(report, _rows(), _costs(vit=("looksam_k5",)))
  assert ("ViT: undecided: LookSAM (alpha 0.2) keeps 50% of SAM's gain or more, at a step cost "
          "not measured side by side yet") in _verdict(text)
  assert "LookSAM (alpha 0.2) 60% at a cost not yet measured" in _verdict(text)
  assert "| 0.900 ± 0.000 (3) |  | not measured |" in text
  # AE-SAM (80%) without its plain step's cost could beat LookSAM (60% at 1.1x): undecided.
  verdict = _verdict(_section(report, _rows(), _costs(vit=("aesam_erm",))))
  assert ("ViT: undecided: AE-SAM keeps 60% of SAM's gain or more, at a step cost not measured "
          "side by side yet") in verdict
  # Without the record, every kind is; Mixer's AE-SAM keeps only 40%: no kind either way.
  text = report.cheaper_fit.section(_rows(), report.groups(_rows(), report.chosen_rho(_rows())),
                                    None)
  assert "ViT: undecided: AE-SAM, LookSAM (alpha 0.2) keeps" in _verdict(text)
  assert "Mixer: **no kind** keeps 50%" in _verdict(text)
  assert ("No side-by-side step costs yet: the cost column is empty until "
          "`experiments/cifar10/results/fit/step_cost/step_cost.json`") in text


def test_the_committed_step_costs_time_every_planned_kind_and_are_no_study_row(report):
  """The record benchmarks/sam_overhead.py --study wrote: a cost for every planned kind's
  rows of both models, outside the rows the report loads."""
  cheaper_fit = report.cheaper_fit
  costs = cheaper_fit.load_costs(cheaper_fit.STEP_COST)
  for model in cheaper_fit.MODELS:
    ratios = cheaper_fit.cpu_ratios(costs, model)
    assert ratios["base"] == 1.0
    for k, (rho, alpha) in cheaper_fit.PLANNED.items():
      row = _row(model, 0, 0.4, 1.0, k, rho or 0.5, alpha, fraction=0.5 if k == "aesam" else None)
      assert np.isfinite(cheaper_fit.cost(row, ratios)), (model, k)
  fit = report.load_rows(str(STUDY / "results" / "fit"))
  assert fit and all("model" in r for r in fit)


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
