"""Models: parameter counts by closed form, layer semantics against references."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_jax.models import MODELS, create_model, mixer, model_fields, resnet, vit
from sam_jax.models.attention import MultiHeadDotProductAttention
from sam_jax.models.stochastic_depth import DropPath, block_rates

TINY_VIT = dict(hidden_size=32, mlp_dim=64, num_heads=4, num_layers=2)
TINY_MIXER = dict(hidden_dim=32, num_blocks=2, tokens_mlp_dim=8, channels_mlp_dim=64)


def _count(model, size=224):
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def _vit_count(hidden_size, mlp_dim, num_layers, patch, classes=1000, size=224, **_):
  d, m, tokens = hidden_size, mlp_dim, (size // patch) ** 2 + 1
  block = 2 * 2 * d + 4 * (d * d + d) + (d * m + m) + (m * d + d)
  return (patch * patch * 3 * d + d) + d + tokens * d + num_layers * block + 2 * d + (d * classes
                                                                                    + classes)


def _mixer_count(hidden_dim, num_blocks, tokens_mlp_dim, channels_mlp_dim, patch, classes=1000,
                 size=224):
  d, t, c, n = hidden_dim, tokens_mlp_dim, channels_mlp_dim, (size // patch) ** 2
  block = 2 * 2 * d + (n * t + t + t * n + n) + (d * c + c + c * d + d)
  return (patch * patch * 3 * d + d) + num_blocks * block + 2 * d + (d * classes + classes)


def _resnet_count(stage_sizes, block, classes=1000):
  """Bias-free convs, BatchNorm scale+bias, projection shortcut where the shape changes."""
  total, width = 7 * 7 * 3 * 64 + 2 * 64, 64
  for i, n in enumerate(stage_sizes):
    f = 64 * 2**i
    for j in range(n):
      if block == "basic":
        out, convs = f, 9 * width * f + 9 * f * f
      else:
        out, convs = 4 * f, width * f + 9 * f * f + f * 4 * f
      bns = 2 * (2 * f + out) if block == "bottleneck" else 2 * 2 * f
      project = width != out or (i > 0 and j == 0)
      total += convs + bns + (width * out + 2 * out if project else 0)
      width = out
  return total + width * classes + classes


def _random_params(model, x, seed=1, **kwargs):
  """Random params of ``model``'s shapes, without compiling its initialisers.

  Random everywhere: the zero-initialised head would hide everything else.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False, **kwargs))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype),
                      shapes["params"])


def _jit_apply(model, **kwargs):
  """``model.apply`` as one compiled program (faster here than op by op on first use)."""
  return jax.jit(lambda variables, x: model.apply(variables, x, **kwargs))


def _key(seed):
  """An "rbg" key: its random bits compile far faster than threefry's on the CPU."""
  return jax.random.key(seed, impl="rbg")


def _fast_init(model, x):
  """Real initial variables."""
  return jax.jit(lambda: model.init(_key(0), x, train=False))()


PUBLISHED = [("vit", "B/16", 86_567_656), ("vit", "B/32", 88_224_232), ("vit", "S/16", 22_050_664),
             ("vit", "S/32", 22_878_952), ("mixer", "B/16", 59_880_472),
             ("mixer", "B/32", 60_293_428), ("resnet", "50", 25_557_032)]


@pytest.mark.parametrize("name,variant,expected", PUBLISHED)
def test_published_parameter_counts(name, variant, expected):
  assert _count(create_model(name, variant, num_classes=1000)) == expected


REGISTERED = ([("vit", f"{w}/{p}") for w in vit.SIZES for p in (16, 32)]
              + [("mixer", f"{w}/{p}") for w in mixer.SIZES for p in (16, 32)]
              + [("resnet", d) for d in resnet.SIZES])


@pytest.mark.parametrize("name,variant", REGISTERED)
def test_every_registered_variant_matches_its_formula(name, variant):
  size, _, patch = variant.partition("/")
  if name == "vit":
    expected = _vit_count(patch=int(patch), **vit.SIZES[size])
  elif name == "mixer":
    expected = _mixer_count(patch=int(patch), **mixer.SIZES[size])
  else:
    expected = _resnet_count(**resnet.SIZES[size])
  assert _count(create_model(name, variant, num_classes=1000)) == expected


def test_registry_covers_the_issue():
  assert set(MODELS) == {"vit", "mixer", "resnet"}
  assert set(vit.SIZES) == {"Ti", "S", "B", "L", "H"}
  assert set(mixer.SIZES) == {"S", "B", "L", "H"}
  assert set(resnet.SIZES) == {"18", "34", "50", "101", "152"}


def test_create_model_overrides_and_errors():
  model = create_model("vit", "Ti/4", num_classes=10, hidden_size=64, mlp_dim=128, num_heads=4,
                       num_layers=4, dropout_rate=0.1)
  assert (model.hidden_size, model.num_layers, model.patch_size, model.dropout_rate) == (
      64, 4, 4, 0.1)
  params = _random_params(model, jnp.zeros((1, 16, 16, 3)))
  assert params["embedding"]["kernel"].shape == (4, 4, 3, 64)
  assert len(params["Transformer"]) == 4 + 2  # blocks, posembed_input, encoder_norm
  assert "patch_size" in model_fields("mixer") and "bn_axis_name" in model_fields("resnet")
  from_config = create_model("resnet", "50", num_classes=10, stage_sizes=[1, 1])
  assert from_config.stage_sizes == (1, 1) and hash(from_config)  # usable as a static argument
  for args, match in [(("cnn", "B/16"), "valid names"), (("vit", "X/16"), "unknown vit variant"),
                      (("vit", "B16"), "unknown vit variant"), (("vit", "B/x"), "unknown vit"),
                      (("resnet", "50/16"), "unknown resnet variant")]:
    with pytest.raises(ValueError, match=match):
      create_model(*args, num_classes=10)
  with pytest.raises(ValueError, match="no field.*'hidden'.*valid fields"):
    create_model("vit", "B/16", num_classes=10, hidden=3)


def test_bad_shapes_are_named():
  model = create_model("vit", "Ti/4", num_classes=3, **TINY_VIT)
  with pytest.raises(ValueError, match="18x18 is not divisible by the patch size 4x4"):
    _random_params(model, jnp.zeros((1, 18, 18, 3)))
  with pytest.raises(ValueError, match="not divisible by num_heads=5"):
    _random_params(create_model("vit", "Ti/4", num_classes=3, **(TINY_VIT | dict(num_heads=5))),
                   jnp.zeros((1, 16, 16, 3)))
  with pytest.raises(ValueError, match="classifier='cls'"):
    _random_params(create_model("vit", "Ti/4", num_classes=3, classifier="cls", **TINY_VIT),
                   jnp.zeros((1, 16, 16, 3)))


def test_attention_matches_flax_reference():
  x = jax.random.normal(jax.random.key(0), (2, 5, 12))
  ours, ref = MultiHeadDotProductAttention(num_heads=3), nn.MultiHeadDotProductAttention(3)
  params = _random_params(ours, x)
  ref_shapes = jax.eval_shape(lambda: ref.init(jax.random.key(1), x))["params"]
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, ref_shapes)
  y, state = ours.apply({"params": params}, x, train=False, mutable=["intermediates"])
  y_ref, ref_state = ref.apply({"params": params}, x, sow_weights=True, mutable=["intermediates"])
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(state["intermediates"]["attention_weights"][0],
                             ref_state["intermediates"]["attention_weights"][0], atol=1e-6)


def test_vit_intermediates_and_head():
  model = create_model("vit", "Ti/4", num_classes=7, **TINY_VIT)
  x = jax.random.uniform(jax.random.key(0), (3, 16, 16, 3), minval=-1, maxval=1)
  params = _random_params(model, x)
  logits, state = _jit_apply(model, train=False, mutable=["intermediates"])({"params": params}, x)
  inter = state["intermediates"]
  assert logits.shape == (3, 7)
  for i in range(2):
    block = inter["Transformer"][f"encoderblock_{i}"]
    (weights,) = block["MultiHeadDotProductAttention_0"]["attention_weights"]
    assert weights.shape == (3, 4, 17, 17)  # [batch, heads, q, k]: 16 patches + class token
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    (hidden,) = block["MlpBlock_0"]["hidden"]
    assert hidden.shape == (3, 17, 64) and float(hidden.min()) >= -0.1701  # GELU's minimum
    assert block["out"][0].shape == (3, 17, 32)
  # features = encoder_norm(last block)[class token]; logits = head(features).
  last = inter["Transformer"]["encoderblock_1"]["out"][0]
  norm = nn.LayerNorm(epsilon=1e-6).apply(
      {"params": params["Transformer"]["encoder_norm"]}, last)[:, 0]
  np.testing.assert_allclose(inter["features"][0], norm, rtol=1e-5, atol=1e-5)
  head = params["head"]
  np.testing.assert_allclose(logits, norm @ head["kernel"] + head["bias"], rtol=1e-4, atol=1e-5)
  # Without "intermediates" mutable nothing is recorded and the logits are the same.
  np.testing.assert_allclose(_jit_apply(model, train=False)({"params": params}, x), logits,
                             rtol=1e-6, atol=1e-6)


def test_vit_gap_classifier_and_representation_layer():
  x = jnp.ones((2, 16, 16, 3))
  gap = create_model("vit", "Ti/4", num_classes=3, classifier="gap", **TINY_VIT)
  params = _random_params(gap, x)
  assert "cls" not in params
  assert params["Transformer"]["posembed_input"]["pos_embedding"].shape == (1, 16, 32)
  rep = create_model("vit", "Ti/4", num_classes=3, representation_size=24, **TINY_VIT)
  params = _random_params(rep, x)
  assert params["pre_logits"]["kernel"].shape == (32, 24)
  _, state = _jit_apply(rep, train=False, mutable=["intermediates"])({"params": params}, x)
  features = state["intermediates"]["features"][0]
  assert features.shape == (2, 24) and float(jnp.abs(features).max()) < 1.0  # tanh


@pytest.mark.parametrize("overrides", [dict(dropout_rate=0.3), dict(attention_dropout_rate=0.3),
                                       dict(stochastic_depth=0.5)])
def test_vit_regularisers_act_only_in_training(overrides):
  model = create_model("vit", "Ti/4", num_classes=3, **TINY_VIT, **overrides)
  x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3), minval=-1, maxval=1)
  params = _random_params(model, x)
  run = jax.jit(lambda train, seed: model.apply({"params": params}, x, train=train,
                                                rngs={"dropout": _key(seed)}),
                static_argnums=0)
  np.testing.assert_array_equal(run(False, 0), run(False, 1))
  np.testing.assert_array_equal(run(True, 0), run(True, 0))
  assert not np.allclose(run(True, 0), run(True, 1))
  baseline = create_model("vit", "Ti/4", num_classes=3, **TINY_VIT)
  np.testing.assert_allclose(run(False, 0),
                             _jit_apply(baseline, train=False)({"params": params}, x),
                             rtol=1e-6, atol=1e-6)


def test_drop_path_closed_form():
  assert block_rates(0.2, 5) == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
  assert block_rates(0.2, 1) == [0.0]
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    block_rates(1.0, 4)
  x = jax.random.normal(jax.random.key(0), (1000, 3, 2)) + 5.0
  y = DropPath(0.25).apply({}, x, train=True, rngs={"dropout": jax.random.key(1)})
  kept = np.all(np.asarray(y) != 0, axis=(1, 2))
  np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)  # kept: rescaled by 1/(1-p)
  np.testing.assert_array_equal(y[~kept], 0.0)  # dropped: the whole example
  assert 0.2 < 1 - kept.mean() < 0.3
  np.testing.assert_array_equal(DropPath(0.25).apply({}, x, train=False), x)


def test_mixer_layout_and_intermediates():
  model = create_model("mixer", "S/4", num_classes=5, **TINY_MIXER)
  x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 3), minval=-1, maxval=1)
  params = _random_params(model, x)
  block = params["MixerBlock_0"]
  assert block["token_mixing"]["Dense_0"]["kernel"].shape == (16, 8)  # (patches, token dim)
  assert block["channel_mixing"]["Dense_1"]["kernel"].shape == (64, 32)
  assert set(params) == {"stem", "MixerBlock_0", "MixerBlock_1", "pre_head_layer_norm", "head"}
  logits, state = _jit_apply(model, train=False, mutable=["intermediates"])({"params": params}, x)
  inter = state["intermediates"]["MixerBlock_1"]
  assert logits.shape == (2, 5)
  assert inter["token_mixing"]["hidden"][0].shape == (2, 32, 8)
  assert inter["channel_mixing"]["hidden"][0].shape == (2, 16, 64)
  assert inter["out"][0].shape == (2, 16, 32)
  pooled = nn.LayerNorm(epsilon=1e-6).apply({"params": params["pre_head_layer_norm"]},
                                            inter["out"][0]).mean(1)
  np.testing.assert_allclose(logits, pooled @ params["head"]["kernel"] + params["head"]["bias"],
                             rtol=1e-4, atol=1e-5)
  drop = create_model("mixer", "S/4", num_classes=5, stochastic_depth=0.5, dropout_rate=0.2,
                      **TINY_MIXER)
  run = jax.jit(lambda seed: drop.apply({"params": params}, x, train=True,
                                        rngs={"dropout": _key(seed)}))
  assert not np.allclose(run(0), run(1))
  np.testing.assert_allclose(_jit_apply(drop, train=False)({"params": params}, x), logits,
                             rtol=1e-6, atol=1e-6)


def test_resnet_batch_norm_statistics():
  model = create_model("resnet", "18", num_classes=4, num_filters=8, stage_sizes=(1, 1))
  x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3), minval=-1, maxval=1)
  variables = _fast_init(model, x)
  # The last BatchNorm of every residual block starts with scale 0.
  for name, block in variables["params"].items():
    if name.startswith("ResNetBlock_"):
      np.testing.assert_array_equal(block["BatchNorm_1"]["scale"], 0.0)
  _, updated = _jit_apply(model, train=True, mutable=["batch_stats"])(variables, x)
  # Running mean of the stem BatchNorm: 0.9 * 0 + 0.1 * batch mean of the stem conv output.
  stem = jax.lax.conv_general_dilated(x, variables["params"]["conv_init"]["kernel"], (2, 2),
                                      [(3, 3), (3, 3)],
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(updated["batch_stats"]["bn_init"]["mean"],
                             0.1 * stem.mean((0, 1, 2)), rtol=1e-5, atol=1e-6)
  # Evaluation uses the running statistics: an example's logits do not depend on its batch.
  trained = dict(variables, batch_stats=updated["batch_stats"])
  params = _random_params(model, x)
  evaluate = lambda v, xs: _jit_apply(model, train=False)(dict(v, params=params), xs)
  np.testing.assert_allclose(evaluate(trained, x)[:1], evaluate(trained, x[:1]), rtol=1e-5,
                             atol=1e-6)
  assert not np.allclose(evaluate(trained, x), evaluate(variables, x))
  train_logits = lambda xs: _jit_apply(model, train=True, mutable=["batch_stats"])(
      dict(trained, params=params), xs)[0]
  assert not np.allclose(train_logits(x)[:1], train_logits(x[:2])[:1])


def test_resnet_bottleneck_layout():
  model = create_model("resnet", "50", num_classes=4, num_filters=4, stage_sizes=(1, 1))
  params = _fast_init(model, jnp.zeros((1, 32, 32, 3)))["params"]
  first, downsample = params["BottleneckResNetBlock_0"], params["BottleneckResNetBlock_1"]
  assert first["Conv_2"]["kernel"].shape == (1, 1, 4, 16)
  assert downsample["Conv_1"]["kernel"].shape == (3, 3, 8, 8)  # stride 2 on the 3x3 conv
  assert downsample["conv_proj"]["kernel"].shape == (1, 1, 16, 32)
  np.testing.assert_array_equal(first["BatchNorm_2"]["scale"], 0.0)


def test_bfloat16_compute_keeps_float32_params():
  model = create_model("vit", "Ti/4", num_classes=3, dtype=jnp.bfloat16, **TINY_VIT)
  params = _random_params(model, jnp.zeros((1, 16, 16, 3)))
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  logits = _jit_apply(model, train=False)({"params": params}, jnp.zeros((1, 16, 16, 3)))
  assert logits.dtype == jnp.bfloat16


def test_resnet_cifar_stem_keeps_resolution():
  model = create_model("resnet", "18", num_classes=4, num_filters=4, stage_sizes=(1, 1),
                       stem="cifar")
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1, maxval=1)
  variables = _fast_init(model, x)
  assert variables["params"]["conv_init"]["kernel"].shape == (3, 3, 3, 4)
  _, inter = _jit_apply(model, train=False, mutable=["intermediates"])(variables, x)
  # Stage 1 at the input's 32 x 32 (the ImageNet stem would give 8 x 8), stage 2 at 16 x 16.
  assert inter["intermediates"]["ResNetBlock_0"]["out"][0].shape == (2, 32, 32, 4)
  assert inter["intermediates"]["ResNetBlock_1"]["out"][0].shape == (2, 16, 16, 8)
  with pytest.raises(ValueError, match="stem='tiny' is not one of"):
    _fast_init(create_model("resnet", "18", num_classes=4, stem="tiny"), x)
