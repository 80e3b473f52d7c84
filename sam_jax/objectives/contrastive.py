r"""SimCLR's contrastive loss, NT-Xent (Chen et al., 2020, "A Simple Framework for Contrastive
Learning of Visual Representations", eq. 1), over the two views of a SAM group's examples.

For N examples with projections z_i of their first view and z_{N+i} of their second,
u_k = z_k / ||z_k||, s_{jk} = u_j . u_k / tau, and the positive of view a is the other
view of its example, p(a) = a + N (a <= N) or a - N:

    l_a = -log( exp(s_{a,p(a)}) / sum_{k != a} exp(s_{a,k}) )      (2N - 1 candidates)
    L   = 1/(2N) sum_{a=1}^{2N} l_a

The 2N - 2 negatives of a view are the other examples' views of the same SAM
perturbation group (``config.sam.m`` examples), so the loss, like BatchNorm statistics,
is defined per group and the same m gives the same loss on any number of devices. A group
that spans devices (``group_axis``, the mesh axis ``"member"``) gathers the other devices'
normalised projections (``all_gather``; its transpose sums each device's gradient
contributions back, so the group's mean loss is differentiated exactly), as SimCLR's
``tpu_cross_replica_concat`` does over all cores. google-research/simclr
``objective.py`` (``add_contrastive_loss``) returns loss_a + loss_b, twice L.

The metric is the positive's top-1 among the 2N - 1 candidates (SimCLR's contrast
accuracy).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from sam_jax.objectives.objective import Batch, Forward, Result

SECOND_VIEW = "image2"  # The batch key of the second views (``data.tf_pipeline``).


def normalize(z: jax.Array) -> jax.Array:
  """z / ||z|| per row in float32 (TensorFlow's ``l2_normalize``: ||z||^2 floored at 1e-12)."""
  z = z.astype(jnp.float32)
  return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-12))


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float,
            group_axis: str | None = None) -> tuple[jax.Array, jax.Array]:
  """(L, top-1 of the positives) of the views z1, z2 [n, d] of n examples, over the group.

  With ``group_axis`` the group is this device's n examples and those of the other devices
  along the axis; L and the accuracy are then the means over this device's 2n views (the
  group's values are their mean over the axis).
  """
  n = z1.shape[0]
  queries = jnp.concatenate([normalize(z1), normalize(z2)])  # [2n, d]: this device's views.
  if group_axis is None:
    keys, offset, total = queries, 0, n
  else:
    gather = lambda u: jax.lax.all_gather(u, group_axis, tiled=True)
    keys = jnp.concatenate([gather(queries[:n]), gather(queries[n:])])  # [2N, d]
    offset, total = jax.lax.axis_index(group_axis) * n, keys.shape[0] // 2
  rows = jnp.arange(2 * n)
  first = rows < n
  own = jnp.where(first, offset + rows, total + offset + rows - n)  # Column of the view itself.
  positive = jnp.where(first, own + total, own - total)
  logits = queries @ keys.T / temperature
  logits = jnp.where(jnp.arange(2 * total)[None] == own[:, None], -jnp.inf, logits)
  losses = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(
      logits, positive[:, None], axis=-1)[:, 0]
  return jnp.mean(losses), jnp.mean(jnp.argmax(logits, axis=-1) == positive)


@dataclasses.dataclass(frozen=True)
class NtXent:
  """NT-Xent at ``temperature`` of the model's outputs on ``batch["image"]`` and
  ``batch[SECOND_VIEW]``, one forward pass over the 2n views (BatchNorm sees all of them)."""
  temperature: float

  def __call__(self, forward: Forward, params: Any, batch: Batch, rng: jax.Array, *,
               group_axis: str | None = None) -> Result:
    n = batch["image"].shape[0]
    z, model_state = forward(params, jnp.concatenate([batch["image"], batch[SECOND_VIEW]]), rng)
    loss, accuracy = nt_xent(z[:n], z[n:], self.temperature, group_axis)
    return loss, ({"accuracy": accuracy}, model_state)
