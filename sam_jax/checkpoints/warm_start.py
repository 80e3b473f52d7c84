"""The weights a run starts from (``config.init_from``): an .npz file or another run's workdir.

- An official-format ``.npz`` (the released ViT / Mixer files, or ``npz.export_npz``'s):
  ``npz.load_params``.
- A training workdir (local or ``gs://``): the newest intact checkpoint of that run, read
  under the run's own ``config.json`` (``loading.from_workdir``: checksums and finite
  values verified). Its parameters are fitted to this run's model by the same rules as an
  .npz (``npz.fit_params``: a fresh head for another number of classes, or whenever
  ``config.reinit_head``; a contrastive ``projection`` head dropped; the family's own,
  e.g. the ViT position embedding resized), so any family, ResNets included, can be fine-tuned from our own
  runs. Its model state (BatchNorm statistics) is taken as it is.

Either way a key or shape that cannot be fitted, or another model family, is an error
naming it before any step.
"""

from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from sam_jax.checkpoints import loading, npz
from sam_jax.models import param_blocks


def load(config: ml_collections.ConfigDict, params: Any, model_state: dict[str, Any]
         ) -> tuple[Any, dict[str, Any]]:
  """(params, model state) from ``config.init_from``, shaped like the fresh ``params`` and
  ``model_state`` of ``config``'s model (the templates, and the source of a fresh head)."""
  path = config.init_from
  if path.endswith(".npz"):
    if model_state:
      raise ValueError(f"config.init_from={path}: {config.model.name} has model state "
                       f"{list(model_state)}, which .npz files do not hold; start from a "
                       "training workdir instead.")
    loading.check_npz(path)
    loaded = npz.load_params(path, config.model.name, params, reinit_head=config.reinit_head)
    logging.info("Initialised parameters from %s.", path)
    return loaded, model_state
  source = loading.from_workdir(path)
  if source.config.model.name != config.model.name:
    raise ValueError(f"config.init_from={path} is a {source.config.model.name} run; this run "
                     f"trains a {config.model.name}.")
  flat = {k: np.asarray(v) for k, v in param_blocks.flatten(jax.device_get(source.params)).items()}
  loaded = npz.fit_params(flat, config.model.name, params, source=path,
                          reinit_head=config.reinit_head)
  state = _without_projection(jax.device_get(dict(source.model_state)), model_state)
  shapes = lambda tree: jax.tree.map(lambda x: (np.shape(x), np.asarray(x).dtype), tree)
  if shapes(state) != shapes(dict(model_state)):
    raise ValueError(f"config.init_from={path}: its model state "
                     f"{jax.tree.map(np.shape, state)} does not match this model's "
                     f"{jax.tree.map(np.shape, dict(model_state))}.")
  logging.info("Initialised parameters and model state from step %d of %s.", source.step, path)
  return loaded, state


def _without_projection(state: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
  """``state`` without the projection head's statistics when the model has no projection
  (its parameters are dropped by ``npz.fit_params``)."""
  return {collection: {k: v for k, v in tree.items()
                       if k != npz.PROJECTION or k in template.get(collection, {})}
          for collection, tree in state.items()
          if any(k != npz.PROJECTION for k in tree) or collection in template}
