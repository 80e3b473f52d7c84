"""Host heap settings that stop XLA:CPU from page-faulting its temporary buffer every step.

XLA:CPU allocates an executable's temporary buffer (all of a train step's activations
and gradients: about 2 GB for a ViT-S/16 SAM step at batch 16) with ``posix_memalign``
on every execution and frees it at the end. glibc serves blocks that large with
``mmap`` and returns them with ``munmap`` (a worker thread's arena always does: its
heaps hold at most 64 MiB), so every step faults every page in again and the kernel
zeroes it: about 500,000 minor faults per ViT-S/16 step at batch 16, one per 4 KiB.

``configure()`` sets glibc's ``mallopt`` parameters so that freed memory is reused:

  M_ARENA_MAX = 1        every thread allocates from the main arena (sbrk heap)
  M_MMAP_MAX = 0         no block is served by its own mmap
  M_TRIM_THRESHOLD = -1  (SIZE_MAX) the freed top of the heap is never given back

After the first few steps the buffer lands on pages the process already holds and a
step takes no page faults. The process keeps its peak heap until it exits, which a
training process reaches every step anyway. One arena serialises large allocations
of concurrent threads (small ones have glibc's per-thread cache), so the settings are
applied only where XLA runs on the CPU: no ``jax_plugins`` accelerator plugin installed,
no libtpu with a TPU chip on the PCI bus (libtpu alone only compiles for TPUs), and
``JAX_PLATFORMS`` unset or ``cpu``; and not with
``SAM_JAX_HEAP_REUSE=0`` in the environment (the opt-out).

glibc fixes a thread's arena at its first allocation, so ``configure()`` must run
before any other thread allocates: first thing in the process, before importing
JAX, TensorFlow or clu. ``sam_jax.main`` does. From a shell the same settings are
``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=-1`` (read at start).

``skip_tpu_probe()``: with libtpu installed (to compile for TPUs) but no TPU chip present,
JAX tries its TPU backend at start, fails and logs "Unable to initialize backend 'tpu'";
unless ``JAX_PLATFORMS`` is set or an accelerator plugin is installed, it sets
``JAX_PLATFORMS=cpu`` (JAX's documented platform choice), so JAX starts on the CPU without
trying. Like ``configure()``, it runs before JAX is imported.
"""

import ctypes
import importlib.metadata
import importlib.util
import os
import pathlib
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # glibc <malloc.h>.
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))
TPU_PCI_VENDOR = "0x1ae0"  # Google's PCI vendor id, which TPU chips carry.
OPT_OUT = "SAM_JAX_HEAP_REUSE"  # "0" leaves glibc's defaults.
_applied = False
_tpu_probe_skipped = False


def runs_on_cpu() -> bool:
  """Whether JAX will run on the host CPU: no accelerator plugin and no other platform asked."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  if importlib.util.find_spec("jax_plugins") or importlib.metadata.entry_points(group="jax_plugins"):
    return False
  return not (importlib.util.find_spec("libtpu") and tpu_chips_present())


def tpu_chips_present() -> bool:
  """Whether a Google TPU chip is on the PCI bus (vendor 0x1ae0), where libtpu looks for
  its chips: libtpu installed without one (to compile for TPUs, ``sam_jax.preflight``)
  leaves JAX on the CPU."""
  try:
    return any(path.read_text().strip() == TPU_PCI_VENDOR
               for path in pathlib.Path("/sys/bus/pci/devices").glob("*/vendor"))
  except OSError:
    return False


def configure() -> bool:
  """Applies the heap settings (glibc, CPU runs, no opt-out); True if they are in effect."""
  global _applied
  if (not _applied and os.environ.get(OPT_OUT) != "0" and platform.libc_ver()[0] == "glibc"
      and runs_on_cpu()):
    mallopt = ctypes.CDLL(None).mallopt
    _applied = all(mallopt(param, value) == 1 for param, value in SETTINGS)
  return _applied


def skip_tpu_probe() -> bool:
  """Sets ``JAX_PLATFORMS=cpu`` where libtpu is installed without a TPU chip, no accelerator
  plugin is installed and ``JAX_PLATFORMS`` is unset; True if it did."""
  global _tpu_probe_skipped
  if (not os.environ.get("JAX_PLATFORMS") and importlib.util.find_spec("libtpu")
      and runs_on_cpu()):
    os.environ["JAX_PLATFORMS"] = "cpu"
    _tpu_probe_skipped = True
  return _tpu_probe_skipped


def describe() -> str:
  """One line for logs: whether the heap settings are in effect, and the TPU probe skipped."""
  probe = "; JAX_PLATFORMS=cpu (libtpu without a TPU chip)" if _tpu_probe_skipped else ""
  if _applied:
    return f"heap reuse on (mallopt M_ARENA_MAX=1, M_MMAP_MAX=0, M_TRIM_THRESHOLD=-1){probe}"
  return f"heap reuse off (glibc defaults){probe}"
