"""Accuracy of a model on eval sets: the paper's ImageNet variants or any ``DATASET[:SPLIT]``.

Names of ``data.catalog.PAPER_EVAL_SETS`` (``imagenet_real``, ``imagenet_c/fog_3``...)
stand for their (dataset, split); ``imagenet_c`` stands for all 95 ImageNet-C sets. Each
set is scored by its dataset's catalog metric: top-1, ReaL (``data.imagenet_real``) or
ImageNet-R's 200 classes (``data.imagenet_r``).
"""

import functools
from typing import Any, Sequence, TypedDict, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh
import tensorflow_datasets as tfds

from sam_jax import metrics, parallel
from sam_jax.checkpoints import loading
from sam_jax.data import catalog, eval_batches, imagenet_r, imagenet_real


def default_name(config: ml_collections.ConfigDict) -> str:
  """The config's own eval split as an eval-set name."""
  return config.dataset if config.eval_split is None else f"{config.dataset}:{config.eval_split}"


def eval_sets(names: Sequence[str], config: ml_collections.ConfigDict
              ) -> dict[str, tuple[str, str | None]]:
  """Name -> (dataset, split or None for the dataset's default).

  Raises:
    ValueError: a name that is none of the paper's sets, the config's dataset or a TFDS
      dataset, listing the valid ones.
  """
  sets = {}
  for name in names:
    if name == "imagenet_c":
      sets.update({n: s for n, s in catalog.PAPER_EVAL_SETS.items() if n.startswith("imagenet_c/")})
    elif name in catalog.PAPER_EVAL_SETS:
      sets[name] = catalog.PAPER_EVAL_SETS[name]
    else:
      dataset, _, split = name.partition(":")
      dataset = dataset or config.dataset
      if dataset != config.dataset and dataset.split("/")[0] not in tfds.list_builders(
          with_community_datasets=False):
        paper = sorted({n.split("/")[0] for n in catalog.PAPER_EVAL_SETS})
        raise ValueError(f"--eval_sets: {name!r} is not an eval set; valid: {paper}, the "
                         f"config's dataset {config.dataset!r}, or a TFDS dataset, each with "
                         "an optional :SPLIT.")
      sets[name] = (dataset, split or None)
  return sets


class Accuracy(TypedDict):
  """One eval set's result: the accuracy under ``metric``, over ``num_examples``."""
  accuracy: float
  num_examples: float
  metric: str


@functools.partial(jax.jit, static_argnums=(0, 1))
def _correct_counts(model: nn.Module, metric: str, variables: Any, batch: dict[str, jax.Array]
                    ) -> dict[str, jax.Array]:
  """{"correct", "count"} on one batch under ``metric`` (see ``data.catalog``)."""
  logits = cast(jax.Array, model.apply(variables, batch["image"], train=False))
  mask = batch["mask"]
  if metric == "real":
    correct, count = imagenet_real.correct_counts(logits, batch["real_label"], mask)
  elif metric == "imagenet_r":
    correct, count = imagenet_r.correct_counts(logits, batch["label"], mask)
  else:
    correct, count = jnp.sum(metrics.correct(logits, batch["label"]) * mask), jnp.sum(mask)
  return {"correct": correct, "count": count}


def accuracy(loaded: loading.Loaded, dataset: str, split: str | None, batch_size: int,
             mesh: Mesh) -> Accuracy:
  """Accuracy (the dataset's catalog metric) over one pass of a split."""
  metric = catalog.spec(dataset).metric
  variables = parallel.replicate(loaded.variables, mesh)
  totals = metrics.sum_over(
      lambda batch: _correct_counts(loaded.model, metric, variables,
                                    parallel.shard_batch(batch, mesh)),
      eval_batches.iterate(loaded.config, split, batch_size, dataset))
  return {"accuracy": totals["correct"] / totals["count"], "num_examples": totals["count"],
          "metric": metric}
