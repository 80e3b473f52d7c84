"""The model's FLOPs counted from its program: every matrix product and convolution.

    dot_general:  2 * output elements * contracted size
    convolution:  2 * output elements * input features per group * kernel window

summed over the forward pass of one example (``jax.make_jaxpr`` on abstract shapes, through
every nested jaxpr); a training step costs 3 forward passes per example (the backward pass
twice the forward), 6 with SAM (a second forward and backward pass at the ascent point).
Elementwise work (softmax, GELU, LayerNorm) is left out, as MFU counts do.
"""

import math
from typing import Any, cast

import flax.linen as nn
import jax
from jax.core import ShapedArray
import jax.numpy as jnp
from jax.extend import core


def _shape(atom: core.Var | core.Literal) -> tuple[int, ...]:
  """An operand's shape (its ``aval`` is a ``ShapedArray``; jax types it ``AbstractValue``)."""
  return cast(ShapedArray, atom.aval).shape


def _dot_flops(eqn: core.JaxprEqn) -> int:
  (lhs_contract, _), _ = eqn.params["dimension_numbers"]
  lhs = _shape(eqn.invars[0])
  return 2 * math.prod(_shape(eqn.outvars[0])) * math.prod(lhs[d] for d in lhs_contract)


def _conv_flops(eqn: core.JaxprEqn) -> int:
  rhs = _shape(eqn.invars[1])
  spec = eqn.params["dimension_numbers"].rhs_spec  # (out features, in features, *window).
  window = math.prod(rhs[d] for d in spec[2:])
  return 2 * math.prod(_shape(eqn.outvars[0])) * rhs[spec[1]] * window


def _subjaxprs(eqn: core.JaxprEqn):
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, core.Jaxpr):
        yield item


def jaxpr_flops(jaxpr: core.Jaxpr) -> int:
  """Matrix-product and convolution FLOPs of ``jaxpr`` and the jaxprs nested in it."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      total += _dot_flops(eqn)
    elif eqn.primitive.name == "conv_general_dilated":
      total += _conv_flops(eqn)
    total += sum(jaxpr_flops(sub) for sub in _subjaxprs(eqn))
  return total


def forward_flops(model: nn.Module, variables: Any, image_size: int) -> int:
  """FLOPs of the model's forward pass on one image (``variables`` may be abstract)."""
  image = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, train=False))(variables, image)
  return jaxpr_flops(jaxpr.jaxpr)


def train_flops_per_example(forward: int, sam: bool) -> int:
  """Forward and backward (3 forward passes), twice with SAM."""
  return 3 * forward * (2 if sam else 1)
