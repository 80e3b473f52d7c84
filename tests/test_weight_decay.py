"""Weight-decay and ASAM masks on real models; decoupled decay and the L2 penalty in the loss."""

import jax
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs import default
from sam_jax import models
from sam_jax.config import defaults
from sam_jax.optim import masks, sam
from sam_jax.optim.l2_penalty import l2_in_loss
from sam_jax.optim.optimizer import learning_rate_schedule
from sam_jax.training import setup

TINY_VIT = dict(hidden_size=8, mlp_dim=16, num_heads=2, num_layers=1)


def _vit():
  return models.create_model("vit", "Ti/8", num_classes=3, **TINY_VIT)


def _vit_params():
  return _vit().init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)), train=False)["params"]


def _selected(mask_fn, params):
  flat = jax.tree_util.tree_flatten_with_path(mask_fn(params))[0]
  return {"/".join(str(k.key) for k in path) for path, m in flat if m}


def test_decay_mask_is_the_kernels_only():
  params = _vit_params()
  selected = _selected(masks.decay_mask, params)
  kernels = {k for k in _selected(lambda p: jax.tree.map(lambda _: True, p), params)
             if k.endswith("/kernel")}
  assert selected == kernels
  block = "Transformer/encoderblock_0/MultiHeadDotProductAttention_0"
  assert np.ndim(params["Transformer"]["encoderblock_0"]["MultiHeadDotProductAttention_0"]
                 ["query"]["bias"]) == 2  # [heads, head_dim]: a rule ndim > 1 takes it.
  for left_out in (f"{block}/query/bias", "cls", "Transformer/posembed_input/pos_embedding",
                   "Transformer/encoder_norm/scale", "head/bias"):
    assert left_out not in selected


def test_weight_mask_is_the_kernels_and_norm_scales():
  params = _vit_params()
  selected = _selected(masks.weight_mask, params)
  assert selected == _selected(masks.decay_mask, params) | {
      "Transformer/encoderblock_0/LayerNorm_0/scale", "Transformer/encoderblock_0/LayerNorm_1/scale",
      "Transformer/encoder_norm/scale"}


def _config(name: str, in_loss: bool, rho: float = 0.0) -> ml_collections.ConfigDict:
  config = default.get_config()
  config.update(num_train_steps=10, image_size=16)
  config.sam = defaults.sam(rho)
  config.optimizer = defaults.optimizer(name, 0.5, 0, "constant", weight_decay=0.1,
                                        grad_clip_norm=0.0, momentum=0.0,
                                        weight_decay_in_loss=in_loss)
  return defaults.complete(config)


def _first_update(config: ml_collections.ConfigDict, grads, params, **extra):
  """The first update of ``params`` by the optimizer training builds (``setup.build`` on one
  device), run on its mesh as the train step runs it."""
  run = setup.build(config, jax.devices()[:1], model=_vit())
  update = lambda g, p: run.tx.update(g, run.tx.init(p), p, **extra)[0]
  return jax.shard_map(update, mesh=run.mesh, in_specs=(P(), P()), out_specs=P(),
                       check_vma=False)(grads, params)


def test_decoupled_decay_shrinks_exactly_the_masked_leaves():
  params = _vit_params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates = _first_update(_config("adamw", in_loss=False), zeros, params)
  decayed = masks.decay_mask(params)
  jax.tree.map(lambda u, w, m: np.testing.assert_allclose(
      u, -0.5 * 0.1 * w if m else np.zeros_like(w), rtol=1e-6, atol=1e-8),
               updates, params, decayed)


def test_l2_in_loss_is_sam_on_the_regularised_loss():
  """SAM ascends along ∇L + wd w and descends along ∇L(w+e) + wd (w+e), as google-research/sam."""
  params = {"kernel": jnp.array([[1.0, -2.0], [0.5, 0.3]]), "bias": jnp.array([0.1, -1.0])}
  c = {"kernel": jnp.array([[3.0, 0.5], [1.0, 2.0]]), "bias": jnp.array([4.0, 0.2])}
  loss = lambda p: sum(0.5 * jnp.sum(c[k] * p[k] ** 2) for k in p)
  regularised = lambda p: loss(p) + 0.5 * 0.1 * jnp.sum(p["kernel"] ** 2)  # Kernels only.
  reference = optax.chain(sam(0.2), optax.sgd(0.5))
  expected, _ = reference.update(jax.grad(regularised)(params), reference.init(params), params,
                                 grad_fn=jax.grad(regularised))
  tx = l2_in_loss(optax.chain(sam(0.2), optax.sgd(0.5)), 0.1)
  got, _ = tx.update(jax.grad(loss)(params), tx.init(params), params, grad_fn=jax.grad(loss))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, expected)
  # Decoupled decay after SAM is a different step (the ascent ignores the penalty).
  decoupled = optax.chain(sam(0.2), optax.add_decayed_weights(0.1, mask=masks.decay_mask),
                          optax.sgd(0.5))
  other, _ = decoupled.update(jax.grad(loss)(params), decoupled.init(params), params,
                              grad_fn=jax.grad(loss))
  assert not np.allclose(other["kernel"], got["kernel"], rtol=1e-6)


def test_config_weight_decay_in_loss_builds_the_l2_chain():
  params = {"kernel": jnp.array([[1.0, -2.0], [0.5, 0.3]]), "bias": jnp.array([0.1, -1.0])}
  c = {"kernel": jnp.array([[3.0, 0.5], [1.0, 2.0]]), "bias": jnp.array([4.0, 0.2])}
  loss = lambda p: sum(0.5 * jnp.sum(c[k] * p[k] ** 2) for k in p)
  config = _config("sgd", in_loss=True, rho=0.2)
  got = _first_update(config, jax.grad(loss)(params), params, grad_fn=jax.grad(loss))
  reference = l2_in_loss(optax.chain(sam(0.2), optax.sgd(learning_rate_schedule(
      config.optimizer, 10))), 0.1)
  expected, _ = reference.update(jax.grad(loss)(params), reference.init(params), params,
                                 grad_fn=jax.grad(loss))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, expected)
