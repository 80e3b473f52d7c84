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
interleaved; the median over repeats is reported.

  PYTHONPATH=. python benchmarks/sam_overhead.py --batch=4 --repeats=3
"""

import argparse
import statistics
import time

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


def _compiled(key: str, run: setup.Setup, state, batch):
  """The variant's step compiled for ``state`` and ``batch``, and its memory (the largest of
  its programs)."""
  fn = run.train_step
  if isinstance(fn, train_step.AlternatingStep):  # Each program compiled once.
    fn.sam_step, fn.plain_step = (p.lower(state, batch).compile()
                                  for p in (fn.sam_step, fn.plain_step))
    return fn, max(_memory(p) for p in (fn.sam_step, fn.plain_step))
  fn = fn.lower(state, batch).compile()
  return fn, _memory(fn)


def measure(name: str, variant: str, batch_size: int, repeats: int,
            image_size: int = 224) -> list[dict]:
  rng = np.random.default_rng(0)
  shape = (image_size, image_size, 3)
  batch = {"image": rng.uniform(-1, 1, (batch_size, *shape)).astype(np.float32),
           "label": rng.integers(0, 1000, batch_size).astype(np.int32)}
  steps, states, memory, cycle = {}, {}, {}, {}
  for key, (sam_section, per_timing) in VARIANTS.items():
    config = _config(name, variant, batch_size, image_size, **sam_section)
    # "_cond": the one program training does not build (it alternates two).
    run = setup.build(config, jax.devices()[:1], alternate=not key.endswith("_cond"))
    state = parallel.replicate(run.init_state(jax.random.PRNGKey(0)), run.mesh)
    sharded = parallel.shard_batch(batch, run.mesh)
    fn, memory[key] = _compiled(key, run, state, sharded)
    steps[key] = lambda s, f=fn, b=sharded: f(s, b)[0]
    states[key], cycle[key] = state, per_timing
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
          for key in VARIANTS]
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
