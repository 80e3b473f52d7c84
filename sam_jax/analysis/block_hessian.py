"""Analysis ``block_hessian``: lambda_max of each parameter block's Hessian block (Table 3).

``hessian.block_lambda_max`` of the loss of the ``hessian`` analysis (same batches and
settings) over the family's parameter blocks (``models.Family.param_blocks``), the blocks'
iterations run together (``hessian.blocks_at_once`` of them, 0: all); drawn in the
``hessian`` analysis's figure.
"""

from typing import Any

from sam_jax.analysis import hessian
from sam_jax.analysis.context import Analysis, Context


def run(context: Context) -> dict[str, Any]:
  kwargs = hessian.settings(context)
  values = hessian.block_lambda_max(context.loss, context.params,
                                    context.batches(context.settings.hessian.num_batches),
                                    context.blocks, progress="Hessian block",
                                    blocks_at_once=context.settings.hessian.blocks_at_once,
                                    **kwargs)
  return {"lambda_max": values, "num_examples": hessian.num_examples(context), **kwargs}


ANALYSIS = Analysis("block_hessian", run, hessian.figures)
