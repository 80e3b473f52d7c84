"""The model families' registry, and ``create_model``, the constructor configs use.

A model is named by family and variant, big_vision style: ``("vit", "B/16")`` is
width B with 16x16 patches (any patch size), ``("mixer", "S/32")``, ``("resnet",
"50")``. The variant sets the size fields; keyword overrides replace any field of
the family's module (e.g. ``hidden_size=64``, ``dropout_rate=0.1``).

Everything else the library knows about a family is in its ``Family`` entry: its
parameter blocks (``param_blocks``), the name its hidden units are sown under (the
"active neurons" of the analyses), the key that marks its official ``.npz``
checkpoints, and the family's part of reading them (``npz_adapt``, ``npz_fields``,
e.g. ``vit_npz``). Adding a family is its module plus one entry in ``MODELS``.

Any family takes ``projection=(d_1, ..., d_L)`` (and ``projection_batch_norm``): the
model of contrastive pretraining, the headless backbone under a projection head
(``projection.Projected``), returning projections instead of logits.
"""

import dataclasses
from typing import Any, Callable, Mapping, Protocol

import flax.core
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam_jax.models import mixer, projection, resnet, vit, vit_npz

BlockRules = tuple[tuple[str, str], ...]  # (pattern, block name), see ``param_blocks``.
Flat = dict[str, np.ndarray]  # An .npz's arrays by "/"-joined linen key.


class NpzAdapt(Protocol):
  """``flat`` (a family's .npz arrays) adapted to ``template`` (the model's flat params),
  after the generic adaptations; ``new_head``: the head was replaced by the template's;
  ``source`` names the file in messages. Raises ValueError for what cannot be adapted."""

  def __call__(self, flat: Flat, template: Mapping[str, Any], *, new_head: bool,
               source: Any) -> Flat: ...


def no_npz_adaptation(flat: Flat, template: Mapping[str, Any], *, new_head: bool,
                      source: Any) -> Flat:
  """The ``npz_adapt`` of a family whose files need no adaptation of their own."""
  del template, new_head, source
  return flat
# Fields every family takes (``create_model``): a contrastive model's projection head.
PROJECTION_FIELDS = ("projection", "projection_batch_norm")


@dataclasses.dataclass(frozen=True)
class Family:
  """A module class and what the library needs to know about it.

  Attributes:
    module: the Flax module class.
    sizes: variant width (or depth) -> module fields.
    patched: whether variants carry a patch size (``"B/16"``) or are a depth (``"50"``).
    param_blocks: rules naming the paper's parameter blocks (``param_blocks.partition``);
      empty: group by top-level module.
    hidden_units: the ``intermediates`` name of the units counted as active neurons.
    npz_marker: a key only this family's official ``.npz`` checkpoints have; None when
      there is no such format.
    npz_adapt: the family's adaptations of a file's arrays to the model (``NpzAdapt``).
    npz_fields: a file's arrays -> the model fields the file fixes (e.g. a ViT's
      ``representation_size``), which a model evaluating the file follows.
  """
  module: type[nn.Module]
  sizes: Mapping[str, Mapping[str, Any]]
  patched: bool
  param_blocks: BlockRules = ()
  hidden_units: str = "hidden"
  npz_marker: str | None = None
  npz_adapt: NpzAdapt = no_npz_adaptation
  npz_fields: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda flat: {}


MODELS: dict[str, Family] = {
    "vit": Family(vit.VisionTransformer, vit.SIZES, patched=True,
                  param_blocks=vit.PARAM_BLOCKS + projection.PARAM_BLOCKS,
                  npz_marker=vit.NPZ_MARKER, npz_adapt=vit_npz.adapt,
                  npz_fields=vit_npz.model_fields),
    "mixer": Family(mixer.MlpMixer, mixer.SIZES, patched=True,
                    param_blocks=mixer.PARAM_BLOCKS + projection.PARAM_BLOCKS,
                    npz_marker=mixer.NPZ_MARKER),
    # Post-ReLU block outputs: a ResNet has no separate hidden layer to sow.
    "resnet": Family(resnet.ResNet, resnet.SIZES, patched=False,
                     param_blocks=resnet.PARAM_BLOCKS + projection.PARAM_BLOCKS,
                     hidden_units="out"),
}


def family(name: str) -> Family:
  """The registry entry of ``name``; ValueError naming the valid ones."""
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; valid names: {sorted(MODELS)}.")
  return MODELS[name]


def model_fields(name: str) -> tuple[str, ...]:
  """The fields of family ``name``'s module that a variant or override may set, and
  ``PROJECTION_FIELDS``."""
  return tuple(f.name for f in dataclasses.fields(family(name).module)
               if f.name not in ("parent", "name")) + PROJECTION_FIELDS


def create_model(name: str, variant: str, *, num_classes: int, **overrides: Any) -> nn.Module:
  """Builds e.g. ``create_model("vit", "B/16", num_classes=1000, dropout_rate=0.1)``.

  A ``dtype`` given by name (``"bfloat16"``, as configs hold it) becomes a numpy dtype.
  A non-empty ``projection`` gives the headless backbone under that projection head
  (``num_classes`` is then unused).

  Raises:
    ValueError: unknown family, variant or override field.
  """
  entry = family(name)
  size, sep, patch = variant.partition("/")
  expected = "'<width>/<patch>', e.g. 'B/16'" if entry.patched else "a depth, e.g. '50'"
  if size not in entry.sizes or bool(sep) != entry.patched or (sep and not patch.isdigit()):
    raise ValueError(f"create_model: unknown {name} variant {variant!r}; expected {expected} "
                     f"with the size one of {sorted(entry.sizes)}.")
  fields = dict(entry.sizes[size], num_classes=num_classes)
  if entry.patched:
    fields["patch_size"] = int(patch)
  unknown = sorted(set(overrides) - set(model_fields(name)))
  if unknown:
    raise ValueError(f"create_model: {name} has no field(s) {unknown}; valid fields: "
                     f"{list(model_fields(name))}.")
  # Lists (e.g. from a config) become tuples: Flax modules are hashed as static arguments.
  overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
  if isinstance(overrides.get("dtype"), str):
    overrides["dtype"] = jnp.dtype(overrides["dtype"])
  widths = overrides.pop("projection", ())
  batch_norm = overrides.pop("projection_batch_norm", True)
  if not widths:
    return entry.module(**(fields | overrides))
  backbone = entry.module(**(fields | overrides | {"num_classes": 0}))
  return projection.Projected(backbone, tuple(widths), batch_norm)


def from_config(model_config: Mapping[str, Any], num_classes: int) -> nn.Module:
  """The model of a config's ``model`` section: ``name``, ``variant`` and field overrides."""
  overrides = {k: v for k, v in model_config.items() if k not in ("name", "variant")}
  return create_model(model_config["name"], model_config["variant"], num_classes=num_classes,
                      **overrides)


def initialize(model: nn.Module, rng: jax.Array, image_size: int
               ) -> tuple[dict[str, Any], dict[str, Any], jax.Array]:
  """(params, other collections, dropout key) of ``model`` initialised from ``rng``.

  ``rng`` splits into the init key (``model.init`` on one zero [1, S, S, 3] image,
  ``train=False``) and the key left for dropout, so a run and its later analyses
  start from the same weights.
  """
  init_rng, dropout_rng = jax.random.split(rng)
  variables = model.init(init_rng, jnp.zeros((1, image_size, image_size, 3), jnp.float32),
                         train=False)
  variables = flax.core.unfreeze(variables)
  params = variables.pop("params")
  return params, variables, dropout_rng


__all__ = ["MODELS", "Family", "NpzAdapt", "create_model", "family", "from_config", "initialize",
           "model_fields"]
