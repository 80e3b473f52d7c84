"""``--config.KEY=VALUE`` sets any key the defaults or the model know, on every config, and
refuses an unknown one with the nearest keys (``cli.define_config_flag``)."""

from absl import flags
import pytest

from sam_jax import cli
from sam_jax.config import defaults, validation
from tests.test_configs import CASES

# One key of each section of config.defaults, and a field of every model family, each set
# to a value no config holds.
OVERRIDES = {
    "shuffle_buffer": 1234,                     # DATA
    "nonfinite": "skip",                        # TRAINING
    "model.dtype": "bfloat16",                  # MODEL
    "sam.asam.eta": 0.0123,                     # sam(), a SAM kind's own section
    "optimizer.b2": 0.987,                      # optimizer()
    "analysis.hessian.num_steps": 7,            # analysis()
    "adversarial.seed": 17,                     # adversarial()
    "adversarial_training.num_steps": 5,        # adversarial_training()
    "augment.randaugment_magnitude": 7.5,       # augment()
    "contrastive.temperature": 0.333,           # contrastive()
    "model.projection_batch_norm": False,       # models.PROJECTION_FIELDS, every family
}


def parse(*argv: str):
  """``config`` as ``sam_jax.main`` gets it from this command line."""
  flag_values = flags.FlagValues()
  argv = ["main", *argv]
  cli.define_config_flag("", lock_config=True, flag_values=flag_values, sys_argv=argv)
  flag_values(argv)
  return flag_values.config


def _get(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


@pytest.mark.parametrize("name, arg", CASES)
def test_every_default_key_is_settable_on_every_config(name, arg):
  overrides = dict(OVERRIDES)
  if name.startswith("vit") or name in ("default", "finetune"):
    overrides["model.representation_size"] = 24  # A ViT field the files leave out.
  path = f"configs/{name}.py" + (f":{arg}" if arg else "")
  config = parse(f"--config={path}", *(f"--config.{k}={v}" for k, v in overrides.items()))
  completed = defaults.complete(config)
  for key, value in overrides.items():
    assert _get(config, key) == value and _get(completed, key) == value, key
  validation.validate(completed, num_devices=1)


def test_an_unknown_key_names_the_nearest():
  with pytest.raises(cli.ConfigFileError, match=r"'sam.rhoo' .*did you mean sam.rho\b"):
    parse("--config=configs/default.py", "--config.sam.rhoo=1")
  with pytest.raises(cli.ConfigFileError, match=r"'model.hiden_size' .*model.hidden_size"):
    parse("--config=configs/default.py", "--config.model.hiden_size=1")
