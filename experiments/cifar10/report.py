r"""Tables and figures of the CIFAR-10 study from its result rows (``results/*.json``).

  python experiments/cifar10/report.py

Rewrites the generated part of ``docs/reproduction.md`` (between the ``tables``
markers) and the PNGs in ``docs/reproduction/``. The SAM rho of each model is the
one with the best seed-0 test accuracy in the sweep; every other number is the mean
and standard deviation over the seeds that ran at that setting. Rows of the cheaper SAM
kinds (``kind`` looksam, msam, aesam) get their own table against base and SAM.
"""

import collections
import glob
import json
import os
import pathlib
import re
from typing import Sequence

import numpy as np

from sam_jax.analysis import plots

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PAGE = os.path.join(ROOT, "docs", "reproduction.md")
FIGURES = os.path.join(ROOT, "docs", "reproduction")
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"
MODELS = ("vit", "mixer", "resnet")
NAMES = {"vit": "ViT", "mixer": "Mixer", "resnet": "ResNet"}
KINDS = {"looksam": "LookSAM", "msam": "Momentum-SAM", "aesam": "AE-SAM"}


def kind(row: dict) -> str:
  """The row's SAM kind (rows from before the cheaper kinds are SAM's)."""
  return row.get("kind", "sam")


def load_rows(results_dir: str) -> list[dict]:
  rows = [json.loads(pathlib.Path(p).read_text())
          for p in sorted(glob.glob(os.path.join(results_dir, "*.json")))]
  if not rows:
    raise SystemExit(f"report: no result rows in {results_dir}; run run_all.sh first.")
  return rows


def first_block_active(row: dict) -> float:
  """Mean active fraction over the units of the first block (e.g. both mixings of a Mixer's)."""
  fractions = row["active_fraction"]
  first = next(iter(fractions)).split("/")[0]
  return float(np.mean([v for k, v in fractions.items() if k.split("/")[0] == first]))


METRICS = {  # Column -> (value of a row, format).
    "test accuracy": (lambda r: r["test_accuracy"], "{:.3f}"),
    "final train loss": (lambda r: r["train_loss"], "{:.3f}"),
    "lambda_max": (lambda r: r["lambda_max"], "{:.1f}"),
    "active, block 0": (first_block_active, "{:.3f}"),
    "NTK kappa (init)": (lambda r: r["ntk_kappa_init"], "{:.0f}"),
    "CPU-hours": (lambda r: r["total_cpu_seconds"] / 3600, "{:.3f}"),
}


def stat(values: Sequence[float], fmt: str) -> str:
  values = np.asarray(values, np.float64)
  if len(values) == 1:
    return f"{fmt.format(values[0])} (1)"
  return f"{fmt.format(values.mean())} ± {fmt.format(values.std(ddof=1))} ({len(values)})"


def chosen_rho(rows: list[dict]) -> dict[str, float]:
  """Per model, the SAM rho with the best seed-0 test accuracy."""
  best = {}
  for model in MODELS:
    sweep = [r for r in rows if r["model"] == model and r["seed"] == 0 and r["rho"] > 0
             and kind(r) == "sam"]
    if sweep:
      best[model] = max(sweep, key=lambda r: r["test_accuracy"])["rho"]
  return best


def table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])


def groups(rows: list[dict], best: dict[str, float]) -> dict[tuple[str, str], list[dict]]:
  """(model, "base" or "SAM") -> the rows of the study's main comparison."""
  out = collections.defaultdict(list)
  for r in rows:
    if kind(r) != "sam":
      continue
    if r["rho"] == 0:
      out[(r["model"], "base")].append(r)
    elif best.get(r["model"]) == r["rho"]:
      out[(r["model"], "SAM")].append(r)
  return out


def claims(g: dict, mean) -> str:
  """The paper's claims with the numbers measured here (verdicts are in the page's prose)."""
  lines = []
  have = lambda *keys: all(k in g for k in keys)
  if have(*[(m, "base") for m in MODELS]):
    lam = {m: mean(g[(m, "base")], "lambda_max") for m in MODELS}
    kap = {m: mean(g[(m, "base")], "NTK kappa (init)") for m in MODELS}
    lines.append(["Without SAM, ViT and Mixer are far sharper than ResNet; Mixer sharpest",
                  ", ".join(f"{NAMES[m]} {lam[m]:.1f}" for m in MODELS) + " (lambda_max)"])
    lines.append(["NTK kappa at initialisation is larger for ViT and Mixer than ResNet",
                  ", ".join(f"{NAMES[m]} {kap[m]:.0f}" for m in MODELS)])
  for m in MODELS:
    if not have((m, "base"), (m, "SAM")):
      continue
    b, s = g[(m, "base")], g[(m, "SAM")]
    lines.append([f"{NAMES[m]}: SAM lowers lambda_max by a large factor",
                  f"{mean(b, 'lambda_max'):.1f} -> {mean(s, 'lambda_max'):.1f} "
                  f"({mean(b, 'lambda_max') / mean(s, 'lambda_max'):.1f}x)"])
    lines.append([f"{NAMES[m]}: SAM gain in test accuracy (paper: ViT/Mixer gain more)",
                  f"{mean(b, 'test accuracy'):.3f} -> {mean(s, 'test accuracy'):.3f} "
                  f"({100 * (mean(s, 'test accuracy') - mean(b, 'test accuracy')):+.1f} points)"])
    lines.append([f"{NAMES[m]}: SAM raises the training loss",
                  f"{mean(b, 'final train loss'):.3f} -> {mean(s, 'final train loss'):.3f}"])
    lines.append([f"{NAMES[m]}: SAM leaves fewer active units in the first block",
                  f"{mean(b, 'active, block 0'):.3f} -> {mean(s, 'active, block 0'):.3f}"])
  return table(["paper's claim", "measured here (means over seeds)"], lines)


def variants(rows: list[dict], g: dict, mean) -> str | None:
  """Each cheaper kind against base and SAM: lambda_max, loss, accuracy, CPU time per step."""
  cheap = [r for r in rows if kind(r) != "sam"]
  if not cheap:
    return None
  per_step = lambda rs: float(np.mean([r["train_cpu_seconds"] / r["step"] for r in rs]))
  lines = []
  for m in MODELS:
    if not g.get((m, "base")) or not g.get((m, "SAM")):
      continue
    lam_base, lam_sam = mean(g[(m, "base")], "lambda_max"), mean(g[(m, "SAM")], "lambda_max")
    time_base = per_step(g[(m, "base")])
    setups = [("base", g[(m, "base")]), ("SAM", g[(m, "SAM")])] + [
        (f"{KINDS[k]}", [r for r in cheap if r["model"] == m and kind(r) == k and r["rho"] == rho])
        for k, rho in sorted({(kind(r), r["rho"]) for r in cheap if r["model"] == m})]
    for label, rs in setups:
      share = (lam_base - mean(rs, "lambda_max")) / (lam_base - lam_sam)
      fraction = [r["sam_fraction"] for r in rs if "sam_fraction" in r]
      lines.append([NAMES[m], label, f"{rs[0]['rho']:g}"]
                   + [stat([METRICS[c][0](r) for r in rs], METRICS[c][1])
                      for c in ("test accuracy", "final train loss", "lambda_max")]
                   + [f"{100 * share:.0f}%", f"{per_step(rs):.3f}",
                      f"{per_step(rs) / time_base:.2f}",
                      f"{np.mean(fraction):.2f}" if fraction else ""])
  return table(["model", "optimizer", "rho", "test accuracy", "final train loss", "lambda_max",
                "share of SAM's lambda_max reduction", "train CPU s/step", "/ base",
                "SAM steps (AE-SAM)"], lines)


def figures(g: dict) -> list[str]:
  os.makedirs(FIGURES, exist_ok=True)
  per = lambda metric: {NAMES[m]: {label: [METRICS[metric][0](r) for r in g[(m, label)]]
                                   for label in ("base", "SAM") if (m, label) in g}
                        for m in MODELS}
  paths = [plots.grouped_bars(os.path.join(FIGURES, f"{file}.png"), per(metric), ylabel=metric,
                              title=title, log=log)
           for file, metric, title, log in (
               ("test_accuracy", "test accuracy", "CIFAR-10 test accuracy", False),
               ("lambda_max", "lambda_max", "Dominant Hessian eigenvalue of the training loss",
                True),
               ("train_loss", "final train loss", "Final training loss (clean pass)", False),
               ("ntk_kappa_init", "NTK kappa (init)", "NTK condition number at initialisation",
                True))]
  for m in MODELS:
    runs = {label: g[(m, label)] for label in ("base", "SAM") if (m, label) in g}
    if runs:
      blocks = list(next(iter(runs.values()))[0]["active_fraction"])
      paths.append(plots.grouped_bars(
          os.path.join(FIGURES, f"active_neurons_{m}.png"),
          {b: {label: [r["active_fraction"][b] for r in rs] for label, rs in runs.items()}
           for b in blocks}, ylabel="fraction of units > 0",
          title=f"{NAMES[m]}: active hidden units per block", short=True))
  return paths


def generated(rows: list[dict]) -> str:
  best = chosen_rho(rows)
  g = groups(rows, best)
  mean = lambda rs, metric: float(np.mean([METRICS[metric][0](r) for r in rs]))
  sweep = sorted((r for r in rows if r["seed"] == 0 and kind(r) == "sam"),
                 key=lambda r: (MODELS.index(r["model"]), r["rho"]))
  main_lines = [[NAMES[m], label, f"{best[m]:g}" if label == "SAM" else "0"]
                + [stat([f(r) for r in g[(m, label)]], fmt) for f, fmt in METRICS.values()]
                for m in MODELS for label in ("base", "SAM") if (m, label) in g]
  cpu = sum(r["total_cpu_seconds"] for r in rows) / 3600
  wall = sum(r["total_wall_seconds"] for r in rows) / 3600
  paths = figures(g)
  return "\n\n".join([
      "### Main comparison (mean ± standard deviation (number of seeds))",
      table(["model", "optimizer", "rho", *METRICS], main_lines),
      "### Rho sweep (seed 0)",
      table(["model", "rho", "test accuracy", "final train loss", "lambda_max"],
            [[NAMES[r["model"]], f"{r['rho']:g}", f"{r['test_accuracy']:.3f}",
              f"{r['train_loss']:.3f}", f"{r['lambda_max']:.1f}"] for r in sweep]),
      "### The paper's claims, measured",
      claims(g, mean),
      *([] if (cheap := variants(rows, g, mean)) is None else [
          "### Cheaper SAM: LookSAM, Momentum-SAM, AE-SAM (mean ± standard deviation (seeds))",
          cheap]),
      f"### Budget used\n\n{len(rows)} runs, {cpu:.2f} CPU-hours in all ({wall:.2f} hours of "
      "wall time summed over runs, which ran several at a time on a shared machine), training plus measurements.",
      "### Figures",
      "\n".join(f"![{os.path.basename(p)}](reproduction/{os.path.basename(p)})" for p in paths)])


def main() -> None:
  text = generated(load_rows(os.path.join(HERE, "results")))
  page = pathlib.Path(PAGE).read_text()
  if BEGIN not in page or END not in page:
    raise SystemExit(f"report: {PAGE} lacks the {BEGIN} ... {END} markers.")
  page = re.sub(re.escape(BEGIN) + ".*" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}",
                page, flags=re.S)
  with open(PAGE, "w") as f:
    f.write(page)
  print(f"Wrote {PAGE} and the figures in {FIGURES}.")


if __name__ == "__main__":
  main()
