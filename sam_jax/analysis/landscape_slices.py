"""Analysis ``landscape``: 1-D and 2-D loss slices along filter-normalised directions (Fig. 1).

Loss and accuracy (``landscape.loss_surface``) at w + a d1 (``landscape.points_1d``
points) and w + a d1 + b d2 (a ``points_2d`` square grid), a and b in
[-radius, radius], on the first ``landscape.num_batches`` batches of ``analysis.split``.
"""

from typing import Any

from etils import epath
import jax
import numpy as np

from sam_jax.analysis import landscape, plots
from sam_jax.analysis.context import Analysis, Context, Results


def run(context: Context) -> dict[str, Any]:
  s = context.settings.landscape
  batches = context.batches(s.num_batches)
  key1, key2 = jax.random.split(jax.random.PRNGKey(s.seed))
  d1, d2 = (landscape.filter_normalized_direction(context.params, k) for k in (key1, key2))
  line = np.linspace(-s.radius, s.radius, s.points_1d)
  grid = np.linspace(-s.radius, s.radius, s.points_2d)
  one = landscape.loss_surface(context.metrics, context.params, [d1], [line], batches,
                               progress="Landscape 1-D")
  two = landscape.loss_surface(context.metrics, context.params, [d1, d2], [grid, grid], batches,
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


LANDSCAPE = Analysis("landscape", run, figures)
