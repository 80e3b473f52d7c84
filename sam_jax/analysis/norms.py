"""Analysis ``norms``: weight norm per parameter block, mean L2 norm of each block's output.

Table 3's norms (``block_stats``): ||w_B||_2 of each parameter block and of all
parameters; the mean over examples of each block output's norm on the first
``neurons.num_batches`` batches of ``analysis.split``. The figures draw the total in its
own panel and name the block outputs by block (``block_stats.by_block``).
"""

from typing import Any

from etils import epath

from sam_jax.analysis import block_stats, plots
from sam_jax.analysis.context import Analysis, Context, Results


def run(context: Context) -> dict[str, Any]:
  activations = [block_stats.activation_norms(s, "out") for s in context.sown]
  return {"weight_norm": block_stats.weight_norms(context.params, context.blocks),
          "activation_norm": block_stats.mean_dicts(activations)}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  pick = lambda key: {label: r["norms"][key] for label, r in results.items()}
  return [plots.block_bars(output_dir / "weight_norms.png", pick("weight_norm"),
                           ylabel="||w||_2", title="Weight norm: all weights and per block",
                           whole="total"),
          plots.block_bars(output_dir / "activation_norms.png",
                           block_stats.by_block(pick("activation_norm"), first.blocks),
                           ylabel="mean ||a||_2", title="Activation norm per block output")]


ANALYSIS = Analysis("norms", run, figures)
