"""Non-overlapping convolutions as matrix products: same values, gradients and parameters as
``lax.conv_general_dilated`` / ``nn.Conv`` (the reference kept here: flax's default)."""

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

from sam_jax.models import conv_matmul, create_model

NHWC = ("NHWC", "HWIO", "NHWC")
TOL = dict(rtol=2e-5, atol=2e-5)


def _value_and_grads(conv, x, w, strides, padding):
  """conv's output and the gradients of a random projection of it w.r.t. input and kernel."""
  f = lambda x, w: conv(x, w, strides, padding, dimension_numbers=NHWC)
  y = f(x, w)
  probe = jax.random.normal(jax.random.key(9), y.shape)
  grads = jax.grad(lambda x, w: jnp.sum(f(x, w) * probe), argnums=(0, 1))(x, w)
  return y, grads


@pytest.mark.parametrize("image, kernel, strides, padding", [
    ((2, 6, 5, 3), (1, 1), (1, 1), "SAME"),     # bottleneck 1x1
    ((2, 7, 5, 3), (1, 1), (2, 2), "SAME"),     # strided projection shortcut, odd sizes
    ((2, 7, 6, 3), (1, 1), (2, 3), "VALID"),
    ((2, 8, 12, 3), (4, 4), (4, 4), "VALID"),   # patch embedding
    ((2, 10, 9, 3), (4, 3), (4, 3), "VALID"),   # VALID drops the remainder rows
    ((2, 8, 8, 3), (1, 4), (2, 4), "VALID"),    # k = 1 on one axis, k = s on the other
    ((2, 8, 8, 3), (3, 3), (1, 1), "SAME"),     # overlapping windows: lax's convolution
    ((2, 9, 9, 3), (2, 2), (2, 2), "SAME"),     # padded: lax's convolution
])
def test_matches_lax_convolution(image, kernel, strides, padding):
  x = jax.random.normal(jax.random.key(0), image)
  w = jax.random.normal(jax.random.key(1), (*kernel, image[-1], 5))
  got = _value_and_grads(conv_matmul.conv_general_dilated, x, w, strides, padding)
  want = _value_and_grads(lax.conv_general_dilated, x, w, strides, padding)
  assert got[0].shape == want[0].shape
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), got, want)


def test_only_non_overlapping_unpadded_windows_become_matmuls():
  x, w = jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 1, 3, 4))
  as_matmul = lambda *args, **kw: conv_matmul._as_matmul(  # pylint: disable=protected-access
      *args, **{"lhs_dilation": None, "rhs_dilation": None, "dimension_numbers": NHWC,
                "feature_group_count": 1, **kw})
  assert as_matmul(x, w, (1, 1), "SAME")
  assert as_matmul(x, jnp.zeros((4, 4, 3, 4)), (4, 4), "VALID")
  assert not as_matmul(x, jnp.zeros((3, 3, 3, 4)), (1, 1), "SAME")
  assert not as_matmul(x, w, (1, 1), [(1, 1), (0, 0)])
  assert not as_matmul(x, w, (1, 1), "SAME", rhs_dilation=(2, 2))
  assert not as_matmul(x, w, (1, 1), "SAME", feature_group_count=3)
  assert not as_matmul(jnp.zeros((1, 3, 8, 8)), w, (1, 1), "SAME",
                       dimension_numbers=("NCHW", "HWIO", "NCHW"))


MODELS = [
    ("resnet", "50", dict(stage_sizes=(1, 1), num_filters=4)),  # bottleneck + projection
    ("resnet", "18", dict(stage_sizes=(1, 1), num_filters=4, stem="cifar")),
]


def _loss_and_grads(model, variables, images):
  """Training-mode loss (a fixed projection of the logits) and its parameter gradients."""
  def loss(params):
    out = model.apply({**variables, "params": params}, images, train=True,
                      mutable=["batch_stats"], rngs={"dropout": jax.random.key(0)})
    logits = out[0]
    return jnp.sum(logits * jnp.linspace(-1.0, 1.0, logits.size).reshape(logits.shape))
  return jax.jit(jax.value_and_grad(loss))(variables["params"])


@pytest.mark.parametrize("name, variant, overrides", MODELS)
def test_models_match_flax_convolution(name, variant, overrides, monkeypatch):
  """Same variables (tree, shapes, initial values), outputs and gradients as on flax's nn.Conv."""
  model = create_model(name, variant, num_classes=3, **overrides)
  images = jax.random.normal(jax.random.key(2), (2, 16, 16, 3))
  init = lambda: jax.jit(lambda: model.init(jax.random.key(0), images, train=False))()
  with monkeypatch.context() as patch:  # The reference: flax's default lax convolution.
    patch.setattr(conv_matmul, "conv_general_dilated", lax.conv_general_dilated)
    reference = init()
  jax.tree.map(np.testing.assert_array_equal, init(), reference)
  # Random, non-zero params (the zero-initialised head and BN scales would hide the rest).
  rng = np.random.default_rng(1)
  reference["params"] = jax.tree.map(
      lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.3, a.dtype), reference["params"])
  with monkeypatch.context() as patch:
    patch.setattr(conv_matmul, "conv_general_dilated", lax.conv_general_dilated)
    want = _loss_and_grads(model, reference, images)
  got = _loss_and_grads(model, reference, images)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), got, want)
