r"""Tables and figures of the CIFAR-10 study from its result rows (``results/REGIME/*.json``).

  python experiments/cifar10/report.py

Rewrites the generated parts of ``docs/reproduction.md`` (between the ``tables:REGIME``
markers, one part per regime with rows), the PNGs in ``docs/reproduction/fit/`` and the
tables of ``docs/cheaper_sam.md`` (``tables:cheap``). The SAM rho of each model is the one
with the best seed-0 test accuracy in the sweep; every other number is the mean and
standard deviation over the seeds that ran at that setting. The ``fit`` regime (the main
study) gets every table: the main comparison, the sweep, per-block lambda_max, norms,
corruption accuracy by severity, the claims with verdicts, the budget and the figures,
with the class-token attention maps of ViT without and with SAM, the distribution of NTK
kappa at initialisation over the seeds of ``results/ntk_init_seeds.json``
(``recompute_ntk.py --seeds``) and, once its rows exist, the optimizer control (a model
trained with the other models' optimizer, ``rows.is_control``). The ``short`` regime (a
note on underfitting) gets its main comparison, sweep and budget. Rows of the cheaper SAM
kinds (``kind`` looksam, msam, aesam; short regime) get their own table against base and
SAM on the cheaper-SAM page; their fit-regime rows get ``cheaper_fit.section``
(``tables:cheap-fit``), with the step costs measured side by side in
``results/fit/step_cost/step_cost.json`` (``benchmarks/sam_overhead.py --study``).
"""

import collections
import glob
import json
import os
import pathlib
import re

import numpy as np

from sam_jax.analysis import plots

import cheaper_fit  # pylint: disable=g-bad-import-order  (experiments/cifar10/cheaper_fit.py)
import claims  # pylint: disable=g-bad-import-order  (experiments/cifar10/claims.py)
from rows import (KINDS, MODELS, NAMES, first_block_active, is_control, kind, load_rows,
                  optimizer, output_norms, setting, stat, table)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PAGE = os.path.join(ROOT, "docs", "reproduction.md")
CHEAPER_PAGE = os.path.join(ROOT, "docs", "cheaper_sam.md")
FIGURES = os.path.join(ROOT, "docs", "reproduction")  # /fit/ for the fit regime's figures.
KAPPAS = os.path.join(HERE, "results", "ntk_init_seeds.json")  # recompute_ntk.py --seeds.


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


def variants(rows: list[dict], g: dict, mean) -> str | None:
  """Each cheaper kind against base and SAM: lambda_max, loss, accuracy, CPU time per step."""
  cheap = [r for r in rows if kind(r) != "sam"]
  if not cheap:
    return None
  # The steps this row's command trained (rows from before ``resumed_from_step`` count as
  # fresh); a command that only measured an already trained run has no time per step.
  per_step = lambda rs: float(np.mean([
      r["train_cpu_seconds"] / (r["step"] - r.get("resumed_from_step", 0)) for r in rs
      if r["step"] > r.get("resumed_from_step", 0)] or [np.nan]))
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
SWEEP = {  # The sweep table's columns per regime.
    "short": ("test accuracy", "final train loss", "lambda_max"),
    "fit": ("test accuracy", "train accuracy", "final train loss", "lambda_max"),
}
SEVERITIES = (1, 2, 3, 4, 5)


def _severity(row: dict, severity: int) -> float:
  """Mean accuracy over the corruptions at one severity."""
  return float(np.mean([a for name, a in row["corruption_accuracy"].items()
                        if name.endswith(f"_{severity}")]))


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
    norms.append([NAMES[m], label, cell(rs, lambda r: r["weight_norm"]["total"]),
                  cell(rs, lambda r: r["weight_norm"]["embedding"]),
                  cell(rs, lambda r: output_norms(r)[0], "{:.2f}"),
                  cell(rs, lambda r: output_norms(r)[1], "{:.2f}")])
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


def kappa_table(kappas: dict[str, list[float]]) -> str:
  """kappa at initialisation per model over its seeds: mean, spread and quantiles."""
  cell = lambda v: f"{v:.1f}"
  lines = [[NAMES[m], str(len(k)), stat(k, "{:.1f}"), cell(np.median(k)),
            f"{cell(np.quantile(k, 0.1))} - {cell(np.quantile(k, 0.9))}",
            f"{cell(min(k))} - {cell(max(k))}"]
           for m in MODELS if (k := kappas.get(m))]
  return table(["model", "seeds", "mean ± std", "median", "10% - 90% quantile", "range"], lines)


def control_table(g: dict, control: dict) -> str:
  """The ResNet (or any model) with its own optimizer and with the other one, base and SAM."""
  lines = []
  for m in MODELS:
    for groups_ in (g, control):  # Its own optimizer, then the other one.
      for label in ("base", "SAM"):
        if (m, label) in control and (m, label) in groups_:
          rs = groups_[(m, label)]
          lines.append([NAMES[m], optimizer(rs[0]), label, f"{rs[0]['rho']:g}"]
                       + [stat([f(r) for r in rs], fmt) for f, fmt in (
                           METRICS["test accuracy"], FIT_METRICS["train accuracy"],
                           METRICS["final train loss"], METRICS["lambda_max"])])
  return table(["model", "optimizer", "SAM", "rho", "test accuracy", "train accuracy",
                "final train loss", "lambda_max"], lines)


def _budget(rows: list[dict]) -> str:
  cpu = sum(r["total_cpu_seconds"] for r in rows) / 3600
  wall = sum(r["total_wall_seconds"] for r in rows) / 3600
  return (f"#### Budget used\n\n{len(rows)} runs, {cpu:.2f} CPU-hours in all ({wall:.2f} hours "
          "of wall time summed over runs, which ran several at a time), training plus "
          "measurements.")


def generated(rows: list[dict], regime: str = "short",
              kappas: dict[str, list[float]] | None = None) -> str:
  """The tables of one regime's part of ``docs/reproduction.md`` (the cheaper kinds' rows
  are left to ``cheaper``). The optimizer control's rows (``rows.is_control``) get their own
  table and claims; ``kappas``: kappa at initialisation per model over many seeds."""
  rows = [r for r in rows if kind(r) == "sam"]
  controls = [r for r in rows if is_control(r)]
  rows = [r for r in rows if not is_control(r)]
  best = chosen_rho(rows)
  g = groups(rows, best)
  metrics = METRICS if regime != "fit" else {k: (METRICS | FIT_METRICS)[k] for k in FIT_COLUMNS}
  sweep = sorted((r for r in rows if r["seed"] == 0),
                 key=lambda r: (MODELS.index(r["model"]), r["rho"]))
  main_lines = [[NAMES[m], label, f"{best[m]:g}" if label == "SAM" else "0"]
                + [stat([f(r) for r in g[(m, label)]], fmt) for f, fmt in metrics.values()]
                for m in MODELS for label in ("base", "SAM") if (m, label) in g]
  parts = [
      "#### Main comparison (mean ± standard deviation (number of seeds))",
      table(["model", "optimizer", "rho", *metrics], main_lines),
      "#### Rho sweep (seed 0)",
      table(["model", "rho", *SWEEP[regime]],
            [[NAMES[r["model"]], f"{r['rho']:g}"]
             + [metrics[c][1].format(metrics[c][0](r)) for c in SWEEP[regime]]
             for r in sweep])]
  if regime != "fit":
    return "\n\n".join(parts + [_budget(rows + controls)])
  out = os.path.join(FIGURES, regime)
  paths = figures(g, out) + fit_figures(g, out)
  control = groups(controls, chosen_rho(controls))
  extra = (["#### NTK kappa at initialisation over seeds (recompute_ntk.py --seeds)",
            kappa_table(kappas)] if kappas else []) + (
      ["#### Optimizer control: each model's own optimizer against the other "
       "(mean ± standard deviation (number of seeds))", control_table(g, control)]
      if control else [])
  return "\n\n".join(parts + [
      *fit_tables(g), *extra, "#### The paper's claims, measured",
      claims.claims_table(g, control, kappas), _budget(rows + controls), "#### Figures",
      "\n".join(f"![{os.path.basename(p)}](reproduction/{regime}/{os.path.basename(p)})"
                for p in paths)])


def cheaper(rows: list[dict]) -> str | None:
  """The cheaper kinds' table against base and SAM, and their budget; None without them."""
  g = groups(rows, chosen_rho([r for r in rows if kind(r) == "sam"]))
  mean = lambda rs, metric: float(np.mean([METRICS[metric][0](r) for r in rs]))
  text = variants(rows, g, mean)
  if text is None:
    return None
  return "\n\n".join([
      "#### Cheaper SAM: LookSAM, Momentum-SAM, AE-SAM (mean ± standard deviation (seeds))",
      text, _budget([r for r in rows if kind(r) != "sam"])])


def _replace(page: str, marker: str, text: str) -> str:
  """``page`` with the part between ``marker``'s begin and end comments set to ``text``."""
  begin, end = f"<!-- tables:{marker}:begin -->", f"<!-- tables:{marker}:end -->"
  if begin not in page or end not in page:
    raise SystemExit(f"report: the page lacks the {begin} ... {end} markers.")
  return re.sub(re.escape(begin) + ".*" + re.escape(end), lambda _: f"{begin}\n{text}\n{end}",
                page, flags=re.S)


def main() -> None:
  rows = {regime: load_rows(os.path.join(HERE, "results", regime))
          for regime in ("fit", "short")
          if glob.glob(os.path.join(HERE, "results", regime, "*.json"))}
  kappas = ({m: list(k.values()) for m, k in json.loads(pathlib.Path(KAPPAS).read_text()).items()}
            if os.path.exists(KAPPAS) else None)
  parts = {PAGE: [(regime, generated(rs, regime, kappas if regime == "fit" else None))
                  for regime, rs in rows.items()],
           CHEAPER_PAGE: [("cheap", cheaper(rows["short"]))] if "short" in rows else []}
  fit = [r for r in rows.get("fit", []) if not is_control(r)]
  parts[CHEAPER_PAGE].append(("cheap-fit", cheaper_fit.section(
      fit, groups(fit, chosen_rho(fit)), cheaper_fit.load_costs(cheaper_fit.STEP_COST))))
  for path, texts in parts.items():
    page = pathlib.Path(path).read_text()
    for marker, text in texts:
      if text is not None:
        page = _replace(page, marker, text)
    pathlib.Path(path).write_text(page)
    print(f"Wrote {path}.")


if __name__ == "__main__":
  main()
