"""The shard_map train step: device counts, m-sharpness groups, BatchNorm and dropout in SAM.

Each step is the one training runs: ``training.setup.build`` of a config (SGD at LR, no
weight decay, no clipping) with a small model.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from sam_jax import metrics as metrics_lib
from sam_jax import parallel
from sam_jax.config import defaults
from sam_jax.objectives.adversarial import PgdAttack
from sam_jax.training import setup, train_step

RHO, LR, BATCH = 0.1, 0.5, 16


class TinyNet(nn.Module):
  """Dense-GELU-(BatchNorm)-(Dropout)-Dense on flattened images; ``num_classes=0``: the
  features alone (a headless backbone)."""
  num_classes: int = 4
  batch_norm: bool = False
  dropout: float = 0.0
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.gelu(nn.Dense(8)(x.reshape((x.shape[0], -1))))
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x) if self.num_classes else x


def _batch(n=BATCH, seed=1):
  rng = np.random.default_rng(seed)
  return {"image": rng.normal(size=(n, 4, 4, 3)).astype(np.float32),
          "label": rng.integers(0, 4, size=n).astype(np.int32)}


def _config(rho=RHO, m=None, *, momentum=0.0, adversarial_training=None, loss="softmax_xent",
            **sam):
  """The default config with SAM at ``rho`` (m examples per perturbation; ``sam``: other
  ``config.sam`` keys, e.g. its kind), SGD at LR (constant, no weight decay, no clipping) on
  batches of BATCH 4x4 images."""
  config = default.get_config()
  config.update(image_size=4, batch_size=BATCH, eval_batch_size=BATCH, loss=loss)
  config.sam = defaults.sam(rho, m=m, **sam)
  config.optimizer = defaults.optimizer("sgd", LR, 0, "constant", weight_decay=0.0,
                                        grad_clip_norm=0.0, momentum=momentum)
  if adversarial_training:
    config.adversarial_training = adversarial_training
  return defaults.complete(config)


def _build(config, num_devices, model=None):
  """The Setup of ``config`` on the first ``num_devices`` devices (``model`` None: TinyNet)."""
  return setup.build(config, jax.devices()[:num_devices],
                     model=TinyNet() if model is None else model)


def _run(rho, m, num_devices, batch, model=None, attack=False):
  """One SGD(LR)+SAM step with m examples per perturbation on ``num_devices`` devices
  (with ``attack``: adversarial training on ATTACK's PGD images)."""
  run = _build(_config(rho, m, adversarial_training=ATTACK_PIXELS if attack else None),
               num_devices, model)
  state = parallel.replicate(run.init_state(jax.random.PRNGKey(0)), run.mesh)
  init = jax.device_get(state)
  state, metrics = run.train_step(state, parallel.shard_batch(batch, run.mesh))
  return init, jax.device_get(state), jax.device_get(metrics)


def _loss(model, params, x, y, variables=None, rng=None):
  out = model.apply({"params": params, **(variables or {})}, x, train=True,
                    rngs={"dropout": rng} if rng is not None else None,
                    mutable=list(variables or {}) or False)
  logits = out[0] if variables else out
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def _hand_sam_step(params, batch, m):
  """SGD step on the mean over groups of m examples of ∇L_k(w + rho g_k/||g_k||)."""
  def perturbed_gradient(x, y):
    loss = lambda p: _loss(TinyNet(), p, x, y)
    g = jax.grad(loss)(params)
    norm = np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree.leaves(g)))
    return jax.grad(loss)(jax.tree.map(lambda w, gi: w + RHO * gi / norm, params, g))

  grads = [perturbed_gradient(batch["image"][start:start + m], batch["label"][start:start + m])
           for start in range(0, len(batch["label"]), m)]
  mean = jax.tree.map(lambda *gs: np.mean(gs, axis=0), *grads)
  return jax.tree.map(lambda w, g: w - LR * g, params, mean)


def _assert_close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6), a, b)


@pytest.mark.parametrize("rho, m", [(RHO, BATCH), (0.0, None), (0.0, BATCH)])
def test_eight_devices_equal_one_device_on_the_global_batch(rho, m):
  """Global normalisation (m = global batch) and rho = 0 do not depend on the device count."""
  assert jax.device_count() == 8
  batch = _batch()
  _, s1, m1 = _run(rho, m, 1, batch)
  _, s8, m8 = _run(rho, m, 8, batch)
  _assert_close(s1.params, s8.params)
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-6)


def test_per_device_normalisation_averages_per_shard_sam_gradients():
  batch = _batch()
  init, s8, _ = _run(RHO, None, 8, batch)
  _assert_close(s8.params, _hand_sam_step(init.params, batch, m=BATCH // 8))
  _, s_global, _ = _run(RHO, BATCH, 8, batch)  # And global normalisation really differs.
  assert not np.allclose(s8.params["Dense_0"]["kernel"], s_global.params["Dense_0"]["kernel"],
                         atol=1e-6)


@pytest.mark.parametrize("m", [1, 4, 8])
def test_same_m_gives_the_same_update_on_1_2_4_8_devices(m):
  batch = _batch()
  init, _, _ = _run(RHO, m, 1, batch)
  expected = _hand_sam_step(init.params, batch, m)
  for n in (1, 2, 4, 8):
    _, state, _ = _run(RHO, m, n, batch)
    _assert_close(state.params, expected)


def test_bad_m_is_named_with_valid_values():
  with pytest.raises(ValueError, match=r"config.sam.m=3 .*\[1, 2, 4, 8, 16\]"):
    train_step.sam_groups(3, BATCH, 4)


def test_batchnorm_statistics_come_from_the_clean_pass_only():
  model = TinyNet(batch_norm=True)
  batch = _batch()
  init, state, _ = _run(RHO, None, 1, batch, model)
  x, y = batch["image"], batch["label"]

  def new_stats(params):
    _, upd = model.apply({"params": params, **init.model_state}, x, train=True,
                         mutable=["batch_stats"])
    return upd["batch_stats"]

  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               state.model_state["batch_stats"], new_stats(init.params))
  # Statistics at the perturbed point would differ: the test can tell them apart.
  g = jax.grad(lambda p: _loss(model, p, x, y, init.model_state))(init.params)
  norm = np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree.leaves(g)))
  perturbed = new_stats(jax.tree.map(lambda w, gi: w + RHO * gi / norm, init.params, g))
  assert not np.allclose(perturbed["BatchNorm_0"]["mean"],
                         state.model_state["batch_stats"]["BatchNorm_0"]["mean"], atol=1e-6)


def test_dropout_masks_are_identical_in_both_passes():
  model = TinyNet(dropout=0.5)
  batch = _batch()
  init, state, _ = _run(RHO, None, 1, batch, model)
  x, y = batch["image"], batch["label"]
  key = jax.random.fold_in(jax.random.fold_in(init.rng, 0), 0)  # step 0, group 0.

  def hand_step(key_clean, key_perturbed):
    g = jax.grad(lambda p: _loss(model, p, x, y, rng=key_clean))(init.params)
    norm = np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree.leaves(g)))
    w_adv = jax.tree.map(lambda w, gi: w + RHO * gi / norm, init.params, g)
    gp = jax.grad(lambda p: _loss(model, p, x, y, rng=key_perturbed))(w_adv)
    return jax.tree.map(lambda w, gi: w - LR * gi, init.params, gp)

  _assert_close(state.params, hand_step(key, key))
  other = hand_step(key, jax.random.fold_in(key, 1))  # A fresh mask would give another step.
  assert not np.allclose(other["Dense_1"]["kernel"], state.params["Dense_1"]["kernel"], atol=1e-5)


ATTACK_PIXELS = dict(epsilon=12.75, step_size=5.1, num_steps=3)  # config.adversarial_training.
ATTACK = PgdAttack.from_pixels(**ATTACK_PIXELS)  # epsilon 0.1, step 0.04 in model units.


def test_adversarial_training_takes_both_sam_passes_at_the_pgd_images():
  """With BatchNorm and dropout: the attack in train mode at w (keys folded from the group's
  key), then SAM on the PGD images, whose pass alone updates the BatchNorm statistics."""
  model, batch = TinyNet(batch_norm=True, dropout=0.25), _batch()
  batch["image"] = np.clip(batch["image"], -0.8, 0.8)  # Images live in [-1, 1].
  init, state, _ = _run(RHO, None, 1, batch, model, attack=True)
  key = jax.random.fold_in(jax.random.fold_in(init.rng, 0), 0)  # step 0, group 0.
  variables = dict(init.model_state)

  def logits(params, x, rng):
    return model.apply({"params": params, **variables}, x, train=True, rngs={"dropout": rng},
                       mutable=["batch_stats"])

  starts = jax.random.fold_in(jax.random.fold_in(init.rng, 0), train_step.ATTACK_STREAM)
  keys = jnp.stack([jax.random.fold_in(starts, i) for i in range(BATCH)])
  x = ATTACK.examples(lambda z: logits(init.params, z, jax.random.fold_in(key, 1))[0],
                      batch["image"], batch["label"], keys)
  assert np.max(np.abs(x - batch["image"])) <= ATTACK.epsilon + 1e-6
  assert np.max(np.abs(x - batch["image"])) > ATTACK.epsilon / 2  # It moved the images.
  y = batch["label"]
  g = jax.grad(lambda p: _loss(model, p, x, y, variables, key))(init.params)
  norm = np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree.leaves(g)))
  w_adv = jax.tree.map(lambda w, gi: w + RHO * gi / norm, init.params, g)
  gp = jax.grad(lambda p: _loss(model, p, x, y, variables, key))(w_adv)
  _assert_close(state.params, jax.tree.map(lambda w, gi: w - LR * gi, init.params, gp))
  _assert_close(state.model_state, logits(init.params, x, key)[1])
  clean = _run(RHO, None, 1, batch, model)[1]  # Without the attack: another step.
  assert not np.allclose(clean.params["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"])


@pytest.mark.parametrize("m", [2, BATCH])
def test_adversarial_training_is_the_same_on_1_and_8_devices(m):
  batch = _batch()
  _, s1, m1 = _run(RHO, m, 1, batch, attack=True)
  _, s8, m8 = _run(RHO, m, 8, batch, attack=True)
  _assert_close(s1.params, s8.params)
  np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)


def _all_reduced_elements(rho, m):
  """(number of all-reduce ops, elements they reduce) in the compiled 8-device step."""
  run = _build(_config(rho, m), 8)
  hlo = run.train_step.lower(run.abstract_state(), run.abstract_batch(True)).compile().as_text()
  ops = re.findall(r"= (\(.*?\)|\S+) all-reduce(?:-start)?\(", hlo)
  elements = sum(int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
                 for shapes in ops for dims in re.findall(r"\[([\d,]*)\]", shapes))
  return len(ops), elements


def test_per_device_sam_adds_compute_not_communication():
  base = _all_reduced_elements(0.0, None)
  assert base[1] >= 8 * 48 + 8 + 4 * 8 + 4  # The gradient is averaged once.
  assert _all_reduced_elements(RHO, None) == base
  # Global normalisation must average the clean gradient too: it does communicate more.
  assert _all_reduced_elements(RHO, BATCH)[1] > base[1]


@pytest.mark.parametrize("kind", ["sam", "looksam"])
def test_every_k_steps_alternating_programs_equal_the_one_with_a_cond(kind):
  """k=3: two compiled steps, chosen on the host, give the lax.cond program's states."""
  model, batches = TinyNet(batch_norm=True), [_batch(seed=s) for s in range(5)]
  config = _config(kind=kind, every_k_steps=3, looksam=dict(alpha=0.7))
  run = _build(config, 2, model)
  init = jax.device_get(run.init_state(jax.random.PRNGKey(0)))
  alternating = run.train_step
  assert isinstance(alternating, train_step.AlternatingStep)
  # The reference, which training does not run: one program, the optimizer's own lax.cond.
  cond = setup.build(config, jax.devices()[:2], model=model, alternate=False).train_step
  assert not isinstance(cond, train_step.AlternatingStep)
  states, rhos = {}, {}
  for name, step in (("cond", cond), ("alternating", alternating)):
    state, rhos[name] = parallel.replicate(init, run.mesh), []
    for i, batch in enumerate(batches):
      if i == 4:  # A state the step did not return (as after a restore): its step is read.
        state = parallel.replicate(jax.device_get(state), run.mesh)
      state, metrics = step(state, parallel.shard_batch(batch, run.mesh))
      rhos[name].append(float(metrics["rho"]))
    states[name] = jax.device_get(state)
  assert rhos["cond"] == rhos["alternating"]
  np.testing.assert_allclose(rhos["cond"], [RHO, 0, 0, RHO, 0], rtol=1e-7)
  _assert_close(states["cond"].params, states["alternating"].params)
  _assert_close(states["cond"].model_state, states["alternating"].model_state)
  assert int(states["alternating"].step) == 5


@pytest.mark.parametrize("num_devices, batch_norm", [(1, True), (8, False)])
def test_momentum_sam_takes_each_step_one_pass_ahead_along_the_momentum(num_devices, batch_norm):
  """Two steps of MSAM(SGD, momentum mu): step 0 at w0 (no momentum yet), step 1 at
  w1 - rho v1/||v1||, whose loss and BatchNorm statistics the step reports. (BatchNorm
  normalises each device's batch, so only the model without it is device-count free.)"""
  mu, model, batches = 0.9, TinyNet(batch_norm=batch_norm), [_batch(seed=s) for s in (1, 2)]
  run = _build(_config(kind="msam", momentum=mu), num_devices, model)
  init = jax.device_get(run.init_state(jax.random.PRNGKey(0)))
  state = parallel.replicate(init, run.mesh)
  for batch in batches:
    state, metrics = run.train_step(state, parallel.shard_batch(batch, run.mesh))
  state, metrics = jax.device_get((state, metrics))

  def loss_and_stats(params, model_state, batch):
    def f(p):
      out, upd = model.apply({"params": p, **model_state}, batch["image"], train=True,
                             mutable=list(model_state))
      return optax.softmax_cross_entropy_with_integer_labels(out, batch["label"]).mean(), upd
    (loss, upd), g = jax.value_and_grad(f, has_aux=True)(params)
    return loss, upd, g

  _, stats, v = loss_and_stats(init.params, init.model_state, batches[0])  # v1 = g0.
  w1 = jax.tree.map(lambda w, g: w - LR * g, init.params, v)
  norm = np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(v)))
  ahead = jax.tree.map(lambda w, x: w - RHO * x / norm, w1, v)
  loss, stats, g = loss_and_stats(ahead, stats, batches[1])
  w2 = jax.tree.map(lambda w, x, gi: w - LR * (mu * x + gi), w1, v, g)
  _assert_close(state.params, w2)
  _assert_close(state.model_state, stats)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)


def test_losses_equal_their_formulas():
  """softmax: -log softmax(z)_y; sigmoid: -sum_k [y_k log s(z_k) + (1 - y_k) log s(-z_k)]."""
  logits = np.random.default_rng(0).normal(size=(4, 5)) * 3
  labels = np.array([0, 3, 4, 1])
  onehot = np.eye(5)[labels]
  log_sigmoid = lambda z: -np.log1p(np.exp(-z))
  sigmoid = -np.sum(onehot * log_sigmoid(logits) + (1 - onehot) * log_sigmoid(-logits), -1)
  z = logits - logits.max(-1, keepdims=True)
  softmax = -(z[np.arange(4), labels] - np.log(np.exp(z).sum(-1)))
  for name, expected in (("sigmoid_xent", sigmoid), ("softmax_xent", softmax)):
    got = metrics_lib.cross_entropies(jnp.asarray(logits, jnp.float32), jnp.asarray(labels), name)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics_lib.cross_entropy(jnp.asarray(logits, jnp.float32),
                                                        jnp.asarray(labels), name),
                               expected.mean(), rtol=1e-5)
  with pytest.raises(ValueError, match="config.loss='hinge' .*sigmoid_xent"):
    _build(_config(loss="hinge"), 1)
