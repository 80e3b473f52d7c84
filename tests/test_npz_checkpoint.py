"""Official .npz checkpoints: hand-written files in the official layout, round trips, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_jax.checkpoints.npz import export_npz, load_params, read_npz
from sam_jax.models.param_blocks import flatten as flatten_params
from sam_jax.models import create_model, vit_npz

D, MLP, HEADS, LAYERS, PATCH, CLASSES = 8, 16, 2, 2, 4, 5
VIT = dict(hidden_size=D, mlp_dim=MLP, num_heads=HEADS, num_layers=LAYERS)
MIXER = dict(hidden_dim=D, num_blocks=LAYERS, tokens_mlp_dim=4, channels_mlp_dim=MLP)
IMAGES = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)), jnp.float32)


def _array(rng, *shape):
  return rng.normal(size=shape).astype(np.float32)


def official_vit_file(seed=0, *, pre_linen=True, tokens=17, representation=None):
  """Random arrays under the official ViT keys (docs/paper.md R52), written out by hand."""
  rng = np.random.default_rng(seed)
  attn, ln2, mlp = (("MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3") if pre_linen
                    else ("MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0"))
  head_in = representation or D
  f = {"embedding/kernel": _array(rng, PATCH, PATCH, 3, D), "embedding/bias": _array(rng, D),
       "cls": _array(rng, 1, 1, D),
       "Transformer/posembed_input/pos_embedding": _array(rng, 1, tokens, D),
       "Transformer/encoder_norm/scale": _array(rng, D),
       "Transformer/encoder_norm/bias": _array(rng, D),
       "head/kernel": _array(rng, head_in, CLASSES), "head/bias": _array(rng, CLASSES)}
  if representation:
    f["pre_logits/kernel"], f["pre_logits/bias"] = (_array(rng, D, representation),
                                                    _array(rng, representation))
  for i in range(LAYERS):
    b = f"Transformer/encoderblock_{i}/"
    for ln in ("LayerNorm_0", ln2):
      f[f"{b}{ln}/scale"], f[f"{b}{ln}/bias"] = _array(rng, D), _array(rng, D)
    for proj in ("query", "key", "value"):
      f[f"{b}{attn}/{proj}/kernel"] = _array(rng, D, HEADS, D // HEADS)
      f[f"{b}{attn}/{proj}/bias"] = _array(rng, HEADS, D // HEADS)
    f[f"{b}{attn}/out/kernel"], f[f"{b}{attn}/out/bias"] = (_array(rng, HEADS, D // HEADS, D),
                                                            _array(rng, D))
    for dense, (fan_in, fan_out) in (("Dense_0", (D, MLP)), ("Dense_1", (MLP, D))):
      f[f"{b}{mlp}/{dense}/kernel"] = _array(rng, fan_in, fan_out)
      f[f"{b}{mlp}/{dense}/bias"] = _array(rng, fan_out)
  return f


def hand_built_vit_params(f, *, pre_linen=True, layers=LAYERS):
  """The linen param tree of an official ViT file's arrays ``f``, spelled out."""
  attn, ln2, mlp = (("MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3") if pre_linen
                    else ("MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0"))
  pair = lambda prefix, a="kernel", b="bias": {a: f[f"{prefix}/{a}"], b: f[f"{prefix}/{b}"]}
  transformer = {"posembed_input": {"pos_embedding": f["Transformer/posembed_input/pos_embedding"]},
                 "encoder_norm": pair("Transformer/encoder_norm", "scale")}
  for i in range(layers):
    b = f"Transformer/encoderblock_{i}/"
    transformer[f"encoderblock_{i}"] = {
        "LayerNorm_0": pair(b + "LayerNorm_0", "scale"),
        "MultiHeadDotProductAttention_0": {p: pair(f"{b}{attn}/{p}")
                                           for p in ("query", "key", "value", "out")},
        "LayerNorm_1": pair(b + ln2, "scale"),
        "MlpBlock_0": {"Dense_0": pair(f"{b}{mlp}/Dense_0"), "Dense_1": pair(f"{b}{mlp}/Dense_1")},
    }
  params = {"embedding": pair("embedding"), "cls": f["cls"], "Transformer": transformer,
            "head": pair("head")}
  if "pre_logits/kernel" in f:
    params["pre_logits"] = pair("pre_logits")
  return params


def official_mixer_file(seed=0, *, patches=16):
  rng = np.random.default_rng(seed)
  f = {"stem/kernel": _array(rng, PATCH, PATCH, 3, D), "stem/bias": _array(rng, D),
       "pre_head_layer_norm/scale": _array(rng, D), "pre_head_layer_norm/bias": _array(rng, D),
       "head/kernel": _array(rng, D, CLASSES), "head/bias": _array(rng, CLASSES)}
  for i in range(LAYERS):
    b = f"MixerBlock_{i}/"
    for ln in ("LayerNorm_0", "LayerNorm_1"):
      f[f"{b}{ln}/scale"], f[f"{b}{ln}/bias"] = _array(rng, D), _array(rng, D)
    for name, width, hidden in (("token_mixing", patches, 4), ("channel_mixing", D, MLP)):
      f[f"{b}{name}/Dense_0/kernel"] = _array(rng, width, hidden)
      f[f"{b}{name}/Dense_0/bias"] = _array(rng, hidden)
      f[f"{b}{name}/Dense_1/kernel"] = _array(rng, hidden, width)
      f[f"{b}{name}/Dense_1/bias"] = _array(rng, width)
  return f


def template(model, images=IMAGES):
  """Template params (shapes and dtypes) without compiling the initialisers."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))["params"]
  return jax.tree.map(lambda s: jnp.full(s.shape, 7.0, s.dtype), shapes)


def write(path, arrays):
  with open(path, "wb") as f:
    np.savez(f, **arrays)
  return path


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("pre_linen", [True, False])
def test_official_vit_file_gives_hand_built_logits(tmp_path, pre_linen):
  model = create_model("vit", f"Ti/{PATCH}", num_classes=CLASSES, **VIT)
  f = official_vit_file(pre_linen=pre_linen)
  params = load_params(write(tmp_path / "vit.npz", f), "vit", template(model))
  expected = hand_built_vit_params(f, pre_linen=pre_linen)
  assert_trees_equal(params, expected)
  np.testing.assert_array_equal(model.apply({"params": params}, IMAGES, train=False),
                                model.apply({"params": expected}, IMAGES, train=False))


def test_official_mixer_file_loads(tmp_path):
  model = create_model("mixer", f"S/{PATCH}", num_classes=CLASSES, **MIXER)
  f = official_mixer_file()
  params = load_params(write(tmp_path / "mixer.npz", f), "mixer", template(model))
  assert params["MixerBlock_1"]["token_mixing"]["Dense_1"]["kernel"].shape == (4, 16)
  assert flatten_params(params).keys() == f.keys()
  for key, value in flatten_params(params).items():
    np.testing.assert_array_equal(value, f[key])


@pytest.mark.parametrize("name,variant,fields", [("vit", "Ti/4", VIT), ("mixer", "S/4", MIXER)])
def test_export_then_import_is_exact(tmp_path, name, variant, fields):
  model = create_model(name, variant, num_classes=CLASSES, **fields)
  rng = np.random.default_rng(1)
  params = jax.tree.map(lambda t: jnp.asarray(rng.normal(size=t.shape), t.dtype), template(model))
  path = tmp_path / "exported"  # written exactly there, no ".npz" appended
  export_npz(path, params, names="linen")
  assert read_npz(path).keys() == flatten_params(params).keys()
  assert_trees_equal(load_params(path, name, template(model)), params)
  export_npz(path, params)  # The released names (the same for a Mixer).
  assert_trees_equal(load_params(path, name, template(model)), params)


def test_export_writes_the_released_names_by_default(tmp_path):
  model = create_model("vit", f"Ti/{PATCH}", num_classes=CLASSES, **VIT)
  params = load_params(write(tmp_path / "old.npz", official_vit_file()), "vit", template(model))
  export_npz(tmp_path / "released.npz", params)
  assert read_npz(tmp_path / "released.npz").keys() == official_vit_file().keys()
  for key, value in official_vit_file().items():
    np.testing.assert_array_equal(read_npz(tmp_path / "released.npz")[key], value)
  export_npz(tmp_path / "linen.npz", params, names="linen")
  assert read_npz(tmp_path / "linen.npz").keys() == official_vit_file(pre_linen=False).keys()
  with pytest.raises(ValueError, match="names='flax'.*released"):
    export_npz(tmp_path / "bad.npz", params, names="flax")


def test_export_of_a_representation_layer_warns_naming_timm(tmp_path, caplog):
  plain = create_model("vit", f"Ti/{PATCH}", num_classes=CLASSES, **VIT)
  export_npz(tmp_path / "plain.npz", template(plain))
  assert "timm" not in caplog.text
  with_rep = create_model("vit", f"Ti/{PATCH}", num_classes=CLASSES, representation_size=6, **VIT)
  export_npz(tmp_path / "rep.npz", template(with_rep))
  assert (f"{tmp_path / 'rep.npz'} holds a representation layer (pre_logits, width 6). timm's "
          "ViT .npz loader") in caplog.text
  assert "pre_logits/kernel" in read_npz(tmp_path / "rep.npz")  # written all the same


def test_posemb_resize_14x14_to_24x24_keeps_class_token(tmp_path):
  """As at 224 -> 384 px with /16 patches; here 1x1 patches on 14 -> 24 px images."""
  f = official_vit_file(tokens=1 + 14 * 14)
  f["embedding/kernel"] = f["embedding/kernel"][:1, :1]
  # A grid that is linear in (row, col) stays linear: bilinear resampling with aligned
  # corners puts new row i at old row i * 13 / 23.
  rng = np.random.default_rng(2)
  slope_r, slope_c, offset = rng.normal(size=(3, D))
  i, j = np.meshgrid(np.arange(14.0), np.arange(14.0), indexing="ij")
  grid = i[..., None] * slope_r + j[..., None] * slope_c + offset
  pos = f["Transformer/posembed_input/pos_embedding"]
  pos[0, 1:] = grid.reshape(196, D)
  model = create_model("vit", "Ti/1", num_classes=CLASSES, **VIT)
  params = load_params(write(tmp_path / "vit.npz", f), "vit",
                       template(model, jnp.zeros((1, 24, 24, 3))))
  new = np.asarray(params["Transformer"]["posembed_input"]["pos_embedding"])
  assert new.shape == (1, 1 + 24 * 24, D)
  np.testing.assert_array_equal(new[0, 0], pos[0, 0])  # class-token row untouched
  i, j = np.meshgrid(np.arange(24.0) * 13 / 23, np.arange(24.0) * 13 / 23, indexing="ij")
  expected = i[..., None] * slope_r + j[..., None] * slope_c + offset
  np.testing.assert_allclose(new[0, 1:].reshape(24, 24, D), expected, rtol=1e-4, atol=1e-4)
  # Without a class token (classifier="gap") the whole table is the grid.
  resized = vit_npz.resize_posemb(pos[:, 1:], 24 * 24, class_token=False)
  np.testing.assert_allclose(resized, new[:, 1:], rtol=1e-6, atol=1e-6)


def test_head_for_another_number_of_classes_comes_from_init(tmp_path, caplog):
  model = create_model("vit", f"Ti/{PATCH}", num_classes=3, head_bias_init=-2.0, **VIT)
  key = jax.random.key(0, impl="rbg")  # compiles far faster than threefry on the CPU
  init = jax.jit(lambda: model.init(key, IMAGES, train=False))()["params"]
  f = official_vit_file()
  params = load_params(write(tmp_path / "vit.npz", f), "vit", init)
  assert_trees_equal(params["head"], init["head"])  # zeros and -2: the model's own init
  assert "using the freshly initialised head (8, 3) instead of the file's (8, 5)" in caplog.text
  np.testing.assert_array_equal(params["cls"], f["cls"])
  same = create_model("vit", f"Ti/{PATCH}", num_classes=CLASSES, **VIT)
  kept = load_params(tmp_path / "vit.npz", "vit", template(same))
  np.testing.assert_array_equal(kept["head"]["kernel"], f["head/kernel"])
  reset = load_params(tmp_path / "vit.npz", "vit", template(same), reinit_head=True)
  np.testing.assert_array_equal(reset["head"]["kernel"], 7.0)


def test_pre_logits_dropped_or_loaded(tmp_path):
  path = write(tmp_path / "vit.npz", official_vit_file(representation=6))
  plain = create_model("vit", f"Ti/{PATCH}", num_classes=CLASSES, **VIT)
  params = load_params(path, "vit", template(plain))
  assert "pre_logits" not in params
  np.testing.assert_array_equal(params["head"]["kernel"], 7.0)  # (6, 5) in the file: replaced
  # A layer as wide as the model (as the released SAM ViTs: 768): the head's shape matches,
  # yet it was trained on pre_logits' output. Keeping it without the layer is an error ...
  same_width = write(tmp_path / "same.npz", official_vit_file(representation=D))
  with pytest.raises(ValueError, match=f"representation_size={D}"):
    load_params(same_width, "vit", template(plain))
  # ... unless the head is replaced too (fine-tuning), which drops the layer.
  params = load_params(same_width, "vit", template(plain), reinit_head=True)
  assert "pre_logits" not in params and np.all(params["head"]["kernel"] == 7.0)
  with_rep = create_model("vit", f"Ti/{PATCH}", num_classes=CLASSES, representation_size=6, **VIT)
  params = load_params(path, "vit", template(with_rep))
  np.testing.assert_array_equal(params["pre_logits"]["kernel"], read_npz(path)["pre_logits/kernel"])
  np.testing.assert_array_equal(params["head"]["kernel"], read_npz(path)["head/kernel"])


@pytest.fixture
def vit_template():
  return template(create_model("vit", f"Ti/{PATCH}", num_classes=CLASSES, **VIT))


def test_missing_key_and_wrong_shapes_are_all_named(tmp_path, vit_template):
  f = official_vit_file()
  del f["Transformer/encoderblock_1/LayerNorm_2/scale"]
  f["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"] = np.zeros((D, 32), np.float32)
  f["Transformer/posembed_input/pos_embedding"] = np.zeros((1, 17, 4), np.float32)
  with pytest.raises(ValueError) as error:
    load_params(write(tmp_path / "bad.npz", f), "vit", vit_template)
  message = str(error.value)
  assert "3 problems, nothing loaded" in message
  assert "Transformer/encoderblock_1/LayerNorm_1/scale: missing from the file (model shape (8,))" \
      in message
  assert ("Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel: file shape (8, 32) != model "
          "shape (8, 16)") in message
  assert ("Transformer/posembed_input/pos_embedding: file shape (1, 17, 4) != model shape "
          "(1, 17, 8)") in message


def test_extra_key_is_named(tmp_path, vit_template):
  f = official_vit_file() | {"Transformer/encoderblock_2/LayerNorm_0/scale": np.ones(D, np.float32)}
  with pytest.raises(ValueError, match=r"encoderblock_2/LayerNorm_0/scale: in the file \(shape "
                                       r"\(8,\)\) but not in the model"):
    load_params(write(tmp_path / "deeper.npz", f), "vit", vit_template)


def test_mixer_at_another_resolution_names_the_token_mixing_kernels(tmp_path):
  model = create_model("mixer", f"S/{PATCH}", num_classes=CLASSES, **MIXER)
  path = write(tmp_path / "mixer.npz", official_mixer_file())
  with pytest.raises(ValueError, match=r"token_mixing/Dense_0/kernel: file shape \(16, 4\) != "
                                       r"model shape \(36, 4\)"):
    load_params(path, "mixer", template(model, jnp.zeros((1, 24, 24, 3))))


def test_wrong_files_and_arguments(tmp_path, vit_template):
  vit_path = write(tmp_path / "vit.npz", official_vit_file())
  cases = [
      (write(tmp_path / "resnet.npz", {"conv_init/kernel": np.ones((7, 7, 3, 64), np.float32)}),
       "vit", "Unknown architecture"),
      (write(tmp_path / "mixer.npz", official_mixer_file()), "vit",
       "holds a mixer checkpoint, not a vit one"),
      (write(tmp_path / "pickled.npz", {"head/kernel": np.array([{"a": 1}], dtype=object)}),
       "vit", "'head/kernel' is a pickled object array"),
      (write(tmp_path / "ints.npz", {"head/kernel": np.ones(3, np.int32)}), "vit",
       "'head/kernel' has dtype int32"),
      (vit_path, "resnet", "no .npz checkpoint format for model 'resnet'"),
  ]
  (tmp_path / "text.npz").write_text("not numpy")
  np.save(tmp_path / "single.npy", np.ones(3, np.float32))
  cases += [(tmp_path / "text.npz", "vit", "not a readable .npz archive"),
            (tmp_path / "single.npy", "vit", "single .npy array"),
            (tmp_path / "absent.npz", "vit", "not a readable .npz archive")]
  for path, name, match in cases:
    with pytest.raises(ValueError, match=match):
      load_params(path, name, vit_template)
  with pytest.raises(ValueError, match=r"variables\['params'\]"):
    load_params(vit_path, "vit", {"params": vit_template})


def test_mixed_naming_is_refused(tmp_path, vit_template):
  f = official_vit_file() | {"Transformer/encoderblock_0/LayerNorm_1/scale": np.ones(D, np.float32)}
  with pytest.raises(ValueError, match="mixes pre-linen and linen names"):
    load_params(write(tmp_path / "mixed.npz", f), "vit", vit_template)
