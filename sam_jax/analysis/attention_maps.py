"""Attention rollout (Abnar & Zuidema, 2020): where a ViT's class token looks (Fig. 3).

With A_l the attention weights of layer l averaged over heads ([n, n] per example,
rows sum to 1), the residual connection is accounted for by
Ahat_l = (A_l + I) / 2 (rows still sum to 1), and the attention flows through the
layers as the product

    R = Ahat_L Ahat_{L-1} ... Ahat_1.

Row 0 of R (the class token), without its own column, reshaped to the patch grid,
is the class token's attention map; it is rescaled to a maximum of 1 for display.
"""

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from sam_jax.analysis import model_functions


def attention_weights(intermediates: Mapping[str, Any], name: str = "attention_weights"
                      ) -> list[jax.Array]:
  """The sown attention weights [batch, heads, q, k] of each layer, in layer order."""
  layers = model_functions.sown(intermediates, name)
  if not layers:
    raise ValueError(f"attention_maps: no attention weights sown under {name!r}; is the model "
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
    raise ValueError("attention_maps: rollout needs at least one layer of weights.")
  return result


def class_token_maps(rolled: jax.Array, grid: tuple[int, int]) -> jax.Array:
  """The class token's rolled-out attention to the patches: [batch, grid_h, grid_w] in [0, 1]."""
  batch, n, _ = rolled.shape
  if n != 1 + grid[0] * grid[1]:
    raise ValueError(f"attention_maps: {n} tokens do not fit a class token plus a {grid} patch "
                     "grid (a model with classifier='token' is needed).")
  maps = rolled[:, 0, 1:].reshape(batch, *grid)
  return maps / jnp.max(maps, axis=(1, 2), keepdims=True)
