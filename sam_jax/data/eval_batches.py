"""Fixed batches for the analyses, split across all devices of a 1-D ``"data"`` mesh.

The analyses read a split with the eval preprocessing (deterministic, no
augmentation), in the data source's fixed order, and keep only full batches. Each
batch is one global array sharded along ``"data"``; parameters are replicated, so
a ``jax.jit`` over (params, batch) runs data-parallel and its means are over the
whole batch.
"""

from typing import Any, Iterator

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sam_jax.data import input_pipeline

AXIS = "data"
Batch = dict[str, jax.Array]


def data_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (or the given) devices."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), (AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """``tree`` placed whole on every device of ``mesh``."""
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard(batch: dict[str, np.ndarray], mesh: Mesh) -> Batch:
  """This process's examples as global arrays split along ``"data"``."""
  sharding = NamedSharding(mesh, P(AXIS))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def iterate(config: ml_collections.ConfigDict, split: str | None, batch_size: int,
            dataset: str | None = None) -> Iterator[dict[str, np.ndarray]]:
  """One pass over ``split`` of ``dataset`` (default: the config's) in global batches.

  Eval preprocessing (``input_pipeline.eval_iterator``); ``split`` None is the dataset's
  default eval split. The last batch may be padded; its ``mask`` is 0 on padding.
  """
  if batch_size <= 0 or batch_size % jax.device_count():
    raise ValueError(f"eval_batches: batch size {batch_size} must be a positive multiple of "
                     f"the number of devices ({jax.device_count()}).")
  return input_pipeline.eval_iterator(config, split=split, dataset=dataset,
                                      local_batch_size=batch_size // jax.process_count())


def batches(config: ml_collections.ConfigDict, mesh: Mesh, *, split: str, batch_size: int,
            num_batches: int) -> list[Batch]:
  """The first ``num_batches`` full batches (images and labels) of ``split``, sharded.

  Raises:
    ValueError: the split has fewer than ``num_batches`` full batches.
  """
  out = []
  for batch in iterate(config, split, batch_size):
    if "mask" in batch and not np.all(batch["mask"]):
      break
    out.append(shard({"image": batch["image"], "label": batch["label"]}, mesh))
    if len(out) == num_batches:
      break
  if len(out) < num_batches:
    raise ValueError(f"eval_batches: split {split!r} has only {len(out)} full batches of "
                     f"{batch_size}; asked for {num_batches}.")
  return out
