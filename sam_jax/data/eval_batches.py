"""Deterministic passes over a split for the evaluation and the analyses, in global batches.

The eval preprocessing (no augmentation), in the reader's fixed order
(``input_pipeline.eval_iterator``). ``batches`` keeps only full batches, each one global
array split over the mesh (``sam_jax.parallel``); with replicated parameters a
``jax.jit`` over (params, batch) then runs data-parallel and its means are over the
whole batch.
"""

from typing import Iterator

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from sam_jax import parallel
from sam_jax.data import input_pipeline

Batch = dict[str, jax.Array]


def iterate(config: ml_collections.ConfigDict, split: str | None, batch_size: int,
            dataset: str | None = None) -> Iterator[dict[str, np.ndarray]]:
  """One pass over ``split`` of ``dataset`` (default: the config's) in global batches.

  ``split`` None is the dataset's default eval split. The last batch may be padded; its
  ``mask`` is 0 on padding.
  """
  if batch_size <= 0 or batch_size % jax.device_count():
    raise ValueError(f"eval_batches: batch size {batch_size} must be a positive multiple of "
                     f"the number of devices ({jax.device_count()}).")
  return input_pipeline.eval_iterator(config, split=split, dataset=dataset,
                                      local_batch_size=batch_size // jax.process_count())


def batches(config: ml_collections.ConfigDict, mesh: Mesh, *, split: str | None,
            batch_size: int, num_batches: int) -> list[Batch]:
  """The first ``num_batches`` full batches (images and labels) of ``split``, sharded.

  Raises:
    ValueError: the split has fewer than ``num_batches`` full batches.
  """
  out = []
  for batch in iterate(config, split, batch_size):
    if not np.all(batch["mask"]):
      break
    out.append(parallel.shard_batch({"image": batch["image"], "label": batch["label"]}, mesh))
    if len(out) == num_batches:
      break
  if len(out) < num_batches:
    raise ValueError(f"eval_batches: split {split!r} has only {len(out)} full batches of "
                     f"{batch_size}; asked for {num_batches}.")
  return out
