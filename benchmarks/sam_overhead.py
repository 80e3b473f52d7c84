r"""What SAM costs on top of the base optimizer, measured in one run.

For ViT-S/16 and ResNet-50 at 224 px and a CPU-sized batch, on one device:
  * step time of the full train step (``sam_jax.training.train_step``) with SAM, with SAM on
    every 2nd step only (as ``sam_jax.training.loop`` runs it: a SAM and a plain program
    alternated), the same in one program with a ``lax.cond``, and with rho=0 (the base
    optimizer): ratios to the base;
  * step time of our SAM transform against ``optax.contrib.sam`` (opaque mode) in the
    same bare jitted step (ideal <= 1.0);
  * XLA's memory analysis of the compiled steps: temporary + output bytes of SAM
    minus the base step's, in units of the parameter bytes (ideal <= 1 copy).
Variants are timed interleaved, two steps at a time; the median over repeats of
the time per step is reported.

  PYTHONPATH=. python benchmarks/sam_overhead.py --batch=8 --repeats=5
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sam_jax import models, parallel
from sam_jax.optim import sam
from sam_jax.training import train_step


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


def measure(name: str, variant: str, batch_size: int, repeats: int) -> dict:
  model = models.create_model(name, variant, num_classes=1000)
  rng = np.random.default_rng(0)
  batch = {"image": rng.uniform(-1, 1, (batch_size, 224, 224, 3)).astype(np.float32),
           "label": rng.integers(0, 1000, batch_size).astype(np.int32)}
  mesh = parallel.create_mesh(jax.devices()[:1])
  base_opt = lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
  full = {
      "base": optax.chain(sam(0.0, axis_name=train_step.SamGroups().axis_name), base_opt()),
      "sam": optax.chain(sam(0.05, axis_name=train_step.SamGroups().axis_name), base_opt()),
      "sam_every_2": optax.chain(sam(0.05, axis_name=train_step.SamGroups().axis_name,
                                     every_k_steps=2), base_opt()),
  }
  full["sam_every_2_cond"] = full["sam_every_2"]
  steps, states, memory = {}, {}, {}
  sharded = parallel.shard_batch(batch, mesh)
  for key, tx in full.items():
    state = parallel.replicate(train_step.init_state(model, tx, jax.random.PRNGKey(0), 224),
                               mesh)
    fn = train_step.make_train_step(model, tx, mesh, optax.constant_schedule(1e-3),
                                    every_k_steps=2 if key == "sam_every_2" else 1)
    programs = (fn.sam_step, fn.plain_step) if key == "sam_every_2" else (fn,)
    memory[key] = max(_memory(p.lower(state, sharded).compile()) for p in programs)
    steps[key], states[key] = (lambda s, f=fn: f(s, sharded)[0]), state
  bare = {
      "ours": optax.chain(sam(0.05), base_opt()),
      "optax_contrib": optax.contrib.sam(base_opt(), optax.chain(optax.contrib.normalize(),
                                                                 optax.sgd(0.05)),
                                         sync_period=2, opaque_mode=True),
  }
  variables = model.init(jax.random.PRNGKey(0), jnp.asarray(batch["image"][:1]), train=False)
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  for key, tx in bare.items():
    fn = _bare_step(model, tx, batch)
    opt_state = tx.init(params)
    memory[key] = _memory(fn.lower(params, opt_state, model_state).compile())
    steps[key] = lambda s, f=fn: f(s[0], s[1], model_state)
    states[key] = (params, opt_state)
  times = {k: [] for k in steps}
  for key in steps:  # Warm up: two steps, so every-2's second program compiles too.
    states[key] = jax.block_until_ready(steps[key](steps[key](states[key])))
  print(f"{name} {variant}: compiled, timing {repeats} interleaved repeats...", flush=True)
  for _ in range(repeats):
    for key in steps:
      start = time.perf_counter()  # Two steps: one SAM and one plain step of every-2.
      states[key] = jax.block_until_ready(steps[key](steps[key](states[key])))
      times[key].append((time.perf_counter() - start) / 2)
  med = {k: statistics.median(v) for k, v in times.items()}
  param_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(params))
  return {
      "model": f"{name} {variant}", "batch": batch_size, "base_s": med["base"],
      "sam/base": med["sam"] / med["base"], "sam_every_2/base": med["sam_every_2"] / med["base"],
      "sam_every_2 in one program (lax.cond)/base": med["sam_every_2_cond"] / med["base"],
      "ours/optax.contrib.sam": med["ours"] / med["optax_contrib"],
      "sam extra memory (param copies)": (memory["sam"] - memory["base"]) / param_bytes,
      "ours vs contrib extra memory (param copies)":
          (memory["ours"] - memory["optax_contrib"]) / param_bytes,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--models", default="vit:S/16,resnet:50")
  args = parser.parse_args()
  for i, spec in enumerate(args.models.split(",")):
    row = measure(*spec.split(":"), args.batch, args.repeats)
    if i == 0:
      print("| " + " | ".join(row) + " |")
      print("|" + "---|" * len(row))
    print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values())
          + " |", flush=True)


if __name__ == "__main__":
  main()
