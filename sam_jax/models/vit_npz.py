"""The ViT's part of reading official ``.npz`` checkpoints (``models.Family``'s npz hooks).

``checkpoints.npz`` reads any family's file, drops a contrastive projection head the
model lacks and replaces the head when asked to or when its shape differs; then
``adapt`` makes the ViT's adaptations, each logged:

* ``pre_logits`` in the file but not in the model is dropped (the official fine-tuning
  code does so, ``vit_jax/checkpoint.py``), but only with a replaced head. With the
  file's head kept, dropping the layer its head was trained on would compute another
  function: that is an error naming ``config.model.representation_size``
  (``model_fields`` gives the file's width, for a model that follows the file);
* the position embedding has another number of tokens (another resolution or patch
  grid): the class-token row is kept and the square grid of the others is resized
  bilinearly (``scipy.ndimage.zoom(order=1)``, corners aligned), as the official code does.
"""

from typing import Any, Mapping

from absl import logging
import numpy as np
import scipy.ndimage

Flat = dict[str, np.ndarray]  # An .npz's arrays by "/"-joined linen key.
POSEMB = "Transformer/posembed_input/pos_embedding"
PRE_LOGITS = "pre_logits/kernel"


def representation_size(flat: Mapping[str, Any]) -> int | None:
  """The width of the file's tanh ``pre_logits`` layer, or None when it has none."""
  return int(np.shape(flat[PRE_LOGITS])[-1]) if PRE_LOGITS in flat else None


def model_fields(flat: Mapping[str, Any]) -> dict[str, Any]:
  """The model fields a file fixes: the width of its representation layer (or None)."""
  return {"representation_size": representation_size(flat)}


def resize_posemb(posemb: np.ndarray, num_tokens: int, *, class_token: bool) -> np.ndarray:
  """[1, n, d] -> [1, num_tokens, d]: keeps the class-token row, resizes the square grid.

  The grid of g x g rows becomes g' x g' with ``scipy.ndimage.zoom(order=1)``: new
  row (i, j) samples the bilinear interpolant at (i (g-1)/(g'-1), j (g-1)/(g'-1)).
  """
  tok, grid = (posemb[:, :1], posemb[0, 1:]) if class_token else (posemb[:, :0], posemb[0])
  new_grid_tokens = num_tokens - tok.shape[1]
  old, new = int(round(np.sqrt(len(grid)))), int(round(np.sqrt(new_grid_tokens)))
  if old * old != len(grid) or new * new != new_grid_tokens:
    raise ValueError(f"Position embedding: cannot resize {len(grid)} grid tokens to "
                     f"{new_grid_tokens}; only square grids are supported.")
  grid = grid.reshape(old, old, -1)
  grid = scipy.ndimage.zoom(grid, (new / old, new / old, 1), order=1)
  return np.concatenate([tok, grid.reshape(1, new * new, -1)], axis=1).astype(posemb.dtype)


def adapt(flat: Flat, template: Mapping[str, Any], *, new_head: bool, source: Any) -> Flat:
  """``flat`` with the module docstring's ViT adaptations to ``template`` (flat, linen keys).

  ``new_head``: the head was replaced by the template's; ``source`` names the file.

  Raises:
    ValueError: a representation layer that would be dropped under the file's own head.
  """
  flat = dict(flat)
  width = representation_size(flat)
  if width is not None and PRE_LOGITS not in template:
    if not new_head:
      raise ValueError(
          f"load_params: {source} has a tanh representation layer pre_logits of width {width}, "
          f"and its head was trained on that layer's output; the model has none, so keeping "
          f"the file's head without it would compute another function. Set "
          f"--config.model.representation_size={width} to load the file as it is (or replace "
          f"the head, as fine-tuning does, to drop the layer).")
    logging.warning("load_params: %s: dropping pre_logits (width %d) with the file's head (the "
                    "model has no representation layer).", source, width)
    flat.pop(PRE_LOGITS)
    flat.pop("pre_logits/bias", None)
  if POSEMB in flat and POSEMB in template and ("cls" in flat) == ("cls" in template):
    old, new = flat[POSEMB].shape, np.shape(template[POSEMB])
    if old != new and len(old) == len(new) == 3 and old[::2] == new[::2]:
      logging.info("load_params: %s: resizing the position embedding %s -> %s.", source, old,
                   new)
      flat[POSEMB] = resize_posemb(flat[POSEMB], new[1], class_token="cls" in template)
  return flat
