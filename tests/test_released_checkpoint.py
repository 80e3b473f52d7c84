"""A file laid out exactly as a released SAM ViT-B/16 checkpoint loads through the config path.

The key list and shapes (docs/paper.md R50-R52) are those of ``gs://vit_models/sam/
ViT-B_16.npz``: the keys timm's ``_load_weights`` reads from it (pre-linen block names
``LayerNorm_0``, ``MultiHeadDotProductAttention_1``, ``LayerNorm_2``, ``MlpBlock_3``), with
shapes of the vit_jax ViT-B/16 (width 768, 12 heads of 64, MLP 3072, 12 blocks, 16x16
patches, 196 + 1 tokens, 1000 classes), plus the 768-wide tanh ``pre_logits`` layer of
the first release (timm's note: "original SAM weights release worked with
representation_size=768"). Random arrays; full size, so it takes a while on a CPU.
"""

import numpy as np
import pytest

from configs import vit_b16
from sam_jax.checkpoints import loading, npz
from sam_jax.models import create_model, param_blocks
from tests.test_npz_checkpoint import hand_built_vit_params

WIDTH, HEADS, MLP, LAYERS, PATCH, TOKENS, CLASSES = 768, 12, 3072, 12, 16, 197, 1000


def released_vit_b16_shapes(pre_logits: bool) -> dict[str, tuple[int, ...]]:
  """Every key of the released ViT-B/16 file with its shape."""
  shapes = {"cls": (1, 1, WIDTH), "embedding/kernel": (PATCH, PATCH, 3, WIDTH),
            "embedding/bias": (WIDTH,),
            "Transformer/posembed_input/pos_embedding": (1, TOKENS, WIDTH),
            "Transformer/encoder_norm/scale": (WIDTH,), "Transformer/encoder_norm/bias": (WIDTH,),
            "head/kernel": (WIDTH, CLASSES), "head/bias": (CLASSES,)}
  if pre_logits:
    shapes.update({"pre_logits/kernel": (WIDTH, WIDTH), "pre_logits/bias": (WIDTH,)})
  for i in range(LAYERS):
    b = f"Transformer/encoderblock_{i}/"
    for norm in ("LayerNorm_0", "LayerNorm_2"):
      shapes.update({f"{b}{norm}/scale": (WIDTH,), f"{b}{norm}/bias": (WIDTH,)})
    for proj in ("query", "key", "value"):
      shapes[f"{b}MultiHeadDotProductAttention_1/{proj}/kernel"] = (WIDTH, HEADS, WIDTH // HEADS)
      shapes[f"{b}MultiHeadDotProductAttention_1/{proj}/bias"] = (HEADS, WIDTH // HEADS)
    shapes[f"{b}MultiHeadDotProductAttention_1/out/kernel"] = (HEADS, WIDTH // HEADS, WIDTH)
    shapes[f"{b}MultiHeadDotProductAttention_1/out/bias"] = (WIDTH,)
    for dense, (fan_in, fan_out) in (("Dense_0", (WIDTH, MLP)), ("Dense_1", (MLP, WIDTH))):
      shapes[f"{b}MlpBlock_3/{dense}/kernel"] = (fan_in, fan_out)
      shapes[f"{b}MlpBlock_3/{dense}/bias"] = (fan_out,)
  return shapes


@pytest.mark.parametrize("pre_logits", [True, False])
def test_released_vit_b16_layout_evaluates_exactly_under_its_config(tmp_path, pre_logits):
  shapes = released_vit_b16_shapes(pre_logits)
  assert len(shapes) == 8 + 16 * LAYERS + 2 * pre_logits
  rng = np.random.default_rng(0)
  f = {k: (0.05 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
  path = str(tmp_path / "ViT-B_16.npz")
  with open(path, "wb") as out:
    np.savez(out, **f)
  loaded = loading.load(path, vit_b16.get_config())  # As `evaluate --run=... --config=...`.
  width = WIDTH if pre_logits else None
  assert loaded.config.model.get("representation_size") == width  # The model follows the file.
  model = create_model("vit", "B/16", num_classes=CLASSES, representation_size=width)
  images = np.random.default_rng(1).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
  got = np.asarray(loaded.model.apply({"params": loaded.params}, images, train=False))
  expected = np.asarray(model.apply({"params": hand_built_vit_params(f, layers=LAYERS)}, images,
                                    train=False))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert np.abs(expected).max() > 0.1  # Logits that a wrong head would visibly change.


def test_pre_logits_file_into_a_model_without_it_names_the_config_key(tmp_path):
  """The released layer with the file's head kept, in a model built without the layer."""
  f = {k: np.zeros(s, np.float32) for k, s in released_vit_b16_shapes(True).items()}
  path = tmp_path / "ViT-B_16.npz"
  with open(path, "wb") as out:
    np.savez(out, **f)
  template = {k: np.zeros(s, np.float32) for k, s in released_vit_b16_shapes(False).items()}
  template = param_blocks.unflatten(npz.to_linen_names(template))  # The model's: no pre_logits.
  with pytest.raises(ValueError, match="--config.model.representation_size=768"):
    npz.load_params(path, "vit", template)
