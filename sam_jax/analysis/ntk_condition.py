"""Analysis ``ntk``: the condition number of the empirical NTK (Table 1).

On the first ``ntk.batch_size`` examples of ``analysis.split``, at initialisation (with
``config.seed``, the paper's measure) and at the trained weights (``ntk``).
"""

from typing import Any

from etils import epath
import jax

from sam_jax import parallel
from sam_jax.analysis import model_functions, ntk, plots
from sam_jax.analysis.context import Analysis, Context, Results
from sam_jax.checkpoints import loading

FIGURE = "ntk_condition_number.png"


def _kappa(loaded: loading.Loaded, images: jax.Array, convention: str,
           mesh: jax.sharding.Mesh) -> dict[str, float]:
  params, state = parallel.replicate((loaded.params, loaded.model_state), mesh)
  logits = model_functions.Logits(loaded.model, state)
  return ntk.condition_number(ntk.empirical_ntk(logits, params, images, convention))


def run(context: Context) -> dict[str, Any]:
  n, convention = context.settings.ntk.batch_size, context.settings.ntk.convention
  images = context.batches(1, batch_size=n)[0]["image"]
  return {"convention": convention, "num_examples": n,
          "init": _kappa(loading.initial(context.config), images, convention, context.mesh),
          "trained": _kappa(context.loaded, images, convention, context.mesh)}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  del first
  values = {label: {"initialisation": r["ntk"]["init"]["kappa"],
                    "trained": r["ntk"]["trained"]["kappa"]} for label, r in results.items()}
  return [plots.block_bars(output_dir / FIGURE, values, ylabel="kappa",
                           title="NTK condition number", log=True)]


NTK = Analysis("ntk", run, figures)
