"""optim.freeze: frozen leaves never change (bitwise, -0.0 included) and take no part in SAM."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sam_jax.optim import masks
from sam_jax.optim.freeze import freeze
from sam_jax.optim.sam_family import sam

RHO, LR = 0.3, 0.1


def _loss(params):
  a, b = params["head"]["kernel"], params["body"]["kernel"]
  return jnp.sum((a * b - 1.0) ** 2) + jnp.sum(a ** 4)


def test_frozen_leaves_never_move_and_sam_ascends_along_the_trained_ones():
  params = {"head": {"kernel": jnp.array([0.5, -1.0, 2.0])},
            "body": {"kernel": jnp.array([-0.0, 0.7, -3.0])}}  # -0.0 must stay -0.0.
  inner = optax.chain(sam(RHO), optax.adamw(LR, weight_decay=0.5))  # Decays every leaf.
  tx = freeze(inner, masks.path_mask("^head/"))
  state = tx.init(params)
  grad_fn = jax.grad(_loss)
  updates, state = tx.update(grad_fn(params), state, params, grad_fn=grad_fn)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(np.signbit(new["body"]["kernel"]), [True, False, True])
  np.testing.assert_array_equal(new["body"]["kernel"], params["body"]["kernel"])
  np.testing.assert_array_equal(state[1][0].mu["body"]["kernel"], 0.0)  # No moments.

  # The trained leaf: SAM and AdamW on it alone, the body a constant.
  body = params["body"]
  head_loss = lambda head: _loss({"head": head, "body": body})
  head_grad = jax.grad(head_loss)
  alone = optax.chain(sam(RHO), optax.adamw(LR, weight_decay=0.5))
  expected, _ = alone.update(head_grad(params["head"]), alone.init(params["head"]),
                             params["head"], grad_fn=head_grad)
  np.testing.assert_allclose(updates["head"]["kernel"], expected["kernel"], rtol=1e-6)


def test_path_mask_matches_the_joined_path():
  params = {"head": {"kernel": 0, "bias": 0}, "Transformer": {"head": {"kernel": 0}}}
  assert masks.path_mask("^head/")(params) == {
      "head": {"kernel": True, "bias": True}, "Transformer": {"head": {"kernel": False}}}
  assert all(jax.tree.leaves(masks.path_mask("")(params)))
