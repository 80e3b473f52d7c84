"""TPU slices by their Cloud names, their compile-only devices (libtpu), and each chip's peaks.

A Cloud slice name ``GEN-N`` counts TensorCores for v2, v3, v4 and v5p (two per chip) and
chips for v5e (``v5litepod-N``, ``v5e-N``) and v6e; libtpu names a slice by its chips'
grid, ``v3:8x16``. ``devices(name)`` gives the slice's devices as JAX on it would see
them (v4 and v5p: one "megacore" device per chip), which hold no memory: a program
compiled for them (``jax.jit(...).lower(...).compile()``) is a real TPU executable.

Peak rates and memory are Google's published per-chip figures (``docs/scale.md`` gives the
pages); a device's share is the chip's divided by the devices per chip.
"""

import dataclasses
import math
import os
import re

from sam_jax.parallel import Devices

LIBTPU_HINT = ("compiling for a TPU needs libtpu: pip install 'sam_jax[tpu-compile]' "
               "(libtpu==0.0.42.*, the version jax[tpu] 0.10.2 pins)")
GIB = 2**30


class LibtpuMissing(ImportError):
  """libtpu is not installed: nothing can be compiled for a TPU."""


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU generation: its libtpu name and published per-chip figures."""
  libtpu: str               # libtpu's generation prefix ("v3" in "v3:8x16").
  cores_in_name: int        # TensorCores (2) or chips (1) per unit of the Cloud name's N.
  bf16_flops: float         # Peak bf16 matmul FLOP/s per chip.
  hbm_bytes: int            # HBM per chip.
  hbm_bandwidth: float      # HBM bytes/s per chip.
  grids: dict[int, str]     # Chips -> libtpu grid.
  megacore: bool = False    # JAX sees one device per chip.


_GRIDS_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
             256: "16x16", 512: "16x32", 1024: "32x32"}
_GRIDS_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
             256: "4x8x8", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}


def _grids(grids: dict[int, str], smallest: int, largest: int) -> dict[int, str]:
  return {k: v for k, v in grids.items() if smallest <= k <= largest}


CHIPS: dict[str, Chip] = {
    "v2": Chip("v2", 2, 45e12, 16 * GIB, 700e9, _grids(_GRIDS_2D, 4, 256)),
    "v3": Chip("v3", 2, 123e12, 32 * GIB, 900e9, _grids(_GRIDS_2D, 4, 1024)),
    "v4": Chip("v4", 2, 275e12, 32 * GIB, 1200e9, _GRIDS_3D, megacore=True),
    "v5e": Chip("v5e", 1, 197e12, 16 * GIB, 819e9, _grids(_GRIDS_2D, 1, 256)),
    "v5p": Chip("v5p", 2, 459e12, 95 * GIB, 2765e9, _GRIDS_3D),
    "v6e": Chip("v6e", 1, 918e12, 32 * GIB, 1638e9, _grids(_GRIDS_2D, 1, 256)),
}
ALIASES = {"v5litepod": "v5e", "v6litepod": "v6e"}


@dataclasses.dataclass(frozen=True)
class Slice:
  """A resolved slice: its names, chip count and chip."""
  name: str      # As given.
  topology: str  # libtpu's, e.g. "v3:8x16".
  chips: int
  chip: Chip


def valid_forms() -> str:
  """One line of the accepted slice names."""
  sizes = ", ".join(f"{g}-{min(c.grids) * c.cores_in_name} to {g}-"
                    f"{max(c.grids) * c.cores_in_name}" for g, c in CHIPS.items())
  aliases = ", ".join(f"{a} = {g}" for a, g in ALIASES.items())
  return (f"a Cloud slice name GEN-N with N a power of two ({sizes}; {aliases}) or libtpu's "
          "GEN:GRID (e.g. v3:8x16, v4:4x4x4)")


def resolve(name: str) -> Slice:
  """The slice named ``name``: ``v3-256``, ``v5litepod-256``, ``v4-128`` or ``v3:8x16``.

  Raises:
    ValueError: an unknown generation or size, naming the valid forms.
  """
  match = re.fullmatch(r"(v\w+?)(?:-(\d+)|:(\d+(?:x\d+)*))", name.strip().lower())
  chip = CHIPS.get(ALIASES.get(match.group(1), match.group(1))) if match else None
  if match and chip is not None and match.group(2):
    size = int(match.group(2))
    chips = size // chip.cores_in_name
    if size % chip.cores_in_name == 0 and chips in chip.grids:
      return Slice(name, f"{chip.libtpu}:{chip.grids[chips]}", chips, chip)
  elif match and chip is not None:
    grid = match.group(3)
    chips = math.prod(int(n) for n in grid.split("x"))
    if grid in chip.grids.values():
      return Slice(name, f"{chip.libtpu}:{grid}", chips, chip)
  raise ValueError(f"--topology={name!r} is not a TPU slice this knows; use {valid_forms()}.")


def devices(tpu_slice: Slice) -> Devices:
  """The slice's compile-only devices.

  Raises:
    LibtpuMissing: libtpu is not installed (``LIBTPU_HINT``).
  """
  try:
    import libtpu  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError as e:
    raise LibtpuMissing(LIBTPU_HINT) from e
  # Compiling holds no TPU: skip the lock that keeps two processes off one TPU host.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  options = {"chip_config_name": "megacore"} if tpu_slice.chip.megacore else {}
  return topologies.get_topology_desc(topology_name=tpu_slice.topology, platform="tpu",
                                      **options).devices


@dataclasses.dataclass(frozen=True)
class DevicePeaks:
  """One device's share of its chip: peak bf16 FLOP/s, HBM bytes and bytes/s."""
  flops: float
  hbm_bytes: int
  hbm_bandwidth: float


def device_peaks(tpu_slice: Slice, num_devices: int) -> DevicePeaks:
  """The chip's published figures divided by the devices per chip."""
  share = num_devices // tpu_slice.chips
  chip = tpu_slice.chip
  return DevicePeaks(chip.bf16_flops / share, chip.hbm_bytes // share, chip.hbm_bandwidth / share)
