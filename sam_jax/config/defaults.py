"""Every config key that may be left out, with its default: the one place defaults live.

A config either sets every key or leaves some out. The files in ``configs/`` build their
``sam``, ``optimizer``, ``analysis``, ``adversarial``, ``adversarial_training`` and
``augment`` sections with the functions below, so they hold every key and any of them
can be set on the command line (``--config.sam.kind=asam --config.sam.asam.eta=0.1``); the
Nones there are typed placeholders. ``complete(config)`` returns a copy with every
missing key filled in from this module and each "None: another value" key (commented
below) resolved; the library reads a completed config directly. Keys without a default
(the dataset, image size, model, batch sizes, lengths, ``optimizer.name``...) are
required (``validation.REQUIRED``).

Epsilons and PGD step sizes of ``adversarial`` are in pixel units of [0, 255].
"""

import copy
from typing import Any, Mapping

from absl import logging
import ml_collections
from ml_collections.config_dict import placeholder

# Each SAM kind -> its own options, ``config.sam.<kind>``, at their defaults (a kind without
# options has none). Adding a kind: its entry here and its module in ``sam_jax/optim`` (its
# ``KIND`` and ``from_config``, found by ``optimizer.sam_builders``; tests/test_layering.py
# checks both name the same kinds).
SAM_KINDS: dict[str, dict[str, Any]] = {
    "sam": {},
    "asam": dict(eta=0.01),                   # T = |w| + eta.
    "gsam": dict(rho_min=placeholder(float),  # rho at the end learning rate; None: sam.rho.
                 alpha=0.4,                   # Weight of the surrogate-gap term.
                 decompose="group"),          # Split each SAM group's gradients ("global":
                                              # the means).
    "looksam": dict(alpha=0.7),               # Weight of the reused direction (docs/paper.md
                                              # E3). Its k: sam.every_k_steps.
    "msam": {},
    "aesam": dict(delta=0.9,                  # Decay of the moving mean and variance of ||g||².
                  lambda1=-1.0,               # The threshold c_t goes from lambda2 (start) to
                  lambda2=1.0),               # lambda1 (end) standard deviations (docs/paper.md
                                              # E10).
}
LOOKSAM_K = 5  # every_k_steps of LookSAM when unset (docs/paper.md E3).
# config.sam keys of configs written before the kinds had sections -> their keys now. A
# config that holds one (an old workdir's config.json, a study row, a command line) is read
# with the value moved (``complete``, ``upgrade``), and a line names the new key.
RENAMED_SAM_KEYS = {"eta": "asam.eta", "rho_min": "gsam.rho_min", "alpha": "gsam.alpha",
                    "decompose": "gsam.decompose", "looksam_alpha": "looksam.alpha",
                    "aesam_delta": "aesam.delta", "aesam_lambda1": "aesam.lambda1",
                    "aesam_lambda2": "aesam.lambda2"}
_RENAMED_TYPES = {"decompose": str}  # The others are floats.

# Top-level keys of the data; None means the dataset's own default (split, class count).
DATA = dict(
    data_dir="",          # TFDS data dir (""; $TFDS_DATA_DIR or ~/tensorflow_datasets) or folder.
    num_classes=None,     # Checked against the dataset; None: the dataset's.
    classes="",           # Image folders: the class folders to read, comma-separated, labelled
                          # in that order; "": all of them (data.image_folder).
    train_split=None,
    eval_split=None,
    pp={},                # Preprocessing options (``data.preprocessing.PreprocessOptions``).
    shuffle_buffer=10_000,
)
TRAINING = dict(
    init_from="",         # An official-format .npz or a training workdir to start from
                          # (checkpoints.warm_start); "": from scratch.
    reinit_head=False,    # init_from: a fresh head even when the shapes match (new classes).
    nonfinite="stop",     # Or "skip": leave the state unchanged on a non-finite step.
    accumulation_steps=1,  # Micro-batches per step (gradient accumulation): each device's
                          # batch run in that many parts of whole SAM groups, one update.
    loss="softmax_xent",  # Or "sigmoid_xent" (the original ViT pipeline's; docs/paper.md).
    trainable="",         # Regex of the trained parameter paths ("^head/": a linear probe, the
                          # model in inference mode); "": every parameter, in training mode.
)
MODEL = dict(
    dtype="float32",  # Of activations; parameters and optimizer state stay float32.
    remat=False,      # Rematerialise the residual blocks: less memory, ~1/3 more FLOPs per step.
)


def sam(rho: float, **overrides: Any) -> ml_collections.ConfigDict:
  """A complete ``config.sam``: radius ``rho`` and every other key's default."""
  renamed = {old: placeholder(_RENAMED_TYPES.get(old, float)) for old in RENAMED_SAM_KEYS}
  return ml_collections.ConfigDict(_sam_section(rho) | renamed | overrides)


def _sam_section(rho: float | None) -> dict[str, Any]:
  """``config.sam`` at its defaults: the common keys and each kind's section."""
  return dict(
      kind="sam",               # One of SAM_KINDS.
      rho=rho,                  # GSAM: rho_max. Momentum-SAM: its own scale (3 in its paper).
      sync="device",            # m-sharpness with m = per-device batch; "global": all devices.
      m=placeholder(int),       # Examples per perturbation group (overrides sync); None: sync.
      every_k_steps=placeholder(int),  # SAM on every k-th step only (LookSAM: its k, the
                                # full SAM step); None: LOOKSAM_K for LookSAM, else 1.
      eps=1e-12,                # Added to the gradient norm.
      **{kind: dict(options) for kind, options in SAM_KINDS.items() if options})


def upgrade(config: dict[str, Any]) -> dict[str, Any]:
  """A copy of a config as plain values with each renamed ``sam`` key (``RENAMED_SAM_KEYS``)
  moved to its new place; a line names each one that held a value."""
  config = copy.deepcopy(dict(config))
  sam_section = config.get("sam")
  if not isinstance(sam_section, dict):
    return config
  for old, new in RENAMED_SAM_KEYS.items():
    if old not in sam_section:
      continue
    value = sam_section.pop(old)
    if value is None:  # An unset placeholder (``sam()``).
      continue
    logging.warning("config.sam.%s is config.sam.%s now; read as that.", old, new)
    kind, key = new.split(".")
    sam_section.setdefault(kind, {})[key] = value
  return config


def optimizer(name: str, learning_rate: Any, warmup_steps: Any, decay: str, *,
              weight_decay: float, grad_clip_norm: float,
              **overrides: Any) -> ml_collections.ConfigDict:
  """A complete ``config.optimizer`` (AdamW's and SGD's keys both, so either can be chosen)."""
  return ml_collections.ConfigDict(dict(
      name=name, learning_rate=learning_rate, warmup_steps=warmup_steps, decay=decay,
      weight_decay=weight_decay, grad_clip_norm=grad_clip_norm,
      **(_OPTIMIZER_OPTIONAL | overrides)))


_OPTIMIZER_OPTIONAL = dict(end_learning_rate=0.0, b1=0.9, b2=0.999, momentum=0.9, nesterov=False,
                           weight_decay_in_loss=False)  # True: L2 in the loss (docs/paper.md).


def analysis() -> ml_collections.ConfigDict:
  """Defaults of ``config.analysis`` (``sam_jax.analyze``)."""
  return ml_collections.ConfigDict(dict(
      split=placeholder(str),       # None: config.train_split, the data of the training loss.
      batch_size=placeholder(int),  # None: config.eval_batch_size (global; a device multiple).
      hessian=dict(num_batches=4, method="lanczos", num_steps=20, seed=0,
                   blocks_at_once=0),  # block_hessian: blocks per batched product; 0: all.
      ntk=dict(batch_size=32),  # TE-NAS's measure (analysis.ntk.weight_ntk).
      neurons=dict(num_batches=2),   # Also the data of the activation norms.
      landscape=dict(num_batches=2, radius=1.0, points_1d=41, points_2d=21, seed=0),
      attention=dict(num_images=8, split=placeholder(str)),  # None: config.eval_split.
  ))


def adversarial() -> ml_collections.ConfigDict:
  """Defaults of ``config.adversarial`` (``sam_jax.evaluate``: FGSM and PGD, L-inf budget)."""
  return ml_collections.ConfigDict(dict(
      epsilon=1.0,          # L-inf radius in pixel units (x / 255 * 2 in model units).
      pgd_steps=10,
      pgd_step_size=0.25,   # Pixel units.
      random_start=True,    # PGD starts at a uniform random point of the ball.
      num_examples=placeholder(int),  # None: all of the split; else the first (whole batches).
      batch_size=placeholder(int),    # None: config.eval_batch_size.
      seed=0,
  ))


def adversarial_training() -> ml_collections.ConfigDict:
  """Defaults of ``config.adversarial_training``: the training loss on PGD examples (Madry et
  al.; ``objectives.adversarial.PgdAttack``), off at ``epsilon`` 0 (docs/paper.md A1-A3)."""
  return ml_collections.ConfigDict(dict(
      epsilon=0.0,          # L-inf radius in pixel units of [0, 255]; 0: the batch as given.
      step_size=2.0,        # Pixel units.
      num_steps=7,
      random_start=True,    # Each attack starts at a uniform random point of the ball.
  ))


def augment() -> ml_collections.ConfigDict:
  """Defaults of ``config.augment``: strong augmentation of the training batches (tf.data
  readers only), off by default (docs/paper.md §10). RandAugment (``data.randaugment``)
  runs on each example after the crop and flip; mixup (``data.mixup``) on each batch,
  whose labels then become float32 probability vectors [B, num_classes]."""
  return ml_collections.ConfigDict(dict(
      randaugment_layers=0,        # N: random ops per image; 0 is off.
      randaugment_magnitude=0.0,   # M in [0, 30], the reference's 10-level scale (15: big_vision).
      mixup_alpha=0.0,             # Beta(alpha, alpha) mixing weights; 0 is off.
  ))


def contrastive() -> ml_collections.ConfigDict:
  """Defaults of ``config.contrastive``: SimCLR pretraining (``objectives.contrastive``) on two
  views of each image (``data.views.ViewOptions``), off at ``method`` ""
  (docs/paper.md §11). The model needs ``config.model.projection``."""
  return ml_collections.ConfigDict(dict(
      method="",            # "simclr": NT-Xent over a SAM group's two views; "": supervised.
      temperature=0.1,      # tau (SimCLR run.py; its CIFAR-10 command: 0.5).
      color_jitter=0.5,     # Strength s: brightness, contrast, saturation 0.8 s, hue 0.2 s.
      color_jitter_prob=0.8,
      grayscale_prob=0.2,
  ))


SECTIONS = {"analysis": analysis, "adversarial": adversarial,
            "adversarial_training": adversarial_training}
# Sections the data readers read too (``complete_data`` fills them).
DATA_SECTIONS = {"augment": augment, "contrastive": contrastive}


def sections() -> dict[str, ml_collections.ConfigDict]:
  """The sections with their defaults, for a config file: ``config.update(sections())``."""
  return {name: defaults() for name, defaults in (SECTIONS | DATA_SECTIONS).items()}


def complete_data(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of ``config`` with every data key (``DATA``, ``DATA_SECTIONS``) it lacks at its
  default.

  Raises:
    ValueError: a section holds a key its defaults do not (a typo), naming the valid ones.
  """
  config = _copy(config)
  with config.unlocked():
    _fill(config, DATA)
    _complete_sections(config, DATA_SECTIONS)
  return config


def complete(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of ``config`` with every key it lacks at its default, and the Nones resolved.

  Raises:
    ValueError: a tool section holds a key its defaults do not (a typo), naming the valid ones.
  """
  config = complete_data(config)
  with config.unlocked():
    _fill(config, TRAINING)
    if "model" in config:
      _fill(config.model, MODEL)
    if "sam" in config:
      _fill(config.sam, ml_collections.ConfigDict(_sam_section(config.sam.get("rho"))).to_dict())
      if config.sam.gsam.rho_min is None:
        config.sam.gsam.rho_min = config.sam.rho
      if config.sam.every_k_steps is None:
        config.sam.every_k_steps = LOOKSAM_K if config.sam.kind == "looksam" else 1
    if "optimizer" in config:
      _fill(config.optimizer, _OPTIMIZER_OPTIONAL)
    _complete_sections(config, SECTIONS)
    eval_batch_size = config.get("eval_batch_size")
    config.analysis.split = config.analysis.split or config.train_split
    config.analysis.batch_size = config.analysis.batch_size or eval_batch_size
    config.analysis.attention.split = config.analysis.attention.split or config.eval_split
    config.adversarial.batch_size = config.adversarial.batch_size or eval_batch_size
  return config


def _complete_sections(config: ml_collections.ConfigDict, sections: Mapping[str, Any]) -> None:
  """Each section of ``sections`` (name -> defaults builder) completed in place."""
  for name, defaults in sections.items():
    given = config.get(name)
    given = given.to_dict() if isinstance(given, ml_collections.ConfigDict) else dict(given or {})
    section = defaults()
    section.lock()
    try:
      section.update(given)
    except (KeyError, AttributeError) as e:
      raise ValueError(f"config.{name} has a key the settings do not: {e}. Valid settings:\n"
                       f"{defaults()}") from e
    config[name] = section.to_dict()


def _copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """An unlocked deep copy (FieldReferences resolved: a completed config is final), renamed
  keys moved (``upgrade``)."""
  if isinstance(config, ml_collections.ConfigDict):
    config = config.copy_and_resolve_references().to_dict()
  return ml_collections.ConfigDict(upgrade(config))


def _fill(section: ml_collections.ConfigDict, defaults: Mapping[str, Any]) -> None:
  """Sets each key of ``defaults`` that ``section`` lacks, and fills its sub-sections alike."""
  for key, value in defaults.items():
    if key not in section:
      section[key] = copy.deepcopy(value)
    elif isinstance(value, Mapping) and isinstance(section[key], (Mapping, ml_collections.ConfigDict)):
      _fill(section[key], value)
