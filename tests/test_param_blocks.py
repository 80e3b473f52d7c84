"""The paper's parameter blocks for ViT, Mixer and ResNet parameter trees."""

import jax
import jax.numpy as jnp
import pytest

from sam_jax import models
from sam_jax.analysis import model_functions
from sam_jax.models import param_blocks


def _params(name, variant, image_size, **overrides):
  model = models.create_model(name, variant, num_classes=3, **overrides)
  x = jnp.zeros((1, image_size, image_size, 3))
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))["params"]


@pytest.mark.parametrize("name, variant, size, overrides, expected", [
    ("vit", "Ti/4", 8, dict(hidden_size=8, mlp_dim=16, num_heads=2, num_layers=11),
     ["embedding"] + [f"block_{i}/{s}" for i in range(11) for s in ("attention", "mlp")]
     + ["head"]),
    ("mixer", "S/4", 8, dict(hidden_dim=8, num_blocks=2, tokens_mlp_dim=4, channels_mlp_dim=8),
     ["embedding", "block_0/token_mlp", "block_0/channel_mlp", "block_1/token_mlp",
      "block_1/channel_mlp", "head"]),
    ("resnet", "18", 16, dict(num_filters=2),
     ["embedding"] + [f"block_{i}" for i in range(8)] + ["head"]),
])
def test_partition_in_network_order(name, variant, size, overrides, expected):
  params = _params(name, variant, size, **overrides)
  blocks = param_blocks.partition(params, models.family(name).param_blocks)
  assert list(blocks) == expected
  paths = [p for block in blocks.values() for p in block]
  assert sorted(paths) == sorted(param_blocks.flatten(params))  # Each parameter exactly once.


@pytest.mark.parametrize("name, variant, size, overrides, expected", [
    ("vit", "Ti/4", 8, dict(hidden_size=8, mlp_dim=16, num_heads=2, num_layers=2),
     dict(hidden=["block_0/mlp", "block_1/mlp"], out=["block_0", "block_1"])),
    ("mixer", "S/4", 8, dict(hidden_dim=8, num_blocks=1, tokens_mlp_dim=4, channels_mlp_dim=8),
     dict(hidden=["block_0/token_mlp", "block_0/channel_mlp"], out=["block_0"])),
    ("resnet", "18", 16, dict(num_filters=2), dict(out=[f"block_{i}" for i in range(8)])),
])
def test_sown_modules_are_named_by_their_blocks(name, variant, size, overrides, expected):
  """The analyses' per-module values (active units, block outputs) get the block names
  that the per-block values (Hessian, weight norms) have."""
  model = models.create_model(name, variant, num_classes=3, **overrides)
  x = jnp.zeros((1, size, size, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  sown = jax.eval_shape(lambda v: model.apply(v, x, train=False, mutable=["intermediates"])[1],
                        variables)
  blocks = param_blocks.partition(variables["params"], models.family(name).param_blocks)
  for unit, names in expected.items():
    modules = list(model_functions.sown(sown, unit))
    assert list(param_blocks.module_blocks(modules, blocks).values()) == names
  assert list(param_blocks.module_blocks(["nowhere", "head"], blocks).items()) == [
      ("head", "head"), ("nowhere", "nowhere")]


def test_vit_blocks_hold_the_right_modules():
  blocks = param_blocks.partition(_params("vit", "Ti/4", 8, hidden_size=8, mlp_dim=16,
                                          num_heads=2, num_layers=1),
                                  models.family("vit").param_blocks)
  assert set(blocks["embedding"]) == {"embedding/kernel", "embedding/bias", "cls",
                                      "Transformer/posembed_input/pos_embedding"}
  assert all("LayerNorm_1" in p or "MlpBlock_0" in p for p in blocks["block_0/mlp"])
  assert "Transformer/encoder_norm/scale" in blocks["head"]


def test_other_models_group_by_top_level_module_and_unmatched_paths_fail():
  assert param_blocks.partition({"a": {"k": 1}, "b": {"k": 2, "j": 3}}, ()) == {
      "a": ("a/k",), "b": ("b/k", "b/j")}
  with pytest.raises(ValueError, match="'extra/kernel'.*matches no block rule"):
    param_blocks.partition({"head": {"kernel": 1}, "extra": {"kernel": 2}},
                           models.family("vit").param_blocks)


def test_flatten_round_trip_and_natural_order():
  tree = {"a": {"b": 1, "c": {"d": 2}}}
  assert param_blocks.unflatten(param_blocks.flatten(tree)) == tree
  assert sorted(["block_10", "block_2", "block_1"], key=param_blocks.natural_key) == [
      "block_1", "block_2", "block_10"]
