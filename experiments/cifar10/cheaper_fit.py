r"""The cheaper SAM kinds in the fit regime against base and SAM: ``docs/cheaper_sam.md``'s
``tables:cheap-fit`` part and its figure (``report.py`` calls ``section``).

Every kind's rows are paired by seed with the base and SAM rows (those of the study's SAM
rho, ``report.groups``) on the seeds all three have; on those seeds:
- gain: test accuracy minus the base's, per seed, in points; its share of SAM's gain is
  ``mean(gain) / mean(SAM's gain)``;
- the share of SAM's lambda_max reduction: ``(base - kind) / (base - SAM)`` of the means;
- cost: the CPU time of the row's train step over the base optimizer's, measured side by
  side in one process (``STEP_COST``, written by ``benchmarks/sam_overhead.py --study``: the
  median of the per-block ratios), per row: its kind's (``variant``); AE-SAM's, whose
  trigger runs SAM on a fraction f of the steps (the row's ``sam_fraction``), is
  f x its SAM step + (1 - f) x its plain step. The rows' own training CPU seconds do not
  enter: the runs shared a loaded 2-core machine (the base rows' spread alone was +-38%)
  and a row resumed after training has none.
The verdict: a kind keeps most of SAM's gain when its share is at least ``MOST``, and is
cheap when its mean cost is at most ``BUDGET``; of the kinds that are both, the one with the
largest share. It is undecided while a kind whose cost ``STEP_COST`` lacks keeps a larger
share, and provisional while a kind has fewer than ``SEEDS`` paired seeds.
"""

import dataclasses
import json
import os
import pathlib

import numpy as np

from sam_jax.analysis import plots
from sam_jax.config import defaults

from claims import by_seed  # pylint: disable=g-bad-import-order  (experiments/cifar10/)
from rows import KINDS, NAMES, kind, setting, stat, table

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIGURE = os.path.join(ROOT, "docs", "cheaper_sam", "gain_cost.png")
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
STEP_COST = os.path.join(HERE, "results", "fit", "step_cost", "step_cost.json")
AESAM = ("aesam_sam", "aesam_erm")  # STEP_COST's AE-SAM steps: trigger forced on, off.
Groups = dict[tuple[str, str], list[dict]]  # (model, "base" or "SAM") -> rows (report.groups)
Costs = dict  # STEP_COST's record: "models" -> model -> variant -> {"cpu_ratio": ...}, ...


@dataclasses.dataclass(frozen=True)
class Line:
  """One optimizer of a model's table, on the seeds it shares with base and SAM."""
  label: str
  rows: list[dict]
  gain: np.ndarray  # Test accuracy minus the base's, points, per row.
  sam_gain: np.ndarray  # SAM's, on the same seeds.
  lambda_share: float  # Of SAM's lambda_max reduction, on the same seeds.
  cost: np.ndarray  # The step's CPU time over the base's (side by side), per row.

  @property
  def share(self) -> float:
    return float(self.gain.mean() / self.sam_gain.mean())


def load_costs(path: str) -> Costs | None:
  """The side-by-side step costs at ``path``; None if they were not measured yet."""
  return json.loads(pathlib.Path(path).read_text()) if os.path.exists(path) else None


def variant(row: dict) -> str | None:
  """The ``STEP_COST`` variant that times this row's step (None for AE-SAM: ``cost`` mixes
  its two, ``AESAM``)."""
  if row["rho"] == 0:
    return "base"
  if kind(row) == "looksam":
    k = row.get("config", {}).get("sam", {}).get("every_k_steps")
    return f"looksam_k{k or defaults.LOOKSAM_K}"
  return {"sam": "sam", "msam": "msam"}.get(kind(row))


def cost(row: dict, ratios: dict[str, float]) -> float:
  """The row's step CPU time over the base's, from ``ratios`` (variant -> ratio); AE-SAM's
  at the row's SAM fraction f: f x its SAM step + (1 - f) x its plain step. NaN where
  ``ratios`` (or the row's fraction) lacks what it needs."""
  if kind(row) == "aesam":
    f = row.get("sam_fraction")
    if f is None or not all(v in ratios for v in AESAM):
      return np.nan
    return f * ratios[AESAM[0]] + (1 - f) * ratios[AESAM[1]]
  return ratios.get(variant(row), np.nan)


def cpu_ratios(costs: Costs | None, model: str) -> dict[str, float]:
  """Variant -> the median per-block CPU ratio to base of ``model`` ({} if unmeasured)."""
  measured = (costs or {}).get("models", {}).get(model, {})
  return {v: m["cpu_ratio"]["median"] for v, m in measured.items()}


def source(costs: Costs | None) -> str:
  """One sentence: where the cost column comes from."""
  where = f"`{os.path.relpath(STEP_COST, ROOT)}` (`benchmarks/sam_overhead.py --study`)"
  if costs is None:
    return f"No side-by-side step costs yet: the cost column is empty until {where} is written."
  m, load = costs["machine"], (costs["load_average_start"][0], costs["load_average_end"][0])
  return (f"Cost: the train step's CPU time over the base optimizer's, measured side by side "
          f"in one process, {where}: the median of {costs['blocks']} interleaved blocks of "
          f"{costs['steps_per_block']} steps ({costs['date']}, {m['cpu']}, {m['cores']} cores, "
          f"load average {load[0]:.1f} at start and {load[1]:.1f} at end, jax {m['jax']}; "
          "`benchmarks/RESULTS.md` has the wall times and the spread); AE-SAM's per row at its "
          "SAM fraction f: f x its SAM step + (1 - f) x its plain step.")


def label(row: dict, sam_rho: float) -> str:
  """The kind's name, with LookSAM's alpha and a rho other than SAM's."""
  k, rho, alpha = setting(row)
  details = ([] if alpha is None else [f"alpha {alpha:g}"]) + (
      [] if rho == sam_rho else [f"rho {rho:g}"])
  return KINDS.get(k, k.upper()) + (f" ({', '.join(details)})" if details else "")


def line(name: str, rows: list[dict], base: list[dict], sam: list[dict],
         ratios: dict[str, float]) -> Line | None:
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
      np.array([cost(r, ratios) for r in rows]))


def model_lines(model: str, cheap: list[dict], g: Groups, costs: Costs | None) -> list[Line]:
  """Base, SAM, then each kind's setting of ``model`` (sorted by kind, rho, alpha)."""
  base, sam = g[(model, "base")], g[(model, "SAM")]
  ratios = cpu_ratios(costs, model)
  mine = [r for r in cheap if r["model"] == model]
  settings = sorted({setting(r) for r in mine}, key=lambda s: (s[0], s[1], s[2] or 0))
  found = [line("base", base, base, sam, ratios), line("SAM", sam, base, sam, ratios)]
  for s in settings:
    rows = [r for r in mine if setting(r) == s]
    found.append(line(label(rows[0], sam[0]["rho"]), rows, base, sam, ratios))
  return [x for x in found if x is not None]


def cost_cell(costs: np.ndarray) -> str:
  """One ratio where every row's is the same (its kind's), else their mean and spread;
  "not measured" if a row's is unknown."""
  if not np.isfinite(costs).all():
    return "not measured"
  return f"{costs[0]:.2f}" if np.ptp(costs) == 0 else stat(costs, "{:.2f}")


def model_table(lines: list[Line]) -> str:
  cell = lambda x, key, fmt: stat([r[key] for r in x.rows], fmt)
  fraction = lambda x: ("" if kind(x.rows[0]) != "aesam" else
                        stat([r.get("sam_fraction", np.nan) for r in x.rows], "{:.2f}"))
  return table(
      ["optimizer", "rho", "test accuracy", "gain over base (points)", "share of SAM's gain",
       "lambda_max", "share of SAM's lambda_max reduction", "corruption accuracy",
       "train accuracy", "SAM-step fraction (AE-SAM)", "step CPU time / base"],
      [[x.label, f"{x.rows[0]['rho']:g}", cell(x, "test_accuracy", "{:.3f}"),
        stat(x.gain, "{:.1f}"), f"{100 * x.share:.0f}%", cell(x, "lambda_max", "{:.1f}"),
        f"{100 * x.lambda_share:.0f}%", cell(x, "corruption_mean", "{:.3f}"),
        cell(x, "train_accuracy", "{:.3f}"), fraction(x), cost_cell(x.cost)] for x in lines])


def figure(lines: dict[str, list[Line]], path: str) -> str:
  """Gain against extra cost per model: base at the origin, every kind and SAM."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  return plots.mean_points(
      path, {NAMES[m]: {x.label: (x.cost - 1, x.gain) for x in ls} for m, ls in lines.items()},
      xlabel="extra CPU time per step (fraction of base's, measured side by side)",
      ylabel="test accuracy gain over base (points, paired by seed)",
      title="Cheaper SAM in the fit regime: gain against cost (mean ± std over seeds)",
      xline=(BUDGET - 1, f"{BUDGET:g}x base cost"))


def verdict(lines: dict[str, list[Line]]) -> str:
  """The verdict paragraph (the rule, then per model the best kind within budget, if any)."""
  out = [f"**Verdict.** Rule: a kind keeps most of SAM's gain if its paired gain is at least "
         f"{100 * MOST:.0f}% of SAM's on the same seeds, and counts as cheap if its train "
         f"step's CPU time, measured side by side, is at most {BUDGET:g}x the base's; of the "
         "kinds that do both, the one with the largest share."]
  provisional = []
  for m, ls in lines.items():
    kinds = [x for x in ls if x.label not in ("base", "SAM")]
    if not kinds:
      continue
    cost = lambda x: float(x.cost.mean())  # NaN if a row's is unmeasured.
    summary = ", ".join(f"{x.label} {100 * x.share:.0f}% at " + (
        f"{cost(x):.2f}x" if np.isfinite(cost(x)) else "a cost not yet measured") for x in kinds)
    within = [x for x in kinds if x.share >= MOST and cost(x) <= BUDGET]
    best_share = max([x.share for x in within], default=MOST)
    unknown = [x for x in kinds if x.share >= best_share and not np.isfinite(cost(x))]
    if unknown:
      out.append(f"{NAMES[m]}: undecided: {', '.join(x.label for x in unknown)} keeps "
                 f"{100 * best_share:.0f}% of SAM's gain or more, at a step cost not measured "
                 f"side by side yet (`benchmarks/sam_overhead.py --study`) ({summary}).")
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


def section(rows: list[dict], g: Groups, costs: Costs | None) -> str:
  """The fit regime's cheaper-kinds part: per model a table, the figure, the verdict, and
  the rows still to run; ``costs``: ``load_costs(STEP_COST)``."""
  cheap = [r for r in rows if kind(r) != "sam" and r["model"] in MODELS]
  lines = {m: model_lines(m, cheap, g, costs) for m in MODELS
           if (m, "base") in g and (m, "SAM") in g}
  if not any(len(ls) > 2 for ls in lines.values()):  # Base and SAM alone.
    return "\n\n".join(["No fit-regime rows of the cheaper kinds paired with base and SAM yet.",
                         missing(cheap, g)]).strip()
  parts = []
  for m, ls in lines.items():
    parts += [f"#### {NAMES[m]} (mean ± standard deviation (seeds); gains and shares paired by "
              "seed)", model_table(ls)]
  path = figure(lines, FIGURE)
  parts += [source(costs), f"![{os.path.basename(path)}](cheaper_sam/{os.path.basename(path)})",
            verdict(lines), missing(cheap, g)]
  return "\n\n".join(parts).strip()
