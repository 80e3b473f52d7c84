"""The analyses ``sam_jax.analyze`` can run, in the order they run and are listed.

Adding one: its module (an ``context.Analysis`` with run and figure functions) and its
entry here.
"""

from sam_jax.analysis import (attention_rollout, curves, lambda_max, landscape_slices, neurons,
                              norms, ntk_condition)
from sam_jax.analysis.context import Analysis

ANALYSES: dict[str, Analysis] = {a.name: a for a in (
    lambda_max.WHOLE,
    lambda_max.BLOCKS,
    ntk_condition.NTK,
    neurons.NEURONS,
    norms.NORMS,
    landscape_slices.LANDSCAPE,
    attention_rollout.ATTENTION,
    curves.CURVES,
)}
