"""Functions of a model's parameters for the analyses: logits, loss, metrics, intermediates.

Each is a callable object fixed by the model and its model state (e.g. BatchNorm
statistics), applied with ``train=False``. Objects of one class are equal (and
hash equal) for an equal model and the very same model-state arrays, so the jit
caches keyed on them (``hessian``, ``landscape``, ``ntk`` take them as static
arguments) compile once for every run of an architecture without model state
(ViT, Mixer), and for the model at initialisation too.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_jax.training import train_step


class ModelFunction:
  """Base: holds the model and its state; equality by model and state identity."""

  def __init__(self, model: nn.Module, model_state: dict[str, Any]):
    self.model, self.state = model, model_state
    leaves, treedef = jax.tree.flatten(model_state)
    self._key = (type(self), model, treedef, tuple(id(x) for x in leaves))

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, ModelFunction) and self._key == other._key

  def __hash__(self) -> int:
    return hash(self._key)

  def _apply(self, params: Any, images: jax.Array, **kwargs):
    return self.model.apply({"params": params, **self.state}, images, train=False, **kwargs)


class Logits(ModelFunction):
  """(params, images) -> logits."""

  def __call__(self, params: Any, images: jax.Array) -> jax.Array:
    return self._apply(params, images)


class Loss(ModelFunction):
  """(params, batch) -> the mean training loss (``loss``: a ``train_step.LOSSES`` name)."""

  def __init__(self, model: nn.Module, model_state: dict[str, Any], loss: str = "softmax_xent"):
    super().__init__(model, model_state)
    self.loss = loss
    self._key += (loss,)

  def __call__(self, params: Any, batch: dict[str, jax.Array]) -> jax.Array:
    return train_step.cross_entropy(self._apply(params, batch["image"]), batch["label"],
                                    self.loss)


class Metrics(Loss):
  """(params, batch) -> {"loss": the mean training loss, "accuracy": mean top-1}."""

  def __call__(self, params: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    logits = self._apply(params, batch["image"])
    return {"loss": train_step.cross_entropy(logits, batch["label"], self.loss),
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}


class Intermediates(ModelFunction):
  """(params, images) -> the sown ``intermediates`` collection (jitted)."""

  @functools.partial(jax.jit, static_argnums=0)
  def __call__(self, params: Any, images: jax.Array) -> dict[str, Any]:
    return self._apply(params, images, mutable=["intermediates"])[1]
