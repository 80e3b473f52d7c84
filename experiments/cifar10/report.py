r"""Tables and figures of the CIFAR-10 study from its result rows (``results/REGIME/*.json``).

  python experiments/cifar10/report.py

Rewrites the generated parts of ``docs/reproduction.md`` (between the ``tables:REGIME``
markers, one part per regime with rows) and the PNGs in ``docs/reproduction/REGIME/``.
The SAM rho of each model is the one with the best seed-0 test accuracy in the sweep;
every other number is the mean and standard deviation over the seeds that ran at that
setting. Rows of the cheaper SAM kinds (``kind`` looksam, msam, aesam) get their own
table against base and SAM. The ``fit`` regime's further measurements (``run.py``) get
their tables: per-block lambda_max, norms, corruption accuracy by severity, and the
class-token attention maps of ViT without and with SAM.
"""

import collections
import glob
import os
import pathlib
import re

import numpy as np

from sam_jax.analysis import plots

import claims  # pylint: disable=g-bad-import-order  (experiments/cifar10/claims.py)
from rows import KINDS, MODELS, NAMES, first_block_active, kind, load_rows, setting, stat, table

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PAGE = os.path.join(ROOT, "docs", "reproduction.md")
FIGURES = os.path.join(ROOT, "docs", "reproduction")  # /REGIME/ for each regime's figures.
REGIMES = ("fit", "short")


METRICS = {  # Column -> (value of a row, format).
    "test accuracy": (lambda r: r["test_accuracy"], "{:.3f}"),
    "final train loss": (lambda r: r["train_loss"], "{:.3f}"),
    "lambda_max": (lambda r: r["lambda_max"], "{:.1f}"),
    "active, block 0": (first_block_active, "{:.3f}"),
    "NTK kappa (init)": (lambda r: r["ntk_kappa_init"], "{:.0f}"),
    "CPU-hours": (lambda r: r["total_cpu_seconds"] / 3600, "{:.3f}"),
}


def chosen_rho(rows: list[dict]) -> dict[str, float]:
  """Per model, the SAM rho with the best seed-0 test accuracy."""
  best = {}
  for model in MODELS:
    sweep = [r for r in rows if r["model"] == model and r["seed"] == 0 and r["rho"] > 0
             and kind(r) == "sam"]
    if sweep:
      best[model] = max(sweep, key=lambda r: r["test_accuracy"])["rho"]
  return best


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


def short_claims(g: dict, mean) -> str:
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
        (f"{KINDS[k]}{f' (alpha {a:g})' if a is not None else ''}",
         [r for r in cheap if r["model"] == m and setting(r) == (k, rho, a)])
        for k, rho, a in sorted({setting(r) for r in cheap if r["model"] == m},
                                key=lambda s: (s[0], s[1], s[2] or 0))]
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


def figures(g: dict, out: str) -> list[str]:
  os.makedirs(out, exist_ok=True)
  per = lambda metric: {NAMES[m]: {label: [METRICS[metric][0](r) for r in g[(m, label)]]
                                   for label in ("base", "SAM") if (m, label) in g}
                        for m in MODELS}
  paths = [plots.grouped_bars(os.path.join(out, f"{file}.png"), per(metric), ylabel=metric,
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
          os.path.join(out, f"active_neurons_{m}.png"),
          {b: {label: [r["active_fraction"][b] for r in rs] for label, rs in runs.items()}
           for b in blocks}, ylabel="fraction of units > 0",
          title=f"{NAMES[m]}: active hidden units per block", short=True))
  return paths


FIT_METRICS = {  # The fit regime's further columns (run.measure_fit).
    "train accuracy": (lambda r: r["train_accuracy"], "{:.3f}"),
    "train loss (clean)": (lambda r: r["train_loss_clean"], "{:.3f}"),
    "corruption accuracy": (lambda r: r["corruption_mean"], "{:.3f}"),
}
FIT_COLUMNS = ("test accuracy", "train accuracy", "train loss (clean)", "final train loss",
               "lambda_max", "active, block 0", "NTK kappa (init)", "corruption accuracy",
               "CPU-hours")
SEVERITIES = (1, 2, 3, 4, 5)


def _severity(row: dict, severity: int) -> float:
  """Mean accuracy over the corruptions at one severity."""
  return float(np.mean([a for name, a in row["corruption_accuracy"].items()
                        if name.endswith(f"_{severity}")]))


def _ends(values: dict) -> list[str]:
  """The first and the last key (blocks in network order)."""
  return [next(iter(values)), list(values)[-1]]


def fit_tables(g: dict) -> list[str]:
  """Per-block lambda_max, norms and corruption accuracy by severity, base vs SAM."""
  cell = lambda rs, f, fmt="{:.1f}": stat([f(r) for r in rs], fmt)
  keys = [k for k in g if k[1] in ("base", "SAM")]
  blocks, norms, corrupt = [], [], []
  for m, label in keys:
    rs = g[(m, label)]
    names = list(rs[0]["block_lambda_max"])
    blocks.append([NAMES[m], label, cell(rs, lambda r: r["lambda_max"])]
                  + [cell(rs, lambda r, b=b: r["block_lambda_max"][b]) for b in names]
                  + [", ".join(names[1:])])
    first, last = _ends(rs[0]["activation_norm"])
    norms.append([NAMES[m], label, cell(rs, lambda r: r["weight_norm"]["total"]),
                  cell(rs, lambda r: r["weight_norm"]["embedding"]),
                  cell(rs, lambda r: r["activation_norm"][first], "{:.2f}"),
                  cell(rs, lambda r: r["activation_norm"][last], "{:.2f}")])
    corrupt.append([NAMES[m], label, cell(rs, lambda r: r["test_accuracy"], "{:.3f}")]
                   + [cell(rs, lambda r, v=v: _severity(r, v), "{:.3f}") for v in SEVERITIES]
                   + [cell(rs, lambda r: r["corruption_mean"], "{:.3f}")])
  return [
      "#### Sharpness per block (lambda_max of the Hessian's diagonal blocks)",
      table(["model", "optimizer", "network", "embedding", "first block", "last block",
             "blocks"], blocks),
      "#### Norms: weights (all, embedding) and mean activation norm of the first and last "
      "block outputs",
      table(["model", "optimizer", "||w|| all", "||w|| embedding", "||a|| first block",
             "||a|| last block"], norms),
      "#### Accuracy under 13 common corruptions (1,000 test images), by severity",
      table(["model", "optimizer", "clean (10,000)", *[f"severity {v}" for v in SEVERITIES],
             "mean"], corrupt)]


def fit_figures(g: dict, out: str) -> list[str]:
  """Training accuracy, per-block lambda_max, corruption accuracy and ViT's attention maps."""
  runs = lambda m: {label: g[(m, label)] for label in ("base", "SAM") if (m, label) in g}
  paths = [plots.grouped_bars(
      os.path.join(out, "train_accuracy.png"),
      {NAMES[m]: {label: [r["train_accuracy"] for r in rs] for label, rs in runs(m).items()}
       for m in MODELS}, ylabel="accuracy", title="Training-subset accuracy (no augmentation)")]
  for m in MODELS:
    if not runs(m):
      continue
    names = list(next(iter(runs(m).values()))[0]["block_lambda_max"])
    paths.append(plots.grouped_bars(
        os.path.join(out, f"block_lambda_max_{m}.png"),
        {b: {label: [r["block_lambda_max"][b] for r in rs] for label, rs in runs(m).items()}
         for b in names}, ylabel="lambda_max", title=f"{NAMES[m]}: lambda_max per block",
        log=True))
    paths.append(plots.grouped_bars(
        os.path.join(out, f"corruptions_{m}.png"),
        {f"severity {v}": {label: [_severity(r, v) for r in rs]
                           for label, rs in runs(m).items()} for v in SEVERITIES},
        ylabel="accuracy", title=f"{NAMES[m]}: accuracy under common corruptions"))
  vit = runs("vit")
  if len(vit) == 2:
    paths.append(attention_figure(os.path.join(out, "attention_vit.png"), vit))
  return paths


def attention_figure(path: str, runs: dict[str, list[dict]]) -> str:
  """The class token's rollout maps of the lowest seed of each run, over their images."""
  # pylint: disable=g-import-not-at-top
  import ml_collections
  from sam_jax.data import input_pipeline
  rows = {label: min(rs, key=lambda r: r["seed"]) for label, rs in runs.items()}
  config = ml_collections.ConfigDict(next(iter(rows.values()))["config"])
  num = config.analysis.attention.num_images
  images = next(input_pipeline.eval_iterator(config, local_batch_size=num,
                                             split=config.analysis.attention.split))["image"]
  return plots.attention_overlays(path, images, {
      f"{label} (seed {r['seed']})": np.array(r["attention_maps"]) for label, r in rows.items()})


def generated(rows: list[dict], regime: str = "short") -> str:
  best = chosen_rho(rows)
  g = groups(rows, best)
  metrics = METRICS if regime != "fit" else {k: (METRICS | FIT_METRICS)[k] for k in FIT_COLUMNS}
  mean = lambda rs, metric: float(np.mean([metrics[metric][0](r) for r in rs]))
  sweep = sorted((r for r in rows if r["seed"] == 0 and kind(r) == "sam"),
                 key=lambda r: (MODELS.index(r["model"]), r["rho"]))
  main_lines = [[NAMES[m], label, f"{best[m]:g}" if label == "SAM" else "0"]
                + [stat([f(r) for r in g[(m, label)]], fmt) for f, fmt in metrics.values()]
                for m in MODELS for label in ("base", "SAM") if (m, label) in g]
  cpu = sum(r["total_cpu_seconds"] for r in rows) / 3600
  wall = sum(r["total_wall_seconds"] for r in rows) / 3600
  out = os.path.join(FIGURES, regime)
  paths = figures(g, out) + (fit_figures(g, out) if regime == "fit" else [])
  return "\n\n".join([
      "#### Main comparison (mean ± standard deviation (number of seeds))",
      table(["model", "optimizer", "rho", *metrics], main_lines),
      "#### Rho sweep (seed 0)",
      table(["model", "rho", "test accuracy", "final train loss", "lambda_max"],
            [[NAMES[r["model"]], f"{r['rho']:g}", f"{r['test_accuracy']:.3f}",
              f"{r['train_loss']:.3f}", f"{r['lambda_max']:.1f}"] for r in sweep]),
      *(fit_tables(g) if regime == "fit" else []),
      "#### The paper's claims, measured",
      short_claims(g, mean) if regime != "fit" else claims.claims_table(g),
      *([] if (cheap := variants(rows, g, mean)) is None else [
          "#### Cheaper SAM: LookSAM, Momentum-SAM, AE-SAM (mean ± standard deviation (seeds))",
          cheap]),
      f"#### Budget used\n\n{len(rows)} runs, {cpu:.2f} CPU-hours in all ({wall:.2f} hours of "
      "wall time summed over runs, which ran several at a time), training plus measurements.",
      "#### Figures",
      "\n".join(f"![{os.path.basename(p)}](reproduction/{regime}/{os.path.basename(p)})"
                for p in paths)])


def main() -> None:
  page = pathlib.Path(PAGE).read_text()
  for regime in REGIMES:
    if not glob.glob(os.path.join(HERE, "results", regime, "*.json")):
      continue
    begin, end = f"<!-- tables:{regime}:begin -->", f"<!-- tables:{regime}:end -->"
    if begin not in page or end not in page:
      raise SystemExit(f"report: {PAGE} lacks the {begin} ... {end} markers.")
    text = generated(load_rows(os.path.join(HERE, "results", regime)), regime)
    page = re.sub(re.escape(begin) + ".*" + re.escape(end), lambda _: f"{begin}\n{text}\n{end}",
                  page, flags=re.S)
    print(f"{regime}: tables and the figures in {os.path.join(FIGURES, regime)}.")
  with open(PAGE, "w") as f:
    f.write(page)
  print(f"Wrote {PAGE}.")


if __name__ == "__main__":
  main()
