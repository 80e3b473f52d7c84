"""Analysis ``landscape``: loss slices along filter-normalised directions (Li et al., 2018; Fig. 1).

A direction d has the structure of the parameters w. Each leaf with two or more
axes is drawn from N(0, 1) and rescaled filter by filter,

    d_f <- d_f * ||w_f|| / ||d_f||,

where a filter is one slice along the leaf's last (output) axis (a conv or Dense
output unit); leaves with fewer than two axes (biases, LayerNorm / BatchNorm
parameters) get d = 0 (Li et al.'s ``ignore biasbn``). The slices are

    1-D:  L(a) = L(w + a d1),            a on a grid,
    2-D:  L(a, b) = L(w + a d1 + b d2),  (a, b) on a grid,

with every metric averaged over a fixed list of (equal-sized) batches. The analysis
draws loss and accuracy at ``landscape.points_1d`` points and on a ``points_2d`` square
grid, a and b in [-radius, radius], on the first ``landscape.num_batches`` batches of
``analysis.split``.
"""

import functools
from typing import Any, Callable, Sequence

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from sam_jax.analysis import plots
from sam_jax.analysis.context import Analysis, Context, Results

Params = Any
MetricsFn = Callable[[Params, Any], dict[str, jax.Array]]  # (params, batch) -> {name: mean}.


def filter_normalized_direction(params: Params, rng: jax.Array) -> Params:
  """A random direction, filter-normalised to ``params`` (biases and norms zero)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(rng, len(leaves))

  def direction(w, key):
    if w.ndim < 2:
      return jnp.zeros_like(w)
    d = jax.random.normal(key, w.shape, w.dtype)
    axes = tuple(range(w.ndim - 1))
    d_norm = jnp.sqrt(jnp.sum(jnp.square(d), axis=axes, keepdims=True))
    w_norm = jnp.sqrt(jnp.sum(jnp.square(w), axis=axes, keepdims=True))
    return d * w_norm / d_norm

  return jax.tree.unflatten(treedef, [direction(w, k) for w, k in zip(leaves, keys)])


@functools.partial(jax.jit, static_argnums=0)
def _metrics_at(metrics_fn: MetricsFn, params: Params, directions: tuple[Params, ...],
                coords: jax.Array, batch: Any) -> dict[str, jax.Array]:
  """metrics_fn(w + sum_i coords[i] directions[i], batch)."""
  moved = jax.tree.map(lambda w, *ds: w + sum(c * d for c, d in zip(coords, ds)), params,
                       *directions)
  return metrics_fn(moved, batch)


def loss_surface(metrics_fn: MetricsFn, params: Params, directions: Sequence[Params],
                 coordinates: Sequence[Sequence[float]], batches: Sequence[Any], *,
                 progress: str | None = None) -> dict[str, np.ndarray]:
  """Each metric at w + sum_i c_i d_i over the grid of ``coordinates`` (one axis per direction).

  ``metrics_fn`` must be hashable (jit caches on it). Returns ``{name: array}`` of shape
  ``[len(coordinates[0]), ...]``. ``progress``: a label to log the points under (every
  10 s), or None.
  """
  if len(directions) != len(coordinates) or not 1 <= len(directions) <= 2:
    raise ValueError(f"landscape: needs 1 or 2 directions with one coordinate grid each, got "
                     f"{len(directions)} directions and {len(coordinates)} grids.")
  if not batches:
    raise ValueError("landscape: needs at least one batch.")

  grid = np.stack(np.meshgrid(*coordinates, indexing="ij"), axis=-1)
  points = grid.reshape(-1, len(directions))
  results = []
  for i, point in enumerate(points):
    if progress is not None:
      logging.log_every_n_seconds(logging.INFO, "%s: point %d of %d.", 10, progress, i + 1,
                                  len(points))
    coords = jnp.asarray(point, jnp.float32)
    per_batch = [_metrics_at(metrics_fn, params, tuple(directions), coords, b) for b in batches]
    results.append(jax.tree.map(lambda *v: float(np.mean(v)), *per_batch))
  return {name: np.array([r[name] for r in results]).reshape(grid.shape[:-1])
          for name in results[0]}


def run(context: Context) -> dict[str, Any]:
  s = context.settings.landscape
  batches = context.batches(s.num_batches)
  key1, key2 = jax.random.split(jax.random.PRNGKey(s.seed))
  d1, d2 = (filter_normalized_direction(context.params, k) for k in (key1, key2))
  line = np.linspace(-s.radius, s.radius, s.points_1d)
  grid = np.linspace(-s.radius, s.radius, s.points_2d)
  one = loss_surface(context.metrics, context.params, [d1], [line], batches,
                     progress="Landscape 1-D")
  two = loss_surface(context.metrics, context.params, [d1, d2], [grid, grid], batches,
                     progress="Landscape 2-D")
  return {"coordinates_1d": line.tolist(), "coordinates_2d": grid.tolist(),
          **{f"{k}_1d": v.tolist() for k, v in one.items()},
          **{f"{k}_2d": v.tolist() for k, v in two.items()}}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  del first
  coordinates = next(iter(results.values()))["landscape"]
  pick = lambda key: {label: np.array(r["landscape"][key]) for label, r in results.items()}
  return [plots.landscape_1d(output_dir / "landscape_1d.png", coordinates["coordinates_1d"],
                             pick("loss_1d")),
          plots.landscape_2d(output_dir / "landscape_2d.png", coordinates["coordinates_2d"],
                             coordinates["coordinates_2d"], pick("loss_2d"))]


ANALYSIS = Analysis("landscape", run, figures)
