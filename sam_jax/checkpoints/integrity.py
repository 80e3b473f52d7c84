"""Is a restored state the one that was saved? A CRC-32 per array and finite values.

Orbax checks the structure of what it reads but not the bytes: the zarr chunks
it writes carry no checksum, so flipped bytes in a data file restore as other
(often non-finite) numbers. ``checksums`` of the state are recorded with each
save (in the step's Orbax metadata) and compared with the restored arrays by
``problems``; every floating-point array must also be finite.
"""

import zlib
from typing import Any

import jax
import numpy as np


def name(path) -> str:
  """``params/Transformer/...``: the same for a dataclass field and a dict key."""
  parts = []
  for key in path:
    for attr in ("name", "key", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def host_arrays(tree: Any) -> dict[str, np.ndarray]:
  """Name -> this process's copy of each array (a replica of a replicated jax.Array)."""
  def local(x):
    return np.asarray(x.addressable_data(0) if isinstance(x, jax.Array) else x)
  return {name(path): local(x) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def checksums(arrays: dict[str, np.ndarray]) -> dict[str, int]:
  """Name -> CRC-32 of the array's bytes (C order)."""
  return {name: zlib.crc32(np.ascontiguousarray(x).tobytes()) for name, x in arrays.items()}


def nonfinite(arrays: dict[str, np.ndarray]) -> list[str]:
  """Names of the floating-point arrays holding a NaN or an infinity."""
  return [name for name, x in arrays.items()
          if np.issubdtype(x.dtype, np.inexact) and not np.all(np.isfinite(x))]


def problems(arrays: dict[str, np.ndarray], expected: dict[str, int] | None) -> list[str]:
  """What is wrong with restored ``arrays`` (empty: intact); ``expected``: recorded CRCs,
  None for a checkpoint saved without them (then only finiteness is checked)."""
  found = [f"non-finite values in {name}" for name in nonfinite(arrays)]
  if expected is not None:
    actual = checksums(arrays)
    found += [f"checksum mismatch in {name}" for name in sorted(actual)
              if name in expected and expected[name] != actual[name]]
  return found
