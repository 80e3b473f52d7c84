r"""The study's NTK condition number at initialisation: in every result row, or over many seeds.

  python experiments/cifar10/recompute_ntk.py --data_dir=/tmp/cifar10
  python experiments/cifar10/recompute_ntk.py --data_dir=/tmp/cifar10 --seeds=20

With ``--seeds=N`` it writes, instead, kappa at initialisation of each study model
(``config.py:MODEL,fit``) for seeds 0..N-1 to ``--seeds_output`` (``{model: {seed: kappa}}``,
rewritten after every seed), the distribution ``report.py`` summarises: no training needed.

The NTK condition number at initialisation needs no training: each row's config
(``row["config"]``) rebuilds its model with its seed, and ``analysis.ntk``
measures TE-NAS's kappa (docs/paper.md M1) on the same 32 training images a rerun of ``run.py``
would use (rows of one model and seed share it, whatever their rho, so it is measured
once per model and seed). ``ntk_kappa_init`` is replaced; ``ntk_kappa_trained`` of the former measure
is removed (the trained checkpoints are not kept, so it cannot be remeasured); the row
records ``ntk_measure``. Then ``report.py`` rewrites the tables and figures.
"""

import glob
import json
import os
import pathlib

from absl import app, flags
import jax
import ml_collections

from sam_jax import parallel
from sam_jax.analysis import ntk
from sam_jax.analysis.context import Context
from sam_jax.checkpoints import loading

import config as study_config  # pylint: disable=g-bad-import-order  (experiments/cifar10/)

flags.DEFINE_string("data_dir", None, "The CIFAR-10 image folder (train/, test/).", required=True)
flags.DEFINE_string("results_dir", os.path.join(os.path.dirname(__file__), "results"),
                    "The result rows to update.")
flags.DEFINE_integer("seeds", 0, "Measure seeds 0..N-1 of each study model instead of the rows.")
flags.DEFINE_string("seeds_output", os.path.join(os.path.dirname(__file__), "results",
                                                 "ntk_init_seeds.json"),
                    "Where --seeds writes its kappas.")
FLAGS = flags.FLAGS


def ntk_images(config: ml_collections.ConfigDict) -> jax.Array:
  """The images ``run.py``'s ``runner.analyze(..., ["ntk"])`` measures on (``Context.batches``:
  the first ``analysis.ntk.batch_size`` of the analysis split, whatever the seed)."""
  context = Context(loading.initial(config), parallel.create_mesh())
  return context.batches(1, batch_size=context.settings.ntk.batch_size)[0]["image"]


def kappa_at_initialisation(config: ml_collections.ConfigDict,
                            images: jax.Array | None = None) -> float:
  """kappa at initialisation as ``run.py`` measures it: the same images (``ntk_images``) and
  the same function (``ntk.at_initialisation``), without the analysis's second
  kernel (at the trained weights, which a row without its checkpoint does not have)."""
  images = ntk_images(config) if images is None else images
  return ntk.at_initialisation(config, images)["kappa"]


def kappa_over_seeds(data_dir: str, num_seeds: int, output: str) -> None:
  """kappa at initialisation of each study model (fit regime) for seeds 0..num_seeds-1,
  kept in ``output`` (seeds already there are not remeasured)."""
  path = pathlib.Path(output)
  kappas = json.loads(path.read_text()) if path.exists() else {}
  configs = {m: study_config.get_config(f"{m},fit") for m in study_config.MODELS}
  for config in configs.values():
    config.data_dir = data_dir
  images = {m: ntk_images(config) for m, config in configs.items()}
  for seed in range(num_seeds):
    for model, config in configs.items():
      done = kappas.setdefault(model, {})
      if str(seed) not in done:
        config.seed = seed
        done[str(seed)] = kappa_at_initialisation(config, images[model])
        path.write_text(json.dumps(kappas, indent=1, sort_keys=True))
        print(f"{model} seed {seed}: NTK kappa at init {done[str(seed)]:.1f}")


def main(argv: list[str]) -> None:
  del argv
  if FLAGS.seeds:
    kappa_over_seeds(FLAGS.data_dir, FLAGS.seeds, FLAGS.seeds_output)
    return
  measured: dict[str, float] = {}
  for path in sorted(glob.glob(os.path.join(FLAGS.results_dir, "*.json"))):
    row = json.loads(pathlib.Path(path).read_text())
    config = ml_collections.ConfigDict(row["config"])
    config.data_dir = FLAGS.data_dir
    init = {k: v for k, v in row["config"].items() if k not in ("sam", "optimizer")}
    key = json.dumps(init, sort_keys=True)  # Everything the initial model and data depend on.
    if row.get("ntk_measure") == ntk.MEASURE:  # Done by an earlier, stopped pass.
      measured.setdefault(key, row["ntk_kappa_init"])
      continue
    if key not in measured:
      measured[key] = kappa_at_initialisation(config)
    old = row["ntk_kappa_init"]
    row["ntk_kappa_init"] = measured[key]
    row.pop("ntk_kappa_trained", None)
    row["ntk_measure"] = ntk.MEASURE
    pathlib.Path(path).write_text(json.dumps(row, indent=1))
    print(f"{row['name']}: NTK kappa at init {old:.1f} -> {row['ntk_kappa_init']:.1f}")


if __name__ == "__main__":
  app.run(main)
