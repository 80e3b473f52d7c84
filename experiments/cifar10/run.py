r"""Trains and measures one run of the CIFAR-10 study; writes its result row.

  python experiments/cifar10/run.py --config=experiments/cifar10/config.py:vit,fit \
      --config.sam.rho=0.1 --config.seed=1 --config.data_dir=/tmp/cifar10

(the folder made by ``python -m sam_jax.data.make_cifar10_folder --out=/tmp/cifar10``; the ``fit`` regime
also needs its corrupted test images: ``corrupt.py``). The run trains in
``<workdir_root>/<regime>/<name>`` (resuming there), then measures at the final
parameters: test accuracy, the final training loss (the clean-pass loss on augmented
batches, mean of the last ``--loss_window`` logged values), Hessian lambda_max of the
training loss, the fraction of active hidden units per block and the NTK condition number
at initialisation and after training (``sam_jax.analysis.runner`` with
``config.analysis``). The ``fit`` regime adds: loss and accuracy on the un-augmented
training images, lambda_max of the Hessian's diagonal blocks of the embedding and of the
first and last blocks, weight and activation norms per block, the class token's attention
maps (ViT) and the accuracy on each corrupted test split.
The row goes to ``<results_dir>/<regime>/<name>.json``, ``name = MODEL_rhoRHO_seedSEED``
(``MODEL_OPTIMIZER_...`` for an optimizer other than the model's own, e.g.
``resnet_adamw_rho0_seed0``; ``MODEL_KIND_rhoRHO_seedSEED`` for a SAM kind other than ``sam``, e.g.
``--config.sam.kind=looksam``; ``MODEL_looksam_alphaA_...`` for LookSAM at an alpha other
than its default), with the wall and CPU seconds this command used, the step its training
resumed from (``resumed_from_step``, 0 for a fresh run: the seconds cover the steps after it)
and, for AE-SAM, the fraction of steps that took SAM. A run stopped by SIGTERM or Ctrl-C saves
a checkpoint and exits with ``cli.EXIT_STOPPED`` (75) without a row; the same command resumes.
"""

import json
import math
import os
import resource
import sys
import time

from absl import app, flags
import jax
from ml_collections import config_flags
import numpy as np
import optax

from sam_jax import cli, parallel
from sam_jax.analysis import context as context_lib
from sam_jax.analysis import curves, hessian, runner
from sam_jax.checkpoints import loading
from sam_jax.config import defaults
from sam_jax.data import image_folder
from sam_jax.evaluation import eval_sets
from sam_jax.training import config_history, loop

import config as study_config  # pylint: disable=g-bad-import-order  (experiments/cifar10/)
import corrupt  # pylint: disable=g-bad-import-order  (experiments/cifar10/corrupt.py)

config_flags.DEFINE_config_file("config", None, "experiments/cifar10/config.py:MODEL",
                                lock_config=True)
flags.DEFINE_string("workdir_root", "/tmp/sam_cifar10_study", "Where the runs train.")
flags.DEFINE_string("results_dir", os.path.join(os.path.dirname(__file__), "results"),
                    "Where the result rows go.")
flags.DEFINE_integer("loss_window", 4, "Logged training losses averaged for the final loss.")
FLAGS = flags.FLAGS


def run_name(config) -> str:
  kind = "" if config.sam.kind == "sam" else f"{config.sam.kind}_"
  if config.optimizer.name != study_config.DEFAULT_OPTIMIZER[config.model.name]:
    kind = f"{config.optimizer.name}_{kind}"
  alpha = defaults.complete(config).sam.looksam.alpha  # An old --config.sam.looksam_alpha too.
  if config.sam.kind == "looksam" and alpha != defaults.SAM_KINDS["looksam"]["alpha"]:
    kind += f"alpha{alpha:g}_"
  return f"{config.model.name}_{kind}rho{config.sam.rho:g}_seed{config.seed}"


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _end_blocks(blocks: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
  """The embedding, the first and the last numbered block (a ViT's attention and MLP
  sub-blocks of one block together)."""
  numbered = [name for name in blocks if name.startswith("block_")]
  ends = {}
  for block in dict.fromkeys([numbered[0].split("/")[0], numbered[-1].split("/")[0]]):
    ends[block] = sum((paths for name, paths in blocks.items()
                       if name.split("/")[0] == block), ())
  return {"embedding": blocks["embedding"], **ends}


def measure_fit(loaded: loading.Loaded) -> dict:
  """The ``fit`` regime's further numbers (see the module docstring)."""
  config = loaded.config
  mesh = parallel.create_mesh()
  context = context_lib.Context(loaded, mesh)
  num_train = image_folder.parse_split(config.train_split)[1] * config.num_classes
  batch_size = math.gcd(num_train, config.eval_batch_size)  # Every image in whole batches.
  train = [jax.jit(context.metrics)(context.params, b) for b in context.batches(
      num_train // batch_size, split=config.train_split, batch_size=batch_size)]
  h = config.analysis.hessian
  names = ["norms"] + (["attention"] if config.model.name == "vit" else [])
  results = runner.analyze(loaded, names, context=context)
  corrupted = {split.split("/")[1]: eval_sets.accuracy(loaded, "folder", split,
                                                       config.eval_batch_size, mesh)["accuracy"]
               for split in corrupt.split_names()}
  return {
      "train_accuracy": float(np.mean([m["accuracy"] for m in train])),
      "train_loss_clean": float(np.mean([m["loss"] for m in train])),
      "block_lambda_max": hessian.block_lambda_max(
          context.loss, context.params, context.batches(h.num_batches), _end_blocks(
              context.blocks), method=h.method, num_steps=h.num_steps, seed=h.seed,
          progress="Hessian block"),
      "weight_norm": results["norms"]["weight_norm"],
      "activation_norm": results["norms"]["activation_norm"],
      **({"attention_maps": results["attention"]["maps"]} if "attention" in results else {}),
      "corruption_accuracy": corrupted,
      "corruption_mean": float(np.mean(list(corrupted.values()))),
  }


def measure(workdir: str, loss_window: int) -> dict:
  """The study's numbers for the trained run in ``workdir``."""
  loaded = loading.load(workdir)
  results = runner.analyze(loaded, ["hessian", "neurons", "ntk"])
  scalars = curves.read_scalars(workdir)
  _, train_loss = scalars["train/loss"]
  eval_steps, eval_accuracy = scalars["eval/accuracy"]
  return {
      **(measure_fit(loaded) if loaded.config.regime == "fit" else {}),
      "step": loaded.step,
      "test_accuracy": float(eval_accuracy[np.argmax(eval_steps)]),
      "train_loss": float(np.mean(train_loss[-loss_window:])),
      "lambda_max": results["hessian"]["lambda_max"],
      "active_fraction": results["neurons"]["active_fraction"],
      "ntk_kappa_init": results["ntk"]["init"]["kappa"],
      "ntk_kappa_trained": results["ntk"]["trained"]["kappa"],
      "ntk_measure": results["ntk"]["measure"],
  }


def main(argv: list[str]) -> None:
  del argv
  config = FLAGS.config
  if not config.data_dir or not os.path.isdir(os.path.join(config.data_dir, "train")):
    raise app.UsageError(f"--config.data_dir={config.data_dir!r} must be a folder with train/ "
                         "and test/ (python -m sam_jax.data.make_cifar10_folder --out=DIR).")
  missing = [s for s in corrupt.split_names() if not os.path.isdir(
      os.path.join(config.data_dir, s))] if config.regime == "fit" else []
  if missing:
    raise app.UsageError(f"The fit regime scores the corrupted test images, but {config.data_dir} "
                         f"lacks {len(missing)} of their folders (e.g. {missing[0]}); write them "
                         f"with: python experiments/cifar10/corrupt.py --data_dir="
                         f"{config.data_dir}")
  name = run_name(config)
  workdir = os.path.join(FLAGS.workdir_root, config.regime, name)
  start, cpu_start = time.time(), _cpu_seconds()
  state = loop.train_and_evaluate(config, workdir)
  train_seconds, train_cpu = time.time() - start, _cpu_seconds() - cpu_start
  if int(state.step) < config.num_train_steps:  # Stopped on a signal, after saving.
    print(f"{name}: stopped at step {int(state.step)} of {config.num_train_steps}; no row "
          "written. Rerun the same command to resume.", file=sys.stderr)
    raise SystemExit(cli.EXIT_STOPPED)
  sam_steps = optax.tree_utils.tree_get(state.opt_state, "sam_steps")  # AE-SAM's count.
  row = {"name": name, "model": config.model.name, "kind": config.sam.kind,
         "rho": config.sam.rho, "seed": config.seed, **measure(workdir, FLAGS.loss_window),
         "resumed_from_step": config_history.start_steps(workdir)[-1],
         **({} if sam_steps is None else {"sam_fraction": int(sam_steps) / int(state.step)}),
         "train_wall_seconds": train_seconds, "train_cpu_seconds": train_cpu,
         "total_wall_seconds": time.time() - start,
         "total_cpu_seconds": _cpu_seconds() - cpu_start,
         "devices": jax.device_count(), "config": json.loads(config.to_json_best_effort())}
  results_dir = os.path.join(FLAGS.results_dir, config.regime)
  os.makedirs(results_dir, exist_ok=True)
  path = os.path.join(results_dir, f"{name}.json")
  with open(path, "w") as f:
    json.dump(row, f, indent=1)
  print(f"{name}: test accuracy {row['test_accuracy']:.4f}, train loss {row['train_loss']:.4f}, "
        f"lambda_max {row['lambda_max']:.2f}, {row['total_cpu_seconds'] / 3600:.3f} CPU-hours "
        f"-> {path}")


if __name__ == "__main__":
  app.run(main)
