"""The paper's claims (``docs/paper.md`` C1-C13) checked against the fit regime's rows.

Each claim is a comparison of runs that share a seed, so every seed gives it one test:
- SAM against base, one model: SAM's seed-s run against the base seed-s run (the same
  initialisation and data order);
- one model against another, without SAM: their seed-s runs.
The verdict counts the seeds where the claimed direction holds: **holds** (all of them),
**does not hold** (none), **mixed (k of n seeds)**; it says ``n = 1`` or ``n = 2`` while
seeds are missing. The sign alone is weak evidence (3 of 3 seeds happen by chance with
probability 1/8), so the verdict also weighs the effect against the seeds' spread with a
two-sided t-test: paired by seed for SAM against base (the changes SAM minus base, against
0) and for the ordering of the gains, Welch's for one model against another (the weaker of
the comparisons a claim makes); ", not significant" when p >= ``ALPHA``. The per-block
claims (C9) stay sign counts. Two lines use more than the trained seeds: kappa at
initialisation over the seeds of ``recompute_ntk.py --seeds`` (C3: the share of seed pairs
in the claimed order, with the Mann-Whitney test), and the interval that an unseen seed's
base lambda_max falls in (C1, ``prediction_interval``). The optimizer control's lines
(``control_lines``) appear when its rows exist. The numbers are means ± standard deviations
over the seeds. The paper's ImageNet values beside them are those of docs/paper.md
(C-numbers; Table 1's lambda_max and kappa as recalled there, unconfirmed).
"""

from typing import Callable, Sequence
import warnings

import numpy as np
from scipy import stats

from rows import MODELS, NAMES, first_block_active, output_norms, table

Groups = dict[tuple[str, str], list[dict]]  # (model, "base" or "SAM") -> rows (report.groups)
Metric = Callable[[dict], float]
PAPER_LAMBDA = {"vit": (738.8, 20.9), "mixer": (1644.4, 22.5), "resnet": (179.8, 42.0)}
PAPER_KAPPA = {"vit": 4205.3, "mixer": 14468.0, "resnet": 2801.6}
PAPER_GAIN = {"vit": 5.3, "mixer": 11.0, "resnet": 0.8}  # ImageNet top-1 points (C5).
PAPER_CORRUPTION_GAIN = {"vit": 9.9, "mixer": 15.0, "resnet": 2.2}  # ImageNet-C points (C7).
ALPHA = 0.05  # The t-tests' level.
LEVEL = 0.95  # The prediction interval's coverage.


def by_seed(rows: list[dict]) -> dict[int, dict]:
  return {r["seed"]: r for r in rows}


def _p(p: float) -> str:
  return "p < 0.001" if p < 1e-3 else f"p = {p:.2g}"


def verdict(tests: list[bool], p: float | None = None) -> str:
  """Holds / does not hold / mixed, over the seeds' tests; with a test's p-value ``p``."""
  n, k = len(tests), sum(tests)
  if not n:
    return "not measured yet"
  details = [f"{k} of {n} seeds"] if 0 < k < n else [f"n = {n}"] if n < 3 else []
  if p is not None and not np.isnan(p):
    details.append(_p(p) + ("" if p < ALPHA else ", not significant"))
  text = "mixed" if 0 < k < n else "holds" if k else "does not hold"
  return text + (f" ({'; '.join(details)})" if details else "")


def t_test(a: Sequence[float], b: Sequence[float] | None = None) -> float:
  """Two-sided p of a one-sample t-test of ``a`` against 0 (paired changes) or, with ``b``,
  of Welch's test of equal means; nan with fewer than 2 values on a side."""
  if len(a) < 2 or (b is not None and len(b) < 2):
    return float("nan")
  with warnings.catch_warnings():  # Identical values (synthetic rows) warn; p is 0 or nan.
    warnings.simplefilter("ignore")
    test = stats.ttest_1samp(a, 0.0) if b is None else stats.ttest_ind(a, b, equal_var=False)
  return float(test.pvalue)


def prediction_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
  """Where an unseen seed's value falls with probability ``level``, the logarithms of the
  seeds' values taken as draws of one normal (the values are positive and spread by factors):
  exp(m ± t_{(1 + level) / 2, n - 1} s sqrt(1 + 1/n)), m and s the logarithms' mean and
  standard deviation."""
  v = np.log(np.asarray(values, np.float64))
  half = stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) * np.sqrt(1 + 1 / len(v))
  return float(np.exp(v.mean() - half)), float(np.exp(v.mean() + half))


def _pairs(g: Groups, model: str) -> list[tuple[dict, dict]] | None:
  """(base, SAM) runs of ``model`` that share a seed, or None without both kinds of runs."""
  if (model, "base") not in g or (model, "SAM") not in g:
    return None
  base, sam = by_seed(g[(model, "base")]), by_seed(g[(model, "SAM")])
  return [(base[s], sam[s]) for s in sorted(base.keys() & sam.keys())]


def _change(g: Groups, model: str, f: Metric) -> str:
  """'base -> SAM' of ``f`` over all runs of each."""
  return " -> ".join(_mean([f(r) for r in g[(model, label)]]) for label in ("base", "SAM"))


def paired(g: Groups, model: str, f: Metric, sign: int) -> tuple[str, str] | None:
  """'base -> SAM' of ``f`` with the size of the change (SAM minus base, mean ± std over the
  seed pairs), and the verdict that SAM moves it in the direction ``sign``."""
  changes = _changes(g, model, f)
  if changes is None:
    return None
  values = list(changes.values())
  return (f"{NAMES[model]} {_change(g, model, f)} (paired change {_mean(values)})",
          verdict([sign * c > 0 for c in values], t_test(values)))


def _mean(values: list[float]) -> str:
  """Three significant digits, and the standard deviation when there are several."""
  fmt = lambda v: f"{v:.3g}"
  if len(values) == 1:
    return fmt(values[0])
  return f"{fmt(np.mean(values))} ± {fmt(np.std(values, ddof=1))}"


def ordered(g: Groups, label: str, f: Metric, order: tuple[str, ...]) -> tuple[str, str] | None:
  """``f`` per model, and the verdict that it decreases along ``order`` in every seed."""
  if any((m, label) not in g for m in order):
    return None
  runs = [by_seed(g[(m, label)]) for m in order]
  seeds = sorted(set.intersection(*(set(r) for r in runs)))
  tests = [all(f(a[s]) > f(b[s]) for a, b in zip(runs, runs[1:])) for s in seeds]
  values = [[f(r) for r in g[(m, label)]] for m in order]
  p = max(t_test(a, b) for a, b in zip(values, values[1:]))
  return (", ".join(f"{NAMES[m]} {_mean(v)}" for m, v in zip(order, values)), verdict(tests, p))


def _changes(g: Groups, model: str, f: Metric) -> dict[int, float] | None:
  """SAM minus base of ``f`` per seed pair of ``model``, or None without both kinds of runs."""
  pairs = _pairs(g, model)
  return None if pairs is None else {base["seed"]: f(sam) - f(base) for base, sam in pairs}


def gains(g: Groups, f: Metric) -> dict[str, dict[int, float]]:
  """Per model with both, SAM minus base of ``f`` per seed."""
  return {m: per for m in MODELS if (per := _changes(g, m, f)) is not None}


def gain_order(g: Groups, f: Metric, order: tuple[str, ...]) -> tuple[str, str] | None:
  """The paired gains per model (points), and the verdict that they decrease along ``order``."""
  per = gains(g, f)
  if any(m not in per for m in order):
    return None
  seeds = sorted(set.intersection(*(set(per[m]) for m in order)))
  tests = [all(per[a][s] > per[b][s] for a, b in zip(order, order[1:])) for s in seeds]
  p = max(t_test([per[a][s] - per[b][s] for s in seeds]) for a, b in zip(order, order[1:]))
  return (", ".join(f"{NAMES[m]} {_mean([100 * v for v in per[m].values()])}" for m in order),
          verdict(tests, p))


def map_entropy(row: dict) -> float:
  """Mean entropy (nats) of the class token's rollout maps, each normalised to sum 1; lower is
  more concentrated (a uniform 8x8 map has log 64 = 4.16)."""
  maps = np.asarray(row["attention_maps"], np.float64).reshape(len(row["attention_maps"]), -1)
  p = maps / maps.sum(axis=1, keepdims=True)
  return float(np.mean(-(p * np.log(np.maximum(p, 1e-30))).sum(axis=1)))


def _block(name: str) -> Metric:
  return lambda r: r["block_lambda_max"][name]


def _lowers_every_block(g: Groups, m: str) -> tuple[str, str] | None:
  """SAM lowers lambda_max of each measured block, in every seed."""
  pairs = _pairs(g, m)
  if pairs is None:
    return None
  names = list(g[(m, "base")][0]["block_lambda_max"])
  tests = [all(_block(b)(sam) < _block(b)(base) for b in names) for base, sam in pairs]
  return (f"{NAMES[m]} " + ", ".join(f"{b} {_change(g, m, _block(b))}" for b in names),
          verdict(tests))


def kappa_spread(kappas: dict[str, list[float]]) -> tuple[str, str] | None:
  """kappa at initialisation over many seeds (``recompute_ntk.py --seeds``): median and
  range per model; the verdict gives, for ViT and Mixer, the share of (its seed, a ResNet
  seed) pairs where it is the larger, with the Mann-Whitney test's p."""
  if any(m not in kappas for m in MODELS):
    return None
  text = ", ".join(f"{NAMES[m]} median {np.median(kappas[m]):.0f} (range {min(kappas[m]):.0f}-"
                   f"{max(kappas[m]):.0f}, {len(kappas[m])} seeds)" for m in MODELS)
  parts = []
  for m in ("vit", "mixer"):
    a, b = np.asarray(kappas[m]), np.asarray(kappas["resnet"])
    share = float(np.mean(a[:, None] > b[None, :]))
    p = stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    parts.append(f"{NAMES[m]} > ResNet in {100 * share:.1f}% of seed pairs (Mann-Whitney "
                 f"{_p(p)})")
  return text, "; ".join(parts)


def lambda_interval(g: Groups) -> tuple[str, str] | None:
  """Each model's interval for an unseen seed's base lambda_max (``prediction_interval``);
  the verdict: whether ViT's and Mixer's lie above ResNet's."""
  if any((m, "base") not in g or len(g[(m, "base")]) < 2 for m in MODELS):
    return None
  intervals = {m: prediction_interval([r["lambda_max"] for r in g[(m, "base")]]) for m in MODELS}
  text = ", ".join(f"{NAMES[m]} [{lo:.3g}, {hi:.3g}] ({len(g[(m, 'base')])} seeds)"
                   for m, (lo, hi) in intervals.items())
  res = intervals["resnet"]
  above = [f"{NAMES[m]}'s " + ("above ResNet's" if lo > res[1] else "below ResNet's"
                               if hi < res[0] else "overlaps ResNet's")
           for m, (lo, hi) in intervals.items() if m != "resnet"]
  return text, "; ".join(above)


def control_lines(g: Groups, control: Groups) -> list[list[str]]:
  """The optimizer control (rows of a model trained with another model's optimizer, grouped
  as ``g``): is the ResNet trained with AdamW still the sharpest without SAM, and what SAM
  does to it. Empty without control rows."""
  lam = lambda r: r["lambda_max"]
  lines = []
  if ("resnet", "base") in control:
    mixed = {**g, ("resnet", "base"): control[("resnet", "base")]}
    result = _and(ordered(mixed, "base", lam, ("resnet", "vit")),
                  ordered(mixed, "base", lam, ("resnet", "mixer")))
    lines.append(["Control: without SAM, the ResNet trained with AdamW (the ViT's and Mixer's "
                  "optimizer and settings) is still sharper than ViT and Mixer (lambda_max; "
                  "ResNet here: AdamW)", "ResNet-152 the flattest (179.8; SGD)",
                  *(result or ("", "not measured yet"))])
  for m in MODELS:
    for claim, f, sign in (("lowers lambda_max", lam, -1),
                           ("raises test accuracy", lambda r: r["test_accuracy"], +1)):
      if (result := paired(control, m, f, sign)) is not None:
        lines.append([f"Control: SAM {claim} of the {NAMES[m]} trained with "
                      f"{control[(m, 'base')][0]['config']['optimizer']['name']}",
                      "-", *result])
  return lines


def rows_of(g: Groups, control: Groups | None = None,
            kappas: dict[str, list[float]] | None = None) -> list[list[str]]:
  """[claim, paper, here, verdict] lines; a claim without its runs yet says so. ``control``:
  the optimizer control's groups; ``kappas``: kappa at initialisation per model over seeds."""
  lines = []

  def add(claim: str, paper: str, result: tuple[str, str] | None) -> None:
    lines.append([claim, paper, *(result or ("", "not measured yet"))])

  def per_model(claim: str, paper: Callable[[str], str],
                result: Callable[[str], tuple[str, str] | None]) -> None:
    """One line for the three models: each one's numbers and verdict."""
    done = {m: r for m in MODELS if (r := result(m)) is not None}
    lines.append([claim, "; ".join(f"{NAMES[m]} {paper(m)}" for m in MODELS),
                  "; ".join(text for text, _ in done.values()),
                  "; ".join(f"{NAMES[m]}: {done[m][1] if m in done else 'not measured yet'}"
                            for m in MODELS)])

  base_order = lambda f, order: ordered(g, "base", f, order)
  lam = lambda r: r["lambda_max"]
  add("C1: without SAM, ViT and Mixer are sharper than ResNet (lambda_max)",
      "ViT 738.8, Mixer 1644.4, ResNet-152 179.8",
      _and(base_order(lam, ("vit", "resnet")), base_order(lam, ("mixer", "resnet"))))
  add("C1: Mixer is the sharpest", "Mixer 1644.4 > ViT 738.8", base_order(lam, ("mixer", "vit")))
  add(f"C1, spread: where an unseen seed's base lambda_max falls ({100 * LEVEL:.0f}% prediction "
      "interval, log-normal over the seeds)", "-", lambda_interval(g))
  add("C2: Mixer fits better than ViT (lower clean training loss)...",
      "Mixer-B/16 lower training error", base_order(lambda r: r["train_loss_clean"],
                                                    ("vit", "mixer")))
  add("C2: ...yet tests worse", "Mixer-B/16 66.4 vs ViT-B/16 74.6",
      base_order(lambda r: r["test_accuracy"], ("vit", "mixer")))
  kappa = lambda r: r["ntk_kappa_init"]
  add("C3: NTK kappa at initialisation is larger for ViT and Mixer than ResNet",
      ", ".join(f"{NAMES[m]} {PAPER_KAPPA[m]:g}" for m in MODELS),
      _and(base_order(kappa, ("vit", "resnet")), base_order(kappa, ("mixer", "resnet"))))
  if kappas:
    add("C3 over many seeds: kappa at initialisation (recompute_ntk.py --seeds; no training)",
        ", ".join(f"{NAMES[m]} {PAPER_KAPPA[m]:g}" for m in MODELS), kappa_spread(kappas))
  per_model("C4: SAM lowers lambda_max",
            lambda m: "{} -> {}".format(*PAPER_LAMBDA[m]), lambda m: paired(g, m, lam, -1))
  per_model("C5: SAM raises test accuracy", lambda m: f"{PAPER_GAIN[m]:+.1f} points",
            lambda m: paired(g, m, lambda r: r["test_accuracy"], +1))
  add("C5: the gain orders Mixer > ViT > ResNet (points, paired by seed)",
      "Mixer +11.0 > ViT +5.3 > ResNet +0.8",
      gain_order(g, lambda r: r["test_accuracy"], ("mixer", "vit", "resnet")))
  per_model("C7: SAM raises accuracy under 13 common corruptions (mean of 5 severities)",
            lambda m: f"{PAPER_CORRUPTION_GAIN[m]:+.1f} points on ImageNet-C",
            lambda m: paired(g, m, lambda r: r["corruption_mean"], +1))
  per_model("C9: without SAM the embedding is the sharpest block (lambda_max of the "
            "embedding, first and last block)", lambda m: "embedding sharpest" if m != "resnet"
            else "not in Table 3", lambda m: _embedding_sharpest(g, m))
  per_model("C9: SAM lowers every block's lambda_max (embedding, first, last)",
            lambda m: "every block" if m != "resnet" else "not in Table 3",
            lambda m: _lowers_every_block(g, m))
  per_model("C10: SAM raises the weight norm", lambda m: "grows" if m != "resnet" else "-",
            lambda m: paired(g, m, lambda r: r["weight_norm"]["total"], +1))
  per_model("C10: SAM raises the first block's output norm",
            lambda m: "grows" if m != "resnet" else "-",
            lambda m: paired(g, m, lambda r: output_norms(r)[0], +1))
  per_model("C11: SAM leaves fewer active units in the first block",
            lambda m: {"vit": "fewer", "mixer": "fewer, most of the three",
                       "resnet": "-"}[m], lambda m: paired(g, m, first_block_active, -1))
  per_model("C13: SAM raises the training loss (clean pass on the training subset)",
            lambda m: "higher training error", lambda m: paired(
                g, m, lambda r: r["train_loss_clean"], +1))
  add("C12: SAM's ViT attention is more concentrated (mean entropy of the 8 rollout maps, nats; "
      "figure attention_vit.png)", "more perceptive maps (Fig. 3, qualitative)",
      paired(g, "vit", map_entropy, -1) if _has_maps(g) else None)
  return lines + control_lines(g, control or {})


def _and(*results: tuple[str, str] | None) -> tuple[str, str] | None:
  """Two comparisons as one claim: both texts, the weaker verdict."""
  if any(r is None for r in results):
    return None
  texts = list(dict.fromkeys(part for text, _ in results for part in text.split(", ")))
  verdicts = [v for _, v in results]
  rank = lambda v: (v.startswith("holds"), v.startswith("mixed"))
  return ", ".join(texts), min(verdicts, key=rank)


def _embedding_sharpest(g: Groups, m: str) -> tuple[str, str] | None:
  if (m, "base") not in g:
    return None
  rows = g[(m, "base")]
  names = list(rows[0]["block_lambda_max"])
  tests = [all(r["block_lambda_max"]["embedding"] >= v for v in r["block_lambda_max"].values())
           for r in rows]
  return (f"{NAMES[m]} " + ", ".join(f"{b} {_mean([r['block_lambda_max'][b] for r in rows])}"
                                    for b in names), verdict(tests))


def _has_maps(g: Groups) -> bool:
  return all(k in g and all("attention_maps" in r for r in g[k])
             for k in (("vit", "base"), ("vit", "SAM")))


def claims_table(g: Groups, control: Groups | None = None,
                 kappas: dict[str, list[float]] | None = None) -> str:
  return table(["claim (docs/paper.md)", "paper (ImageNet)", "here (mean ± std over seeds)",
                "verdict (seeds; t-test p)"], rows_of(g, control, kappas))
