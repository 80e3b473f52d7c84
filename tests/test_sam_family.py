"""ASAM, GSAM and every-k-step SAM against hand-derived values and against SAM."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_jax.optim import asam, gsam, sam
from sam_jax.optim.surrogate_gap_sam import gsam_rho_schedule

C = {"kernel": np.array([[3.0, 0.5], [1.0, 2.0]], np.float32), "bias": np.array([4.0, 0.2], np.float32)}
W = {"kernel": np.array([[1.0, -2.0], [0.5, 0.3]], np.float32), "bias": np.array([0.1, -1.0], np.float32)}
RHO, LR = 0.2, 0.1

GSAM = dict(alpha=0.4, decompose="group")


def _loss(params):
  """L = 1/2 Σ c ⊙ w²: ∇L = c ⊙ w, separable, so each leaf's math is checkable by hand."""
  return sum(0.5 * jnp.sum(c * w ** 2) for c, w in zip(jax.tree.leaves(C), jax.tree.leaves(params)))


def _one_step(transform, params=W):
  params = jax.tree.map(jnp.asarray, params)
  tx = optax.chain(transform, optax.sgd(LR))
  u, _ = tx.update(jax.grad(_loss)(params), tx.init(params), params, grad_fn=jax.grad(_loss))
  return jax.device_get(optax.apply_updates(params, u))


def test_asam_quadratic_step_equals_hand_derivation():
  eta = 0.01
  g = {k: C[k] * W[k] for k in W}
  t = {"kernel": np.abs(W["kernel"]) + eta, "bias": np.ones(2, np.float32)}  # Weights only.
  tg_norm = np.sqrt(sum(np.sum((t[k] * g[k]) ** 2) for k in W))
  e = {k: RHO * t[k] ** 2 * g[k] / tg_norm for k in W}
  expected = {k: W[k] - LR * C[k] * (W[k] + e[k]) for k in W}
  got = _one_step(asam(RHO, eta=eta))
  for k in W:
    np.testing.assert_allclose(got[k], expected[k], rtol=1e-6)
  # Masking every leaf in gives T = |w| + eta everywhere: a different step.
  all_in = _one_step(asam(RHO, eta=eta, mask=lambda p: jax.tree.map(lambda _: True, p)))
  assert not np.allclose(all_in["bias"], got["bias"])


def test_gsam_quadratic_step_equals_hand_derivation():
  alpha, rho_max, rho_min, lr_max, lr_min = 0.4, 0.3, 0.1, 1.0, 0.0
  lr_fn = lambda count: 0.5  # Halfway: rho = 0.2.
  g = np.concatenate([(C[k] * W[k]).ravel() for k in ("bias", "kernel")])
  w = np.concatenate([W[k].ravel() for k in ("bias", "kernel")])
  c = np.concatenate([C[k].ravel() for k in ("bias", "kernel")])
  rho = rho_min + (rho_max - rho_min) * 0.5
  gp = c * (w + rho * g / np.linalg.norm(g))
  u = gp / np.linalg.norm(gp)
  g_gsam = gp - alpha * (g - (g @ u) * u)
  expected = w - LR * g_gsam
  got = _one_step(gsam(lr_fn, rho_max=rho_max, rho_min=rho_min, lr_max=lr_max, lr_min=lr_min,
                       alpha=alpha, decompose="group"))
  np.testing.assert_allclose(np.concatenate([got["bias"], got["kernel"].ravel()]), expected,
                             rtol=1e-6)


def _gsam_hand(g, gp, alpha):
  u = gp / np.linalg.norm(gp)
  return gp - alpha * (g - (g @ u) * u)


@pytest.mark.parametrize("decompose", ["group", "global"])
def test_gsam_on_4_devices_equals_hand_computation(decompose):
  """Each device d has its own loss 1/2 Σ c_d (w - a_d)²: its own g, e and g_p.

  ``group`` (big_vision's per-worker GSAM) averages the 4 per-device g_gsam;
  ``global`` decomposes the averaged g_p and g once. The two differ.
  """
  n, alpha, rho = 4, 0.6, 0.3
  rng = np.random.default_rng(0)
  c = rng.uniform(0.5, 3.0, (n, 5)).astype(np.float32)
  a = rng.normal(size=(n, 5)).astype(np.float32)
  w = rng.normal(size=5).astype(np.float32)
  tx = gsam(lambda count: 1.0, rho_max=rho, rho_min=rho, lr_max=1.0, alpha=alpha,
            decompose=decompose, axis_name="d")

  def per_device(c_d, a_d):
    grad_fn = jax.grad(lambda p: 0.5 * jnp.sum(c_d[0] * (p["w"] - a_d[0]) ** 2))
    params = {"w": jnp.asarray(w)}
    out, _ = tx.update(grad_fn(params), tx.init(params), params, grad_fn=grad_fn)
    return out["w"][None]

  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:n]), ("d",))
  P = jax.sharding.PartitionSpec
  got = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("d"), P("d")),
                              out_specs=P("d"), check_vma=False))(c, a)
  w64, c64, a64 = w.astype(np.float64), c.astype(np.float64), a.astype(np.float64)
  g = c64 * (w64 - a64)                                                   # [n, 5]
  e = rho * g / np.linalg.norm(g, axis=1, keepdims=True)                  # Per device.
  gp = c64 * (w64 + e - a64)
  if decompose == "group":
    expected = np.mean([_gsam_hand(g[d], gp[d], alpha) for d in range(n)], axis=0)
  else:
    expected = _gsam_hand(g.mean(0), gp.mean(0), alpha)
  other = (_gsam_hand(g.mean(0), gp.mean(0), alpha) if decompose == "group" else
           np.mean([_gsam_hand(g[d], gp[d], alpha) for d in range(n)], axis=0))
  assert np.abs(expected - other).max() > 1e-2  # The two orders are distinguishable here.
  for d in range(n):  # Every device returns the same averaged gradient.
    np.testing.assert_allclose(np.asarray(got)[d], expected, rtol=1e-5, atol=1e-6)


def test_gsam_with_alpha_zero_and_constant_rho_is_sam_exactly():
  lr_fn = optax.warmup_cosine_decay_schedule(0.0, 1.0, 2, 10)
  params = jax.tree.map(jnp.asarray, W)
  grad_fn = jax.grad(_loss)
  outs = []
  for transform in (sam(RHO), gsam(lr_fn, rho_max=RHO, rho_min=RHO, lr_max=1.0, alpha=0.0,
                                              decompose="group")):
    tx = optax.chain(transform, optax.adam(1e-2))
    p, s = params, tx.init(params)
    for _ in range(5):
      u, s = tx.update(grad_fn(p), s, p, grad_fn=grad_fn)
      p = optax.apply_updates(p, u)
    outs.append(p)
  jax.tree.map(np.testing.assert_array_equal, outs[0], outs[1])


def test_gsam_rho_at_warmup_peak_and_end_equals_formula():
  peak, end, warmup, total = 3e-3, 1e-5, 10, 100
  lr_fn = optax.join_schedules([optax.linear_schedule(0.0, peak, warmup),
                                optax.linear_schedule(peak, end, total - warmup)], [warmup])
  rho_max, rho_min = 0.6, 0.1
  rho = gsam_rho_schedule(lr_fn, rho_max=rho_max, rho_min=rho_min, lr_max=peak, lr_min=end)
  np.testing.assert_allclose(rho(warmup), rho_max, rtol=1e-6)      # Peak.
  np.testing.assert_allclose(rho(total), rho_min, rtol=1e-6)       # End.
  np.testing.assert_allclose(rho(0), rho_min, rtol=1e-6)           # Warm-up clamps at rho_min.
  mid = warmup + (total - warmup) // 2
  expected = rho_min + (rho_max - rho_min) * (lr_fn(mid) - end) / (peak - end)
  np.testing.assert_allclose(rho(mid), expected, rtol=1e-6)
  np.testing.assert_allclose(rho(5), max(rho_min, rho_min + (rho_max - rho_min) *
                                         (lr_fn(5) - end) / (peak - end)), rtol=1e-6)


def test_every_k_steps_takes_sam_steps_on_multiples_of_k_only():
  params = jax.tree.map(jnp.asarray, W)
  grad_fn = jax.grad(_loss)
  tx = sam(RHO, every_k_steps=3)
  state = tx.init(params)
  e = jax.tree.map(lambda g: RHO * g / np.sqrt(sum(np.sum(x ** 2) for x in jax.tree.leaves(grad_fn(params)))),
                   grad_fn(params))
  sam_grad = grad_fn(jax.tree.map(lambda w, d: w + d, params, e))
  update = jax.jit(lambda g, s: tx.update(g, s, params, grad_fn=grad_fn))
  for step in range(6):
    g, state = update(grad_fn(params), state)
    expected = sam_grad if step % 3 == 0 else grad_fn(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), g, expected)


@pytest.mark.parametrize("make, match", [
    (lambda: asam(0.1, eta=-1.0), "eta"),
    (lambda: gsam(lambda c: 0.1, rho_max=0.1, rho_min=0.2, lr_max=1.0, **GSAM), "rho_min"),
    (lambda: gsam(lambda c: 0.1, rho_max=0.1, rho_min=0.0, lr_max=1.0, lr_min=2.0, **GSAM),
     "lr_min"),
    (lambda: gsam(lambda c: 0.1, rho_max=0.1, rho_min=0.0, lr_max=1.0, alpha=0.4,
                  decompose="x"), "decompose"),
])
def test_bad_arguments_are_named(make, match):
  with pytest.raises(ValueError, match=match):
    make()
