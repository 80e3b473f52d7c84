"""Analysis ``ntk``: the condition number of the NTK (Table 1), as TE-NAS measures it.

``ntk.weight_ntk`` (summed logits, weights only, BatchNorm on batch statistics; docs/paper.md
M1) on the first ``ntk.batch_size`` examples of ``analysis.split``, at TE-NAS's
initialisation (``config.seed``; the paper's measure) and at the trained weights.
"""

from typing import Any

from etils import epath
import jax
import ml_collections

from sam_jax.analysis import ntk, plots
from sam_jax.analysis.context import Analysis, Context, Results
from sam_jax.checkpoints import loading

FIGURE = "ntk_condition_number.png"


def at_initialisation(config: ml_collections.ConfigDict, images: jax.Array) -> dict[str, float]:
  """kappa of TE-NAS's NTK for the model at TE-NAS's initialisation.

  The model is built and initialised as training with ``config.seed`` starts; TE-NAS
  then re-draws the kernels (``ntk.tenas_initialization``, key ``config.seed``).
  """
  init = loading.initial(config)
  params = ntk.tenas_initialization(init.params, jax.random.PRNGKey(config.seed))
  return ntk.condition_number(ntk.weight_ntk(init.model, {"params": params, **init.model_state},
                                             images))


def run(context: Context) -> dict[str, Any]:
  n = context.settings.ntk.batch_size
  images = context.batches(1, batch_size=n)[0]["image"]
  loaded = context.loaded
  trained = ntk.weight_ntk(loaded.model, loaded.variables, images)
  return {"measure": "tenas", "num_examples": n,
          "init": at_initialisation(context.config, images),
          "trained": ntk.condition_number(trained)}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  del first
  values = {label: {"initialisation": r["ntk"]["init"]["kappa"],
                    "trained": r["ntk"]["trained"]["kappa"]} for label, r in results.items()}
  return [plots.block_bars(output_dir / FIGURE, values, ylabel="kappa",
                           title="NTK condition number", log=True)]


NTK = Analysis("ntk", run, figures)
