"""Every config in configs/ loads, validates, builds its model and optimizer and takes one step.

The step runs the config's own model family, optimizer, schedule and SAM settings on
8 emulated devices with tiny shapes (32 px images, narrow and shallow models) and
random images, so no config can rot. ResNets step with one bottleneck block per stage
(the full depths took minutes to compile on 2 cores); their full-size models are
checked by ``jax.eval_shape`` against the published parameter counts instead.
"""

import importlib
import pathlib

from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import pytest

from sam_jax import models, parallel
from sam_jax.config import defaults, recipes, validation
from sam_jax.training import setup

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"
NAMES = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem != "__init__")
PAPER_RUNS = ({f"{m}_{w}{p}" for m in ("vit", "mixer") for w in "sb" for p in (8, 16, 32)}
              - {"vit_b8", "mixer_b8"}) | {"resnet50", "resnet101", "resnet152", "finetune"}
# configs/finetune.py's arguments besides its default (cifar10 with ViT-B/16).
FINETUNE_ARGS = sorted(set(recipes.TRANSFER) - {"cifar10"}) + ["cifar10,mixer-B/16"]
# Configs taking a stage argument: every stage besides the default.
STAGES = {"cifar10_transfer": ["finetune"], "cifar10_contrastive": ["probe", "finetune"]}
CASES = [(name, None) for name in NAMES] + [
    (name, arg) for name, args in STAGES.items() for arg in args]
TINY_MODEL = {
    "vit": dict(hidden_size=16, mlp_dim=32, num_heads=2, num_layers=1),
    "mixer": dict(hidden_dim=16, num_blocks=1, tokens_mlp_dim=8, channels_mlp_dim=32),
    "resnet": dict(num_filters=4, stage_sizes=(1, 1, 1, 1)),
}
IMAGE_SIZE = 32  # Divisible by every patch size (8, 16, 32).
# Parameters with a 1000-class head at 224 px and no representation layer: ViT/Mixer as the
# official models (ViT-B/16's equals the sum over the released key list of
# tests/test_released_checkpoint.py), ResNets as torchvision's resnet50/101/152 (same v1
# layout). A config's tanh pre_logits layer of width r adds r * r + r (docs/paper.md R17).
PARAMETER_COUNTS = {
    "vit_b16": 86_567_656, "vit_b32": 88_224_232, "vit_s16": 22_050_664, "vit_s32": 22_878_952,
    "mixer_b16": 59_880_472, "mixer_b32": 60_293_428,
    "resnet50": 25_557_032, "resnet101": 44_549_160, "resnet152": 60_192_808,
}


def load(name: str, arg: str | None = None):
  module = importlib.import_module(f"configs.{name}")
  return module.get_config() if arg is None else module.get_config(arg)


def parse(*argv: str):
  """The config as ``sam_jax.main`` would get it from this command line."""
  flag_values = flags.FlagValues()
  argv = ["main", *argv]
  config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True,
                                  sys_argv=argv)  # Overrides are found in argv at definition.
  flag_values(argv)
  return flag_values.config


def test_every_paper_run_has_a_config():
  assert PAPER_RUNS <= set(NAMES)


@pytest.mark.parametrize("name, arg", CASES)
def test_config_validates_and_takes_one_train_step(name, arg):
  config = load(name, arg)
  num_devices = jax.device_count()
  validation.validate(defaults.complete(config), num_devices)  # The full-size config.
  assert name not in PAPER_RUNS or "init_from" in config
  config.image_size = IMAGE_SIZE
  config.batch_size = num_devices
  config.eval_batch_size = num_devices
  config.model.update(TINY_MODEL[config.model.name])
  config.optimizer.warmup_steps = 0  # So the first step moves the parameters.
  config = defaults.complete(config)
  if config.sam.m is not None:
    config.sam.m = 1  # The recipes' m = 64 needs 64 examples; here one per device.
  validation.validate(config, num_devices)
  num_classes = config.get("num_classes") or 10

  run = setup.build(config, num_classes=num_classes)
  image_shape = (IMAGE_SIZE, IMAGE_SIZE, 3)
  # An "rbg" key: XLA compiles its random bits several times faster on CPU than threefry's.
  state = jax.jit(run.init_state)(jax.random.key(config.seed, impl="rbg"))
  before = jax.device_get(state.params)
  state = parallel.replicate(state, run.mesh)
  rng = np.random.default_rng(0)
  images = lambda: rng.uniform(-1, 1, (config.batch_size, *image_shape)).astype(np.float32)
  batch = {"image": images(),
           "label": rng.integers(0, num_classes, config.batch_size).astype(np.int32)}
  if config.augment.mixup_alpha:  # Mixup's labels: probability vectors, as the pipeline's.
    onehot = np.eye(num_classes, dtype=np.float32)[batch["label"]]
    batch["label"] = 0.7 * onehot + 0.3 * np.roll(onehot, 1, axis=0)
  if config.contrastive.method:
    batch["image2"] = images()
  state, metrics = run.train_step(state, parallel.shard_batch(batch, run.mesh))

  assert int(state.step) == 1
  np.testing.assert_allclose(metrics["learning_rate"], config.optimizer.learning_rate, rtol=1e-6)
  if config.model.name != "resnet" and not config.contrastive.method:
    # Zero-initialised head: every logit is the head bias b.
    b = config.model.get("head_bias_init", 0.0)
    softplus = lambda z: np.log1p(np.exp(z))
    expected = (np.log(num_classes) if config.loss == "softmax_xent"
                else softplus(-b) + (num_classes - 1) * softplus(b))
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)
  after = jax.device_get(state.params)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(after))
  assert any(np.any(a != b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


@pytest.mark.parametrize("arg", FINETUNE_ARGS)
def test_finetune_variant_validates_and_builds(arg):
  config = defaults.complete(load("finetune", arg))
  validation.validate(config, jax.device_count())
  run = setup.build(config)
  shapes = run.abstract_state()
  assert shapes.params["head"]["kernel"].shape[-1] == config.num_classes


@pytest.mark.parametrize("name, count", sorted(PARAMETER_COUNTS.items()))
def test_full_size_model_has_the_published_parameter_count(name, count):
  config = load(name)
  model = models.from_config(config.model, config.num_classes)
  shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, config.image_size, config.image_size, 3)),
      train=False))
  width = config.model.get("representation_size") or 0
  assert sum(x.size for x in jax.tree.leaves(shapes["params"])) == count + width * width + width


def test_command_line_batch_size_keeps_epochs_and_lr_per_example():
  config = parse(f"--config={CONFIG_DIR / 'resnet50.py'}", "--config.batch_size=1024")
  examples = recipes.IMAGENET_MINIVAL_TRAIN_EXAMPLES
  assert config.num_train_steps == 90 * examples // 1024
  assert config.optimizer.warmup_steps == 5 * examples // 1024
  assert config.optimizer.learning_rate == pytest.approx(0.1 * 1024 / 256)
  vit = parse(f"--config={CONFIG_DIR / 'vit_b16.py'}", "--config.batch_size=1024")
  assert vit.num_train_steps == 300 * examples // 1024
  assert vit.optimizer.warmup_steps == 10_000  # Fixed in steps by the recipe.


def test_command_line_overrides_replace_derived_values():
  config = parse(f"--config={CONFIG_DIR / 'resnet50.py'}", "--config.optimizer.learning_rate=2.5",
                 "--config.num_train_steps=1000", "--config.batch_size=256")
  assert (config.optimizer.learning_rate, config.num_train_steps) == (2.5, 1000)


def test_finetune_argument_sets_dataset_classes_and_lengths():
  config = parse(f"--config={CONFIG_DIR / 'finetune.py'}:oxford_iiit_pet,mixer-B/16",
                 "--config.init_from=/ckpt/Mixer-B_16.npz", "--config.num_train_steps=1000")
  target = recipes.TRANSFER["oxford_iiit_pet"]
  assert (config.dataset, config.num_classes) == ("oxford_iiit_pet", target.num_classes)
  assert (config.model.name, config.model.variant, config.image_size) == ("mixer", "B/16", 224)
  assert config.optimizer.warmup_steps == target.warmup_steps
  assert config.init_from == "/ckpt/Mixer-B_16.npz"
  assert (config.eval_every_steps, config.checkpoint_every_steps) == (100, 200)
  assert config.pp.eval_resize == config.image_size


@pytest.mark.parametrize("arg, match", [("imagenet2012", "valid"), ("cifar10,vitB/16", "MODEL")])
def test_finetune_rejects_bad_arguments(arg, match):
  with pytest.raises(ValueError, match=match):
    load("finetune", arg)


@pytest.mark.parametrize("name", ["default", "vit_b16", "resnet50"])
def test_analysis_and_adversarial_settings_can_be_set_on_the_command_line(name):
  config = parse(f"--config={CONFIG_DIR / (name + '.py')}", "--config.adversarial.num_examples=64",
                 "--config.analysis.batch_size=32", "--config.analysis.attention.split=test",
                 "--config.analysis.hessian.num_steps=7")
  complete = defaults.complete(config)
  adversarial = complete.adversarial
  assert (adversarial.num_examples, adversarial.batch_size) == (64, config.eval_batch_size)
  analysis = complete.analysis
  assert (analysis.batch_size, analysis.attention.split, analysis.hessian.num_steps,
          analysis.split) == (32, "test", 7, config.train_split)
