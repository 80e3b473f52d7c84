"""PNG figures of the analyses, drawn on ``matplotlib.figure.Figure`` (no pyplot, no backend).

Every function takes results keyed by run label (e.g. ``{"SAM": ..., "no SAM": ...}``),
so runs are compared in one figure, writes one PNG to ``path`` (local or ``gs://``,
through ``etils.epath``) and returns ``path`` as a string.
"""

from typing import Mapping, Sequence

from etils import epath
from matplotlib.figure import Figure
import numpy as np

Curve = tuple[np.ndarray, np.ndarray]  # (steps, values), steps ascending (curves.read_scalars).


def _save(fig: Figure, path: epath.PathLike) -> str:
  fig.tight_layout()
  with epath.Path(path).open("wb") as f:
    fig.savefig(f, format="png", dpi=120)
  return str(path)


def _short_names(names: Sequence[str]) -> list[str]:
  """Drops the "/"-separated path components that all names share at the start or end."""
  parts = [n.split("/") for n in names]
  lead = trail = 0
  while all(len(p) > lead + trail + 1 for p in parts) and len({p[lead] for p in parts}) == 1:
    lead += 1
  while (all(len(p) > lead + trail + 1 for p in parts) and
         len({p[-1 - trail] for p in parts}) == 1):
    trail += 1
  return ["/".join(p[lead:len(p) - trail]) for p in parts]


def block_bars(path: epath.PathLike, values: Mapping[str, Mapping[str, float]], *,
               ylabel: str, title: str, log: bool = False) -> str:
  """Grouped bars: one group per block (in the first run's order), one bar per run."""
  blocks = list(next(iter(values.values())))
  return grouped_bars(path, {b: {label: [v.get(b, np.nan)] for label, v in values.items()}
                             for b in blocks}, ylabel=ylabel, title=title, log=log, short=True)


def grouped_bars(path: epath.PathLike, values: Mapping[str, Mapping[str, Sequence[float]]],
                 *, ylabel: str, title: str, log: bool = False, short: bool = False) -> str:
  """One group of bars per key of ``values``, one bar per label: the mean of the label's values.

  Where a bar has several values (e.g. seeds), the bar also shows their standard
  deviation as an error bar and each value as a dot. ``short``: drop the path
  components all group names share (block names).
  """
  groups = list(values)
  labels = list(dict.fromkeys(label for g in groups for label in values[g]))
  width = 0.8 / len(labels)
  fig = Figure(figsize=(max(6.0, 0.45 * len(groups) * len(labels) + 2), 4))
  ax = fig.subplots()
  x = np.arange(len(groups))
  for i, label in enumerate(labels):
    xs = x + (i - (len(labels) - 1) / 2) * width
    runs = [np.asarray(values[g].get(label, [np.nan]), np.float64) for g in groups]
    spread = [r.std() if len(r) > 1 else np.nan for r in runs]
    ax.bar(xs, [r.mean() for r in runs], width, label=label, color=f"C{i}",
           yerr=None if np.all(np.isnan(spread)) else spread, capsize=3)
    for xi, r in zip(xs, runs):
      if len(r) > 1:
        ax.plot(np.full(len(r), xi), r, "k.", markersize=4)
  ax.set_xticks(x, _short_names(groups) if short else groups,
                rotation=60 if short else 0, ha="right" if short else "center", fontsize=8)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  if log:
    ax.set_yscale("log")
  ax.margins(y=0.25)  # Room for the legend above the bars.
  ax.legend(loc="upper center", ncol=len(labels))
  return _save(fig, path)


def landscape_1d(path: epath.PathLike, alphas: Sequence[float],
                 losses: Mapping[str, np.ndarray], *, ylabel: str = "training loss") -> str:
  """L(w + a d) against a, one curve per run."""
  fig = Figure(figsize=(5, 4))
  ax = fig.subplots()
  for label, values in losses.items():
    ax.plot(alphas, values, label=label)
  ax.set_xlabel("a (filter-normalised direction)")
  ax.set_ylabel(ylabel)
  ax.set_title("1-D loss landscape")
  ax.legend()
  return _save(fig, path)


def landscape_2d(path: epath.PathLike, alphas: Sequence[float], betas: Sequence[float],
                 losses: Mapping[str, np.ndarray], *, zlabel: str = "training loss") -> str:
  """Per run (rows): contour and 3-D surface of L(w + a d1 + b d2), on shared levels."""
  a, b = np.meshgrid(alphas, betas, indexing="ij")
  top = max(float(np.nanmax(z)) for z in losses.values())
  bottom = min(float(np.nanmin(z)) for z in losses.values())
  levels = np.linspace(bottom, top, 25)
  fig = Figure(figsize=(10, 4.2 * len(losses)))
  for row, (label, z) in enumerate(losses.items()):
    ax = fig.add_subplot(len(losses), 2, 2 * row + 1)
    contour = ax.contour(a, b, z, levels=levels, cmap="viridis")
    ax.clabel(contour, np.asarray(contour.levels)[::4], fontsize=6, fmt="%.3g")
    ax.plot([0], [0], "k+")
    ax.set_title(f"{label}: contour of {zlabel}")
    ax.set_xlabel("a (direction 1)")
    ax.set_ylabel("b (direction 2)")
    ax = fig.add_subplot(len(losses), 2, 2 * row + 2, projection="3d")
    ax.plot_surface(a, b, z, cmap="viridis", vmin=bottom, vmax=top)
    ax.set_zlim(bottom, top)
    ax.set_title(f"{label}: surface")
    ax.set_xlabel("a")
    ax.set_ylabel("b")
  return _save(fig, path)


def attention_overlays(path: epath.PathLike, images: np.ndarray,
                       maps: Mapping[str, np.ndarray]) -> str:
  """Row 0: the images ([-1, 1] NHWC); then per run, its class-token maps over the images.

  Each map is stretched to its own [min, max] for display.
  """
  images = np.clip((np.asarray(images, np.float32) + 1) / 2, 0, 1)
  n, height, width = images.shape[:3]
  fig = Figure(figsize=(1.6 * n, 1.7 * (1 + len(maps))))
  axes = fig.subplots(1 + len(maps), n, squeeze=False)
  for j in range(n):
    axes[0, j].imshow(images[j])
    for i, (label, m) in enumerate(maps.items(), start=1):
      axes[i, j].imshow(images[j])
      heat = np.asarray(m[j], np.float64)
      heat = (heat - heat.min()) / max(heat.max() - heat.min(), 1e-12)
      axes[i, j].imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1,
                        extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="bilinear")
      if j == 0:
        axes[i, j].set_ylabel(label)
  axes[0, 0].set_ylabel("input")
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle("Class-token attention rollout")
  return _save(fig, path)


def training_curves(path: epath.PathLike, runs: Mapping[str, Mapping[str, Curve]]) -> str:
  """Training loss, training error (1 - train/accuracy) and eval accuracy of each run."""
  panels = (("train/loss", "training loss", False), ("train/accuracy", "training error", True),
            ("eval/accuracy", "eval accuracy", False))
  fig = Figure(figsize=(4.2 * len(panels), 3.6))
  axes = fig.subplots(1, len(panels))
  for ax, (tag, title, error) in zip(axes, panels):
    for label, scalars in runs.items():
      if tag in scalars:
        steps, values = scalars[tag]
        ax.plot(steps, 1 - values if error else values, marker="." if len(steps) < 20 else None,
                label=label)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.legend()
  return _save(fig, path)


def mean_points(path: epath.PathLike,
                panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]], *,
                xlabel: str, ylabel: str, title: str,
                xline: tuple[float, str] | None = None) -> str:
  """One panel per key of ``panels`` (shared y), one point per label: the mean of its (x, y).

  Where a label has several (x, y) pairs (e.g. seeds), the point also shows their sample
  standard deviation along each axis as error bars and each pair as a dot. A label keeps
  its colour across panels. ``xline``: (x, text), a dashed vertical line (e.g. a budget).
  """
  labels = list(dict.fromkeys(label for points in panels.values() for label in points))
  fig = Figure(figsize=(5.0 * len(panels), 4.2))
  axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
  for ax, (name, points) in zip(axes, panels.items()):
    ax.axhline(0, color="0.7", linewidth=0.8)
    ax.axvline(0, color="0.7", linewidth=0.8)
    if xline is not None:
      ax.axvline(xline[0], color="k", linestyle="--", linewidth=1, label=xline[1])
    for label, (xs, ys) in points.items():
      xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
      color = f"C{labels.index(label)}"
      spread = (lambda v: v.std(ddof=1)) if len(xs) > 1 else (lambda v: None)
      ax.errorbar(xs.mean(), ys.mean(), xerr=spread(xs), yerr=spread(ys), fmt="o", color=color,
                  capsize=3, label=label)
      if len(xs) > 1:
        ax.plot(xs, ys, ".", color=color, alpha=0.5, markersize=4)
    ax.set_title(name)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8)
  axes[0].set_ylabel(ylabel)
  fig.suptitle(title)
  return _save(fig, path)
