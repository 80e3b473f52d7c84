"""Contrastive pretraining, linear probe and fine-tune: NT-Xent against a hand computation, SAM
on its objective on 1 and 8 devices, the two views, exact resume, a probe from the export."""

import itertools
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
import tensorflow as tf

from configs import cifar10_contrastive
from sam_jax import parallel
from sam_jax.checkpoints import loading, npz
from sam_jax.config import defaults, validation
from sam_jax.data import input_pipeline, preprocessing, views
from sam_jax.models import param_blocks
from sam_jax.models.projection import Projected
from sam_jax.objectives.contrastive import nt_xent
from sam_jax.training import loop, setup
from tests.test_input_pipeline import make_folder
from tests.test_train_step import TinyNet

RHO, LR, BATCH, TAU = 0.1, 0.5, 16, 0.5


def _hand_nt_xent(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
  """SimCLR eq. 1 anchor by anchor: -log(exp(s_ap) / sum_{k != a} exp(s_ak)), averaged."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  u = z / np.linalg.norm(z, axis=1, keepdims=True)
  n, losses = len(z1), []
  for a in range(2 * n):
    s = u @ u[a] / tau
    others = [k for k in range(2 * n) if k != a]
    losses.append(-(s[(a + n) % (2 * n)] - np.log(np.sum(np.exp(s[others])))))
  return float(np.mean(losses))


def test_nt_xent_equals_the_hand_computation_and_ignores_the_order_of_examples():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(2, 5, 3)).astype(np.float32) * 2
  loss, accuracy = nt_xent(jnp.asarray(z1), jnp.asarray(z2), TAU)
  np.testing.assert_allclose(loss, _hand_nt_xent(z1, z2, TAU), rtol=1e-5)
  perm = rng.permutation(5)
  permuted = nt_xent(jnp.asarray(z1[perm]), jnp.asarray(z2[perm]), TAU)
  np.testing.assert_allclose(permuted, (loss, accuracy), rtol=1e-6)
  # Identical views score 1 at a low temperature, and their loss tends to 0.
  assert float(nt_xent(jnp.asarray(z1), jnp.asarray(z1), 0.01)[1]) == 1.0
  swapped = nt_xent(jnp.asarray(z1), jnp.asarray(z2[::-1].copy()), TAU)[0]
  assert not np.isclose(swapped, loss)  # The pairing matters.


def _batch(seed=1):
  rng = np.random.default_rng(seed)
  image = lambda: rng.uniform(-1, 1, size=(BATCH, 4, 4, 3)).astype(np.float32)
  return {"image": image(), "image2": image(), "label": rng.integers(0, 4, BATCH).astype(np.int32)}


def _sgd_config(stage: str, **sam):
  """configs/cifar10_contrastive.py's ``stage`` with SAM(RHO) and plain SGD at LR on 4 px
  images, batch BATCH."""
  config = defaults.complete(cifar10_contrastive.get_config(stage))
  config.update(image_size=4, batch_size=BATCH, eval_batch_size=BATCH)
  config.contrastive.temperature = TAU
  config.sam.update(rho=RHO, **sam)
  config.optimizer = defaults.optimizer("sgd", LR, 0, "constant", weight_decay=0.0,
                                        grad_clip_norm=0.0, momentum=0.0)
  return config


def _contrastive_step(m, num_devices, model, batch):
  run = setup.build(_sgd_config("pretrain", m=m), jax.devices()[:num_devices], model=model)
  state = run.init_state(jax.random.PRNGKey(0))
  init = jax.device_get(state)
  state, metrics = run.train_step(parallel.replicate(state, run.mesh),
                                  parallel.shard_batch(batch, run.mesh))
  return init, jax.device_get(state), jax.device_get(metrics)


def _assert_close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6), a, b)


@pytest.mark.parametrize("m, batch_norm", [(2, True), (4, False), (BATCH, False)])
def test_contrastive_sam_step_is_the_same_on_1_and_8_devices(m, batch_norm):
  """m = 2: 8 groups vmapped on one device, one per device on 8; m = 4: two devices per
  group; m = 16: one group, whose 8 devices gather each other's projections. (BatchNorm
  normalises each device's views: device-count free only while a group is on one device.)"""
  model, batch = Projected(TinyNet(num_classes=0, batch_norm=batch_norm), (8, 4), batch_norm), _batch()
  _, s1, m1 = _contrastive_step(m, 1, model, batch)
  _, s8, m8 = _contrastive_step(m, 8, model, batch)
  _assert_close(s1.params, s8.params)
  _assert_close(s1.model_state, s8.model_state)
  np.testing.assert_allclose((m1["loss"], m1["accuracy"]), (m8["loss"], m8["accuracy"]),
                             rtol=1e-5)


def test_both_sam_passes_minimise_nt_xent_of_the_group():
  """One group of all 16 examples, gathered over 8 devices, equals SAM by hand on NT-Xent."""
  model, batch = Projected(TinyNet(num_classes=0), (8, 4), batch_norm=False), _batch()
  init, state, metrics = _contrastive_step(BATCH, 8, model, batch)
  views_ = np.concatenate([batch["image"], batch["image2"]])

  def loss(params):
    z = model.apply({"params": params}, views_, train=True)
    return nt_xent(z[:BATCH], z[BATCH:], TAU)[0]

  g = jax.grad(loss)(init.params)
  norm = np.sqrt(sum(np.sum(np.square(v)) for v in jax.tree.leaves(g)))
  gp = jax.grad(loss)(jax.tree.map(lambda w, gi: w + RHO * gi / norm, init.params, g))
  _assert_close(state.params, jax.tree.map(lambda w, gi: w - LR * gi, init.params, gp))
  np.testing.assert_allclose(metrics["loss"], loss(init.params), rtol=1e-5)


def test_the_backbone_keeps_the_classifier_names_and_the_head_is_under_projection():
  tiny = dict(hidden_size=16, mlp_dim=32, num_heads=2, num_layers=1)

  def shapes(stage):
    config = cifar10_contrastive.get_config(stage)
    config.model.update(tiny)
    model = loading.create_model(config)
    return param_blocks.flatten(jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))["params"])

  pretrain, probe = shapes("pretrain"), shapes("probe")
  backbone = {k: v for k, v in pretrain.items() if not k.startswith("projection/")}
  assert backbone == {k: v for k, v in probe.items() if not k.startswith("head/")}
  assert sorted(set(pretrain) - set(backbone)) == [
      "projection/BatchNorm_0/bias", "projection/BatchNorm_0/scale", "projection/BatchNorm_1/bias",
      "projection/BatchNorm_1/scale", "projection/Dense_0/kernel", "projection/Dense_1/kernel"]
  assert (pretrain["projection/Dense_0/kernel"].shape, pretrain["projection/Dense_1/kernel"].shape
          ) == ((16, 128), (128, 128))


def test_linear_probe_leaves_the_backbone_and_its_statistics_bitwise_unchanged():
  """SAM (rho > 0) and AdamW with weight decay: only the head moves; BatchNorm runs on its
  running statistics (which stay), dropout is off."""
  config = defaults.complete(cifar10_contrastive.get_config("probe"))
  config.sam.rho, config.trainable = RHO, "^Dense_1/"
  config.optimizer = defaults.optimizer("adamw", 0.1, 0, "constant", weight_decay=0.5,
                                        grad_clip_norm=1.0)
  model = TinyNet(batch_norm=True, dropout=0.5)
  config.update(image_size=4, batch_size=BATCH, eval_batch_size=BATCH)
  run = setup.build(config, model=model)
  init = jax.device_get(run.init_state(jax.random.PRNGKey(0)))
  init = init.replace(model_state={"batch_stats": jax.tree.map(  # Not the init's 0 and 1.
      lambda x: x + 0.25, init.model_state["batch_stats"])})
  state, losses = parallel.replicate(init, run.mesh), []
  for seed in range(3):
    state, metrics = run.train_step(state, parallel.shard_batch(_batch(seed), run.mesh))
    losses.append(float(metrics["loss"]))
  state = jax.device_get(state)
  for name in ("Dense_0", "BatchNorm_0"):
    jax.tree.map(np.testing.assert_array_equal, state.params[name], init.params[name])
  jax.tree.map(np.testing.assert_array_equal, state.model_state, init.model_state)
  assert np.all(state.params["Dense_1"]["kernel"] != init.params["Dense_1"]["kernel"])
  # Inference mode: the first step's loss is that of the model with train=False.
  logits = model.apply({"params": init.params, **init.model_state}, _batch(0)["image"],
                       train=False)
  np.testing.assert_allclose(losses[0], optax.softmax_cross_entropy_with_integer_labels(
      logits, _batch(0)["label"]).mean(), rtol=1e-6)
  config.trainable = "^nothing/"
  with pytest.raises(ValueError, match=r"config.trainable='\^nothing/' matches no parameter"):
    setup.trainable(config, init.params)


def test_linear_probe_is_the_same_on_1_and_8_devices():
  """Three probe steps with SAM groups of m = 2 (8 vmapped groups on one device, one group
  per device on 8): the same head, and the same frozen backbone."""
  config = defaults.complete(cifar10_contrastive.get_config("probe"))
  config.sam.rho, config.trainable = RHO, "^Dense_1/"
  model, finals = TinyNet(batch_norm=True, dropout=0.5), []
  config.update(image_size=4, batch_size=BATCH, eval_batch_size=BATCH)
  config.sam.m = 2
  for num_devices in (1, 8):
    run = setup.build(config, jax.devices()[:num_devices], model=model)
    state = parallel.replicate(run.init_state(jax.random.PRNGKey(0)), run.mesh)
    for seed in range(3):
      state, _ = run.train_step(state, parallel.shard_batch(_batch(seed), run.mesh))
    finals.append(jax.device_get(state))
  _assert_close(finals[0].params, finals[1].params)
  jax.tree.map(np.testing.assert_array_equal, finals[0].model_state, finals[1].model_state)
  assert np.any(finals[0].params["Dense_1"]["kernel"] != 0)


def _view_config(root: str, **contrastive) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      dataset="folder", data_dir=root, train_split="train", eval_split="test", image_size=8,
      pp=dict(eval_resize=8), contrastive=dict(method="simclr", **contrastive)))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
  root = str(tmp_path_factory.mktemp("folder"))
  make_folder(root, "train", ["a", "b", "c", "d"], 6)
  make_folder(root, "test", ["a", "b", "c", "d"], 2)
  return root


def test_two_views_are_deterministic_resume_exactly_and_differ(folder):
  config = _view_config(folder)
  stream = lambda start=0: list(itertools.islice(input_pipeline.train_iterator(
      config, local_batch_size=4, seed=0, start_step=start), 5 - start))
  full, late = stream(), stream(3)
  for a, b in zip(full[3:], late):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  for batch in full:
    assert set(batch) == {"image", "image2", "label"}
    assert batch["image2"].shape == batch["image"].shape == (4, 8, 8, 3)
    assert np.all(np.abs(batch["image2"]) <= 1) and not np.allclose(batch["image"],
                                                                     batch["image2"])
  config.contrastive.method = ""
  single = next(input_pipeline.train_iterator(config, local_batch_size=4, seed=0))
  assert set(single) == {"image", "label"}
  np.testing.assert_array_equal(single["label"], full[0]["label"])


def test_a_view_is_the_training_crop_then_simclrs_colour_distortion():
  """Without distortion a view is the crop of its own seed; grey with probability 1."""
  image = tf.constant(np.random.default_rng(0).integers(0, 256, (12, 10, 3), np.uint8))
  data = tf.io.encode_png(image)
  options, seed = preprocessing.PreprocessOptions(image_size=8), tf.constant([5, 7], tf.int64)
  plain = views.decode_two_views(data, seed, options, views.ViewOptions(0.0, 0.0, 0.0))
  for key, view_seed in zip(views.VIEW_KEYS, tf.random.experimental.stateless_split(seed, 2)):
    crop_seed = tf.random.experimental.stateless_split(view_seed, 2)[0]
    np.testing.assert_allclose(
        plain[key], preprocessing.decode_and_inception_crop(data, crop_seed, options), atol=1e-6)
  grey = views.decode_two_views(data, seed, options, views.ViewOptions(0.5, 1.0, 1.0))["image"]
  np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-6)
  jittered = views.decode_two_views(data, seed, options, views.ViewOptions(1.0, 1.0, 0.0))
  assert not np.allclose(jittered["image"], plain["image"], atol=1e-3)


def _run_config(root: str, stage: str, steps: int) -> ml_collections.ConfigDict:
  config = cifar10_contrastive.get_config(stage)
  config.update(dict(data_dir=root, num_classes=4, image_size=8, batch_size=8, eval_batch_size=8,
                     num_train_steps=steps, log_every_steps=1, eval_every_steps=2,
                     checkpoint_every_steps=2))
  config.pp.eval_resize = 8
  config.model.update(dict(variant="Ti/4", hidden_size=16, mlp_dim=32, num_heads=2,
                           num_layers=1))
  if stage == "pretrain":
    config.model.projection = (16, 8)
  config.sam.m = 2  # Four groups of two examples per step.
  return config


@pytest.fixture(scope="module")
def pretrained(folder, tmp_path_factory):
  """A 5-step SimCLR + SAM run (4 groups of 2 examples, 4 views of negatives each)."""
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  return workdir, loop.train_and_evaluate(_run_config(folder, "pretrain", 5), workdir)


def test_pretraining_resumes_exactly_and_is_not_evaluated_as_a_classifier(pretrained, folder,
                                                                          tmp_path):
  workdir, straight = pretrained
  shutil.copytree(os.path.join(workdir, "checkpoints", "2"),
                  tmp_path / "resumed" / "checkpoints" / "2")
  resumed = loop.train_and_evaluate(_run_config(folder, "pretrain", 5), str(tmp_path / "resumed"))
  assert int(resumed.step) == 5
  for part in ("params", "opt_state", "model_state"):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(getattr(straight, part)),
                 jax.device_get(getattr(resumed, part)))
  assert "batch_stats" in straight.model_state  # The projection's BatchNorm.
  with pytest.raises(ValueError, match="contrastive pretraining run .* no classifier"):
    loading.load_runs([workdir], None, str(tmp_path / "eval"), "")


@pytest.mark.parametrize("stage, source", [("probe", "npz"), ("finetune", "npz"),
                                           ("probe", "workdir")])
def test_probe_and_finetune_start_from_the_pretrained_backbone(pretrained, folder, tmp_path,
                                                               stage, source, caplog):
  """The run's projection is dropped and a fresh head made (from its exported .npz or its
  workdir); the probe keeps the backbone."""
  exported = param_blocks.flatten(jax.device_get(pretrained[1].params))
  path = str(tmp_path / "pretrained.npz")
  npz.export_npz(path, pretrained[1].params)
  config = _run_config(folder, stage, 2)
  config.init_from = path if source == "npz" else pretrained[0]
  state = loop.train_and_evaluate(config, str(tmp_path / stage))
  assert "dropping the contrastive projection head (6 arrays under projection/)" in caplog.text
  assert "using the freshly initialised head (16, 4) instead of none in the file" in caplog.text
  params = param_blocks.flatten(jax.device_get(state.params))
  backbone = sorted(k for k in params if not k.startswith("head/"))
  assert backbone == sorted(k for k in exported if not k.startswith("projection/"))
  unchanged = [np.array_equal(params[k], exported[k]) for k in backbone]
  assert all(unchanged) if stage == "probe" else not any(unchanged)
  assert np.any(params["head/kernel"] != 0)  # Zero-initialised, then trained.


@pytest.mark.parametrize("change, match", [
    (dict(model=dict(projection=())), "needs a projection head"),
    (dict(contrastive=dict(method="")), "makes the model output projections"),
    (dict(dataset="digits"), "digits reader makes no second view"),
    (dict(adversarial_training=dict(epsilon=8.0)), "attacks a classifier"),
    (dict(augment=dict(mixup_alpha=0.5)), "the two views have their own augmentation"),
    (dict(contrastive=dict(temperature=0.0)), "temperature=0.0 must be > 0"),
    (dict(contrastive=dict(method="moco")), r"'simclr'"),
    (dict(trainable="("), "not a regular expression"),
])
def test_bad_contrastive_settings_are_named(change, match):
  config = defaults.complete(cifar10_contrastive.get_config())
  for key, value in change.items():
    if isinstance(value, dict):
      config[key].update(value)
    else:
      config[key] = value
  with pytest.raises(ValueError, match=match):
    validation.validate(config, 1)
