r"""Where a CIFAR-10 study step's time goes, and the loop before and after its cuts, in one run.

The study's models (``experiments/cifar10/config.py``: width 64, 32 px, batch 64) are
small enough that the work around the compiled step counts. In one process, with the
variants interleaved in blocks of ``--steps`` steps (``--blocks`` rounds after a warm-up
block), each variant runs the step as ``sam_jax.training.loop`` builds it and adds one
piece of the loop's per-step work at a time:

  * ``step``: the compiled step alone, batch already on the device, one wait per block;
  * ``step, waited``: the same, waiting for each step (a per-step host round trip);
  * ``loop, clu merge``: the loop's host work per step as it was before the speed issue:
    ``shard_batch`` of a host batch, the one-step-late finiteness check, the training
    metrics merged by clu's eager ``single_from_model_output(...).merge`` (~20 eager
    dispatches) and the since-save loss merge;
  * ``loop``: the same with ``loop.accumulate_metrics`` (one compiled call): the loop now;
  * ``loop + input``: ``loop`` with ``next()`` of the real training input pipeline
    (``--data_dir``: the CIFAR-10 image folder) instead of a fixed host batch.

Reported: wall and CPU milliseconds per step (medians over blocks) and each variant over
``loop``. The convolutions-as-matmuls change does not enter here: the study models' only
non-overlapping convolution is the 4x4 patch embedding, equal in both forms
(``benchmarks/RESULTS.md``).

  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false" \
      PYTHONPATH=. python benchmarks/study_step.py --data_dir=/tmp/cifar10 --model=vit

(the study's XLA flags, ``experiments/cifar10/run_all.sh``).
"""

from sam_jax.training import cpu_runtime

cpu_runtime.configure()  # Before JAX starts threads, as sam_jax.main.

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import os
import statistics
import time
from typing import Any, Callable

import jax
from clu import metrics as clu_metrics

from sam_jax import parallel
from sam_jax.config import defaults
from sam_jax.data import input_pipeline
from sam_jax.training import loop, setup

import study_config as study  # pylint: disable=g-bad-import-order  (benchmarks/study_config.py)


def study_config(model: str, data_dir: str, rho: float) -> Any:
  config = study.get_config(model)
  config.data_dir, config.sam.rho = data_dir, rho
  return defaults.complete(config)


def clu_merge(total, step_metrics):
  """The training metrics merged as the loop did before ``accumulate_metrics``."""
  update = loop.TrainMetrics.single_from_model_output(**step_metrics)
  return update if total is None else total.merge(update)


def variants(config) -> dict[str, Callable[[int], None]]:
  """name -> run(steps), each advancing its own copy of the state."""
  run = setup.build(config, num_classes=input_pipeline.num_classes(config))
  mesh, step_fn = run.mesh, run.train_step
  pipeline = input_pipeline.train_iterator(config, local_batch_size=config.batch_size,
                                           seed=config.seed)
  host_batch = next(pipeline)
  device_batch = parallel.shard_batch(host_batch, mesh)
  states = {}

  def run_step(name: str, steps: int, wait: bool) -> None:
    state = states[name] if name in states else loop.initial_state(run)
    for _ in range(steps):
      state, metrics = step_fn(state, device_batch)
      if wait:
        jax.block_until_ready(metrics)
    states[name] = jax.block_until_ready(state)

  def run_loop(name: str, steps: int, merge, next_batch) -> None:
    state = states[name] if name in states else loop.initial_state(run)
    total, since_save, previous = None, None, None
    for _ in range(steps):
      state, metrics = step_fn(state, parallel.shard_batch(next_batch(), mesh))
      if previous is not None:
        bool(previous["finite"])  # The loop's one-step-late check.
      previous = metrics
      total = merge(total, metrics)
      loss = clu_metrics.Average.from_model_output(metrics["loss"], mask=metrics["finite"][None])
      since_save = loss if since_save is None else since_save.merge(loss)
    jax.block_until_ready((total, since_save))
    states[name] = jax.block_until_ready(state)

  fixed = lambda: host_batch
  return {
      "step": lambda n: run_step("step", n, wait=False),
      "step, waited": lambda n: run_step("step, waited", n, wait=True),
      "loop, clu merge": lambda n: run_loop("loop, clu merge", n, clu_merge, fixed),
      "loop": lambda n: run_loop("loop", n, loop.accumulate_metrics, fixed),
      "loop + input": lambda n: run_loop("loop + input", n, loop.accumulate_metrics,
                                         lambda: next(pipeline)),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data_dir", required=True, help="The CIFAR-10 image folder.")
  parser.add_argument("--model", default="vit", choices=("vit", "mixer", "resnet"))
  parser.add_argument("--rho", type=float, default=0.05)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--blocks", type=int, default=5)
  args = parser.parse_args()
  runs = variants(study_config(args.model, args.data_dir, args.rho))
  times = {name: [] for name in runs}
  print(f"study {args.model}, rho {args.rho}: {len(runs)} variants, {args.blocks} blocks of "
        f"{args.steps} steps after a warm-up block; {cpu_runtime.describe()}", flush=True)
  for block in range(args.blocks + 1):
    for name, run in runs.items():
      wall, cpu = time.perf_counter(), time.process_time()
      run(args.steps)
      if block:
        times[name].append(((time.perf_counter() - wall) / args.steps * 1e3,
                            (time.process_time() - cpu) / args.steps * 1e3))
    print(f"block {block}/{args.blocks} done, load {os.getloadavg()[0]:.2f}", flush=True)
  wall = {n: statistics.median(w for w, _ in t) for n, t in times.items()}
  print("| per step | wall ms | CPU ms | wall / loop |\n|---|---:|---:|---:|")
  for name, t in times.items():
    print(f"| {name} | {wall[name]:.1f} | {statistics.median(c for _, c in t):.1f} | "
          f"{wall[name] / wall['loop']:.2f} |")


if __name__ == "__main__":
  main()
