"""Analysis ``attention``: the class token's attention rollout over the input (Fig. 3).

On the first ``attention.num_images`` images of ``attention.split``
(``attention_maps``); needs a model with a class token (a ViT with
``classifier="token"``).
"""

from typing import Any

from etils import epath
import numpy as np

from sam_jax.analysis import attention_maps, plots
from sam_jax.analysis.context import Analysis, Context, Results
from sam_jax.checkpoints import loading
from sam_jax.models import patches

FIGURE = "attention_rollout.png"


def unavailable(loaded: loading.Loaded) -> str | None:
  if getattr(loaded.model, "classifier", None) != "token":
    return (f"'attention' needs a ViT with a class token (classifier='token'); "
            f"{loaded.source} is a {loaded.config.model.name}.")
  return None


def run(context: Context) -> dict[str, Any]:
  rolled = attention_maps.rollout(attention_maps.attention_weights(
      context.intermediates(context.params, context.attention_images())))
  ph, pw = patches.patch_shape(context.loaded.model.patch_size)
  grid = (context.config.image_size // ph, context.config.image_size // pw)
  maps = attention_maps.class_token_maps(rolled, grid)[:context.settings.attention.num_images]
  return {"maps": np.asarray(maps).tolist()}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  """The maps over the first run's images (all runs see the same images of its split)."""
  images = np.asarray(first.attention_images())[:first.settings.attention.num_images]
  maps = {label: np.array(r["attention"]["maps"]) for label, r in results.items()}
  return [plots.attention_overlays(output_dir / FIGURE, images, maps)]


ATTENTION = Analysis("attention", run, figures, unavailable)
