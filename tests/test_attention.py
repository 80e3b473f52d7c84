"""Attention rollout against a reference product, and on a real (tiny) ViT."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_jax import models
from sam_jax.analysis import attention


def _random_attention(rng, batch, heads, n):
  logits = rng.normal(size=(batch, heads, n, n))
  return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def test_rollout_matches_the_reference_product():
  rng = np.random.default_rng(0)
  layers = [_random_attention(rng, 2, 3, 5) for _ in range(4)]
  expected = np.stack([np.eye(5)] * 2)
  for a in layers:  # R <- ((mean_h A + I) / 2) R, layer by layer.
    expected = np.einsum("bij,bjk->bik", (a.mean(1) + np.eye(5)) / 2, expected)
  rolled = attention.rollout([jnp.asarray(a, jnp.float32) for a in layers])
  np.testing.assert_allclose(rolled, expected, rtol=1e-5)
  np.testing.assert_allclose(rolled.sum(-1), 1.0, rtol=1e-5)


def test_uniform_attention_gives_a_flat_map():
  n = 1 + 2 * 3
  rolled = attention.rollout([jnp.full((1, 2, n, n), 1 / n)] * 3)
  maps = attention.class_token_maps(rolled, (2, 3))
  np.testing.assert_allclose(maps, np.ones((1, 2, 3)), rtol=1e-6)
  with pytest.raises(ValueError, match="class token plus a"):
    attention.class_token_maps(rolled, (3, 3))
  with pytest.raises(ValueError, match="at least one layer"):
    attention.rollout([])


def test_tiny_vit_maps():
  model = models.create_model("vit", "Ti/4", num_classes=3, hidden_size=8, mlp_dim=16,
                              num_heads=2, num_layers=3)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 8, 12, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
  weights = attention.attention_weights(state)
  assert len(weights) == 3 and all(w.shape == (2, 2, 7, 7) for w in weights)
  maps = attention.class_token_maps(attention.rollout(weights), (2, 3))
  assert maps.shape == (2, 2, 3)
  np.testing.assert_allclose(maps.max(axis=(1, 2)), 1.0)
  assert np.all(maps > 0)
  with pytest.raises(ValueError, match="no attention weights"):
    attention.attention_weights({"intermediates": {}})
