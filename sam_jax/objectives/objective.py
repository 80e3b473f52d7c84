"""What a train step minimises: an ``Objective`` of the model's outputs on a SAM group's batch.

The step (``training.train_step``) builds ``forward(params, images, dropout_rng) ->
(outputs, new model state)`` for its mode and model state, and differentiates

    objective(forward, params, batch, rng, group_axis=...) -> (loss, (metrics, model state))

with respect to ``params``: once at w and once at SAM's w + e (``grad_fn``), on the same
batch with the same key. ``metrics`` holds at least ``"accuracy"``. ``group_axis`` names
the mesh axis of the other devices of the SAM group, when a group spans devices (None:
the batch is the whole group); an objective that couples examples (``contrastive``)
gathers over it, one that averages over examples needs not (the step averages).

``Supervised`` (the default): the mean cross-entropy of the logits and the labels.
"""

import dataclasses
from typing import Any, Callable, Protocol

import jax

from sam_jax import metrics

Batch = dict[str, jax.Array]
# (params, images, dropout key) -> (outputs, updated model state, {} if none).
Forward = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, dict]]
Result = tuple[jax.Array, tuple[dict[str, jax.Array], dict]]


class Objective(Protocol):
  """(loss, (metrics, updated model state)) of ``params`` on one SAM group's batch."""

  def __call__(self, forward: Forward, params: Any, batch: Batch, rng: jax.Array, *,
               group_axis: str | None) -> Result:
    ...


@dataclasses.dataclass(frozen=True)
class Supervised:
  """Cross-entropy ``loss`` (a ``metrics.LOSSES`` name) of the logits of ``batch["image"]``
  and ``batch["label"]``; the metric is top-1 accuracy."""
  loss: str = "softmax_xent"

  def __post_init__(self):
    metrics.check_loss(self.loss)

  def __call__(self, forward: Forward, params: Any, batch: Batch, rng: jax.Array, *,
               group_axis: str | None = None) -> Result:
    del group_axis  # A mean over examples: the step averages the groups' parts.
    logits, model_state = forward(params, batch["image"], rng)
    return (metrics.cross_entropy(logits, batch["label"], self.loss),
            ({"accuracy": metrics.accuracy(logits, batch["label"])}, model_state))
