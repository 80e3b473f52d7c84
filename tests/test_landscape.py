"""Filter-normalised directions and loss slices against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sam_jax.analysis import landscape


def _params():
  rng = np.random.default_rng(0)
  return {"conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32),
                   "bias": jnp.ones((4,))},
          "dense": {"kernel": jnp.asarray(rng.normal(size=(5, 6)), jnp.float32)},
          "norm": {"scale": jnp.ones((6,))}}


def test_filter_normalised_direction():
  params = _params()
  d = landscape.filter_normalized_direction(params, jax.random.PRNGKey(0))
  for w, v in [(params["conv"]["kernel"], d["conv"]["kernel"]),
               (params["dense"]["kernel"], d["dense"]["kernel"])]:
    w, v = np.asarray(w), np.asarray(v)
    axes = tuple(range(w.ndim - 1))
    np.testing.assert_allclose(np.sqrt((v**2).sum(axes)), np.sqrt((w**2).sum(axes)), rtol=1e-5)
    assert not np.allclose(v, w)
  np.testing.assert_array_equal(d["conv"]["bias"], 0)
  np.testing.assert_array_equal(d["norm"]["scale"], 0)
  d2 = landscape.filter_normalized_direction(params, jax.random.PRNGKey(1))
  assert not np.allclose(d["dense"]["kernel"], d2["dense"]["kernel"])


def test_slices_of_a_quadratic_match_the_closed_form():
  """L(w) = 0.5 s w^T A w gives L(w + a d1 + b d2) in closed form; batches average s."""
  params = _params()
  w, unravel = ravel_pytree(params)
  rng = np.random.default_rng(1)
  m = rng.normal(size=(w.size, w.size))
  a = jnp.asarray(m @ m.T / w.size, jnp.float32)
  metrics = lambda p, batch: {"loss": 0.5 * batch * ravel_pytree(p)[0] @ a @ ravel_pytree(p)[0]}
  d1, d2 = (landscape.filter_normalized_direction(params, jax.random.PRNGKey(k)) for k in (2, 3))
  batches = [jnp.float32(1.0), jnp.float32(3.0)]
  line, grid = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)
  w64, a64 = np.asarray(w, np.float64), np.asarray(a, np.float64)
  v1, v2 = (np.asarray(ravel_pytree(d)[0], np.float64) for d in (d1, d2))
  closed = lambda x: 0.5 * 2.0 * x @ a64 @ x  # mean scale = 2.
  one = landscape.loss_surface(metrics, params, [d1], [line], batches)["loss"]
  np.testing.assert_allclose(one, [closed(w64 + s * v1) for s in line], rtol=1e-4)
  two = landscape.loss_surface(metrics, params, [d1, d2], [line, grid], batches)["loss"]
  assert two.shape == (5, 3)
  expected = [[closed(w64 + s * v1 + t * v2) for t in grid] for s in line]
  np.testing.assert_allclose(two, expected, rtol=1e-4)


def test_bad_arguments():
  params = _params()
  metrics = lambda p, b: {"loss": jnp.float32(0)}
  with pytest.raises(ValueError, match="1 or 2 directions"):
    landscape.loss_surface(metrics, params, [params] * 3, [[0.0]] * 3, [0])
  with pytest.raises(ValueError, match="1 or 2 directions"):
    landscape.loss_surface(metrics, params, [params], [[0.0], [0.0]], [0])
  with pytest.raises(ValueError, match="at least one batch"):
    landscape.loss_surface(metrics, params, [params], [[0.0]], [])
