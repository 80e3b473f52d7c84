"""L-infinity adversarial attacks: FGSM (Goodfellow et al., 2015) and PGD (Madry et al., 2018).

With the softmax cross-entropy loss L(x, y) of the model's logits and images in
[lo, hi] = [-1, 1]:

    FGSM:  x' = clip(x + eps * sign(grad_x L(x, y)), lo, hi)
    PGD:   x_0 = clip(x + U(-eps, eps), lo, hi)  (random start; x_0 = x without one)
           x_{t+1} = clip(Pi_eps(x_t + alpha * sign(grad_x L(x_t, y))), lo, hi)

where Pi_eps clips to the L-inf ball of radius eps around x. Epsilons are given in
pixel units of [0, 255]; ``to_model_units`` turns them into [-1, 1] units
(eps / 255 * 2). An example counts as robust when the model classifies it correctly
at the clean input and at every point the attack visits, so robust accuracy is
never above clean accuracy.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from sam_jax import metrics

LogitsFn = Callable[[jax.Array], jax.Array]  # images [n, ...] -> logits [n, K].
BOUNDS = (-1.0, 1.0)


def to_model_units(epsilon_255: float) -> float:
  """A pixel-unit distance in [0, 255] as a distance in the model's [-1, 1] input units."""
  if epsilon_255 < 0:
    raise ValueError(f"adversarial: epsilon={epsilon_255} must be >= 0 (pixel units of 0..255).")
  return epsilon_255 / 255.0 * (BOUNDS[1] - BOUNDS[0])


def input_gradient(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
  """(grad_x of the summed cross-entropy, i.e. each example's own gradient; the logits)."""
  def loss(x):
    logits = logits_fn(x)
    return metrics.cross_entropies(logits, labels).sum(), logits
  return jax.grad(loss, has_aux=True)(images)


def correct(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example: is the prediction the label."""
  return metrics.correct(logits_fn(images), labels)


def fgsm(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, epsilon: float) -> jax.Array:
  """The FGSM images for ``epsilon`` in model units."""
  step = epsilon * jnp.sign(input_gradient(logits_fn, images, labels)[0])
  return jnp.clip(images + step, *BOUNDS)


def pgd(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, *, epsilon: float,
        step_size: float, num_steps: int, rng: jax.Array | None = None
        ) -> tuple[jax.Array, jax.Array]:
  """(final PGD images, robust mask) for ``epsilon`` and ``step_size`` in model units.

  ``rng`` draws the uniform random start; None starts at the clean images. The mask is
  True where every visited point, the clean images included, is classified correctly.
  """
  if num_steps < 1:
    raise ValueError(f"adversarial: PGD num_steps={num_steps} must be >= 1.")
  lo, hi = jnp.maximum(images - epsilon, BOUNDS[0]), jnp.minimum(images + epsilon, BOUNDS[1])
  x = images
  if rng is not None:
    x = jnp.clip(x + jax.random.uniform(rng, x.shape, x.dtype, -epsilon, epsilon), lo, hi)
  robust = correct(logits_fn, images, labels)

  def step(_, carry):
    x, robust = carry
    grad, logits = input_gradient(logits_fn, x, labels)
    robust &= metrics.correct(logits, labels)
    return jnp.clip(x + step_size * jnp.sign(grad), lo, hi), robust

  x, robust = jax.lax.fori_loop(0, num_steps, step, (x, robust))
  return x, robust & correct(logits_fn, x, labels)
