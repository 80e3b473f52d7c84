"""A model with its weights, for the analyses: a run's checkpoint, an official .npz, or the init.

- A workdir written by ``sam_jax.training.loop``: its ``config.json`` (unless a config is
  given) and the newest (or a chosen) step of the Orbax checkpoints in
  ``<workdir>/checkpoints``; only ``params`` and ``model_state`` are read.
- An official ViT / Mixer ``.npz``, read by ``npz.load_params`` (pre-linen
  names renamed; keys and shapes checked against the config's model, whose ViT
  representation layer follows the file's: ``follow_file``).
- ``initial``: the model at initialisation, exactly as training with ``config.seed`` starts.
"""

import dataclasses
import functools
import json
import os
from typing import Any

from absl import logging
import flax
import jax
import ml_collections
import optax
import orbax.checkpoint as ocp

from sam_jax.checkpoints import npz
from sam_jax.training import loop, train_step


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A model, its weights and where they came from (``step`` None for .npz and init)."""
  config: ml_collections.ConfigDict
  model: flax.linen.Module
  params: Any
  model_state: dict[str, Any]
  step: int | None
  source: str

  @property
  def variables(self) -> dict[str, Any]:
    return {"params": self.params, **self.model_state}


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved as ``<workdir>/config.json``."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"restore: {path} does not exist; pass the run's config explicitly.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def create_model(config: ml_collections.ConfigDict) -> flax.linen.Module:
  """The config's model; the class count from ``config.num_classes`` or the dataset."""
  num_classes = config.get("num_classes") or loop.data_source(config).get_info(
      config).num_classes
  return loop.create_model(config, num_classes)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_variables(model: flax.linen.Module, image_shape: tuple[int, ...], rng: jax.Array):
  """The variables training starts from (``train_step.init_state``, same key use)."""
  state = train_step.init_state(model, optax.identity(), rng, image_shape)
  return {"params": state.params, **state.model_state}


def _init(model: flax.linen.Module, config: ml_collections.ConfigDict, abstract: bool):
  """(params, model state) at initialisation with ``config.seed``, or their shapes."""
  args = (model, (config.image_size, config.image_size, 3), jax.random.PRNGKey(config.seed))
  variables = jax.eval_shape(_init_variables, *args) if abstract else _init_variables(*args)
  variables = flax.core.unfreeze(variables)
  params = variables.pop("params")
  return params, variables


def initial(config: ml_collections.ConfigDict) -> Loaded:
  """The model at initialisation, with the seed training uses (``config.seed``)."""
  model = create_model(config)
  params, model_state = _init(model, config, abstract=False)
  return Loaded(config, model, params, model_state, None, "init")


def from_workdir(workdir: str, config: ml_collections.ConfigDict | None = None,
                 step: int | None = None) -> Loaded:
  """The newest (or ``step``) checkpoint of a training run."""
  config = load_config(workdir) if config is None else config
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise ValueError(f"restore: {directory} does not exist; is {workdir!r} a training workdir?")
  with ocp.CheckpointManager(directory) as manager:
    steps = list(manager.all_steps())
    if not steps:
      raise ValueError(f"restore: {directory} holds no checkpoint yet.")
    step = max(steps) if step is None else step
    if step not in steps:
      raise ValueError(f"restore: no checkpoint at step {step} in {directory}; steps: {steps}.")
    model = create_model(config)
    params, model_state = _init(model, config, abstract=True)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                          {"params": params, "model_state": model_state})
    restored = manager.restore(step, args=ocp.args.PyTreeRestore(
        target, ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
  return Loaded(config, model, restored["params"], dict(restored["model_state"]), step, workdir)


def follow_file(config: ml_collections.ConfigDict, flat: npz.Flat) -> ml_collections.ConfigDict:
  """``config`` with the ViT representation layer the file has (its width, or none).

  An .npz is evaluated as the function it holds: a released SAM ViT with or without
  its ``pre_logits`` layer (docs/paper.md R51) loads exactly under ``configs/vit_*.py``.
  The change is logged; other model fields must match the file.
  """
  width = npz.representation_size(flat)
  if config.model.name != "vit" or config.model.get("representation_size") == width:
    return config
  logging.warning("restore: the .npz has %s; setting config.model.representation_size=%s "
                  "(the config had %s).", f"a {width}-wide pre_logits layer" if width else
                  "no pre_logits layer", width, config.model.get("representation_size"))
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.representation_size = width
  return config


def from_npz(path: str, config: ml_collections.ConfigDict) -> Loaded:
  """Parameters from an official .npz (``npz.load_params``), the model following the file."""
  flat = npz.read_params(path)
  config = follow_file(config, flat)
  model = create_model(config)
  init_params, model_state = _init(model, config, abstract=False)
  if model_state:
    raise ValueError(f"restore: {config.model.name} has model state {list(model_state)}, which "
                     f".npz files do not hold.")
  params = npz.load_params(path, config.model.name, init_params, flat=flat)
  return Loaded(config, model, params, {}, None, path)


def run_config(path: str, config: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
  """The config of run ``path``: ``config`` if given, else the workdir's (required for .npz)."""
  if config is not None:
    return config
  if path.endswith(".npz"):
    raise ValueError(f"restore: {path} holds no config; pass the model's config.")
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
    path, label = spec, os.path.basename(os.path.normpath(spec))
  if not label or not path:
    raise ValueError(f"restore: run {spec!r} is not [LABEL=]PATH.")
  return label, path


def load_runs(specs: list[str], config: ml_collections.ConfigDict | None,
              output_dir: str | None, default_subdir: str) -> tuple[dict[str, Loaded], str]:
  """Loads each ``[LABEL=]PATH`` run; ``output_dir`` defaults to ``<first workdir>/<subdir>``.

  Each run's dataset is checked first (``FileNotFoundError`` saying how to prepare it),
  before any weights are read.
  """
  pairs = [parse_run(s) for s in specs]
  if output_dir is None:
    if pairs[0][1].endswith(".npz"):
      raise ValueError("restore: --output_dir is required when the first run is an .npz file.")
    output_dir = os.path.join(pairs[0][1], default_subdir)
  configs = {path: run_config(path, config) for _, path in pairs}  # Each read once.
  for run in configs.values():
    loop.data_source(run).get_info(run)
  return {label: load(path, configs[path]) for label, path in pairs}, output_dir
