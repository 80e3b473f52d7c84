"""Analysis ``ntk``: the condition number of the NTK as TE-NAS measures it (Table 1).

On the first ``ntk.batch_size`` examples of ``analysis.split``: TE-NAS's kernel
(``ntk.weight_ntk``: summed logits, weights only, BatchNorm on the batch's statistics) at
TE-NAS's initialisation of the model that training with ``config.seed`` starts from (the
paper's measure, docs/paper.md M1), and at the trained weights.
"""

from typing import Any

from etils import epath
import jax
import ml_collections

from sam_jax.analysis import ntk, plots
from sam_jax.analysis.context import Analysis, Context, Results
from sam_jax.checkpoints import loading

FIGURE = "ntk_condition_number.png"
MEASURE = "tenas"


def at_initialisation(config: ml_collections.ConfigDict, images: jax.Array) -> dict[str, float]:
  """kappa of TE-NAS's NTK for the model at TE-NAS's initialisation (key ``config.seed``)."""
  init = loading.initial(config)
  params = ntk.tenas_initialization(init.params, jax.random.PRNGKey(config.seed))
  return ntk.condition_number(ntk.weight_ntk(init.model, {"params": params, **init.model_state},
                                             images))


def run(context: Context) -> dict[str, Any]:
  n = context.settings.ntk.batch_size
  images = context.batches(1, batch_size=n)[0]["image"]
  trained = ntk.weight_ntk(context.loaded.model, context.loaded.variables, images)
  return {"measure": MEASURE, "num_examples": n,
          "init": at_initialisation(context.config, images),
          "trained": ntk.condition_number(trained)}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  del first
  values = {label: {"initialisation": r["ntk"]["init"]["kappa"],
                    "trained": r["ntk"]["trained"]["kappa"]} for label, r in results.items()}
  return [plots.block_bars(output_dir / FIGURE, values, ylabel="kappa",
                           title="NTK condition number (TE-NAS)", log=True)]


NTK = Analysis("ntk", run, figures)
