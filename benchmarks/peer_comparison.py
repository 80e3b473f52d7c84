r"""Our SAM train step next to timm + PyTorch and a hand-written jitted SAM step, interleaved.

For each model (ViT-S/16, ResNet-50) and batch size (16, 32), 224 px, fp32, 1 CPU device:
  * ours: ``sam_jax.training.train_step`` built as ``sam_jax.training.loop`` builds it (the
    ImageNet recipe's SAM + clipping + AdamW, shard_map over a 1-device mesh, donated state),
    with the CPU runtime settings ``sam_jax.main`` applies (``sam_jax.training.cpu_runtime``);
  * hand-written: a minimal ``jax.jit`` SAM step (same model, loss, clipping and AdamW;
    e = rho g / ||g||, gradient at w + e, update at w), no shard_map;
  * PyTorch: timm's model and davda54/sam's two-pass step (``torch_sam_worker.py``), run by
    ``--torch_python`` in a subprocess that idles while JAX runs, and the other way round.
Each round times one step of each, then an fp32 [n, n] matmul in jnp and in torch. Reported:
median images/s and ratios, GFLOP/s (XLA's cost analysis of our compiled step, the same
FLOPs credited to all three: same architecture), that over the matmul rate of the same
framework, minor page faults and CPU seconds per step (getrusage deltas), load average.

  PYTHONPATH=. python benchmarks/peer_comparison.py --torch_python=/work/torchvenv/bin/python

``--xla_convolutions`` adds our step with the models' convolutions all through
``lax.conv_general_dilated`` (before ``models.conv_matmul``) to the same rounds.
"""

from sam_jax.training import cpu_runtime

cpu_runtime.configure()  # Before JAX (and anything else) starts threads: see the module.

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import contextlib
import functools
import json
import os
import resource
import statistics
import subprocess
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from sam_jax import metrics, models, optim, parallel
from sam_jax.config import defaults, recipes
from sam_jax.models import conv_matmul
from sam_jax.optim import optimizer
from sam_jax.training import loop, setup

from machine import cpu_model  # pylint: disable=g-bad-import-order  (benchmarks/machine.py)

CONVOLUTIONS = ("matmul", "xla")
TIMM_NAMES = {("vit", "S/16"): "vit_small_patch16_224", ("resnet", "50"): "resnet50"}
Step = Callable[[Any], Any]


class TorchWorker:
  """``torch_sam_worker.py`` in a subprocess; ``worker(op, **args)`` answers a dict."""

  def __init__(self, python: str):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_sam_worker.py")
    self._proc = subprocess.Popen([python, script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)

  def __call__(self, op: str, **args) -> dict:
    self._proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
    self._proc.stdin.flush()
    line = self._proc.stdout.readline()
    if not line:
      raise RuntimeError(f"torch worker exited (code {self._proc.wait()}) during {op!r}.")
    return json.loads(line)

  def close(self) -> None:
    self._proc.stdin.close()
    self._proc.wait()


def benchmark_config(name: str, variant: str, batch: int, rho: float) -> ml_collections.ConfigDict:
  """The model's ImageNet recipe with SAM radius ``rho``, made like the PyTorch step.

  As timm's model and davda54/sam's step: no representation layer (the recipe's default),
  softmax cross-entropy, one SAM group (m = the batch), and for ResNet the ViT recipe's
  AdamW with clipping at 1 (``torch_sam_worker.py`` runs AdamW for both).
  """
  if name == "resnet":
    config = recipes.resnet_imagenet(depth=int(variant), rho=rho, batch_size=batch)
    config.optimizer = defaults.optimizer("adamw", 3e-3, 0, "cosine", weight_decay=0.3,
                                          grad_clip_norm=1.0)
  else:
    config = recipes.imagenet(model=name, variant=variant, rho=rho, batch_size=batch)
  config.loss = "softmax_xent"
  config.sam.m = batch
  return defaults.complete(config)


@contextlib.contextmanager
def convolutions(kind: str):
  """Models traced inside run ``kind`` convolutions: "matmul" (their own: 1x1 and patch
  convolutions as ``dot_general``, ``models.conv_matmul``) or "xla" (every convolution
  through ``lax.conv_general_dilated``, as before that change)."""
  if kind not in CONVOLUTIONS:
    raise ValueError(f"convolutions: {kind!r} is not one of {CONVOLUTIONS}.")
  own = conv_matmul.conv_general_dilated
  conv_matmul.conv_general_dilated = own if kind == "matmul" else jax.lax.conv_general_dilated
  try:
    yield
  finally:
    conv_matmul.conv_general_dilated = own


def compile_ours(config: ml_collections.ConfigDict, batch: dict) -> tuple[Any, Any, Any]:
  """(compiled step, state, device batch): the full train step on one device, as
  ``training.loop`` builds it (``training.setup.build``)."""
  run = setup.build(config, jax.devices()[:1])
  state = loop.initial_state(run)
  sharded = parallel.shard_batch(batch, run.mesh)
  return run.train_step.lower(state, sharded).compile(), state, sharded


def our_step(config: ml_collections.ConfigDict, batch: dict) -> tuple[Step, Any, float]:
  """(step, state, FLOPs) of ``compile_ours``'s step."""
  compiled, state, sharded = compile_ours(config, batch)
  return (lambda s: compiled(s, sharded)[0]), state, compiled.cost_analysis()["flops"]


def handwritten_step(config: ml_collections.ConfigDict, batch: dict) -> tuple[Step, Any]:
  """(step, state) of a minimal jitted SAM step: same model, loss, clipping and AdamW."""
  model = models.from_config(config.model, config.num_classes)
  schedule = optim.learning_rate_schedule(config.optimizer, config.num_train_steps)
  tx = optax.chain(optax.clip_by_global_norm(config.optimizer.grad_clip_norm),
                   optimizer.base_optimizer(config.optimizer, schedule))
  images, labels = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
  variables = dict(model.init(jax.random.PRNGKey(0), images[:1], train=False))
  params = variables.pop("params")

  def loss_fn(params, model_state):
    out = model.apply({"params": params, **model_state}, images, train=True,
                      rngs={"dropout": jax.random.PRNGKey(1)}, mutable=list(model_state) or False)
    logits, new_model_state = out if model_state else (out, {})
    return metrics.cross_entropy(logits, labels), new_model_state

  @functools.partial(jax.jit, donate_argnums=0)
  def step(carry):
    params, opt_state, model_state = carry
    (_, new_model_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, model_state)
    scale = config.sam.rho / (optax.global_norm(grads) + config.sam.eps)
    perturbed = jax.tree.map(lambda w, g: w + scale * g, params, grads)
    sam_grads = jax.grad(lambda p: loss_fn(p, model_state)[0])(perturbed)
    updates, opt_state = tx.update(sam_grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_model_state

  return step, (params, tx.init(params), variables)


def jnp_matmul_gflops(n: int, repeats: int) -> float:
  """Best fp32 [n, n] @ [n, n] rate over ``repeats`` timings."""
  a = jnp.asarray(np.random.default_rng(0).random((2, n, n), np.float32))
  matmul = jax.jit(lambda x: x[0] @ x[1])
  matmul(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best / 1e9


def timed(step: Step, state: Any) -> tuple[Any, dict]:
  """Runs one step to completion; its wall and CPU seconds and minor page faults."""
  before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
  state = jax.block_until_ready(step(state))
  seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
  return state, {"seconds": seconds, "minflt": after.ru_minflt - before.ru_minflt,
                 "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)}


def synthetic_batch(batch_size: int) -> dict:
  """Uniform [-1, 1] 224-px images and labels of 1,000 classes."""
  rng = np.random.default_rng(0)
  return {"image": rng.uniform(-1, 1, (batch_size, 224, 224, 3)).astype(np.float32),
          "label": rng.integers(0, 1000, batch_size).astype(np.int32)}


def measure(torch: TorchWorker, name: str, variant: str, batch_size: int,
            args: argparse.Namespace) -> dict:
  """Interleaved rounds of ours, hand-written, PyTorch and the two matmuls; medians."""
  config = benchmark_config(name, variant, batch_size, args.rho)
  batch = synthetic_batch(batch_size)
  steps, states = {}, {}
  steps["ours"], states["ours"], flops = our_step(config, batch)
  if args.xla_convolutions:
    with convolutions("xla"):
      steps["ours, XLA conv"], states["ours, XLA conv"], _ = our_step(config, batch)
  steps["hand"], states["hand"] = handwritten_step(config, batch)
  torch("setup", model=TIMM_NAMES[name, variant], batch=batch_size, rho=args.rho,
        lr=config.optimizer.learning_rate, weight_decay=config.optimizer.weight_decay)
  runs = {k: [] for k in (*steps, "torch", "jnp_matmul", "torch_matmul")}
  print(f"{name} {variant} batch {batch_size}: compiled; {args.warmup} warm-up + "
        f"{args.rounds} timed rounds", flush=True)
  for r in range(args.warmup + args.rounds):
    sample = {}
    order = [*steps, "torch"]
    for key in order[r % len(order):] + order[:r % len(order)]:  # Each round starts elsewhere.
      if key == "torch":
        sample[key] = torch("step")
      else:
        states[key], sample[key] = timed(steps[key], states[key])
    sample["jnp_matmul"] = jnp_matmul_gflops(args.matmul_size, 3)
    sample["torch_matmul"] = torch("matmul", n=args.matmul_size, repeats=3)["gflops"]
    if r >= args.warmup:
      for key, value in sample.items():
        runs[key].append(value)
  med = lambda key, field: statistics.median(x[field] for x in runs[key])
  ips = {k: batch_size / med(k, "seconds") for k in ("ours", "hand", "torch")}
  mm = {k: statistics.median(runs[f"{k}_matmul"]) for k in ("jnp", "torch")}
  gflops = {k: flops / 1e9 * v / batch_size for k, v in ips.items()}
  xla = ({} if "ours, XLA conv" not in runs else
         {"ours XLA conv img/s": batch_size / med("ours, XLA conv", "seconds"),
          "matmul / XLA conv": med("ours, XLA conv", "seconds") / med("ours", "seconds")})
  return {
      "model": f"{name} {variant}", "batch": batch_size,
      "ours img/s": ips["ours"], **xla, "hand-written img/s": ips["hand"],
      "PyTorch img/s": ips["torch"],
      "ours / PyTorch": ips["ours"] / ips["torch"], "ours / hand-written": ips["ours"] / ips["hand"],
      "step GFLOPs": flops / 1e9,
      "ours GFLOP/s": gflops["ours"], "PyTorch GFLOP/s": gflops["torch"],
      "jnp matmul GFLOP/s": mm["jnp"], "torch matmul GFLOP/s": mm["torch"],
      "ours / jnp matmul": gflops["ours"] / mm["jnp"],
      "PyTorch / torch matmul": gflops["torch"] / mm["torch"],
      "ours faults/step": med("ours", "minflt"), "hand faults/step": med("hand", "minflt"),
      "PyTorch faults/step": med("torch", "minflt"),
      "ours CPU s/step": med("ours", "cpu_seconds"), "PyTorch CPU s/step": med("torch", "cpu_seconds"),
      "load (1 min)": os.getloadavg()[0],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--torch_python", required=True,
                      help="A Python with torch and timm, e.g. /work/torchvenv/bin/python.")
  parser.add_argument("--models", default="vit:S/16,resnet:50")
  parser.add_argument("--batch_sizes", default="16,32")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--rho", type=float, default=0.05)
  parser.add_argument("--matmul_size", type=int, default=2048)
  parser.add_argument("--xla_convolutions", action="store_true",
                      help="Also time our step with every convolution through "
                           "lax.conv_general_dilated (the models before models.conv_matmul).")
  args = parser.parse_args()
  specs = [tuple(s.split(":")) for s in args.models.split(",")]
  unknown = [s for s in specs if s not in TIMM_NAMES]
  if unknown:
    raise SystemExit(f"--models: no timm counterpart for {unknown}; choose from "
                     f"{[':'.join(k) for k in TIMM_NAMES]}.")
  torch = TorchWorker(args.torch_python)
  info = torch("info")
  print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; jax {jax.__version__}, torch "
        f"{info['torch']} ({info['threads']} threads), timm {info['timm']}; cpu_runtime: "
        f"{cpu_runtime.describe()}; load {os.getloadavg()}", flush=True)
  rows = []
  for name, variant in specs:
    for batch_size in map(int, args.batch_sizes.split(",")):
      rows.append(measure(torch, name, variant, batch_size, args))
      print(json.dumps(rows[-1]), flush=True)
  torch.close()
  print("| " + " | ".join(rows[0]) + " |")
  print("|" + "---|" * len(rows[0]))
  for row in rows:
    print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values())
          + " |")


if __name__ == "__main__":
  main()
