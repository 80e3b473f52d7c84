"""The shard_map train step on 8 emulated devices against 1 device and hand-computed SAM."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_jax import train_step
from sam_jax.optim import sam

RHO, LR = 0.1, 0.5


class TinyNet(nn.Module):
  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(4)(nn.gelu(nn.Dense(8)(x)))


def _setup(rho, sync, devices):
  model = TinyNet()
  mesh = train_step.create_mesh(devices)
  tx = optax.chain(sam(rho, sync=sync, axis_name=train_step.AXIS), optax.sgd(LR))
  state = train_step.init_state(model, tx, jax.random.PRNGKey(0), (4, 4, 3))
  step = train_step.make_train_step(model, tx, mesh, optax.constant_schedule(LR))
  return model, mesh, train_step.replicate(state, mesh), step


def _batch(n=16, seed=1):
  rng = np.random.default_rng(seed)
  return {"image": rng.normal(size=(n, 4, 4, 3)).astype(np.float32),
          "label": rng.integers(0, 4, size=n).astype(np.int32)}


def _run(rho, sync, devices, batch):
  _, mesh, state, step = _setup(rho, sync, devices)
  params0 = jax.device_get(state.params)
  state, metrics = step(state, train_step.shard_batch(batch, mesh))
  return params0, jax.device_get(state.params), jax.device_get(metrics)


@pytest.mark.parametrize("rho, sync", [(RHO, "global"), (0.0, "device"), (0.0, "global")])
def test_eight_devices_equal_one_device_on_the_global_batch(rho, sync):
  assert jax.device_count() == 8
  batch = _batch()
  _, p1, m1 = _run(rho, sync, jax.devices()[:1], batch)
  _, p8, m8 = _run(rho, sync, jax.devices(), batch)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p1, p8)
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-6)


def test_per_device_sync_averages_per_shard_sam_gradients():
  batch = _batch()
  params0, p8, _ = _run(RHO, "device", jax.devices(), batch)
  model = TinyNet()

  def loss(p, x, y):
    logits = model.apply({"params": p}, x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  shard_grads = []
  for i in range(8):
    x, y = batch["image"][2 * i:2 * i + 2], batch["label"][2 * i:2 * i + 2]
    g = jax.grad(loss)(params0, x, y)
    norm = np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree.leaves(g)))
    w_adv = jax.tree.map(lambda w, gi: w + RHO * gi / norm, params0, g)
    shard_grads.append(jax.grad(loss)(w_adv, x, y))
  mean_grad = jax.tree.map(lambda *gs: np.mean(gs, axis=0), *shard_grads)
  expected = jax.tree.map(lambda w, g: w - LR * g, params0, mean_grad)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), p8, expected)
  # Per-device and global normalisation really differ here.
  _, p_global, _ = _run(RHO, "global", jax.devices(), batch)
  assert not np.allclose(p8["Dense_0"]["kernel"], p_global["Dense_0"]["kernel"], atol=1e-6)
