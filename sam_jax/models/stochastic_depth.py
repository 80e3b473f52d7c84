"""Stochastic depth (Huang et al., 2016): randomly dropping a residual branch.

For a residual update ``x + f(x)`` the branch is replaced in training by

    f(x) * m / (1 - rate),   m ~ Bernoulli(1 - rate), one draw per example,

so its expectation is unchanged and evaluation uses ``f(x)`` as is. Models give
block ``i`` of ``L`` the rate ``stochastic_depth * i / (L - 1)`` (0 for the first
block, the full rate for the last), as in DeiT and timm.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def block_rates(stochastic_depth: float, num_blocks: int) -> list[float]:
  """Drop rates rising linearly from 0 (first block) to ``stochastic_depth``."""
  if not 0.0 <= stochastic_depth < 1.0:
    raise ValueError(f"stochastic_depth must be in [0, 1), got {stochastic_depth!r}.")
  return [stochastic_depth * i / max(num_blocks - 1, 1) for i in range(num_blocks)]


class DropPath(nn.Module):
  """Drops the whole input of each example with probability ``rate`` (uses the "dropout" rng)."""
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if not train or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = jax.random.bernoulli(self.make_rng("dropout"), keep_prob, shape)
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))
