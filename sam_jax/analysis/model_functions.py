"""Functions of a model's parameters for the analyses: logits, loss, metrics, intermediates.

``sown`` reads the values the models sow into ``intermediates`` (see ``sam_jax.models``).

Each is a callable object fixed by the model and its model state (e.g. BatchNorm
statistics), applied with ``train=False``. Objects of one class are equal (and
hash equal) for an equal model and the very same model-state arrays, so the jit
caches keyed on them (``hessian``, ``landscape``, ``ntk`` take them as static
arguments) compile once for every run of an architecture without model state
(ViT, Mixer), and for the model at initialisation too.
"""

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax

from sam_jax import metrics
from sam_jax.models import param_blocks


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

  def _apply(self, params: Any, images: jax.Array, **kwargs) -> Any:
    """The model's output, with the mutated collections when ``kwargs`` has ``mutable``."""
    return self.model.apply({"params": params, **self.state}, images, train=False, **kwargs)


class Logits(ModelFunction):
  """(params, images) -> logits."""

  def __call__(self, params: Any, images: jax.Array) -> jax.Array:
    return self._apply(params, images)


class Loss(ModelFunction):
  """(params, batch) -> the mean training loss (``loss``: a ``metrics.LOSSES`` name)."""

  def __init__(self, model: nn.Module, model_state: dict[str, Any], loss: str = "softmax_xent"):
    super().__init__(model, model_state)
    self.loss = loss
    self._key += (loss,)

  def __call__(self, params: Any, batch: dict[str, jax.Array]) -> jax.Array:
    return metrics.cross_entropy(self._apply(params, batch["image"]), batch["label"], self.loss)


class Metrics(Loss):
  """(params, batch) -> {"loss": the mean training loss, "accuracy": mean top-1}."""

  def __call__(self, params: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    logits = self._apply(params, batch["image"])
    return {"loss": metrics.cross_entropy(logits, batch["label"], self.loss),
            "accuracy": metrics.accuracy(logits, batch["label"])}


class Intermediates(ModelFunction):
  """(params, images) -> the sown ``intermediates`` collection (jitted)."""

  @functools.partial(jax.jit, static_argnums=0)
  def __call__(self, params: Any, images: jax.Array) -> dict[str, Any]:
    return self._apply(params, images, mutable=["intermediates"])[1]


def sown(intermediates: Mapping[str, Any], name: str) -> dict[str, jax.Array]:
  """``{module path: value}`` of every value sown under ``name``, in natural path order.

  Accepts the ``intermediates`` collection or the whole mutable output holding it. A
  module that sowed several values under one name gets entries ``path/0``, ``path/1``...
  """
  tree = intermediates.get("intermediates", intermediates)
  found = {}
  for path, values in param_blocks.flatten(tree).items():
    module, _, leaf = path.rpartition("/")
    if leaf != name:
      continue
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if len(values) == 1:
      found[module] = values[0]
    else:
      found.update({f"{module}/{i}": v for i, v in enumerate(values)})
  return {k: found[k] for k in sorted(found, key=param_blocks.natural_key)}


def sown_names(intermediates: Mapping[str, Any]) -> list[str]:
  """The names anything was sown under."""
  tree = intermediates.get("intermediates", intermediates)
  return sorted({p.rpartition("/")[2] for p in param_blocks.flatten(tree)})
