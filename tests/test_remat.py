"""Rematerialised blocks (``model.remat``) compute the same logits and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_jax import models

TINY = {
    "vit": ("Ti/4", dict(hidden_size=16, mlp_dim=32, num_heads=2, num_layers=2,
                         dropout_rate=0.1)),
    "mixer": ("S/4", dict(hidden_dim=16, num_blocks=2, tokens_mlp_dim=8, channels_mlp_dim=32,
                          stochastic_depth=0.2)),
    "resnet": ("18", dict(num_filters=4, stage_sizes=(1, 1), stem="cifar")),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_remat_keeps_logits_gradients_and_parameter_names(name):
  variant, fields = TINY[name]
  plain = models.create_model(name, variant, num_classes=3, **fields)
  remat = models.create_model(name, variant, num_classes=3, remat=True, **fields)
  images = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 16, 3))
  params, state, rng = models.initialize(plain, jax.random.PRNGKey(1), 16)
  remat_params, _, _ = models.initialize(remat, jax.random.PRNGKey(1), 16)
  assert jax.tree.structure(remat_params) == jax.tree.structure(params)
  mutable = list(state)

  def loss(model, p):  # Train mode: dropout, stochastic depth and BatchNorm statistics.
    logits, _ = model.apply({"params": p, **state}, images, train=True,
                            rngs={"dropout": rng}, mutable=mutable)
    return jnp.sum(jnp.sin(logits)), logits

  (value, logits), grads = jax.value_and_grad(lambda p: loss(plain, p), has_aux=True)(params)
  (remat_value, remat_logits), remat_grads = jax.jit(jax.value_and_grad(
      lambda p: loss(remat, p), has_aux=True))(params)
  np.testing.assert_allclose(remat_logits, logits, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(remat_value, value, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               remat_grads, grads)


def test_remat_recomputes_the_blocks():
  """The rematerialised gradient program holds a checkpoint of each block."""
  variant, fields = TINY["vit"]
  model = models.create_model("vit", variant, num_classes=3, remat=True, **fields)
  params, _, _ = models.initialize(model, jax.random.PRNGKey(1), 16)
  jaxpr = jax.make_jaxpr(jax.grad(lambda p: jnp.sum(model.apply(
      {"params": p}, jnp.ones((2, 16, 16, 3)), train=False))))(params)
  assert str(jaxpr).count("checkpoint") + str(jaxpr).count("remat") >= fields["num_layers"]
