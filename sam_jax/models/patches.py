"""Patch embedding shared by ViT and MLP-Mixer.

An image [n, H, W, c] is cut into non-overlapping p_h x p_w patches, each mapped
linearly to ``width`` features: a convolution with kernel = stride = patch size
and VALID padding, giving [n, (H / p_h) * (W / p_w), width] tokens in row-major
grid order. It stays XLA's convolution: as one matrix product over the patch values
(``conv_matmul``) the operation alone ran faster, but a ViT-S/16 SAM step did not
(0.95x and 0.98x at batch 16 and 32, ``benchmarks/RESULTS.md``).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax


def patch_shape(patch_size: int | Sequence[int]) -> tuple[int, int]:
  """``16`` or ``(16, 16)`` -> ``(16, 16)``; rejects non-positive sizes."""
  shape = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
  if len(shape) != 2 or not all(isinstance(p, int) and p > 0 for p in shape):
    raise ValueError(f"patch_size must be a positive int or a pair of them, got {patch_size!r}.")
  return shape


def embed_patches(images: jax.Array, patch_size: int | Sequence[int], width: int, *,
                  name: str, dtype: Any) -> jax.Array:
  """Tokens [n, grid_h * grid_w, width]; call inside a compact method (the conv is ``name``)."""
  if images.ndim != 4:
    raise ValueError(f"{name}: expected NHWC images, got shape {images.shape}.")
  ph, pw = patch_shape(patch_size)
  _, h, w, _ = images.shape
  if h % ph or w % pw:
    raise ValueError(f"{name}: image size {h}x{w} is not divisible by the patch size {ph}x{pw}.")
  x = nn.Conv(width, (ph, pw), strides=(ph, pw), padding="VALID", dtype=dtype,
              name=name)(images)
  n, gh, gw, c = x.shape
  return x.reshape(n, gh * gw, c)
