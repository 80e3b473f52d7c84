"""The SAM gradient transformation against closed forms and optax.contrib.sam."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_jax.optim import sam
from sam_jax.optim.sam_family import add_f32, global_norm_f32, sam_perturbation

RHO = 0.05


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.gelu(nn.Dense(16)(x))
    return nn.Dense(3)(x)


def _problem(seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(32, 5)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 3, size=32))
  model = MLP()
  params = model.init(jax.random.PRNGKey(seed), x)["params"]

  def loss(p, batch):
    xb, yb = batch
    return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, xb), yb).mean()

  batches = [(x[i::4], y[i::4]) for i in range(4)]
  return params, loss, batches


BASES = {
    "sgd": lambda: optax.sgd(0.1),
    "sgd_momentum": lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
    "adamw": lambda: optax.adamw(1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("base", sorted(BASES))
def test_matches_optax_contrib_sam_opaque(base):
  params, loss, batches = _problem()
  ours = optax.chain(sam(RHO), BASES[base]())
  ref = optax.contrib.sam(BASES[base](), optax.chain(optax.contrib.normalize(), optax.sgd(RHO)),
                          sync_period=2, opaque_mode=True)
  p_ours, p_ref = params, params
  s_ours, s_ref = ours.init(params), ref.init(params)
  for step in range(6):
    batch = batches[step % len(batches)]
    g = jax.grad(loss)(p_ours, batch)
    u, s_ours = ours.update(g, s_ours, p_ours, grad_fn=lambda p, batch=batch: jax.grad(loss)(p, batch))
    p_ours = optax.apply_updates(p_ours, u)
    g = jax.grad(loss)(p_ref, batch)
    u, s_ref = ref.update(g, s_ref, p_ref, grad_fn=lambda p, _, batch=batch: jax.grad(loss)(p, batch))
    p_ref = optax.apply_updates(p_ref, u)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p_ours, p_ref)
  # And SAM really changed the trajectory relative to the base optimizer.
  p_base, s_base = params, BASES[base]().init(params)
  for step in range(6):
    g = jax.grad(loss)(p_base, batches[step % len(batches)])
    u, s_base = BASES[base]().update(g, s_base, p_base)
    p_base = optax.apply_updates(p_base, u)
  assert not np.allclose(p_base["Dense_0"]["kernel"], p_ours["Dense_0"]["kernel"], atol=1e-6)


def test_quadratic_closed_form():
  """L = 1/2 wᵀAw: g = Aw, e = rho Aw/||Aw||, g_sam = A(w + e); SGD(lr) step."""
  a = jnp.array([[3.0, 1.0], [1.0, 2.0]])
  w = jnp.array([1.0, -2.0])
  rho, lr = 0.3, 0.1
  loss = lambda w: 0.5 * w @ a @ w
  tx = optax.chain(sam(rho), optax.sgd(lr))
  g = jax.grad(loss)(w)
  u, _ = tx.update(g, tx.init(w), w, grad_fn=jax.grad(loss))
  aw = np.array(a) @ np.array(w)
  expected = np.array(w) - lr * (np.array(a) @ (np.array(w) + rho * aw / np.linalg.norm(aw)))
  np.testing.assert_allclose(optax.apply_updates(w, u), expected, rtol=1e-6)


def test_zero_gradient_gives_no_nan():
  params = {"w": jnp.zeros((3,)), "b": jnp.ones((2,), jnp.bfloat16)}
  zeros = jax.tree.map(jnp.zeros_like, params)
  calls = []

  def grad_fn(p):
    calls.append(p)
    return jax.tree.map(jnp.zeros_like, p)

  tx = sam(0.1)
  u, _ = tx.update(zeros, tx.init(params), params, grad_fn=grad_fn)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))
  # The ascent point of a zero gradient is w itself, dtype preserved.
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), calls[0], params)
  assert calls[0]["b"].dtype == jnp.bfloat16


def test_rho_zero_is_exactly_the_base_optimizer():
  params, loss, batches = _problem()
  grad_fn_calls = []
  tx = optax.chain(sam(0.0), optax.adamw(1e-2))
  base = optax.adamw(1e-2)
  g = jax.grad(loss)(params, batches[0])
  u, _ = tx.update(g, tx.init(params), params,
                   grad_fn=lambda p: grad_fn_calls.append(1) or jax.grad(loss)(p, batches[0]))
  u_base, _ = base.update(g, base.init(params), params)
  jax.tree.map(np.testing.assert_array_equal, u, u_base)
  assert not grad_fn_calls  # No second pass at rho = 0.


def test_perturbation_norm_is_rho_and_computed_in_float32():
  params = {"w": jnp.array([1.0, 2.0], jnp.bfloat16)}
  grads = {"w": jnp.array([300.0, 400.0], jnp.bfloat16)}
  assert global_norm_f32(grads).dtype == jnp.float32
  np.testing.assert_allclose(global_norm_f32(grads), 500.0)
  e = sam_perturbation(1e-12)(grads, params, 0.5)
  assert e["w"].dtype == jnp.float32
  np.testing.assert_allclose(global_norm_f32(e), 0.5, rtol=1e-6)
  moved = add_f32(params, e)
  assert moved["w"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(moved["w"], np.float32), [1.3, 2.4], rtol=1e-2)


@pytest.mark.parametrize("kwargs, match", [
    ({"rho": -0.1}, "rho"), ({"rho": 0.1, "every_k_steps": 0}, "every_k_steps"),
    ({"rho": 0.1, "eps": 0.0}, "eps")])
def test_bad_arguments_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    sam(**kwargs)


def test_missing_grad_fn_is_a_clear_error():
  tx = sam(0.1)
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match="grad_fn"):
    tx.update(params, tx.init(params), params)
