"""Model families and ``create_model``, the constructor configs use.

A model is named by family and variant, big_vision style: ``("vit", "B/16")`` is
width B with 16x16 patches (any patch size), ``("mixer", "S/32")``, ``("resnet",
"50")``. The variant sets the size fields; keyword overrides replace any field of
the family's module (e.g. ``hidden_size=64``, ``dropout_rate=0.1``).
"""

import dataclasses
from typing import Any, Mapping

import flax.linen as nn

from sam_jax.models import mixer, resnet, vit


@dataclasses.dataclass(frozen=True)
class Family:
  """A module class, its named sizes, and whether variants carry a patch size."""
  module: type[nn.Module]
  sizes: Mapping[str, Mapping[str, Any]]
  patched: bool


MODELS: dict[str, Family] = {
    "vit": Family(vit.VisionTransformer, vit.SIZES, patched=True),
    "mixer": Family(mixer.MlpMixer, mixer.SIZES, patched=True),
    "resnet": Family(resnet.ResNet, resnet.SIZES, patched=False),
}


def model_fields(name: str) -> tuple[str, ...]:
  """The fields of family ``name``'s module that a variant or override may set."""
  return tuple(f.name for f in dataclasses.fields(_family(name).module)
               if f.name not in ("parent", "name"))


def create_model(name: str, variant: str, *, num_classes: int, **overrides: Any) -> nn.Module:
  """Builds e.g. ``create_model("vit", "B/16", num_classes=1000, dropout_rate=0.1)``.

  Raises:
    ValueError: unknown family, variant or override field.
  """
  family = _family(name)
  size, sep, patch = variant.partition("/")
  expected = "'<width>/<patch>', e.g. 'B/16'" if family.patched else "a depth, e.g. '50'"
  if size not in family.sizes or bool(sep) != family.patched or (sep and not patch.isdigit()):
    raise ValueError(f"create_model: unknown {name} variant {variant!r}; expected {expected} "
                     f"with the size one of {sorted(family.sizes)}.")
  fields = dict(family.sizes[size], num_classes=num_classes)
  if family.patched:
    fields["patch_size"] = int(patch)
  unknown = sorted(set(overrides) - set(model_fields(name)))
  if unknown:
    raise ValueError(f"create_model: {name} has no field(s) {unknown}; valid fields: "
                     f"{list(model_fields(name))}.")
  # Lists (e.g. from a config) become tuples: Flax modules are hashed as static arguments.
  overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
  return family.module(**(fields | overrides))


def _family(name: str) -> Family:
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; valid names: {sorted(MODELS)}.")
  return MODELS[name]


__all__ = ["MODELS", "Family", "create_model", "model_fields"]
