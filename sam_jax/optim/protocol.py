"""What the train step asks of an optimizer beyond Optax's ``update(grads, state, params)``.

The step (``training.train_step``) names no optimizer kind. It talks to the whole chain
through two things only:

- the extra arguments of ``update``: ``grad_fn(params) -> grads`` (the gradient of the
  same loss, batch and dropout key at other parameters: SAM's second pass) and, for a
  step compiled for one branch of an every-k-th-step schedule, ``take_sam`` (a Python
  bool fixed at trace time); with gradient accumulation, ``sam_gradient=True``: the
  incoming gradient is the mean over micro-batches of the chain's SAM-family part alone
  (``optimizer.create_optimizer(..., gradient_only=True)``, run on each micro-batch with
  ``grad_fn``), so the SAM-family transformation only averages it over its ``axis_name``
  and advances its state, and a penalty already in it is not added again. LookSAM and
  AE-SAM, whose state follows each whole batch's gradient, do not take it
  (``config.validation`` refuses them with accumulation);
- the point its one gradient is taken at, :func:`gradient_point`: the clean parameters
  w, unless a state in the chain implements ``GradientPointState`` (Momentum-SAM: w + e).
"""

from typing import Protocol, runtime_checkable

import jax
import optax


@runtime_checkable
class GradientPointState(Protocol):
  """An optimizer state that moves the point where the step takes its gradient."""

  def gradient_point(self, params: optax.Params) -> optax.Params:
    """Where the step's gradient is taken, given the clean parameters."""
    ...


def gradient_point(opt_state: optax.OptState, params: optax.Params) -> optax.Params:
  """The point of the state in ``opt_state`` that implements ``GradientPointState``, else
  ``params`` itself (the same object: the step is unchanged).

  Raises:
    ValueError: several states of the chain move the point.
  """
  is_point = lambda x: isinstance(x, GradientPointState) and not isinstance(x, jax.Array)
  states = [s for s in jax.tree.leaves(opt_state, is_leaf=is_point) if is_point(s)]
  if len(states) > 1:
    raise ValueError(f"{len(states)} optimizer states move the gradient point "
                     f"({[type(s).__name__ for s in states]}); a chain may hold one.")
  return states[0].gradient_point(params) if states else params
