r"""The cheaper SAM kinds in the fit regime against base and SAM: ``docs/cheaper_sam.md``'s
``tables:cheap-fit`` part and its figure (``report.py`` calls ``section``).

Every kind's rows are paired by seed with the base and SAM rows (those of the study's SAM
rho, ``report.groups``) on the seeds all three have; on those seeds:
- gain: test accuracy minus the base's, per seed, in points; its share of SAM's gain is
  ``mean(gain) / mean(SAM's gain)``;
- the share of SAM's lambda_max reduction: ``(base - kind) / (base - SAM)`` of the means;
- cost: training CPU seconds per step trained (``train_cpu_seconds`` over
  ``num_train_steps - resumed_from_step``), per row, over the mean of the model's base rows.
The verdict: a kind keeps most of SAM's gain when its share is at least ``MOST``, and is
cheap when its mean cost is at most ``BUDGET``; of the kinds that are both, the one with the
largest share. It is provisional while a kind has fewer than ``SEEDS`` paired seeds.
"""

import dataclasses
import os

import numpy as np

from sam_jax.analysis import plots

from claims import by_seed  # pylint: disable=g-bad-import-order  (experiments/cifar10/)
from rows import KINDS, NAMES, kind, setting, stat, table

HERE = os.path.dirname(os.path.abspath(__file__))
FIGURE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "docs", "cheaper_sam",
                      "gain_cost.png")
MODELS = ("vit", "mixer")
SEEDS = 3  # Seeds 0, 1, 2, as the base and SAM rows.
# Kind -> (rho, LookSAM's alpha) of its fit-regime rows; rho None: SAM's rho of the model.
# Momentum-SAM's rho is on its own scale: its authors' 3 (docs/paper.md E6).
PLANNED = {"looksam": (None, 0.2), "aesam": (None, None), "msam": (3.0, None)}
BUDGET = 1.2  # Cost relative to the base optimizer's step.
MOST = 0.5  # Share of SAM's paired gain.
COMMAND = ("python experiments/cifar10/run.py --config=experiments/cifar10/config.py:{model},fit "
           "--config.sam.rho={rho:g} --config.seed={seed} --config.sam.kind={kind}{alpha} "
           "--config.data_dir=/tmp/cifar10")
LOADED = ("The CPU seconds come from runs that shared a loaded 2-core machine with other runs "
          "and work, so the cost column is indicative; "
          "`benchmarks/RESULTS.md` has the step costs measured side by side on a quiet machine.")
Groups = dict[tuple[str, str], list[dict]]  # (model, "base" or "SAM") -> rows (report.groups)


@dataclasses.dataclass(frozen=True)
class Line:
  """One optimizer of a model's table, on the seeds it shares with base and SAM."""
  label: str
  rows: list[dict]
  gain: np.ndarray  # Test accuracy minus the base's, points, per row.
  sam_gain: np.ndarray  # SAM's, on the same seeds.
  lambda_share: float  # Of SAM's lambda_max reduction, on the same seeds.
  cost: np.ndarray  # CPU seconds per step over the base's, per row.

  @property
  def share(self) -> float:
    return float(self.gain.mean() / self.sam_gain.mean())


def per_step(row: dict) -> float:
  """Training CPU seconds per step this row's command trained (NaN if it trained none)."""
  steps = row["config"]["num_train_steps"] - (row.get("resumed_from_step") or 0)
  return row["train_cpu_seconds"] / steps if steps > 0 else np.nan


def label(row: dict, sam_rho: float) -> str:
  """The kind's name, with LookSAM's alpha and a rho other than SAM's."""
  k, rho, alpha = setting(row)
  details = ([] if alpha is None else [f"alpha {alpha:g}"]) + (
      [] if rho == sam_rho else [f"rho {rho:g}"])
  return KINDS.get(k, k.upper()) + (f" ({', '.join(details)})" if details else "")


def line(name: str, rows: list[dict], base: list[dict], sam: list[dict],
         base_cost: float) -> Line | None:
  """``rows`` against the base and SAM rows of their seeds; None if no seed has all three."""
  b, s = by_seed(base), by_seed(sam)
  rows = sorted((r for r in rows if r["seed"] in b and r["seed"] in s), key=lambda r: r["seed"])
  if not rows:
    return None
  acc = lambda r: r["test_accuracy"]
  lam = lambda rs: np.mean([r["lambda_max"] for r in rs])
  paired_base, paired_sam = [b[r["seed"]] for r in rows], [s[r["seed"]] for r in rows]
  return Line(
      name, rows, np.array([100 * (acc(r) - acc(b[r["seed"]])) for r in rows]),
      np.array([100 * (acc(s[r["seed"]]) - acc(b[r["seed"]])) for r in rows]),
      float((lam(paired_base) - lam(rows)) / (lam(paired_base) - lam(paired_sam))),
      np.array([per_step(r) / base_cost for r in rows]))


def model_lines(model: str, cheap: list[dict], g: Groups) -> list[Line]:
  """Base, SAM, then each kind's setting of ``model`` (sorted by kind, rho, alpha)."""
  base, sam = g[(model, "base")], g[(model, "SAM")]
  base_cost = float(np.nanmean([per_step(r) for r in base]))
  mine = [r for r in cheap if r["model"] == model]
  settings = sorted({setting(r) for r in mine}, key=lambda s: (s[0], s[1], s[2] or 0))
  found = [line("base", base, base, sam, base_cost), line("SAM", sam, base, sam, base_cost)]
  for s in settings:
    rows = [r for r in mine if setting(r) == s]
    found.append(line(label(rows[0], sam[0]["rho"]), rows, base, sam, base_cost))
  return [x for x in found if x is not None]


def model_table(lines: list[Line]) -> str:
  cell = lambda x, key, fmt: stat([r[key] for r in x.rows], fmt)
  return table(
      ["optimizer", "rho", "test accuracy", "gain over base (points)", "share of SAM's gain",
       "lambda_max", "share of SAM's lambda_max reduction", "corruption accuracy",
       "train accuracy", "train CPU s/step / base"],
      [[x.label, f"{x.rows[0]['rho']:g}", cell(x, "test_accuracy", "{:.3f}"),
        stat(x.gain, "{:.1f}"), f"{100 * x.share:.0f}%", cell(x, "lambda_max", "{:.1f}"),
        f"{100 * x.lambda_share:.0f}%", cell(x, "corruption_mean", "{:.3f}"),
        cell(x, "train_accuracy", "{:.3f}"), stat(x.cost, "{:.2f}")] for x in lines])


def figure(lines: dict[str, list[Line]], path: str) -> str:
  """Gain against extra cost per model: base at the origin, every kind and SAM."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return plots.mean_points(
      path, {NAMES[m]: {x.label: (x.cost - 1, x.gain) for x in ls} for m, ls in lines.items()},
      xlabel="extra training CPU time per step (fraction of base's)",
      ylabel="test accuracy gain over base (points, paired by seed)",
      title="Cheaper SAM in the fit regime: gain against cost (mean ± std over seeds)",
      xline=(BUDGET - 1, f"{BUDGET:g}x base cost"))


def verdict(lines: dict[str, list[Line]]) -> str:
  """The verdict paragraph (the rule, then per model the best kind within budget, if any)."""
  out = [f"**Verdict.** Rule: a kind keeps most of SAM's gain if its paired gain is at least "
         f"{100 * MOST:.0f}% of SAM's on the same seeds, and counts as cheap if its training "
         f"CPU time per step is at most {BUDGET:g}x the base's; of the kinds that do both, the "
         "one with the largest share."]
  provisional = []
  for m, ls in lines.items():
    kinds = [x for x in ls if x.label not in ("base", "SAM")]
    if not kinds:
      continue
    cost = lambda x: float(np.nanmean(x.cost)) if np.isfinite(x.cost).any() else np.nan
    summary = ", ".join(f"{x.label} {100 * x.share:.0f}% at " + (
        f"{cost(x):.2f}x" if np.isfinite(cost(x)) else "a cost not yet measured") for x in kinds)
    within = [x for x in kinds if x.share >= MOST and cost(x) <= BUDGET]
    unknown = [x for x in kinds if x.share >= MOST and not np.isfinite(cost(x))]
    if unknown and not within:
      out.append(f"{NAMES[m]}: undecided: {', '.join(x.label for x in unknown)} keeps "
                 f"{100 * MOST:.0f}% of SAM's gain or more, at a cost per step no row has "
                 f"measured yet (rows measured after resuming a finished run) ({summary}).")
    elif within:
      best = max(within, key=lambda x: x.share)
      out.append(f"{NAMES[m]}: **{best.label}** keeps {100 * best.share:.0f}% of SAM's gain "
                 f"({best.gain.mean():+.1f} of {best.sam_gain.mean():+.1f} points) at "
                 f"{cost(best):.2f}x the base step ({summary}).")
    else:
      out.append(f"{NAMES[m]}: **no kind** keeps {100 * MOST:.0f}% of SAM's gain within "
                 f"{BUDGET:g}x the base step ({summary}).")
    provisional += [f"{NAMES[m]} {x.label} ({len(x.rows)})" for x in kinds if len(x.rows) < SEEDS]
  if provisional:
    out.append(f"Provisional: fewer than {SEEDS} paired seeds for " + ", ".join(provisional)
               + ".")
  return " ".join(out)


def missing(cheap: list[dict], g: Groups) -> str:
  """The planned rows not yet in ``cheap``, with the command for each; "" if none."""
  have = {(r["model"], *setting(r), r["seed"]) for r in cheap}
  commands = []
  for m in MODELS:
    if (m, "SAM") not in g:
      continue
    for k, (rho, alpha) in PLANNED.items():
      rho = g[(m, "SAM")][0]["rho"] if rho is None else rho
      commands += [COMMAND.format(model=m, rho=rho, seed=seed, kind=k, alpha="" if alpha is None
                                  else f" --config.sam.looksam.alpha={alpha:g}")
                   for seed in range(SEEDS) if (m, k, rho, alpha, seed) not in have]
  if not commands:
    return ""
  return (f"Rows still to run ({len(commands)} of {len(MODELS) * len(PLANNED) * SEEDS}), one "
          "command each:\n\n```\n" + "\n".join(commands) + "\n```")


def section(rows: list[dict], g: Groups) -> str:
  """The fit regime's cheaper-kinds part: per model a table, the figure, the verdict, and
  the rows still to run."""
  cheap = [r for r in rows if kind(r) != "sam" and r["model"] in MODELS]
  lines = {m: model_lines(m, cheap, g) for m in MODELS if (m, "base") in g and (m, "SAM") in g}
  if not any(len(ls) > 2 for ls in lines.values()):  # Base and SAM alone.
    return "\n\n".join(["No fit-regime rows of the cheaper kinds paired with base and SAM yet.",
                         missing(cheap, g)]).strip()
  parts = []
  for m, ls in lines.items():
    parts += [f"#### {NAMES[m]} (mean ± standard deviation (seeds); gains and shares paired by "
              "seed)", model_table(ls)]
  path = figure(lines, FIGURE)
  parts += [LOADED, f"![{os.path.basename(path)}](cheaper_sam/{os.path.basename(path)})",
            verdict(lines), missing(cheap, g)]
  return "\n\n".join(parts).strip()
