"""Starting a run from another run's workdir or an .npz (``config.init_from``,
``checkpoints.warm_start``): what is loaded, what is fresh, and what is refused."""

import shutil

import jax
import ml_collections
import numpy as np
import pytest

from sam_jax.checkpoints import loading, npz, warm_start
from sam_jax.config import defaults
from sam_jax.models import param_blocks
from sam_jax.training import loop, setup
from tests import tiny_digits_config

RESNET = dict(name="resnet", variant="18", num_filters=4, stage_sizes=(1, 1), stem="cifar")


def _flat(tree) -> dict[str, np.ndarray]:
  return {k: np.asarray(v) for k, v in param_blocks.flatten(jax.device_get(tree)).items()}


def _start(config: ml_collections.ConfigDict):
  """The state a run of ``config`` starts from (``loop.initial_state``) and the fresh one."""
  run = setup.build(defaults.complete(config), num_classes=10)
  fresh = jax.jit(run.init_state)(jax.random.PRNGKey(run.config.seed))
  return jax.device_get(loop.initial_state(run)), jax.device_get(fresh)


@pytest.fixture(scope="module", params=["vit", "resnet"])
def source(request, tmp_path_factory):
  """A 4-step training run's workdir and its final weights."""
  config = tiny_digits_config.get_config(4)
  if request.param == "resnet":
    config.model = ml_collections.ConfigDict(RESNET)
  workdir = str(tmp_path_factory.mktemp(request.param))
  loop.train_and_evaluate(config, workdir)
  return config, workdir, loading.from_workdir(workdir)


@pytest.mark.parametrize("reinit_head", [False, True])
def test_a_run_starts_from_a_workdir_with_its_weights_and_model_state(source, reinit_head):
  config, workdir, trained = source
  config = ml_collections.ConfigDict(config.to_dict())
  config.update(dict(init_from=workdir, reinit_head=reinit_head, seed=7))
  start, fresh = _start(config)
  got, want, init = _flat(start.params), _flat(trained.params), _flat(fresh.params)
  assert got.keys() == want.keys()
  for key in got:
    expected = init[key] if reinit_head and key.startswith("head/") else want[key]
    np.testing.assert_array_equal(got[key], expected, err_msg=key)
  assert int(start.step) == 0
  np.testing.assert_equal(_flat(start.model_state), _flat(trained.model_state))
  if config.model.name == "resnet":
    assert _flat(start.model_state) and any(
        not np.array_equal(a, b) for a, b in zip(_flat(start.model_state).values(),
                                                 _flat(fresh.model_state).values()))


@pytest.mark.parametrize("trainable", ["", "^head/"])
def test_fine_tuning_and_probing_from_a_workdir_resume_exactly(source, tmp_path, trainable):
  """5 fine-tuning (or linear-probe) steps equal 3, a stop, and 2 more: a resume reads its
  own checkpoint, not ``init_from`` again."""
  config, workdir, _ = source
  config = ml_collections.ConfigDict(config.to_dict())
  config.update(dict(init_from=workdir, reinit_head=True, num_train_steps=5,
                     checkpoint_every_steps=3, trainable=trainable))
  straight = loop.train_and_evaluate(config, str(tmp_path / "straight"))
  shutil.copytree(tmp_path / "straight" / "checkpoints" / "3",
                  tmp_path / "resumed" / "checkpoints" / "3")
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert int(resumed.step) == 5
  np.testing.assert_equal(_flat(resumed.params), _flat(straight.params))
  np.testing.assert_equal(_flat(resumed.model_state), _flat(straight.model_state))


def test_another_family_or_shape_is_refused_naming_it(source, tmp_path):
  config, workdir, _ = source
  other = ml_collections.ConfigDict(config.to_dict())
  other.init_from = workdir
  if config.model.name == "vit":
    other.model.hidden_size = 24
    with pytest.raises(ValueError, match=r"(?s)does not match the model.*Transformer/encoder_norm/"
                                         r"scale: file shape \(16,\) != model shape \(24,\)"):
      _start(other)
  else:
    other.model = tiny_digits_config.get_config().model
    with pytest.raises(ValueError, match="is a resnet run; this run trains a vit"):
      _start(other)


def test_an_exported_npz_loads_the_same_weights_and_a_projection_head_is_dropped(tmp_path):
  config = tiny_digits_config.get_config(4)
  trained = loading.initial(config)
  flat = _flat(trained.params)
  # A contrastive run's file: a projection head instead of the classifier's head.
  contrastive = {k: v for k, v in flat.items() if not k.startswith("head/")}
  contrastive.update({"projection/Dense_0/kernel": np.ones((16, 8), np.float32),
                      "projection/Dense_0/bias": np.zeros(8, np.float32)})
  path = str(tmp_path / "contrastive.npz")
  npz.export_npz(path, param_blocks.unflatten(contrastive))
  config.init_from = path
  with pytest.raises(ValueError, match=r"head/kernel: missing from the file"):
    _start(config)  # Without a head in the file, only an explicit fresh head is taken.
  config.reinit_head = True
  config.seed = 3
  start, fresh = _start(config)
  got, init = _flat(start.params), _flat(fresh.params)
  assert got.keys() == flat.keys()
  for key in got:
    np.testing.assert_array_equal(got[key], init[key] if key.startswith("head/") else flat[key])


def test_an_npz_cannot_start_a_model_with_batch_statistics(tmp_path):
  config = tiny_digits_config.get_config(2)
  config.model = ml_collections.ConfigDict(RESNET)
  config.init_from = str(tmp_path / "w.npz")
  config = defaults.complete(config)
  params, state = loading._init(*loading._init_args(loading.create_model(config), config))
  with pytest.raises(ValueError, match="batch_stats.*start from a training workdir"):
    warm_start.load(config, params, state)
