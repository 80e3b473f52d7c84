r"""Eval-set accuracy and adversarial robustness of trained models: ``python -m sam_jax.evaluate``.

  python -m sam_jax.evaluate --run=SAM=/tmp/digits_sam --run="no SAM=/tmp/digits_base"

``--run`` and ``--config`` as for ``sam_jax.analyze``. Results go to
``<output_dir>/evaluation.json`` (default ``<first workdir>/evaluation.json``).

- Eval sets (``--eval_sets``, else ``config.eval_sets``, else the config's own eval
  split): names of ``data.catalog.PAPER_EVAL_SETS`` (``imagenet_real``,
  ``imagenet_c/fog_3``...) or ``DATASET[:SPLIT]``; each scored by its catalog metric
  (top-1, ReaL, or ImageNet-R's 200 classes). ``imagenet_c`` stands for all 95
  ImageNet-C sets and adds their summary (``data.imagenet_c.summarize``).
- Robustness on the config's eval split (``config.adversarial``, see
  ``analysis_settings``): clean, FGSM and PGD accuracy under an L-inf budget of
  ``epsilon`` pixel units of [0, 255]; an example counts when it is classified
  correctly at the clean input and at every point the attack visits.
"""

import functools
import json
import os
from typing import Any, Sequence

from absl import app, flags, logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from ml_collections import config_flags

from sam_jax.checkpoints import loading
from sam_jax.config import analysis_settings
from sam_jax.data import catalog, eval_batches, imagenet_c, imagenet_r, imagenet_real
from sam_jax.evaluation import adversarial


def eval_sets(names: Sequence[str], config: ml_collections.ConfigDict
              ) -> dict[str, tuple[str, str | None]]:
  """Name -> (dataset, split or None for the dataset's default)."""
  sets = {}
  for name in names:
    if name == "imagenet_c":
      sets.update({n: s for n, s in catalog.PAPER_EVAL_SETS.items() if n.startswith("imagenet_c/")})
    elif name in catalog.PAPER_EVAL_SETS:
      sets[name] = catalog.PAPER_EVAL_SETS[name]
    else:
      dataset, _, split = name.partition(":")
      sets[name] = (dataset or config.dataset, split or None)
  return sets


@functools.partial(jax.jit, static_argnums=(0, 1))
def _correct_counts(model: nn.Module, metric: str, variables: Any, batch: dict[str, jax.Array]
                    ) -> tuple[jax.Array, jax.Array]:
  """(correct, counted) on one batch under ``metric`` (see ``data.catalog``)."""
  logits = model.apply(variables, batch["image"], train=False)
  mask = batch["mask"]
  if metric == "real":
    return imagenet_real.correct_counts(logits, batch["real_label"], mask)
  if metric == "imagenet_r":
    return imagenet_r.correct_counts(logits, batch["label"], mask)
  return jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask), jnp.sum(mask)


def accuracy(loaded: loading.Loaded, dataset: str, split: str | None, batch_size: int,
             mesh: jax.sharding.Mesh) -> dict[str, float]:
  """Accuracy (the dataset's catalog metric) over one pass of a split."""
  metric = catalog.spec(dataset).metric
  variables = eval_batches.replicate(loaded.variables, mesh)
  correct = total = 0.0
  for batch in eval_batches.iterate(loaded.config, split, batch_size, dataset):
    c, n = _correct_counts(loaded.model, metric, variables, eval_batches.shard(batch, mesh))
    correct, total = correct + float(c), total + float(n)
  return {"accuracy": correct / total, "num_examples": total, "metric": metric}


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _attack_counts(model: nn.Module, epsilon: float, step_size: float, num_steps: int,
                   variables: Any, batch: dict[str, jax.Array], rng: jax.Array | None
                   ) -> list[jax.Array]:
  """Sums over real examples of: clean-correct, FGSM-robust, PGD-robust, 1."""
  logits_fn = lambda x: model.apply(variables, x, train=False)
  x, y, mask = batch["image"], batch["label"], batch["mask"] > 0
  clean = adversarial.correct(logits_fn, x, y)
  fgsm = clean & adversarial.correct(logits_fn, adversarial.fgsm(logits_fn, x, y, epsilon), y)
  _, pgd = adversarial.pgd(logits_fn, x, y, epsilon=epsilon, step_size=step_size,
                           num_steps=num_steps, rng=rng)
  return [jnp.sum(c & mask) for c in (clean, fgsm, pgd, jnp.ones_like(mask))]


def robustness(loaded: loading.Loaded, settings: ml_collections.ConfigDict,
               mesh: jax.sharding.Mesh) -> dict[str, float]:
  """Clean, FGSM and PGD accuracy on the config's eval split (``settings``: adversarial)."""
  attack = (adversarial.to_model_units(settings.epsilon),
            adversarial.to_model_units(settings.pgd_step_size), settings.pgd_steps)
  variables = eval_batches.replicate(loaded.variables, mesh)
  totals = np.zeros(4)
  batches = eval_batches.iterate(loaded.config, loaded.config.eval_split, settings.batch_size)
  for i, batch in enumerate(batches):
    if settings.num_examples and totals[3] >= settings.num_examples:
      break
    rng = jax.random.fold_in(jax.random.PRNGKey(settings.seed), i)
    counts = _attack_counts(loaded.model, *attack, variables, eval_batches.shard(batch, mesh),
                            rng if settings.random_start else None)
    totals += np.array(jax.device_get(counts))
    logging.log_every_n_seconds(logging.INFO, "Attacked %d examples.", 10, int(totals[3]))
  clean, fgsm, pgd, n = totals
  return {"clean_accuracy": clean / n, "fgsm_accuracy": fgsm / n, "pgd_accuracy": pgd / n,
          "num_examples": n, "epsilon": settings.epsilon, "pgd_steps": settings.pgd_steps,
          "pgd_step_size": settings.pgd_step_size, "random_start": settings.random_start}


def evaluate(loaded: loading.Loaded, names: Sequence[str] | None = None,
             mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """Eval-set accuracies and robustness of one model (``names`` as for ``--eval_sets``)."""
  config = loaded.config
  settings = analysis_settings.resolve(config, "adversarial")
  mesh = eval_batches.data_mesh() if mesh is None else mesh
  names = names or list(config.get("eval_sets") or [f"{config.dataset}:{config.eval_split}"])
  sets = eval_sets(names, config)
  results = {name: accuracy(loaded, dataset, split, settings.batch_size, mesh)
             for name, (dataset, split) in sets.items()}
  by_dataset = {sets[name][0]: r["accuracy"] for name, r in results.items()}
  summary = {}
  if all(n in by_dataset for n in imagenet_c.dataset_names()):
    summary["imagenet_c"] = imagenet_c.summarize(by_dataset)
  return {"eval": results, **summary, "adversarial": robustness(loaded, settings, mesh)}


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so the module imports freely)."""
  flags.DEFINE_multi_string("run", None, "[LABEL=]PATH of a training workdir or an official .npz.")
  flags.DEFINE_list("eval_sets", [], "Eval sets (see the module docstring); empty: "
                    "config.eval_sets or the config's eval split.")
  flags.DEFINE_string("output_dir", None, "Where evaluation.json goes; default the first workdir.")
  config_flags.DEFINE_config_file("config", None, "Model config; default: each workdir's "
                                  "config.json (required for .npz runs).", lock_config=False)
  flags.mark_flag_as_required("run")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    runs, output_dir = loading.load_runs(FLAGS.run, FLAGS.config, FLAGS.output_dir, "")
    mesh = eval_batches.data_mesh()
    results = {label: {"source": loaded.source, "step": loaded.step,
                       **evaluate(loaded, FLAGS.eval_sets, mesh)}
               for label, loaded in runs.items()}
  except FileNotFoundError as e:  # Missing data: the message says how to prepare it.
    raise SystemExit(f"sam_jax.evaluate: {e}") from None
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "evaluation.json")
  with open(path, "w") as f:
    json.dump({"runs": results}, f, indent=1)
  logging.info("Wrote %s:\n%s", path, json.dumps(results, indent=1))


if __name__ == "__main__":
  define_flags()
  app.run(main)
