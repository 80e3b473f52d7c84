"""A model with its weights, for evaluation and analysis: a run's checkpoint, an .npz, or the init.

- A workdir written by ``sam_jax.training.loop`` (local or ``gs://``, all through
  ``etils.epath`` and Orbax): its ``config.json`` (unless a config is given) and the
  newest intact (or a chosen) step of the Orbax checkpoints in ``<workdir>/checkpoints``;
  only ``params`` and ``model_state`` are read, exactly (every array of theirs in the
  checkpoint is one of the model's and of its shape, and none is missing: else an error
  naming the first differences and the config keys that differ from the run's) and
  verified (checksums, finite values: ``checkpointing.Checkpoints.read_params``).
- An official ViT / Mixer ``.npz``, read by ``npz.load_params`` (pre-linen names
  renamed; keys and shapes checked against the config's model, whose fields the file
  fixes, e.g. a ViT's representation layer, follow the file: ``follow_file``).
- ``initial``: the model at initialisation, exactly as training with ``config.seed`` starts.

Every ``Loaded.config`` is completed (``config.defaults.complete``) and its analysis and
adversarial settings checked.
"""

import dataclasses
import functools
from typing import Any

from absl import logging
from etils import epath
import flax.linen as nn
import jax
import ml_collections

from sam_jax import models
from sam_jax.checkpoints import checkpointing, npz
from sam_jax.config import defaults, validation
from sam_jax.data import input_pipeline


# Top-level keys that, with config.model, decide the model's parameter shapes.
MODEL_SHAPING_KEYS = ("dataset", "num_classes", "classes", "image_size")


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A model, its weights and where they came from (``step`` None for .npz and init)."""
  config: ml_collections.ConfigDict
  model: nn.Module
  params: Any
  model_state: dict[str, Any]
  step: int | None
  source: str

  @property
  def variables(self) -> dict[str, Any]:
    return {"params": self.params, **self.model_state}


def complete(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` completed, its tool settings checked (ValueError naming a bad one)."""
  config = defaults.complete(config)
  validation.validate_sections(config)
  return config


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved as ``<workdir>/config.json``, completed."""
  if not epath.Path(workdir).exists():
    raise ValueError(f"loading: {workdir} does not exist; expected a training workdir or an "
                     ".npz file.")
  path = epath.Path(workdir) / checkpointing.CONFIG_FILE
  if not path.exists():
    raise ValueError(f"loading: {path} does not exist; pass the run's config explicitly.")
  return complete(ml_collections.ConfigDict(checkpointing.read_json(path)))


def _model_keys(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config keys that decide the model's parameter names and shapes."""
  keys = {f"model.{k}": v for k, v in config.model.items()}
  return keys | {k: config.get(k) for k in MODEL_SHAPING_KEYS}


def explain_mismatch(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The model keys in which ``config`` differs from the run's ``config.json``, as a sentence."""
  if not (epath.Path(workdir) / checkpointing.CONFIG_FILE).exists():
    return "The run has no config.json to compare the config with."
  ours, run = _model_keys(config), _model_keys(load_config(workdir))
  differ = [f"{k}={ours.get(k)!r} (the run's: {run.get(k)!r})" for k in sorted(ours | run)
            if ours.get(k) != run.get(k)]
  if not differ:
    return "The config's model keys are the run's (config.json); the run's checkpoints differ."
  return (f"The config differs from the run's config.json in {', '.join(differ[:4])}: leave out "
          "--config to use the run's, or set these keys to its values.")


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
  """The config's model; the class count from ``config.num_classes`` or the dataset."""
  return models.from_config(config.model, input_pipeline.num_classes(config))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init(model: nn.Module, image_size: int, rng: jax.Array):
  """(params, model state) at initialisation, as training starts (``models.initialize``)."""
  return models.initialize(model, rng, image_size)[:2]


def _init_args(model: nn.Module, config: ml_collections.ConfigDict):
  return model, config.image_size, jax.random.PRNGKey(config.seed)


def initial(config: ml_collections.ConfigDict) -> Loaded:
  """The model at initialisation, with the seed training uses (``config.seed``)."""
  config = complete(config)
  model = create_model(config)
  params, model_state = _init(*_init_args(model, config))
  return Loaded(config, model, params, model_state, None, "init")


def from_workdir(workdir: str, config: ml_collections.ConfigDict | None = None,
                 step: int | None = None) -> Loaded:
  """The newest intact (or ``step``) checkpoint of a training run."""
  config = load_config(workdir) if config is None else complete(config)
  directory = checkpointing.workdir_path(workdir) / checkpointing.LATEST
  if not directory.is_dir():
    raise ValueError(f"loading: {directory} does not exist; is {workdir!r} a training workdir?")
  model = create_model(config)
  params, model_state = jax.eval_shape(_init, *_init_args(model, config))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                        {"params": params, "model_state": model_state})
  manager = checkpointing.Checkpoints(workdir, keep=1, read_only=True)
  try:
    step, restored = manager.read_params(target, step)  # Exact; checksums, finite values.
  except checkpointing.ModelMismatch as e:
    raise ValueError(f"loading: {e} {explain_mismatch(config, workdir)}") from e
  finally:
    manager.close()
  return Loaded(config, model, restored["params"], dict(restored["model_state"]), step, workdir)


def follow_file(config: ml_collections.ConfigDict, flat: npz.Flat) -> ml_collections.ConfigDict:
  """``config`` with the model fields the file fixes (``models.Family.npz_fields``).

  An .npz is evaluated as the function it holds: e.g. a released SAM ViT with or
  without its ``pre_logits`` layer (docs/paper.md R51) loads exactly under
  ``configs/vit_*.py``. Each change is logged; other model fields must match the file.
  """
  fields = models.family(config.model.name).npz_fields(flat)
  changed = {k: v for k, v in fields.items() if config.model.get(k) != v}
  if not changed:
    return config
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in changed.items():
    logging.warning("loading: the .npz fixes config.model.%s=%s (the config had %s).", key,
                    value, config.model.get(key))
    config.model[key] = value
  return config


def check_npz(path: str) -> None:
  """Raises ValueError if ``path`` is not a zip archive, as every .npz file is."""
  with epath.Path(path).open("rb") as f:
    head = f.read(4)
  if head != b"PK\x03\x04":
    raise ValueError(f"{path}: not an .npz file (a zip archive of .npy arrays, starting with "
                     f"b'PK\\x03\\x04'); it starts with {head!r}.")


def from_npz(path: str, config: ml_collections.ConfigDict) -> Loaded:
  """Parameters from an official .npz (``npz.load_params``), the model following the file."""
  check_npz(path)
  flat = npz.read_params(path)
  config = follow_file(complete(config), flat)
  model = create_model(config)
  init_params, model_state = _init(*_init_args(model, config))
  if model_state:
    raise ValueError(f"loading: {config.model.name} has model state {list(model_state)}, which "
                     f".npz files do not hold.")
  params = npz.load_params(path, config.model.name, init_params, flat=flat)
  return Loaded(config, model, params, {}, None, path)


def run_config(path: str, config: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
  """The config of run ``path``: ``config`` if given, else the workdir's (required for .npz)."""
  if config is not None:
    return complete(config)
  if path.endswith(".npz"):
    raise ValueError(f"loading: {path} holds no config; pass the model's config.")
  return load_config(path)


def load(path: str, config: ml_collections.ConfigDict | None = None) -> Loaded:
  """``from_npz`` for a .npz file (``config`` required), else ``from_workdir``."""
  if path.endswith(".npz"):
    return from_npz(path, run_config(path, config))
  return from_workdir(path, config)


def parse_run(spec: str) -> tuple[str, str]:
  """``"LABEL=PATH"`` or ``"PATH"`` (labelled by its last component) -> (label, path)."""
  label, sep, path = spec.partition("=")
  if not sep:
    path, label = spec, epath.Path(spec).name
  if not label or not path:
    raise ValueError(f"loading: run {spec!r} is not [LABEL=]PATH.")
  return label, path


def load_runs(specs: list[str], config: ml_collections.ConfigDict | None,
              output_dir: str | None, default_subdir: str) -> tuple[dict[str, Loaded], str]:
  """Loads each ``[LABEL=]PATH`` run; ``output_dir`` defaults to ``<first workdir>/<subdir>``.

  Remote paths are checked first (``checkpointing.check_reachable``), then each run's
  dataset (``FileNotFoundError`` saying how to prepare it), before any weights are read,
  and that it is a classifier: a contrastive
  pretraining run (``config.contrastive.method``) outputs projections, which the
  evaluations and analyses (of logits) do not take.
  """
  pairs = [parse_run(s) for s in specs]
  for path in dict.fromkeys([path for _, path in pairs] + [output_dir or ""]):
    checkpointing.check_reachable(path)  # In seconds: a gs:// client may retry for minutes.
  if output_dir is None:
    if pairs[0][1].endswith(".npz"):
      raise ValueError("loading: --output_dir is required when the first run is an .npz file.")
    output_dir = str(epath.Path(pairs[0][1]) / default_subdir)
  configs = {path: run_config(path, config) for _, path in pairs}  # Each read once.
  for path, run in configs.items():
    if run.contrastive.method:
      raise ValueError(f"loading: {path} is a contrastive pretraining run "
                       f"(config.contrastive.method={run.contrastive.method!r}): it has no "
                       "classifier. Train a linear probe on it (configs/cifar10_contrastive.py:"
                       "probe, --config.init_from) and evaluate that.")
    input_pipeline.get_info(run)
  return {label: load(path, configs[path]) for label, path in pairs}, output_dir
