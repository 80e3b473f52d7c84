"""Analyses ``hessian`` and ``block_hessian``: lambda_max of the training loss (Tables 1, 3).

The dominant Hessian eigenvalue (``hessian.lambda_max``) of the cross-entropy with
``train=False`` on the first ``hessian.num_batches`` batches of ``analysis.split``, of the
whole network and of each parameter block's diagonal block.
"""

from typing import Any

from etils import epath

from sam_jax.analysis import hessian, plots
from sam_jax.analysis.context import Analysis, Context, Results

FIGURE = "hessian_lambda_max.png"


def _settings(context: Context) -> dict[str, Any]:
  h = context.settings.hessian
  return dict(method=h.method, num_steps=h.num_steps, seed=h.seed)


def _num_examples(context: Context) -> int:
  return context.settings.hessian.num_batches * context.settings.batch_size


def run_whole(context: Context) -> dict[str, Any]:
  kwargs = _settings(context)
  value = hessian.lambda_max(context.loss, context.params,
                             context.batches(context.settings.hessian.num_batches),
                             progress="Hessian", **kwargs)
  return {"lambda_max": value, "num_examples": _num_examples(context), **kwargs}


def run_blocks(context: Context) -> dict[str, Any]:
  kwargs = _settings(context)
  values = hessian.block_lambda_max(context.loss, context.params,
                                    context.batches(context.settings.hessian.num_batches),
                                    context.blocks, progress="Hessian block", **kwargs)
  return {"lambda_max": values, "num_examples": _num_examples(context), **kwargs}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  """One figure: the network's and each block's lambda_max, per run."""
  del first
  values = {label: {**({"network": r["hessian"]["lambda_max"]} if "hessian" in r else {}),
                    **r.get("block_hessian", {}).get("lambda_max", {})}
            for label, r in results.items()}
  return [plots.block_bars(output_dir / FIGURE, values, ylabel="lambda_max",
                           title="Dominant Hessian eigenvalue (network and blocks)", log=True)]


WHOLE = Analysis("hessian", run_whole, figures)
BLOCKS = Analysis("block_hessian", run_blocks, figures)
