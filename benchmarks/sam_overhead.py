r"""What SAM and its cheaper variants cost on top of the base optimizer, measured in one run.

For each model (default ViT-S/16 and ResNet-18 at 224 px, a CPU-sized batch, one
device), the full train step (``sam_jax.training.train_step``, AdamW + clipping) with:

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
interleaved; the median over repeats is reported.

  PYTHONPATH=. python benchmarks/sam_overhead.py --batch=4 --repeats=3
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sam_jax import models, parallel
from sam_jax.config import defaults
from sam_jax.optim import aesam, looksam, momentum_sam, sam
from sam_jax.training import train_step

RHO, MSAM_RHO, NEVER = 0.05, 3.0, 1e30  # MSAM: its authors' scale (see optim/msam.py).
LOOKSAM, AESAM = defaults.SAM_KINDS["looksam"], defaults.SAM_KINDS["aesam"]  # Their options.


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


def _variants(axis):
  """name -> (transformation, host every_k_steps (1: one program), steps per timing)."""
  base_opt = lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
  chained = lambda t: optax.chain(t, base_opt())
  aesam_forced = lambda c: chained(aesam(RHO, 1000, delta=AESAM["delta"], lambda1=c,
                                         lambda2=c, axis_name=axis))
  return {
      "base": (chained(sam(0.0, axis_name=axis)), 1, 2),
      "sam": (chained(sam(RHO, axis_name=axis)), 1, 2),
      "sam_every_2": (chained(sam(RHO, axis_name=axis, every_k_steps=2)), 2, 2),
      "sam_every_2_cond": (chained(sam(RHO, axis_name=axis, every_k_steps=2)), 1, 2),
      "looksam_k5": (chained(looksam(RHO, **LOOKSAM, every_k_steps=5, axis_name=axis)), 5, 5),
      "msam": (momentum_sam(base_opt(), MSAM_RHO, axis_name=axis), 1, 2),
      "aesam_sam": (aesam_forced(-NEVER), 1, 2),
      "aesam_erm": (aesam_forced(NEVER), 1, 2),
  }, base_opt


def measure(name: str, variant: str, batch_size: int, repeats: int,
            image_size: int = 224) -> list[dict]:
  model = models.create_model(name, variant, num_classes=1000)
  rng = np.random.default_rng(0)
  shape = (image_size, image_size, 3)
  batch = {"image": rng.uniform(-1, 1, (batch_size, *shape)).astype(np.float32),
           "label": rng.integers(0, 1000, batch_size).astype(np.int32)}
  mesh = parallel.create_mesh(jax.devices()[:1])
  full, base_opt = _variants(train_step.SamGroups().axis_name)
  steps, states, memory, cycle = {}, {}, {}, {}
  sharded = parallel.shard_batch(batch, mesh)
  for key, (tx, every_k, per_timing) in full.items():
    state = parallel.replicate(train_step.init_state(model, tx, jax.random.PRNGKey(0), image_size),
                               mesh)
    fn = train_step.make_train_step(model, tx, mesh, optax.constant_schedule(1e-3),
                                    every_k_steps=every_k)
    if every_k > 1:  # Each program compiled once, for running and for its memory analysis.
      fn.sam_step, fn.plain_step = (p.lower(state, sharded).compile()
                                    for p in (fn.sam_step, fn.plain_step))
      memory[key] = max(_memory(p) for p in (fn.sam_step, fn.plain_step))
    else:
      fn = fn.lower(state, sharded).compile()
      memory[key] = _memory(fn)
    steps[key], states[key], cycle[key] = (lambda s, f=fn: f(s, sharded)[0]), state, per_timing
  bare = {
      "ours": optax.chain(sam(RHO), base_opt()),
      "optax_contrib": optax.contrib.sam(base_opt(), optax.chain(optax.contrib.normalize(),
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

  def run(key):  # One timing: a whole cycle of the variant's programs.
    state = states[key]
    for _ in range(cycle[key]):
      state = steps[key](state)
    states[key] = jax.block_until_ready(state)

  for key in steps:  # Warm up: every program of a cycle compiles.
    run(key)
  print(f"{name} {variant}: compiled, timing {repeats} interleaved repeats...", flush=True)
  times = {k: [] for k in steps}
  for _ in range(repeats):
    for key in steps:
      start = time.perf_counter()
      run(key)
      times[key].append((time.perf_counter() - start) / cycle[key])
  med = {k: statistics.median(v) for k, v in times.items()}
  param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
  rows = [{"model": f"{name} {variant}", "batch": batch_size, "variant": key,
           "s/step": med[key], "/ base": med[key] / med["base"],
           "extra memory (param copies)": (memory[key] - memory["base"]) / param_bytes}
          for key in full]
  rows.append({"model": f"{name} {variant}", "batch": batch_size,
               "variant": "our SAM / optax.contrib.sam (bare step)", "s/step": med["ours"],
               "/ base": med["ours"] / med["optax_contrib"],
               "extra memory (param copies)": (memory["ours"] - memory["optax_contrib"])
               / param_bytes})
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--models", default="vit:S/16,resnet:18")
  parser.add_argument("--image_size", type=int, default=224)
  args = parser.parse_args()
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
