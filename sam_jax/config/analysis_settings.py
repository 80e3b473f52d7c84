"""Settings of ``analyze`` (``config.analysis``) and ``evaluate`` (``config.adversarial``).

A config may hold either section, complete or in part; ``resolve`` fills in the
defaults below, rejects unknown keys, and replaces each None by the config value
named in the comment. Epsilons and PGD step sizes are in pixel units of [0, 255].
The paper and default configs hold both sections complete (``sections()``), so any
setting can be given on the command line, e.g. ``--config.adversarial.num_examples=512``;
the Nones are typed placeholders for that.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from sam_jax.analysis import hessian


def analysis() -> ml_collections.ConfigDict:
  """Defaults of ``config.analysis``."""
  return ml_collections.ConfigDict(dict(
      split=placeholder(str),       # config.train_split: the data of the training loss.
      batch_size=placeholder(int),  # config.eval_batch_size (global; a device-count multiple).
      hessian=dict(num_batches=4, method="lanczos", num_steps=20, seed=0),
      ntk=dict(batch_size=32),  # TE-NAS's measure (analysis.ntk.weight_ntk).
      neurons=dict(num_batches=2),   # Also the data of the activation norms.
      landscape=dict(num_batches=2, radius=1.0, points_1d=41, points_2d=21, seed=0),
      attention=dict(num_images=8, split=placeholder(str)),  # config.eval_split.
  ))


def adversarial() -> ml_collections.ConfigDict:
  """Defaults of ``config.adversarial`` (FGSM and PGD under an L-inf budget)."""
  return ml_collections.ConfigDict(dict(
      epsilon=1.0,          # L-inf radius in pixel units (x / 255 * 2 in model units).
      pgd_steps=10,
      pgd_step_size=0.25,   # Pixel units.
      random_start=True,    # PGD starts at a uniform random point of the ball.
      num_examples=placeholder(int),  # All of the split; else the first ones (whole batches).
      batch_size=placeholder(int),    # config.eval_batch_size.
      seed=0,
  ))


_DEFAULTS = {"analysis": analysis, "adversarial": adversarial}


def sections() -> dict[str, ml_collections.ConfigDict]:
  """Both sections with their defaults, for a config file: ``config.update(sections())``."""
  return {name: defaults() for name, defaults in _DEFAULTS.items()}


def resolve(config: ml_collections.ConfigDict, section: str) -> ml_collections.ConfigDict:
  """The defaults of ``section`` updated with ``config[section]``, Nones filled from ``config``.

  Raises:
    ValueError: unknown section, or a key the section does not have.
  """
  if section not in _DEFAULTS:
    raise ValueError(f"analysis_settings: unknown section {section!r}; valid: {list(_DEFAULTS)}.")
  settings = _DEFAULTS[section]()
  settings.lock()
  given = config.get(section) or {}
  try:
    settings.update(given.to_dict() if isinstance(given, ml_collections.ConfigDict) else given)
  except (KeyError, AttributeError) as e:
    raise ValueError(f"config.{section} has a key the settings do not: {e}. Valid settings:\n"
                     f"{_DEFAULTS[section]()}") from e
  with settings.unlocked():
    settings.batch_size = settings.batch_size or config.eval_batch_size
    if section == "analysis":
      settings.split = settings.split or config.train_split
      settings.attention.split = settings.attention.split or config.eval_split
  _validate(settings, section)
  return settings


def _validate(settings: ml_collections.ConfigDict, section: str) -> None:
  """ValueError naming the first bad value, before any expensive work."""
  if section == "analysis":
    positive = ["batch_size", "hessian.num_batches", "hessian.num_steps", "ntk.batch_size",
                "neurons.num_batches", "landscape.num_batches", "landscape.points_1d",
                "landscape.points_2d", "attention.num_images"]
    choices = {"hessian.method": hessian.METHODS}
  else:
    positive = ["batch_size", "pgd_steps"]
    choices = {}
  for key in positive:
    value = _get(settings, key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
      raise ValueError(f"config.{section}.{key}={value!r} must be a positive integer.")
  for key, valid in choices.items():
    if _get(settings, key) not in valid:
      raise ValueError(f"config.{section}.{key}={_get(settings, key)!r} is not one of {valid}.")
  for key in ("landscape.radius",) if section == "analysis" else ("epsilon", "pgd_step_size"):
    if not _get(settings, key) >= 0:
      raise ValueError(f"config.{section}.{key}={_get(settings, key)!r} must be >= 0.")


def _get(settings: ml_collections.ConfigDict, dotted: str):
  for part in dotted.split("."):
    settings = settings[part]
  return settings
