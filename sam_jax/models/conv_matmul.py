"""Convolutions whose windows do not overlap, computed as one matrix product.

A 2-D convolution with kernel k and stride s per spatial axis, no padding and no
dilation, where each axis has k = 1 (a 1x1 / pointwise convolution, strided or not)
or k = s (a patch embedding), reads every input pixel at most once:

  y[n, i, j, o] = sum_{a, b, c} x[n, s_h i + a, s_w j + b, c] w[a, b, c, o]

so it is a ``dot_general`` over (a, b, c) of the input cut into [n, g_h, k_h, g_w, k_w, c]
windows (a strided slice for k = 1, a reshape for k = s) with the unchanged kernel
[k_h, k_w, c, o]. XLA:CPU runs that as one GEMM in the forward and both backward
products, where a convolution of the same shape goes through its convolution emitter and,
for the kernel gradient, a transpose of the activations into a batch-minor layout (see
``benchmarks/RESULTS.md``). ``conv_general_dilated`` has the signature of
``lax.conv_general_dilated`` and is passed to ``flax.linen.Conv(conv_general_dilated=...)``,
so the module, its parameter path and kernel shape stay those of ``nn.Conv``; any other
convolution (overlapping windows, padding, dilation, groups, other layouts) goes to
``lax.conv_general_dilated`` unchanged.
"""

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _as_matmul(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
               lhs_dilation: Sequence[int] | None, rhs_dilation: Sequence[int] | None,
               dimension_numbers: Any, feature_group_count: int) -> bool:
  """Whether the convolution is 2-D NHWC/HWIO with non-overlapping, unpadded windows."""
  if lhs.ndim != 4 or feature_group_count != 1:
    return False
  if any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))):
    return False
  if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != \
      lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC):
    return False
  kernel, strides = rhs.shape[:2], tuple(window_strides)
  if not all(k in (1, s) for k, s in zip(kernel, strides)):
    return False
  pads = (lax.padtype_to_pads(lhs.shape[1:3], kernel, strides, padding)
          if isinstance(padding, str) else padding)
  return all(tuple(p) == (0, 0) for p in pads)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: Any, lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         precision: Any = None, **kwargs) -> jax.Array:
  """``lax.conv_general_dilated``, as a ``dot_general`` when the windows do not overlap."""
  if kwargs or not _as_matmul(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                              dimension_numbers, feature_group_count):
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    precision=precision, **kwargs)
  (kh, kw), (sh, sw) = rhs.shape[:2], window_strides
  x = lhs[:, ::sh if kh == 1 else 1, ::sw if kw == 1 else 1]  # k = 1: keep every s-th pixel.
  n, h, w, c = x.shape
  gh, gw = h // kh, w // kw  # k = s: windows of k pixels (VALID drops the remainder).
  x = x[:, :gh * kh, :gw * kw].reshape(n, gh, kh, gw, kw, c)
  return jnp.einsum("nhiwjc,ijco->nhwo", x, rhs, precision=precision)
