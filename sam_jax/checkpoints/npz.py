"""The official ViT / MLP-Mixer ``.npz`` checkpoints: loading into and exporting from our models.

The released files (``gs://vit_models/...``, ``gs://mixer_models/...``, including the
SAM ones) are ``np.savez`` archives of the parameter tree flattened to "/"-joined keys,
e.g. ``Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel``. The released ViT files
use the pre-linen numbering (one counter per block: ``LayerNorm_0,
MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3``); our models use the linen
numbering of the current official code (``LayerNorm_0, MultiHeadDotProductAttention_0,
LayerNorm_1, MlpBlock_0``), to which pre-linen keys are renamed on reading. Export
writes the released (pre-linen) names by default, which every loader of the released
files reads (timm's ``_load_weights`` reads no other; docs/paper.md R52), or the linen
names on request.

``load_params`` loads such a file into a model: the freshly initialised params are the
template; every key and shape of the file must match it, except for these
adaptations, each logged:

* a top-level ``projection`` subtree (the head of contrastive pretraining,
  ``models.projection``) that the model lacks: dropped;
* the head has another number of classes (or ``reinit_head``, also for a file without
  a head, such as a contrastive backbone): the template's head;
* then the family's own (``models.Family.npz_adapt``; the ViT's ``pre_logits`` and
  position embedding: ``models.vit_npz``).
"""

import io
import os
import re
import zipfile

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np

from sam_jax import models
from sam_jax.models import param_blocks

Flat = dict[str, np.ndarray]

# Family -> a key only its checkpoints have (``models.Family.npz_marker``).
FAMILY_MARKERS = {name: family.npz_marker for name, family in models.MODELS.items()
                  if family.npz_marker}
MAX_LISTED = 30  # mismatches listed in an error message
_PRE_LINEN_BLOCK = re.compile(
    r"^(Transformer/encoderblock_\d+/)(MultiHeadDotProductAttention_1|LayerNorm_2|MlpBlock_3)/")
_LINEN_NAME = {"MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
               "LayerNorm_2": "LayerNorm_1", "MlpBlock_3": "MlpBlock_0"}
_LINEN_BLOCK = re.compile(
    r"^(Transformer/encoderblock_\d+/)(MultiHeadDotProductAttention_0|LayerNorm_1|MlpBlock_0)/")
_RELEASED_NAME = {linen: released for released, linen in _LINEN_NAME.items()}
NAMES = ("released", "linen")  # Key names export_npz can write.
PROJECTION = models.projection.PROJECTION  # A contrastive model's projection head.


def read_npz(path: str | os.PathLike) -> Flat:
  """All arrays of an .npz file (local or gs://), by key; refuses pickled objects,
  non-float arrays and non-finite values."""
  try:
    archive = np.load(io.BytesIO(epath.Path(path).read_bytes()), allow_pickle=False)
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise ValueError(f"{path}: not a readable .npz archive ({e}).") from None
  if not isinstance(archive, np.lib.npyio.NpzFile):
    raise ValueError(f"{path}: holds a single .npy array, not an .npz archive of named params.")
  flat = {}
  with archive:
    for key in archive.files:
      try:
        value = archive[key]
      except ValueError as e:
        raise ValueError(f"{path}: array {key!r} is a pickled object array, which is never "
                         f"loaded (allow_pickle=False) ({e}).") from None
      if value.dtype.kind != "f":
        raise ValueError(f"{path}: array {key!r} has dtype {value.dtype}, expected floating "
                         f"point parameters.")
      flat[key] = value
  nonfinite = sorted(key for key, value in flat.items() if not np.all(np.isfinite(value)))
  if nonfinite:
    raise ValueError(f"{path}: arrays {nonfinite[:MAX_LISTED]} hold non-finite values (NaN or "
                     "infinity); such parameters are never loaded.")
  return flat


def to_linen_names(flat: Flat) -> Flat:
  """Renames pre-linen ViT block keys to the linen numbering; linen keys pass unchanged."""
  renamed = {}
  for key, value in flat.items():
    new = _PRE_LINEN_BLOCK.sub(lambda m: m.group(1) + _LINEN_NAME[m.group(2)] + "/", key)
    if new in renamed:
      raise ValueError(f"Checkpoint mixes pre-linen and linen names: {key!r} and another key "
                       f"both map to {new!r}.")
    renamed[new] = value
  return renamed


def to_released_names(flat: Flat) -> Flat:
  """Renames linen ViT block keys to the released files' pre-linen numbering."""
  return {_LINEN_BLOCK.sub(lambda m: m.group(1) + _RELEASED_NAME[m.group(2)] + "/", k): v
          for k, v in flat.items()}


def detect_family(flat: Flat) -> str:
  """The family whose ``npz_marker`` the keys hold; ValueError for none or several."""
  found = [name for name, marker in FAMILY_MARKERS.items() if marker in flat]
  if len(found) != 1:
    raise ValueError(f"Unknown architecture: expected exactly one of the keys "
                     f"{list(FAMILY_MARKERS.values())} ({list(FAMILY_MARKERS)}); the file has "
                     f"{len(flat)} keys starting {sorted(flat)[:5]}.")
  return found[0]


def read_params(path: str | os.PathLike) -> Flat:
  """An official-format .npz's arrays by linen key (pre-linen names renamed)."""
  return to_linen_names(read_npz(path))


def load_params(path: str | os.PathLike, model_name: str, init_params, *,
                reinit_head: bool = False, flat: Flat | None = None) -> dict:
  """Params from an official-format .npz, shaped like ``init_params``.

  Args:
    path: the .npz file (pre-linen or linen names, with or without ``pre_logits``).
    model_name: a ``create_model`` family with an .npz format (``models.Family.npz_marker``).
    init_params: the model's freshly initialised ``variables["params"]``: the
      template for keys, shapes and dtypes, and the source of a replaced head.
    reinit_head: take the template's head even when its shape matches the file's.
    flat: the file's arrays, already read by ``read_params`` (else ``path`` is read).

  Returns:
    A new param tree with the template's structure, shapes and dtypes.

  Raises:
    ValueError: unsupported family or file, another architecture, a representation
      layer that would be dropped under the file's own head, or keys/shapes that do not
      match the template (each named, up to MAX_LISTED, with both shapes); nothing is
      returned then.
  """
  if model_name not in FAMILY_MARKERS:
    raise ValueError(f"load_params: no .npz checkpoint format for model {model_name!r}; "
                     f"supported: {list(FAMILY_MARKERS)}.")
  flat = read_params(path) if flat is None else flat
  family = detect_family(flat)
  if family != model_name:
    raise ValueError(f"load_params: {path} holds a {family} checkpoint, not a {model_name} one.")
  return fit_params(flat, model_name, init_params, source=path, reinit_head=reinit_head)


def fit_params(flat: Flat, model_name: str, init_params, *, source,
               reinit_head: bool = False) -> dict:
  """``flat`` (linen keys of a ``model_name`` model, any family) shaped like ``init_params``
  after the adaptations of the module docstring; ``source`` names the weights in messages.

  Raises:
    ValueError: keys or shapes that do not match the template (each named, up to
      MAX_LISTED, with both shapes), or a representation layer that would be dropped
      under the file's own head; nothing is returned then.
  """
  if "params" in init_params and len(init_params) == 1:
    raise ValueError("load_params: init_params must be variables['params'], not the whole "
                     "variables dict.")
  template = param_blocks.flatten(init_params)
  flat, new_head = _adapt(flat, template, reinit_head=reinit_head, path=source)
  flat = models.family(model_name).npz_adapt(flat, template, new_head=new_head, source=source)

  missing = [f"  {k}: missing from the file (model shape {np.shape(template[k])})"
             for k in sorted(template.keys() - flat.keys())]
  extra = [f"  {k}: in the file (shape {flat[k].shape}) but not in the model"
           for k in sorted(flat.keys() - template.keys())]
  shapes = [f"  {k}: file shape {flat[k].shape} != model shape {np.shape(template[k])}"
            for k in sorted(flat.keys() & template.keys())
            if flat[k].shape != np.shape(template[k])]
  problems = missing + extra + shapes
  if problems:
    shown = problems[:MAX_LISTED] + ([f"  ... and {len(problems) - MAX_LISTED} more"]
                                     if len(problems) > MAX_LISTED else [])
    raise ValueError(f"load_params: {source} does not match the model "
                     f"({len(problems)} problems, nothing loaded; keys in linen names):\n"
                     + "\n".join(shown))
  return param_blocks.unflatten({k: jnp.asarray(flat[k], dtype=template[k].dtype)
                                 for k in template})


def _adapt(flat: Flat, template, *, reinit_head: bool, path) -> tuple[Flat, bool]:
  """The logged adaptations of any family (projection, head); whether the head is new."""
  flat = dict(flat)
  prefix = PROJECTION + "/"
  projection = [k for k in flat if k.startswith(prefix)]
  if projection and not any(k.startswith(prefix) for k in template):
    logging.warning("load_params: %s: dropping the contrastive projection head (%d arrays under "
                    "%s/); the model has none.", path, len(projection), PROJECTION)
    for key in projection:
      del flat[key]
  head = ("head/kernel", "head/bias")
  new_head = all(k in template for k in head) and (
      reinit_head or any(k in flat and flat[k].shape != np.shape(template[k]) for k in head))
  if new_head:
    file_head = getattr(flat.get("head/kernel"), "shape", None)
    logging.warning("load_params: %s: using the freshly initialised head %s instead of %s.",
                    path, np.shape(template["head/kernel"]),
                    f"the file's {file_head}" if file_head else "none in the file (a backbone)")
    flat.update({k: np.asarray(template[k]) for k in head})
  return flat, new_head


def export_npz(path: str | os.PathLike, params, *, names: str = "released") -> None:
  """Writes ``params`` (``variables["params"]``) to ``path`` as a flat "/"-keyed .npz.

  ``names``: ``"released"`` (default) writes the ViT block keys as the released files
  have them (``MultiHeadDotProductAttention_1``, ``LayerNorm_2``, ``MlpBlock_3``), which
  the official ``vit_jax`` loader and timm's ``.npz`` loader read; ``"linen"`` writes our
  modules' names. Mixer keys are the same either way. The file is exactly at ``path``
  (no ".npz" appended) and reads back with ``load_params`` bit for bit. A ViT with a
  representation layer (``pre_logits``) is exported with a warning: timm's ``.npz`` loader
  skips that layer, so timm would compute other logits from the file.

  Raises:
    ValueError: ``names`` is not one of ``NAMES``.
  """
  if names not in NAMES:
    raise ValueError(f"export_npz: names={names!r} is not one of {NAMES}.")
  if "pre_logits" in params:
    logging.warning(
        "export_npz: %s holds a representation layer (pre_logits, width %d). timm's ViT .npz "
        "loader (timm.models.vision_transformer._load_weights) ignores pre_logits, so timm "
        "would compute other logits from this file; sam_jax and the official vit_jax code read "
        "it whole.", path, np.shape(params["pre_logits"]["kernel"])[-1])
  flat = {k: np.asarray(jax.device_get(v)) for k, v in param_blocks.flatten(params).items()}
  if names == "released":
    flat = to_released_names(flat)
  with epath.Path(path).open("wb") as f:
    np.savez(f, **flat)  # pyright: ignore[reportArgumentType]  (numpy types **kwds as its options)
