"""docs/paper.md's recipe tables against the configs that follow them.

The Mixer setting (R21) is a table on the page between ``mixer-recipe`` markers; each row
names a config key and its value as a Python literal. ``configs/mixer_*.py`` resolve to
exactly those values, so the page and the configs cannot drift apart.
"""

import ast
import importlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "paper.md"
MIXERS = ["mixer_b16", "mixer_b32", "mixer_s16", "mixer_s32", "mixer_s8"]


def table_rows(marker: str) -> dict[str, object]:
  """``{config key: value}`` of the page's table between ``<!-- marker:begin/end -->``."""
  text = PAGE.read_text()
  body = re.search(f"<!-- {marker}:begin -->(.*)<!-- {marker}:end -->", text, re.S)
  assert body, f"docs/paper.md lacks the {marker} markers"
  rows = {}
  for line in body.group(1).splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) >= 2 and cells[0].startswith("`") and cells[1].startswith("`"):
      rows[cells[0].strip("`")] = ast.literal_eval(cells[1].strip("`"))
  return rows


def lookup(config, key: str):
  for part in key.split("."):
    config = config[part]
  return config


def test_the_mixer_table_has_the_recipe_rows():
  rows = table_rows("mixer-recipe")
  assert {"optimizer.learning_rate", "optimizer.weight_decay", "optimizer.decay",
          "optimizer.end_learning_rate", "model.stochastic_depth"} <= set(rows)


@pytest.mark.parametrize("name", MIXERS)
def test_mixer_config_has_the_pages_values(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  for key, value in table_rows("mixer-recipe").items():
    got = lookup(config, key)
    if isinstance(value, float):
      assert got == pytest.approx(value, rel=1e-12), key
    else:
      assert (tuple(got) if isinstance(value, tuple) else got) == value, key


def test_mixer_weight_decay_is_big_visions_per_step_decay():
  """big_vision decays by s(t) * wd * w per step, optax.adamw by lr * s(t) * lambda * w."""
  from sam_jax.config import recipes  # pylint: disable=g-import-not-at-top
  rows = table_rows("mixer-recipe")
  step_decay = rows["optimizer.learning_rate"] * rows["optimizer.weight_decay"]
  assert step_decay == pytest.approx(recipes.BIG_VISION_MIXER_WD, rel=1e-12)
  assert rows["optimizer.end_learning_rate"] == pytest.approx(
      recipes.BIG_VISION_MIXER_LR * recipes.BIG_VISION_MIXER_LINEAR_END, rel=1e-12)
