r"""Recomputes the study's NTK column at initialisation in every result row, as ``run.py`` now does.

  python experiments/cifar10/recompute_ntk.py --data_dir=/tmp/cifar10

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
import ml_collections

from sam_jax import parallel
from sam_jax.analysis import ntk
from sam_jax.analysis.context import Context
from sam_jax.checkpoints import loading

flags.DEFINE_string("data_dir", None, "The CIFAR-10 image folder (train/, test/).", required=True)
flags.DEFINE_string("results_dir", os.path.join(os.path.dirname(__file__), "results"),
                    "The result rows to update.")
FLAGS = flags.FLAGS


def kappa_at_initialisation(config: ml_collections.ConfigDict) -> float:
  """kappa at initialisation as ``run.py``'s ``runner.analyze(..., ["ntk"])`` measures it.

  The same images (``Context.batches``) and the same function
  (``ntk.at_initialisation``), without the analysis's second kernel (at the
  trained weights, which a row without its checkpoint does not have).
  """
  init = loading.initial(config)
  context = Context(init, parallel.create_mesh())
  images = context.batches(1, batch_size=context.settings.ntk.batch_size)[0]["image"]
  return ntk.at_initialisation(init.config, images)["kappa"]


def main(argv: list[str]) -> None:
  del argv
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
