"""lambda_max by Lanczos / power iteration against known spectra and dense Hessians."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sam_jax.analysis import hessian
from sam_jax.models import param_blocks


def _quadratic(eigenvalues, seed=0):
  """A = Q diag(eigenvalues) Q^T and a params tree of matching size."""
  rng = np.random.default_rng(seed)
  dim = len(eigenvalues)
  q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  a = jnp.asarray((q * eigenvalues) @ q.T, jnp.float32)
  params = {"x": {"w": jnp.asarray(rng.normal(size=(dim - 3,)), jnp.float32)},
            "y": jnp.zeros((3,), jnp.float32)}
  return a, params


def _quadratic_loss(a):
  def loss(params, batch):  # 0.5 * scale * x^T A x, so the Hessian is scale * A.
    x = ravel_pytree(params)[0]
    return 0.5 * batch["scale"] * x @ a @ x
  return loss


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_quadratic_known_spectrum(method):
  rng = np.random.default_rng(1)
  eigenvalues = np.concatenate([[8.0, 5.0], rng.uniform(-2.0, 4.5, size=38)])
  a, params = _quadratic(eigenvalues)
  # Mean over batches of scale * A has the spectrum mean(scale) * eigenvalues.
  batches = [{"scale": jnp.float32(0.5)}, {"scale": jnp.float32(1.5)}]
  value = hessian.lambda_max(_quadratic_loss(a), params, batches, method=method, num_steps=60)
  assert abs(value - 8.0) / 8.0 < 1e-4


def test_lanczos_ritz_values_bracket_spectrum():
  eigenvalues = np.linspace(-3.0, 6.0, 12)
  a, params = _quadratic(eigenvalues)
  matvec = lambda v: v @ a  # Rows of [k, 12]; A is symmetric.
  ritz, = hessian.lanczos(matvec, jnp.ones((1, 12)), num_steps=12)
  np.testing.assert_allclose(ritz, eigenvalues, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method", hessian.METHODS)
def test_blocks_together_match_closed_form_and_one_at_a_time(method):
  """Blocks of 9 and 3 entries of a quadratic, run together: the 3-entry block's Krylov
  space is exhausted after 3 Lanczos steps while the other goes on; each value is the
  largest eigenvalue of A's diagonal block, as one block at a time gives."""
  a, params = _quadratic(np.concatenate([[9.0, 7.0], np.linspace(-2.0, 4.0, 10)]))
  blocks = {"x": ("x/w",), "y": ("y",)}
  loss, batches = _quadratic_loss(a), [{"scale": jnp.float32(1.0)}]
  together = hessian.block_lambda_max(loss, params, batches, blocks, method=method,
                                      num_steps=60)
  alone = {name: hessian.lambda_max(loss, params, batches, paths=paths, method=method,
                                    num_steps=60) for name, paths in blocks.items()}
  dense = np.asarray(a, np.float64)
  top = lambda e: e[-1] if method == "lanczos" else e[np.argmax(np.abs(e))]
  expected = {"x": top(np.linalg.eigvalsh(dense[:9, :9])),
              "y": top(np.linalg.eigvalsh(dense[9:, 9:]))}
  for name in blocks:
    np.testing.assert_allclose(together[name], alone[name], rtol=1e-5)
    np.testing.assert_allclose(together[name], expected[name], rtol=1e-3)


class _Mlp(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.tanh(nn.Dense(5)(x))
    return nn.Dense(3)(x)


def _mlp_problem():
  rng = np.random.default_rng(2)
  batches = [{"x": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32),
              "y": jnp.asarray(rng.integers(0, 3, size=16))} for _ in range(2)]
  model = _Mlp()
  params = model.init(jax.random.PRNGKey(0), batches[0]["x"])["params"]

  def loss(params, batch):
    logits = model.apply({"params": params}, batch["x"])
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], 1))

  flat, unravel = ravel_pytree(params)
  dense = np.mean([np.asarray(jax.hessian(lambda x, b=b: loss(unravel(x), b))(flat), np.float64)
                   for b in batches], axis=0)
  return loss, params, batches, dense


def test_mlp_matches_dense_hessian():
  loss, params, batches, dense = _mlp_problem()
  expected = np.linalg.eigvalsh(dense)[-1]
  for method in hessian.METHODS:
    value = hessian.lambda_max(loss, params, batches, method=method, num_steps=200)
    np.testing.assert_allclose(value, expected, rtol=1e-3)


def test_blocks_match_dense_diagonal_blocks():
  loss, params, batches, dense = _mlp_problem()
  blocks = param_blocks.partition(params, ())
  assert list(blocks) == ["Dense_0", "Dense_1"]
  values = hessian.block_lambda_max(loss, params, batches, blocks, num_steps=40)
  assert hessian.block_lambda_max(loss, params, batches, blocks, num_steps=40,
                                  blocks_at_once=1) == pytest.approx(values, rel=1e-5)
  for name, paths in blocks.items():
    index = np.flatnonzero(np.asarray(hessian.block_mask(params, paths)))
    expected = np.linalg.eigvalsh(dense[np.ix_(index, index)])[-1]
    np.testing.assert_allclose(values[name], expected, rtol=1e-3)
  # Cauchy interlacing: no diagonal block exceeds the whole Hessian.
  assert max(values.values()) <= np.linalg.eigvalsh(dense)[-1] * (1 + 1e-4)


def test_sharded_batch_gives_the_same_value():
  loss, params, batches, _ = _mlp_problem()
  mesh = Mesh(np.asarray(jax.devices()), ("data",))
  sharded = [jax.device_put(b, NamedSharding(mesh, P("data"))) for b in batches]
  replicated = jax.device_put(params, NamedSharding(mesh, P()))
  assert jax.device_count() == 8
  np.testing.assert_allclose(
      hessian.lambda_max(loss, replicated, sharded, num_steps=30),
      hessian.lambda_max(loss, params, batches, num_steps=30), rtol=1e-4)


def test_hvp_is_forward_over_reverse_of_the_gradient():
  a, params = _quadratic(np.arange(1.0, 9.0))
  loss = lambda p: _quadratic_loss(a)(p, {"scale": 1.0})
  v = jax.tree.map(jnp.ones_like, params)
  expected = a @ ravel_pytree(v)[0]
  np.testing.assert_allclose(ravel_pytree(hessian.hvp(loss, params, v))[0], expected, rtol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="arnoldi"), "lanczos"),
    (dict(num_steps=0), "num_steps"),
    (dict(paths=["nope/kernel"]), "unknown parameter paths"),
])
def test_bad_arguments(kwargs, match):
  a, params = _quadratic(np.arange(1.0, 9.0))
  with pytest.raises(ValueError, match=match):
    hessian.lambda_max(_quadratic_loss(a), params, [{"scale": 1.0}], **kwargs)
  with pytest.raises(ValueError, match="at least one batch"):
    hessian.lambda_max(_quadratic_loss(a), params, [])
