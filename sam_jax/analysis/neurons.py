"""Analysis ``neurons``: the fraction of active hidden units per layer (Fig. 2).

Units > 0 of the family's hidden units (``models.Family.hidden_units``: post-GELU MLP
units, or a ResNet's post-ReLU block outputs) on the first ``neurons.num_batches``
batches of ``analysis.split`` (``block_stats.active_fractions``), keyed by the sown module;
the figure names them by block (``block_stats.by_block``).
"""

from typing import Any

from etils import epath

from sam_jax.analysis import block_stats, plots
from sam_jax.analysis.context import Analysis, Context, Results

FIGURE = "active_neurons.png"


def run(context: Context) -> dict[str, Any]:
  unit = context.family.hidden_units
  fractions = [block_stats.active_fractions(s, unit) for s in context.sown]
  return {"active_fraction": block_stats.mean_dicts(fractions), "unit": unit}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  values = {label: r["neurons"]["active_fraction"] for label, r in results.items()}
  return [plots.block_bars(output_dir / FIGURE, block_stats.by_block(values, first.blocks),
                           ylabel="fraction of units > 0",
                           title="Active neurons per block (hidden units > 0)")]


ANALYSIS = Analysis("neurons", run, figures)
