r"""What SAM and its cheaper variants cost on top of the base optimizer, measured in one run.

For each model (default ViT-S/16 and ResNet-18 at 224 px, a CPU-sized batch, one
device), the train step training runs (``training.setup.build`` of a config: AdamW with
weight decay on the kernels, gradient clipping) with:

  * ``base``: rho = 0, the base optimizer; ``sam``: SAM every step;
  * ``sam_every_2``: SAM on every 2nd step, a SAM and a plain program alternated from
    the host (as training runs it), and ``sam_every_2_cond``: the same in one program
    with a ``lax.cond``;
  * ``looksam_k5``: LookSAM with k = 5, its full and reuse programs alternated;
  * ``msam``: Momentum-SAM (one pass, at w + e along the momentum);
  * ``aesam_sam`` / ``aesam_erm``: the AE-SAM program (one program, the trigger a
    ``lax.cond``) with the trigger forced on / off: the cost of its two kinds of
    step; at a SAM fraction f a step costs f x the first + (1 - f) x the second;

and our SAM transform against ``optax.contrib.sam`` (opaque mode) in the same bare
jitted step (ideal <= 1.0). Reported: seconds per step and the ratio to ``base``
(the mean over a cycle: 2 steps, 5 for LookSAM k = 5), and XLA's memory analysis of
the compiled steps: temporary + output bytes minus the base step's, in units of the
parameter bytes (the largest of a variant's programs). Variants are timed
interleaved in blocks (the order rotated from block to block); the median over
blocks is reported.

  PYTHONPATH=. python benchmarks/sam_overhead.py --batch=4 --repeats=3

``--study=vit,mixer``: instead, the steps the CIFAR-10 study's fit-regime rows train
(``experiments/cifar10/config.py:MODEL,fit``, its batch and image size, with each
``STUDY_VARIANTS`` row setting: base, SAM, LookSAM alpha 0.2 k = 5, Momentum-SAM rho 3,
AE-SAM with its trigger forced on / off), ``--steps`` steps per variant and block: the
wall and CPU seconds per step (process CPU time; medians over blocks) and the per-block
ratios to ``base`` (median, quartiles, min, max), with the command, the machine, the load
average at start and end and the JAX version, in ``--output``
(``experiments/cifar10/cheaper_fit.py`` reads it). With the study's XLA flag:

  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false" PYTHONPATH=. \
      python benchmarks/sam_overhead.py --study=vit,mixer --steps=10 --repeats=20
"""

import argparse
import json
import os
import pathlib
import shlex
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from configs import default
from sam_jax import models, parallel
from sam_jax.config import defaults
from sam_jax.optim import sam
from sam_jax.training import setup, train_step

import machine  # pylint: disable=g-bad-import-order  (benchmarks/machine.py)
import study_config  # pylint: disable=g-bad-import-order  (benchmarks/study_config.py)

RHO, MSAM_RHO, NEVER = 0.05, 3.0, 1e30  # MSAM: its authors' scale (see optim/msam.py).
LR, CLIP, WEIGHT_DECAY = 1e-3, 1.0, 1e-4
BASE_OPT = lambda: optax.chain(optax.clip_by_global_norm(CLIP), optax.adamw(LR))  # The bare step's.


def _bare_step(model, tx, batch):
  """A jitted loss/grad/update step, the same around both SAM implementations."""
  def loss_fn(params, model_state):
    out = model.apply({"params": params, **model_state}, batch["image"], train=True,
                      mutable=list(model_state) or False)
    logits = out[0] if model_state else out
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  @jax.jit
  def step(params, opt_state, model_state):
    grad = jax.grad(loss_fn)
    updates, opt_state = tx.update(grad(params, model_state), opt_state, params,
                                   grad_fn=lambda p, *_: grad(p, model_state))
    return optax.apply_updates(params, updates), opt_state
  return step


def _memory(compiled) -> int:
  m = compiled.memory_analysis()
  return m.temp_size_in_bytes + m.output_size_in_bytes


def _config(name: str, variant: str, batch_size: int, image_size: int,
            **sam_section) -> ml_collections.ConfigDict:
  """The model with AdamW (constant LR, weight decay on the kernels), clipping and
  ``config.sam`` = ``sam_section``."""
  config = default.get_config()
  config.update(image_size=image_size, batch_size=batch_size, eval_batch_size=batch_size,
                num_classes=1000, num_train_steps=1000)
  config.model = ml_collections.ConfigDict(dict(name=name, variant=variant))
  config.optimizer = defaults.optimizer("adamw", LR, 0, "constant", weight_decay=WEIGHT_DECAY,
                                        grad_clip_norm=CLIP)
  config.sam = defaults.sam(**sam_section)
  return defaults.complete(config)


# name -> (config.sam, steps per timing); "sam_every_2_cond": sam_every_2's optimizer in one
# program with a lax.cond (training alternates two programs instead: the cost it avoids).
VARIANTS = {
    "base": (dict(rho=0.0), 2),
    "sam": (dict(rho=RHO), 2),
    "sam_every_2": (dict(rho=RHO, every_k_steps=2), 2),
    "sam_every_2_cond": (dict(rho=RHO, every_k_steps=2), 2),
    "looksam_k5": (dict(rho=RHO, kind="looksam", every_k_steps=5), 5),
    "msam": (dict(rho=MSAM_RHO, kind="msam"), 2),
    "aesam_sam": (dict(rho=RHO, kind="aesam", aesam=dict(lambda1=-NEVER, lambda2=-NEVER)), 2),
    "aesam_erm": (dict(rho=RHO, kind="aesam", aesam=dict(lambda1=NEVER, lambda2=NEVER)), 2),
}
STUDY_RHO = 0.5  # SAM's rho of the CIFAR-10 study's fit-regime ViT and Mixer rows.
# --study: name -> config.sam of the fit regime's rows (experiments/cifar10/cheaper_fit.py);
# LookSAM at its default k (5), timed in whole cycles of its two programs.
STUDY_VARIANTS = {
    "base": dict(rho=0.0),
    "sam": dict(rho=STUDY_RHO),
    "looksam_k5": dict(rho=STUDY_RHO, kind="looksam", looksam=dict(alpha=0.2)),
    "msam": dict(rho=MSAM_RHO, kind="msam"),
    "aesam_sam": dict(rho=STUDY_RHO, kind="aesam", aesam=dict(lambda1=-NEVER, lambda2=-NEVER)),
    "aesam_erm": dict(rho=STUDY_RHO, kind="aesam", aesam=dict(lambda1=NEVER, lambda2=NEVER)),
}


def _compiled(run: setup.Setup, state, batch):
  """The setup's train step compiled for ``state`` and ``batch`` (donating the state, as
  training does), and its memory (the largest of its programs)."""
  fn = run.train_step
  if isinstance(fn, train_step.AlternatingStep):  # Each program compiled once.
    fn.sam_step, fn.plain_step = (p.lower(state, batch).compile()
                                  for p in (fn.sam_step, fn.plain_step))
    return fn, max(_memory(p) for p in (fn.sam_step, fn.plain_step))
  fn = fn.lower(state, batch).compile()
  return fn, _memory(fn)


def _prepared(config: ml_collections.ConfigDict, batch: dict, alternate: bool = True):
  """``(step, state, memory, every_k_steps)``: ``step(state)`` advances the setup's initial
  state by one train step on ``batch``."""
  run = setup.build(config, jax.devices()[:1], alternate=alternate)
  state = parallel.replicate(run.init_state(jax.random.PRNGKey(0)), run.mesh)
  sharded = parallel.shard_batch(batch, run.mesh)
  fn, memory = _compiled(run, state, sharded)
  return (lambda s: fn(s, sharded)[0]), state, memory, run.every_k_steps


def _batch(batch_size: int, image_size: int, num_classes: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  return {"image": rng.uniform(-1, 1, (batch_size, image_size, image_size, 3)).astype(np.float32),
          "label": rng.integers(0, num_classes, batch_size).astype(np.int32)}


def _timings(steps: dict[str, Callable], states: dict, per_block: dict[str, int],
             blocks: int) -> dict[str, np.ndarray]:
  """Per variant, the (wall, CPU) seconds per step of each block, shape ``(blocks, 2)``.

  A block runs every variant for its ``per_block`` steps, in an order rotated from block
  to block, so that load drift hits all alike; a warm-up block (every program compiled and
  run once) comes first. CPU: the process's CPU time (all its threads)."""
  def run(key):
    state = states[key]
    for _ in range(per_block[key]):
      state = steps[key](state)
    states[key] = jax.block_until_ready(state)

  for key in steps:
    run(key)
  keys, times = list(steps), {k: [] for k in steps}
  for block in range(blocks):
    for key in keys[block % len(keys):] + keys[:block % len(keys)]:
      wall, cpu = time.perf_counter(), time.process_time()
      run(key)
      times[key].append(((time.perf_counter() - wall) / per_block[key],
                         (time.process_time() - cpu) / per_block[key]))
  return {k: np.array(v) for k, v in times.items()}


def measure(name: str, variant: str, batch_size: int, repeats: int,
            image_size: int = 224) -> list[dict]:
  batch = _batch(batch_size, image_size, 1000)
  steps, states, memory, cycle = {}, {}, {}, {}
  for key, (sam_section, per_timing) in VARIANTS.items():
    config = _config(name, variant, batch_size, image_size, **sam_section)
    # "_cond": the one program training does not build (it alternates two).
    steps[key], states[key], memory[key], _ = _prepared(config, batch,
                                                        alternate=not key.endswith("_cond"))
    cycle[key] = per_timing
  model = models.create_model(name, variant, num_classes=1000)
  bare = {
      "ours": optax.chain(sam(RHO), BASE_OPT()),
      "optax_contrib": optax.contrib.sam(BASE_OPT(), optax.chain(optax.contrib.normalize(),
                                                                 optax.sgd(RHO)),
                                         sync_period=2, opaque_mode=True),
  }
  variables = model.init(jax.random.PRNGKey(0), jnp.asarray(batch["image"][:1]), train=False)
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  for key, tx in bare.items():
    opt_state = tx.init(params)
    fn = _bare_step(model, tx, batch).lower(params, opt_state, model_state).compile()
    memory[key] = _memory(fn)
    steps[key], states[key], cycle[key] = lambda s, f=fn: f(s[0], s[1], model_state), (
        params, opt_state), 2
  print(f"{name} {variant}: compiled, timing {repeats} interleaved repeats...", flush=True)
  med = {k: float(np.median(t[:, 0]))
         for k, t in _timings(steps, states, cycle, repeats).items()}
  param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
  rows = [{"model": f"{name} {variant}", "batch": batch_size, "variant": key,
           "s/step": med[key], "/ base": med[key] / med["base"],
           "extra memory (param copies)": (memory[key] - memory["base"]) / param_bytes}
          for key in VARIANTS]
  rows.append({"model": f"{name} {variant}", "batch": batch_size,
               "variant": "our SAM / optax.contrib.sam (bare step)", "s/step": med["ours"],
               "/ base": med["ours"] / med["optax_contrib"],
               "extra memory (param copies)": (memory["ours"] - memory["optax_contrib"])
               / param_bytes})
  return rows


def _spread(values: np.ndarray) -> dict:
  """The median, the extremes and the quartiles of per-block values, and the values."""
  q1, q3 = np.quantile(values, (0.25, 0.75))
  return {"median": float(np.median(values)), "min": float(values.min()),
          "max": float(values.max()), "q1": float(q1), "q3": float(q3),
          "blocks": [round(float(v), 4) for v in values]}


def measure_study(model: str, steps: int, blocks: int) -> dict[str, dict]:
  """Per ``STUDY_VARIANTS`` variant of the study's ``MODEL,fit`` config: wall and CPU
  seconds per step (medians over blocks), the per-block ratios to ``base`` (``_spread``)
  and the extra memory (parameter copies) over ``base``."""
  configs = {}
  for key, sam_section in STUDY_VARIANTS.items():
    config = study_config.get_config(f"{model},fit")
    config.sam = defaults.sam(**sam_section)
    configs[key] = defaults.complete(config)
  first = configs["base"]
  batch = _batch(first.batch_size, first.image_size, first.num_classes)
  prepared = {key: _prepared(config, batch) for key, config in configs.items()}
  odd = {k: p[3] for k, p in prepared.items() if steps % p[3]}
  if odd:
    raise SystemExit(f"sam_overhead: --steps={steps} is not a whole number of cycles of "
                     f"{odd} (steps per cycle); pass a multiple of each.")
  print(f"{model},fit: compiled, timing {blocks} blocks of {steps} steps...", flush=True)
  times = _timings({k: p[0] for k, p in prepared.items()}, {k: p[1] for k, p in prepared.items()},
                   dict.fromkeys(prepared, steps), blocks)
  param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(prepared["base"][1].params))
  base = times["base"]
  return {key: {"wall_s_per_step": float(np.median(t[:, 0])),
                "cpu_s_per_step": float(np.median(t[:, 1])),
                "wall_ratio": _spread(t[:, 0] / base[:, 0]),
                "cpu_ratio": _spread(t[:, 1] / base[:, 1]),
                "extra_memory_param_copies": (prepared[key][2] - prepared["base"][2]) / param_bytes}
          for key, t in times.items()}


def _machine() -> dict:
  """The CPU model, its cores, the XLA flags and the JAX version."""
  return {"cpu": machine.cpu_model(), "cores": os.cpu_count(),
          "usable_cores": len(os.sched_getaffinity(0)), "jax": jax.__version__,
          "xla_flags": os.environ.get("XLA_FLAGS", ""), "devices": str(jax.devices()[0])}


def study(models_arg: str, steps: int, blocks: int, output: str) -> None:
  """``measure_study`` of each model, printed as a table and written to ``output``."""
  command = shlex.join([f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}", "PYTHONPATH=.",
                        "python", *sys.argv])
  record = {"command": command, "machine": _machine(), "load_average_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "blocks": blocks,
            "steps_per_block": steps, "models": {}}
  print("| model | variant | CPU ms/step | CPU / base (min-max) | wall ms/step | wall / base |")
  print("|---|---|---:|---:|---:|---:|")
  for model in models_arg.split(","):
    record["models"][model] = measure_study(model, steps, blocks)
    for key, v in record["models"][model].items():
      cpu, wall = v["cpu_ratio"], v["wall_ratio"]
      print(f"| {model} | {key} | {1e3 * v['cpu_s_per_step']:.1f} | {cpu['median']:.3f} "
            f"({cpu['min']:.2f}-{cpu['max']:.2f}) | {1e3 * v['wall_s_per_step']:.1f} | "
            f"{wall['median']:.3f} |", flush=True)
  record["load_average_end"] = os.getloadavg()
  pathlib.Path(output).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(output).write_text(json.dumps(record, indent=1) + "\n")
  print(f"Wrote {output}.")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3, help="Interleaved blocks timed.")
  parser.add_argument("--models", default="vit:S/16,resnet:18")
  parser.add_argument("--image_size", type=int, default=224)
  parser.add_argument("--study", default="", help="Models of experiments/cifar10/config.py "
                      "(e.g. vit,mixer): time STUDY_VARIANTS on their fit config (its batch and "
                      "image size) instead, and write --output.")
  parser.add_argument("--steps", type=int, default=20, help="--study: steps per variant and block.")
  parser.add_argument("--output", default="experiments/cifar10/results/fit/step_cost/"
                      "step_cost.json", help="--study: the JSON record.")
  args = parser.parse_args()
  if args.study:
    study(args.study, args.steps, args.repeats, args.output)
    return
  header = False
  for spec in args.models.split(","):
    for row in measure(*spec.split(":"), args.batch, args.repeats, args.image_size):
      if not header:
        print("| " + " | ".join(row) + " |")
        print("|" + "---|" * len(row))
        header = True
      print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v)
                              for v in row.values()) + " |", flush=True)


if __name__ == "__main__":
  main()
