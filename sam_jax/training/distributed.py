"""Starting JAX's multi-process runtime: one process per host (or per GPU).

``--multihost=auto`` (the default) initialises when the flags name a coordinator
or a cluster is detected: a Cloud TPU pod slice with several workers, or a SLURM
job with several tasks (JAX reads both environments itself). ``on`` always
initialises, ``off`` never does. On CPUs, cross-process collectives use gloo.
"""

import os

import jax
from absl import logging

MODES = ("auto", "on", "off")


def cluster_detected(environ=os.environ) -> bool:
  """True inside a multi-worker Cloud TPU slice or a multi-task SLURM job."""
  tpu_hosts = environ.get("TPU_WORKER_HOSTNAMES", "")
  slurm_tasks = environ.get("SLURM_NTASKS") or environ.get("SLURM_NPROCS") or "1"
  return "," in tpu_hosts or (slurm_tasks.isdigit() and int(slurm_tasks) > 1)


def initialize(mode: str = "auto", coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None) -> bool:
  """Initialises ``jax.distributed`` as ``mode`` says; returns whether it did."""
  if mode not in MODES:
    raise ValueError(f"--multihost={mode!r} is not one of {MODES}.")
  explicit = coordinator_address is not None
  if explicit and (num_processes is None or process_id is None):
    raise ValueError("--coordinator_address needs --num_processes and --process_id too.")
  if mode == "off" or (mode == "auto" and not explicit and not cluster_detected()):
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
  logging.info("Process %d of %d, %d local of %d devices.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True
