"""Loss-landscape slices along filter-normalised random directions (Li et al., 2018; Fig. 1).

A direction d has the structure of the parameters w. Each leaf with two or more
axes is drawn from N(0, 1) and rescaled filter by filter,

    d_f <- d_f * ||w_f|| / ||d_f||,

where a filter is one slice along the leaf's last (output) axis (a conv or Dense
output unit); leaves with fewer than two axes (biases, LayerNorm / BatchNorm
parameters) get d = 0 (Li et al.'s ``ignore biasbn``). The slices are

    1-D:  L(a) = L(w + a d1),            a on a grid,
    2-D:  L(a, b) = L(w + a d1 + b d2),  (a, b) on a grid,

with every metric averaged over a fixed list of (equal-sized) batches.
"""

import functools
from typing import Any, Callable, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

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
