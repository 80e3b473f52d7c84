"""Heap reuse: a repeated large allocation in a worker thread stops page-faulting; and JAX
starts on the CPU without trying a TPU backend where libtpu has no chip (``skip_tpu_probe``).

Each case runs in a fresh interpreter, because the settings must precede any thread's
first allocation and would change this test process's heap.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

from sam_jax.training import cpu_runtime

MIB = 1 << 20
PAGES = 64 * MIB // 4096
REPEATS = 8
# Allocates, touches and frees 64 MiB in a new thread (as XLA:CPU's workers do with a
# step's temporary buffer) REPEATS times; prints configure()'s result and each time's faults.
PROBE = f"""
import ctypes, resource, sys, threading
from sam_jax.training import cpu_runtime
applied = cpu_runtime.configure()
libc = ctypes.CDLL(None)
faults = []
def step():
  ptr = ctypes.c_void_p()
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  assert libc.posix_memalign(ctypes.byref(ptr), 64, ctypes.c_size_t({64 * MIB})) == 0
  ctypes.memset(ptr, 1, {64 * MIB})
  libc.free(ptr)
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
for _ in range({REPEATS}):
  worker = threading.Thread(target=step)
  worker.start()
  worker.join()
print(applied, *faults)
"""


def _python(code: str, timeout: int, **env) -> list[str]:
  """Words ``code`` prints in a fresh interpreter, with no heap or platform settings inherited."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  full_env = {k: v for k, v in os.environ.items()
              if k not in ("JAX_PLATFORMS", cpu_runtime.OPT_OUT) and not k.startswith("MALLOC_")}
  full_env.update(PYTHONPATH=root, **env)
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        env=full_env, check=True, timeout=timeout).stdout.split()


def _probe(**env) -> tuple[bool, list[int]]:
  out = _python(PROBE, timeout=60, **env)
  return out[0] == "True", [int(x) for x in out[1:]]


def test_heap_reuse_stops_repeated_page_faults():
  applied, faults = _probe()
  assert applied and len(faults) == REPEATS
  # The heap grows (faults) until a freed block fits the next request (small allocations
  # in between can leave it a little short once or twice); then the pages are reused.
  assert sum(f > PAGES // 100 for f in faults) <= 3, faults


def test_glibc_defaults_fault_every_page_every_time():
  applied, faults = _probe(**{cpu_runtime.OPT_OUT: "0"})
  assert not applied
  assert all(f >= PAGES for f in faults), faults  # mmap'd afresh, every 4 KiB page.


def test_not_applied_when_jax_runs_on_an_accelerator():
  applied, faults = _probe(JAX_PLATFORMS="tpu")
  assert not applied
  assert all(f >= PAGES for f in faults), faults


@pytest.mark.parametrize("platforms, expected", [("cpu", True), ("cpu,tpu", True),
                                                 ("cuda", False), ("tpu,cpu", False)])
def test_runs_on_cpu_follows_jax_platforms(monkeypatch, platforms, expected):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  assert cpu_runtime.runs_on_cpu() is expected


@pytest.mark.parametrize("run_name, expected", [("__main__", ["True", "False"]),
                                                  ("sam_jax.main", ["False", "False"])])
def test_main_applies_it_before_jax_starts_and_importing_it_does_not(run_name, expected):
  """``python -m sam_jax.main`` configures first thing; ``import sam_jax.main`` changes nothing."""
  code = ("import runpy, sys\n"
          "sys.argv = ['sam_jax.main', '--helpshort']  # Flag parsing exits before any work.\n"
          "try:\n"
          f"  runpy.run_module('sam_jax.main', run_name={run_name!r})\n"
          "except SystemExit:\n"
          "  pass\n"
          "from jax._src import xla_bridge\n"
          "from sam_jax.training import cpu_runtime\n"
          "print(cpu_runtime.describe().startswith('heap reuse on'),\n"
          "      xla_bridge.backends_are_initialized())")
  assert _python(code, timeout=120)[-2:] == expected  # After the usage text.


LIBTPU_WITHOUT_CHIPS = (importlib.util.find_spec("libtpu") is not None
                        and not cpu_runtime.tpu_chips_present())
# Whether JAX tried a TPU backend on its first device query, after skip_tpu_probe() or not.
TPU_PROBE = """
import os, sys
from sam_jax.training import cpu_runtime
skipped = cpu_runtime.skip_tpu_probe() if sys.argv[1] == "skip" else False
import jax
from jax._src import xla_bridge
print(skipped, os.environ.get("JAX_PLATFORMS", "unset"), jax.devices()[0].platform,
      "tpu" in xla_bridge._backend_errors)
"""


@pytest.mark.skipif(not LIBTPU_WITHOUT_CHIPS, reason="needs libtpu installed without a TPU chip")
@pytest.mark.parametrize("mode, expected", [("skip", ["True", "cpu", "cpu", "False"]),
                                            ("probe", ["False", "unset", "cpu", "True"])])
def test_skip_tpu_probe_starts_jax_on_the_cpu_without_trying_the_tpu(mode, expected):
  assert _python(f"import sys; sys.argv = ['', {mode!r}]\n" + TPU_PROBE, timeout=120) == expected


def test_skip_tpu_probe_leaves_a_chosen_platform_and_a_tpu_host(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "tpu")
  assert not cpu_runtime.skip_tpu_probe() and os.environ["JAX_PLATFORMS"] == "tpu"
  monkeypatch.delenv("JAX_PLATFORMS")
  monkeypatch.setattr(cpu_runtime, "tpu_chips_present", lambda: True)  # A TPU VM's PCI bus.
  assert not cpu_runtime.skip_tpu_probe() and "JAX_PLATFORMS" not in os.environ
