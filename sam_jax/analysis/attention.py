"""Analysis ``attention``: the class token's attention rollout over the input (Fig. 3).

Attention rollout (Abnar & Zuidema, 2020) shows where a ViT's class token looks.
With A_l the attention weights of layer l averaged over heads ([n, n] per example,
rows sum to 1), the residual connection is accounted for by
Ahat_l = (A_l + I) / 2 (rows still sum to 1), and the attention flows through the
layers as the product

    R = Ahat_L Ahat_{L-1} ... Ahat_1.

Row 0 of R (the class token), without its own column, reshaped to the patch grid,
is the class token's attention map; it is rescaled to a maximum of 1 for display.
The analysis draws it on the first ``attention.num_images`` images of
``attention.split``; it needs a model with a class token (a ViT with
``classifier="token"``).
"""

from typing import Any, Mapping, Sequence

from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from sam_jax.analysis import model_functions, plots
from sam_jax.analysis.context import Analysis, Context, Results
from sam_jax.checkpoints import loading
from sam_jax.models import patches

FIGURE = "attention_rollout.png"


def attention_weights(intermediates: Mapping[str, Any], name: str = "attention_weights"
                      ) -> list[jax.Array]:
  """The sown attention weights [batch, heads, q, k] of each layer, in layer order."""
  layers = model_functions.sown(intermediates, name)
  if not layers:
    raise ValueError(f"attention: no attention weights sown under {name!r}; is the model "
                     "a ViT applied with mutable=['intermediates']?")
  return list(layers.values())


def rollout(weights: Sequence[jax.Array]) -> jax.Array:
  """R = prod_l (mean_heads A_l + I) / 2, layer 1 rightmost: [batch, n, n]."""
  result = None
  for w in weights:
    a = jnp.mean(w.astype(jnp.float32), axis=1)
    a = (a + jnp.eye(a.shape[-1], dtype=a.dtype)) / 2
    result = a if result is None else jnp.einsum("bij,bjk->bik", a, result)
  if result is None:
    raise ValueError("attention: rollout needs at least one layer of weights.")
  return result


def class_token_maps(rolled: jax.Array, grid: tuple[int, int]) -> jax.Array:
  """The class token's rolled-out attention to the patches: [batch, grid_h, grid_w] in [0, 1]."""
  batch, n, _ = rolled.shape
  if n != 1 + grid[0] * grid[1]:
    raise ValueError(f"attention: {n} tokens do not fit a class token plus a {grid} patch "
                     "grid (a model with classifier='token' is needed).")
  maps = rolled[:, 0, 1:].reshape(batch, *grid)
  return maps / jnp.max(maps, axis=(1, 2), keepdims=True)


def unavailable(loaded: loading.Loaded) -> str | None:
  if getattr(loaded.model, "classifier", None) != "token":
    return (f"'attention' needs a ViT with a class token (classifier='token'); "
            f"{loaded.source} is a {loaded.config.model.name}.")
  return None


def run(context: Context) -> dict[str, Any]:
  rolled = rollout(attention_weights(
      context.intermediates(context.params, context.attention_images())))
  ph, pw = patches.patch_shape(context.loaded.model.patch_size)
  grid = (context.config.image_size // ph, context.config.image_size // pw)
  maps = class_token_maps(rolled, grid)[:context.settings.attention.num_images]
  return {"maps": np.asarray(maps).tolist()}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  """The maps over the first run's images (all runs see the same images of its split)."""
  images = np.asarray(first.attention_images())[:first.settings.attention.num_images]
  maps = {label: np.array(r["attention"]["maps"]) for label, r in results.items()}
  return [plots.attention_overlays(output_dir / FIGURE, images, maps)]


ANALYSIS = Analysis("attention", run, figures, unavailable)
