"""What an analysis is (``Analysis``) and what its run function gets (``Context``).

An analysis is one module, named after it, holding its ``Analysis`` as ``ANALYSIS``: a
name, a ``run`` function of one model's ``Context`` returning JSON-serialisable results,
a ``figures`` function comparing the runs, and optionally ``unavailable``, why a run
cannot have it. ``registry.ANALYSES`` lists them; ``runner`` runs them.
"""

import dataclasses
import functools
from typing import Any, Callable, Mapping

from etils import epath
import jax
from jax.sharding import Mesh
import ml_collections

from sam_jax import models, parallel
from sam_jax.analysis import model_functions
from sam_jax.checkpoints import loading
from sam_jax.data import eval_batches
from sam_jax.models import param_blocks

Results = Mapping[str, Mapping[str, Any]]  # {run label: {analysis name: its results}}.


class Context:
  """One model on a mesh, with the functions and the data the analyses share.

  The parameters and model state are replicated over ``mesh``; batches are split over
  it. Settings: ``config.analysis`` (``config.defaults.analysis``).
  """

  def __init__(self, loaded: loading.Loaded, mesh: Mesh):
    self.loaded, self.mesh = loaded, mesh
    self.params, self.model_state = parallel.replicate((loaded.params, loaded.model_state), mesh)

  @property
  def config(self) -> ml_collections.ConfigDict:
    return self.loaded.config

  @property
  def settings(self) -> ml_collections.ConfigDict:
    return self.loaded.config.analysis

  @property
  def family(self) -> models.Family:
    return models.family(self.config.model.name)

  @functools.cached_property
  def loss(self) -> model_functions.Loss:
    return model_functions.Loss(self.loaded.model, self.model_state, self.config.loss)

  @functools.cached_property
  def metrics(self) -> model_functions.Metrics:
    return model_functions.Metrics(self.loaded.model, self.model_state, self.config.loss)

  @functools.cached_property
  def intermediates(self) -> model_functions.Intermediates:
    return model_functions.Intermediates(self.loaded.model, self.model_state)

  @functools.cached_property
  def blocks(self) -> dict[str, tuple[str, ...]]:
    """The paper's parameter blocks of this model (``param_blocks.partition``)."""
    return param_blocks.partition(self.params, self.family.param_blocks)

  def batches(self, num_batches: int, *, split: str | None = None,
              batch_size: int | None = None) -> list[eval_batches.Batch]:
    """The first full batches of ``split`` (default ``settings.split``), sharded."""
    return eval_batches.batches(self.config, self.mesh, split=split or self.settings.split,
                                batch_size=batch_size or self.settings.batch_size,
                                num_batches=num_batches)

  @functools.cached_property
  def sown(self) -> list[dict[str, Any]]:
    """The ``intermediates`` of the first ``settings.neurons.num_batches`` batches."""
    return [self.intermediates(self.params, b["image"])
            for b in self.batches(self.settings.neurons.num_batches)]

  def attention_images(self) -> jax.Array:
    """The first batch of ``settings.attention.split`` (the maps keep its first
    ``attention.num_images``): the smallest multiple of the device count that holds them."""
    num_images, devices = self.settings.attention.num_images, jax.device_count()
    batch_size = -(-num_images // devices) * devices
    return self.batches(1, split=self.settings.attention.split,
                        batch_size=batch_size)[0]["image"]


@dataclasses.dataclass(frozen=True)
class Analysis:
  """One analysis: ``run(context) -> results``; ``figures(results, output_dir, first)``
  writes PNGs comparing the runs that all have it (``first``: the first run's context)
  and returns their paths; ``unavailable(loaded)`` says why a run cannot have it (None:
  it can)."""
  name: str
  run: Callable[[Context], dict[str, Any]]
  figures: Callable[[Results, epath.Path, Context], list[str]]
  unavailable: Callable[[loading.Loaded], str | None] = lambda loaded: None
