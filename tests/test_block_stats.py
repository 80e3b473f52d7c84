"""Active-neuron fractions, activation and weight norms against hand computation."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_jax import models
from sam_jax.analysis import block_stats, model_functions
from sam_jax.models import param_blocks


def _gelu(x):  # Flax's default GELU: the tanh approximation.
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


class _Block(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    h = nn.gelu(nn.Dense(self.width, name="fc")(x))
    self.sow("intermediates", "hidden", h)
    out = x + nn.Dense(x.shape[-1], name="proj")(h)
    self.sow("intermediates", "out", out)
    return out


class _Net(nn.Module):

  @nn.compact
  def __call__(self, x):
    for i in range(2):
      x = _Block(6, name=f"block_{i}")(x)
    return x


def _run():
  x = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)  # [batch, tokens, d]
  model = _Net()
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  _, state = model.apply({"params": params}, x, mutable=["intermediates"])
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  hidden, outs = [], []
  h_in = x.astype(np.float64)
  for i in range(2):
    b = p[f"block_{i}"]
    h = _gelu(h_in @ b["fc"]["kernel"] + b["fc"]["bias"])
    h_in = h_in + h @ b["proj"]["kernel"] + b["proj"]["bias"]
    hidden.append(h)
    outs.append(h_in)
  return params, state, hidden, outs


def test_active_fractions_and_activation_norms_by_hand():
  params, state, hidden, outs = _run()
  fractions = block_stats.active_fractions(state)
  assert list(fractions) == ["block_0", "block_1"]
  for value, h in zip(fractions.values(), hidden):
    assert value == pytest.approx(np.mean(h > 0), abs=1e-6)
  norms = block_stats.activation_norms(state["intermediates"])
  for value, a in zip(norms.values(), outs):
    expected = np.mean(np.linalg.norm(a.reshape(len(a), -1), axis=1))
    assert value == pytest.approx(expected, rel=1e-5)


def test_weight_norms_by_hand():
  params, *_ = _run()
  blocks = param_blocks.partition(params, ())
  norms = block_stats.weight_norms(params, blocks)
  leaves = {k: np.asarray(v, np.float64) for k, v in param_blocks.flatten(params).items()}
  for name in ("block_0", "block_1"):
    expected = np.sqrt(sum(np.sum(v**2) for k, v in leaves.items() if k.startswith(name + "/")))
    assert norms[name] == pytest.approx(expected, rel=1e-12)
  assert norms["total"] == pytest.approx(np.sqrt(norms["block_0"]**2 + norms["block_1"]**2))


def test_sown_walks_models_generically():
  model = models.create_model("vit", "Ti/4", num_classes=3, hidden_size=8, mlp_dim=16,
                              num_heads=2, num_layers=3)
  x = jnp.zeros((2, 8, 8, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
  hidden = model_functions.sown(state, "hidden")
  assert list(hidden) == [f"Transformer/encoderblock_{i}/MlpBlock_0" for i in range(3)]
  assert all(v.shape == (2, 5, 16) for v in hidden.values())
  assert list(block_stats.activation_norms(state)) == [
      f"Transformer/encoderblock_{i}" for i in range(3)]
  with pytest.raises(ValueError, match="nothing sown under 'relu'.*hidden"):
    block_stats.active_fractions(state, "relu")


def test_repeated_sow_gets_numbered_entries():
  tree = {"intermediates": {"m": {"hidden": (jnp.ones((1, 2)), -jnp.ones((1, 2)))}}}
  assert block_stats.active_fractions(tree) == {"m/0": 1.0, "m/1": 0.0}
