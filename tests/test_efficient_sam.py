"""LookSAM, Momentum-SAM and AE-SAM against hand computations, against SAM, across devices."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from configs import default
from sam_jax.config import defaults, validation
from sam_jax.optim import aesam, looksam, momentum_sam, sam
from sam_jax.optim.msam import MomentumSamState
from sam_jax.optim.protocol import gradient_point
from sam_jax.training import setup

C = {"kernel": np.array([[3.0, 0.5], [1.0, 2.0]], np.float32), "bias": np.array([4.0, 0.2], np.float32)}
W = {"kernel": np.array([[1.0, -2.0], [0.5, 0.3]], np.float32), "bias": np.array([0.1, -1.0], np.float32)}
KEYS = ("bias", "kernel")  # Leaf order of the params dict.
RHO, LR = 0.2, 0.1
AESAM = dict(delta=0.9, lambda1=-1.0, lambda2=1.0)  # As _hand_aesam_decisions.


def _loss(params):
  """L = 1/2 Σ c ⊙ w²: ∇L = c ⊙ w, separable, so each step is checkable by hand."""
  return sum(0.5 * jnp.sum(c * w ** 2) for c, w in zip(jax.tree.leaves(C), jax.tree.leaves(params)))


def _flat(tree):
  return np.concatenate([np.ravel(tree[k]) for k in KEYS]).astype(np.float64)


def _run(tx, steps, *, take_sam=None, jit=False, point=lambda state, w: w):
  """Parameters after ``steps`` steps of ``tx`` on the quadratic, gradients at ``point``."""
  grad_fn = jax.grad(_loss)
  params = jax.tree.map(jnp.asarray, W)
  state = tx.init(params)

  def step(params, state, extra):
    u, state = tx.update(grad_fn(point(state, params)), state, params, grad_fn=grad_fn, **extra)
    return optax.apply_updates(params, u), state

  fn = jax.jit(step) if jit else step
  history = []
  for t in range(steps):
    params, state = fn(params, state, {} if take_sam is None else {"take_sam": take_sam(t)})
    history.append(jax.device_get(state))
  return _flat(jax.device_get(params)), history


c, w0 = _flat(C), _flat(W)


# LookSAM ---------------------------------------------------------------------------------

def _hand_looksam(steps, k, alpha):
  w, d = w0.copy(), np.zeros_like(w0)
  for t in range(steps):
    g = c * w
    if t % k == 0:
      g_s = c * (w + RHO * g / np.linalg.norm(g))
      g_v = g_s - (g_s @ g) / (g @ g) * g
      d, u = g_v / np.linalg.norm(g_v), g_s
    else:
      u = g + alpha * np.linalg.norm(g) * d
    w = w - LR * u
  return w


@pytest.mark.parametrize("mode", ["host", "cond"])
def test_looksam_reuses_the_orthogonal_direction_between_full_steps(mode):
  """k = 3 over 7 steps: SAM on 0, 3, 6, g + alpha ||g|| d in between, d from the last full step."""
  tx = optax.chain(looksam(RHO, alpha=0.7, every_k_steps=3), optax.sgd(LR))
  take_sam = (lambda t: t % 3 == 0) if mode == "host" else None
  got, history = _run(tx, 7, take_sam=take_sam, jit=take_sam is None)
  np.testing.assert_allclose(got, _hand_looksam(7, 3, 0.7), rtol=1e-5)
  np.testing.assert_allclose([float(h[0].rho) for h in history], [RHO, 0, 0, RHO, 0, 0, RHO],
                             rtol=1e-6)
  # The reuse term matters: alpha = 0 (plain gradient between full steps) is another path.
  assert not np.allclose(got, _hand_looksam(7, 3, 0.0), rtol=1e-4)


def test_looksam_reuse_steps_take_no_second_pass():
  calls = []
  grad_fn = jax.grad(_loss)
  tx = looksam(RHO, alpha=0.7, every_k_steps=3)
  params = jax.tree.map(jnp.asarray, W)
  state = tx.init(params)
  for t in range(6):
    _, state = tx.update(grad_fn(params), state, params,
                         grad_fn=lambda p: calls.append(1) or grad_fn(p), take_sam=t % 3 == 0)
  assert len(calls) == 2


def test_looksam_with_k_1_is_sam_exactly():
  runs = [_run(optax.chain(t, optax.adam(1e-2)), 5)[0]
          for t in (looksam(RHO, alpha=0.7, every_k_steps=1), sam(RHO))]
  np.testing.assert_array_equal(runs[0], runs[1])


# Momentum-SAM ----------------------------------------------------------------------------

def _hand_msam_sgd(steps, rho, mu):
  w, v = w0.copy(), np.zeros_like(w0)
  for _ in range(steps):
    e = -rho * v / np.linalg.norm(v) if v.any() else 0.0
    v = mu * v + c * (w + e)
    w = w - LR * v
  return w


def _hand_msam_adamw(steps, rho, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, wd=1e-2):
  w, m, n = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
  for t in range(1, steps + 1):
    e = -rho * m / np.linalg.norm(m) if m.any() else 0.0
    g = c * (w + e)
    m, n = b1 * m + (1 - b1) * g, b2 * n + (1 - b2) * g * g
    w = w - lr * ((m / (1 - b1 ** t)) / (np.sqrt(n / (1 - b2 ** t)) + eps) + wd * w)
  return w


def test_msam_sgd_ascends_along_the_negative_heavy_ball_buffer():
  tx = momentum_sam(optax.sgd(LR, momentum=0.9), RHO)
  got, _ = _run(tx, 5, point=gradient_point)
  np.testing.assert_allclose(got, _hand_msam_sgd(5, RHO, 0.9), rtol=1e-5)
  assert not np.allclose(got, _hand_msam_sgd(5, 0.0, 0.9), rtol=1e-4)  # The ascent matters.


def test_msam_adamw_ascends_along_the_negative_first_moment():
  tx = momentum_sam(optax.adamw(1e-2, weight_decay=1e-2), RHO)
  got, _ = _run(tx, 5, point=gradient_point, jit=True)
  np.testing.assert_allclose(got, _hand_msam_adamw(5, RHO), rtol=1e-5)
  assert not np.allclose(got, _hand_msam_adamw(5, 0.0), rtol=1e-4)


def test_msam_composes_with_clipping_and_needs_no_second_pass():
  inner = optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(LR, momentum=0.9))
  tx = momentum_sam(inner, RHO)
  params = jax.tree.map(jnp.asarray, W)
  state = tx.init(params)
  for _ in range(3):  # No grad_fn at all.
    u, state = tx.update(jax.grad(_loss)(gradient_point(state, params)), state, params)
    params = optax.apply_updates(params, u)
  # By hand: the clipped gradient enters the buffer.
  w, v = w0.copy(), np.zeros_like(w0)
  for _ in range(3):
    g = c * (w + (-RHO * v / np.linalg.norm(v) if v.any() else 0.0))
    v = 0.9 * v + g * min(1.0, 0.5 / np.linalg.norm(g))
    w = w - LR * v
  np.testing.assert_allclose(_flat(jax.device_get(params)), w, rtol=1e-5)


def test_msam_with_rho_zero_is_the_base_optimizer_and_other_states_leave_w_alone():
  base = optax.adamw(1e-2)
  got, _ = _run(momentum_sam(base, 0.0), 4, point=gradient_point)
  np.testing.assert_array_equal(got, _run(base, 4)[0])
  params = jax.tree.map(jnp.asarray, W)
  assert gradient_point(sam(RHO).init(params), params) is params


def test_msam_without_a_momentum_buffer_is_a_clear_error():
  with pytest.raises(ValueError, match="momentum buffer.*found none"):
    momentum_sam(optax.sgd(LR), RHO).init(jax.tree.map(jnp.asarray, W))


# AE-SAM ----------------------------------------------------------------------------------

PLANTED = np.array([1.0, 1.0, 3.0, 1.0, 0.8, 1.2, 0.5, 2.5, 1.0, 1.1])  # ||g_t|| per step.


def _hand_aesam_decisions(norms, num_train_steps, delta=0.9, lambda1=-1.0, lambda2=1.0):
  mean = var = 0.0
  out = []
  for t, z in enumerate(np.square(norms)):
    mean = delta * mean + (1 - delta) * z
    var = delta * var + (1 - delta) * (z - mean) ** 2
    frac = min(t / num_train_steps, 1.0)
    out.append(z >= mean + (frac * lambda1 + (1 - frac) * lambda2) * np.sqrt(var))
  return out


@pytest.mark.parametrize("jit", [False, True])
def test_aesam_decisions_on_a_planted_gradient_norm_sequence(jit):
  """Gradients g_t = s_t u are planted; grad_fn(p) = p makes a SAM step return w + e."""
  tx = aesam(RHO, num_train_steps=len(PLANTED), **AESAM)
  params = {"w": jnp.array([0.5, -1.0, 2.0])}
  unit = jnp.array([0.6, 0.0, -0.8])
  update = lambda g, state: tx.update(g, state, params, grad_fn=lambda p: p)
  update = jax.jit(update) if jit else update
  state, decisions = tx.init(params), []
  for s in PLANTED:
    g = {"w": s * unit}
    out, state = update(g, state)
    took = bool(state.rho > 0)
    decisions.append(took)
    expected = params["w"] + RHO * unit if took else g["w"]
    np.testing.assert_allclose(out["w"], expected, rtol=1e-6)
  expected = _hand_aesam_decisions(PLANTED, len(PLANTED))
  assert decisions == expected
  assert 0 < sum(expected) < len(expected)  # The sequence exercises both branches.
  assert int(state.sam_steps) == sum(expected)


def test_aesam_with_the_trigger_always_on_is_sam():
  runs = [_run(optax.chain(t, optax.adam(1e-2)), 5, jit=True)[0]
          for t in (aesam(RHO, 5, delta=0.9, lambda1=-1e30, lambda2=-1e30), sam(RHO))]
  np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("make, match", [
    (lambda: looksam(0.1, alpha=0.7, every_k_steps=0), "every_k_steps"),
    (lambda: looksam(0.1, alpha=-1.0, every_k_steps=5), "alpha"),
    (lambda: looksam(-0.1, alpha=0.7, every_k_steps=5), "rho"),
    (lambda: momentum_sam(optax.adamw(1e-3), -1.0), "rho"),
    (lambda: aesam(0.1, 100, delta=1.0, lambda1=-1.0, lambda2=1.0), "delta"),
    (lambda: aesam(0.1, 0, **AESAM), "num_train_steps"),
])
def test_bad_arguments_are_named(make, match):
  with pytest.raises(ValueError, match=match):
    make()


# Devices ---------------------------------------------------------------------------------

def _data_parallel(make_tx, num_devices, steps=4, seed=0):
  """Least squares on a 16-example batch split over ``num_devices``: the final parameters."""
  rng = np.random.default_rng(seed)
  xs = rng.normal(size=(steps, 16, 3)).astype(np.float32)
  ys = rng.normal(size=(steps, 16)).astype(np.float32)
  mesh = Mesh(np.array(jax.devices()[:num_devices]), ("d",))
  tx = make_tx("d")

  def step(params, state, x, y):
    loss = lambda p: 0.5 * jnp.mean(jnp.square(x @ p["w"] + p["b"] - y))
    u, state = tx.update(jax.grad(loss)(gradient_point(state, params)), state, params,
                         grad_fn=jax.grad(loss))
    return optax.apply_updates(params, u), state

  sharded = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P(), P("d"), P("d")),
                                  out_specs=(P(), P()), check_vma=False))
  params = {"w": jnp.array([0.3, -0.2, 0.5]), "b": jnp.zeros(())}
  state = tx.init(params)
  for x, y in zip(xs, ys):
    params, state = sharded(params, state, x, y)
  return jax.device_get(params)


GLOBAL = {  # SAM on the global batch (sync over the data axis), or no m at all (MSAM).
    "looksam": lambda a: optax.chain(
        looksam(RHO, alpha=0.7, every_k_steps=2, axis_name=a, sync_axis_name=a), optax.sgd(LR)),
    "msam_per_device": lambda a: momentum_sam(optax.sgd(LR, momentum=0.9), RHO, axis_name=a),
    "aesam": lambda a: optax.chain(aesam(RHO, 4, **AESAM, axis_name=a, sync_axis_name=a), optax.sgd(LR)),
}


@pytest.mark.parametrize("name", sorted(GLOBAL))
def test_eight_devices_equal_one_device(name):
  one, eight = (_data_parallel(GLOBAL[name], n) for n in (1, 8))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), one, eight)


def test_per_device_looksam_differs_from_global():
  """With m = the per-device batch the ascent differs, as for SAM: the test above can fail."""
  per_device = _data_parallel(lambda a: optax.chain(looksam(RHO, alpha=0.7, every_k_steps=2, axis_name=a),
                                                    optax.sgd(LR)), 8)
  assert not np.allclose(per_device["w"], _data_parallel(GLOBAL["looksam"], 8)["w"], atol=1e-6)


# Configs ---------------------------------------------------------------------------------

def _config(kind, **updates):
  config = default.get_config()
  config.sam.kind = kind
  for key, value in updates.items():
    *path, leaf = key.split(".")
    section = config
    for part in path:
      section = section[part]
    section[leaf] = value
  return defaults.complete(config)


def test_kinds_get_their_every_k_steps_and_momentum_sam_wraps_clipping_and_the_base():
  assert [_config(k).sam.every_k_steps for k in ("sam", "looksam", "msam", "aesam")] == [
      1, defaults.LOOKSAM_K, 1, 1]
  assert _config("looksam", **{"sam.every_k_steps": 2}).sam.every_k_steps == 2
  opt_state = lambda kind: setup.build(_config(kind), jax.devices()[:1],
                                       num_classes=10).abstract_state().opt_state
  sam_state = opt_state("sam")
  assert len(sam_state) == 3  # (SAM, clipping, AdamW): the layout of existing checkpoints.
  msam_state = opt_state("msam")
  assert isinstance(msam_state, MomentumSamState) and len(msam_state.inner) == 2


@pytest.mark.parametrize("kind, updates, match", [
    ("msam", {"sam.every_k_steps": 2}, "every_k_steps=2 must be 1"),
    ("aesam", {"sam.every_k_steps": 2}, "every_k_steps=2 must be 1"),
    ("msam", {"optimizer.name": "sgd", "optimizer.momentum": 0.0}, "momentum"),
    ("looksam", {"sam.looksam.alpha": -0.1}, r"looksam\.alpha"),
    ("aesam", {"sam.aesam.delta": 1.0}, r"aesam\.delta"),
    ("looksam", {"sam.looksam_alpha": -0.1}, r"looksam\.alpha"),  # The old key, moved.
    ("aesam", {"sam.aesam_delta": 1.0}, r"aesam\.delta"),
])
def test_bad_settings_of_a_kind_are_named(kind, updates, match):
  with pytest.raises(ValueError, match=match):
    validation.validate(_config(kind, **updates), 1)
