"""Empirical NTK against closed forms (linear model) and a dense Jacobian (small MLP)."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sam_jax import models
from sam_jax.analysis import ntk
from sam_jax.optim import masks

N, D, K = 6, 10, 3


def _inputs(seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(N, D)), jnp.float32)


def test_linear_model_closed_form():
  """f(x) = x W: J = x (x) I_K, so Theta_full = X X^T (x) I_K and trace = sum = K X X^T."""
  x = _inputs()
  model = nn.Dense(K, use_bias=False)
  params = model.init(jax.random.PRNGKey(0), x)
  apply_fn = lambda p, inputs: model.apply(p, inputs)
  gram = np.asarray(x, np.float64) @ np.asarray(x, np.float64).T
  np.testing.assert_allclose(ntk.empirical_ntk(apply_fn, params, x, "trace"), K * gram,
                             rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(ntk.empirical_ntk(apply_fn, params, x, "sum"), K * gram,
                             rtol=1e-5, atol=1e-4)
  full = ntk.empirical_ntk(apply_fn, params, x, "full")
  np.testing.assert_allclose(full, np.kron(gram, np.eye(K)), rtol=1e-5, atol=1e-4)
  eig = np.linalg.eigvalsh(gram)
  for kernel in (ntk.empirical_ntk(apply_fn, params, x), full):
    result = ntk.condition_number(kernel)
    np.testing.assert_allclose(result["kappa"], eig[-1] / eig[0], rtol=1e-3)


class _Mlp(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.Dense(K)(nn.gelu(nn.Dense(7)(x)))


@pytest.mark.parametrize("convention", ntk.CONVENTIONS)
def test_mlp_matches_dense_jacobian(convention):
  x = _inputs(1)
  model = _Mlp()
  params = model.init(jax.random.PRNGKey(1), x)
  flat, unravel = ravel_pytree(params)
  jac = np.asarray(jax.jacfwd(lambda w: model.apply(unravel(w), x))(flat), np.float64)  # [N,K,P]
  expected = {
      "full": jac.reshape(N * K, -1) @ jac.reshape(N * K, -1).T,
      "trace": np.einsum("ikp,jkp->ij", jac, jac),
      "sum": jac.sum(1) @ jac.sum(1).T,
  }[convention]
  kernel = ntk.empirical_ntk(lambda p, inputs: model.apply(p, inputs), params, x, convention)
  np.testing.assert_allclose(kernel, expected, rtol=1e-4, atol=1e-4)
  eig = np.linalg.eigvalsh(expected)
  np.testing.assert_allclose(ntk.condition_number(kernel)["kappa"], eig[-1] / eig[0], rtol=1e-2)
  np.testing.assert_allclose(ntk.condition_number(kernel)["lambda_max"], eig[-1], rtol=1e-5)


def test_condition_number_of_known_matrices():
  q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
  result = ntk.condition_number((q * [4.0, 2.0, 0.5]) @ q.T)
  np.testing.assert_allclose([result["kappa"], result["lambda_max"], result["lambda_min"]],
                             [8.0, 4.0, 0.5], rtol=1e-12)
  assert ntk.condition_number(np.diag([2.0, 1.0, 0.0]))["kappa"] == float("inf")


def test_bad_arguments():
  with pytest.raises(ValueError, match="trace"):
    ntk.empirical_ntk(lambda p, x: x, {}, jnp.zeros((2, 1)), "diagonal")
  with pytest.raises(ValueError, match="square"):
    ntk.condition_number(np.zeros((2, 3)))


def test_zero_initialised_vit_head_gives_the_feature_kernel():
  """At init only the (zero) head has a nonzero Jacobian: Theta = K (Phi Phi^T + 1)."""
  model = models.create_model("vit", "Ti/4", num_classes=K, hidden_size=8, mlp_dim=16,
                              num_heads=2, num_layers=1)
  x = jax.random.normal(jax.random.PRNGKey(2), (N, 8, 8, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
  phi = np.asarray(state["intermediates"]["features"][0], np.float64)
  kernel = ntk.empirical_ntk(lambda p, i: model.apply({"params": p}, i, train=False),
                             variables["params"], x)
  np.testing.assert_allclose(kernel, K * (phi @ phi.T + 1), rtol=1e-5)


def _dense_tenas_kernel(model, variables, x, train):
  """Reference: the Jacobian of sum_k f_k over the raveled weights, in float64."""
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  weight_mask = masks.weight_mask(params)
  weights = jax.tree.map(lambda p, m: p if m else None, params, weight_mask)
  flat, unravel = ravel_pytree(weights)

  def summed_logits(w):
    merged = jax.tree.map(lambda p, m, v: v if m else p, params, weight_mask, unravel(w),
                          is_leaf=lambda v: v is None)
    out = model.apply({"params": merged, **state}, x, train=train,
                      mutable=["batch_stats"] if train else False)
    return (out[0] if train else out).sum(-1)

  jac = np.asarray(jax.jacrev(summed_logits)(flat), np.float64)  # [n, P_weights]
  return jac @ jac.T


TINY_VIT = dict(num_classes=K, hidden_size=8, mlp_dim=16, num_heads=2, num_layers=1)


def test_tenas_ntk_of_a_vit_matches_the_dense_jacobian_and_is_not_the_head_kernel():
  """TE-NAS's measure on a ViT: every weight contributes; a zero head would leave only Phi Phi^T."""
  model = models.create_model("vit", "Ti/4", **TINY_VIT)
  x = jax.random.normal(jax.random.PRNGKey(2), (N, 8, 8, 3))
  variables = flax.core.unfreeze(model.init(jax.random.PRNGKey(0), x, train=False))
  params = ntk.tenas_initialization(variables["params"], jax.random.PRNGKey(1))
  kernel = np.asarray(ntk.weight_ntk(model, {"params": params}, x), np.float64)
  np.testing.assert_allclose(kernel, _dense_tenas_kernel(model, {"params": params}, x, False),
                             rtol=1e-4, atol=1e-4)
  # The head's own share is K Phi Phi^T (summed logits, no bias): the rest must be large.
  _, state = model.apply({"params": params}, x, train=False, mutable=["intermediates"])
  phi = np.asarray(state["intermediates"]["features"][0], np.float64)
  head_share = K * phi @ phi.T
  # (With the model's own zero head this share is the whole kernel: see the test above.)
  assert np.trace(kernel - head_share) > 0.5 * np.trace(kernel)


def test_tenas_ntk_of_a_resnet_uses_batch_statistics():
  model = models.create_model("resnet", "18", num_classes=K, num_filters=4, stage_sizes=(1, 1),
                              stem="cifar")
  x = jax.random.normal(jax.random.PRNGKey(3), (N, 8, 8, 3))
  variables = flax.core.unfreeze(model.init(jax.random.PRNGKey(0), x, train=False))
  variables["params"] = ntk.tenas_initialization(variables["params"], jax.random.PRNGKey(1))
  kernel = np.asarray(ntk.weight_ntk(model, variables, x), np.float64)
  np.testing.assert_allclose(kernel, _dense_tenas_kernel(model, variables, x, True),
                             rtol=1e-3, atol=1e-3 * np.abs(kernel).max())
  eval_mode = _dense_tenas_kernel(model, variables, x, False)
  assert np.abs(kernel - eval_mode).max() > 1e-2 * np.abs(kernel).max()


def test_tenas_initialization_draws_kaiming_fan_out():
  params = {"dense": {"kernel": jnp.zeros((64, 512)), "bias": jnp.ones(512)},
            "conv": {"kernel": jnp.zeros((3, 3, 8, 256))},
            "norm": {"scale": jnp.zeros(8), "bias": jnp.ones(8)},
            "attn": {"query": {"kernel": jnp.zeros((32, 4, 64))},
                     "out": {"kernel": jnp.zeros((4, 64, 512))}},
            "cls": jnp.full((1, 1, 8), 0.5)}
  out = ntk.tenas_initialization(params, jax.random.PRNGKey(0))
  for path, fan_out in ((("dense",), 512), (("conv",), 9 * 256), (("attn", "query"), 256),
                        (("attn", "out"), 512)):
    leaf = out
    for p in path:
      leaf = leaf[p]
    np.testing.assert_allclose(np.std(leaf["kernel"]), np.sqrt(2 / fan_out), rtol=0.05)
  np.testing.assert_array_equal(out["dense"]["bias"], 0)
  np.testing.assert_array_equal(out["norm"]["scale"], 1)
  np.testing.assert_array_equal(out["norm"]["bias"], 0)
  np.testing.assert_array_equal(out["cls"], 0.5)
