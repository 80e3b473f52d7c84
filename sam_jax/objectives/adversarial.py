"""L-infinity adversarial attacks: FGSM (Goodfellow et al., 2015) and PGD (Madry et al., 2018),
and the PGD examples of adversarial training.

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

Adversarial training (Madry et al.) minimises the loss on ``PgdAttack.examples``: PGD
images of the batch, computed with the weights and the mode of the training pass, with
no gradient flowing through them into the weights.
"""

import dataclasses

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


def _pgd_steps(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, *, epsilon: float,
               step_size: float, num_steps: int, noise: jax.Array | None,
               robust: jax.Array | None) -> tuple[jax.Array, jax.Array | None]:
  """``num_steps`` projected sign-gradient steps from ``images + noise`` (projected; None:
  the images); ``robust`` (or None: not tracked) is and-ed with the correctness at every
  point visited."""
  if num_steps < 1:
    raise ValueError(f"adversarial: PGD num_steps={num_steps} must be >= 1.")
  lo, hi = jnp.maximum(images - epsilon, BOUNDS[0]), jnp.minimum(images + epsilon, BOUNDS[1])
  x = images if noise is None else jnp.clip(images + noise, lo, hi)

  def step(_, carry):
    x, robust = carry
    grad, logits = input_gradient(logits_fn, x, labels)
    if robust is not None:
      robust &= metrics.correct(logits, labels)
    return jnp.clip(x + step_size * jnp.sign(grad), lo, hi), robust

  return jax.lax.fori_loop(0, num_steps, step, (x, robust))


def pgd(logits_fn: LogitsFn, images: jax.Array, labels: jax.Array, *, epsilon: float,
        step_size: float, num_steps: int, rng: jax.Array | None = None
        ) -> tuple[jax.Array, jax.Array]:
  """(final PGD images, robust mask) for ``epsilon`` and ``step_size`` in model units.

  ``rng`` draws the uniform random start; None starts at the clean images. The mask is
  True where every visited point, the clean images included, is classified correctly.
  """
  noise = (None if rng is None else
           jax.random.uniform(rng, images.shape, images.dtype, -epsilon, epsilon))
  x, robust = _pgd_steps(logits_fn, images, labels, epsilon=epsilon, step_size=step_size,
                         num_steps=num_steps, noise=noise,
                         robust=correct(logits_fn, images, labels))
  assert robust is not None  # Tracked: a mask was given.
  return x, robust & correct(logits_fn, x, labels)


@dataclasses.dataclass(frozen=True)
class PgdAttack:
  """The PGD of adversarial training, in model units (``from_pixels`` converts)."""
  epsilon: float
  step_size: float
  num_steps: int
  random_start: bool = True

  @classmethod
  def from_pixels(cls, epsilon: float, step_size: float, num_steps: int,
                  random_start: bool = True) -> "PgdAttack | None":
    """Settings in pixel units of [0, 255] (``config.adversarial_training``); None for
    ``epsilon == 0``, training on the batch as given."""
    if epsilon == 0:
      return None
    if not step_size > 0 or num_steps < 1:
      raise ValueError(f"config.adversarial_training: step_size={step_size} must be > 0 and "
                       f"num_steps={num_steps} >= 1 when epsilon={epsilon} > 0.")
    return cls(to_model_units(epsilon), to_model_units(step_size), num_steps, random_start)

  def examples(self, logits_fn: LogitsFn, images: jax.Array, labels: jax.Array,
               keys: jax.Array) -> jax.Array:
    """The PGD images of the batch; no gradient flows through them. ``keys``: one random
    key per example for its random start, so an example's start does not depend on the
    batch it is computed in."""
    noise = None
    if self.random_start:
      draw = lambda key, x: jax.random.uniform(key, x.shape, x.dtype, -self.epsilon, self.epsilon)
      noise = jax.vmap(draw)(keys, images)
    x, _ = _pgd_steps(logits_fn, images, labels, epsilon=self.epsilon,
                      step_size=self.step_size, num_steps=self.num_steps, noise=noise,
                      robust=None)
    return jax.lax.stop_gradient(x)
