"""The analyses ``sam_jax.analyze`` can run, in the order they run and are listed.

Adding one: its module, named after it, holding its ``context.Analysis`` as ``ANALYSIS``
(run and figure functions), and the module here.
"""

from sam_jax.analysis import (attention, block_hessian, curves, hessian, landscape, neurons, norms,
                              ntk)
from sam_jax.analysis.context import Analysis

ANALYSES: dict[str, Analysis] = {m.ANALYSIS.name: m.ANALYSIS for m in (
    hessian, block_hessian, ntk, neurons, norms, landscape, attention, curves)}
