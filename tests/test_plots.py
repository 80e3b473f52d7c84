"""The analyses' bar figures: runs side by side, the whole model apart, every bar's value."""

import matplotlib.image
import numpy as np

from sam_jax.analysis import plots

BLOCKS = ["embedding", "block_0/attention", "block_0/mlp", "head"]


def _values(scale):
  return {"network": 40.0 * scale, **{b: (i + 1.5) * scale for i, b in enumerate(BLOCKS)}}


def test_two_runs_side_by_side_whole_model_apart_values_on_bars(tmp_path):
  values = {"base": _values(3.0), "SAM": _values(1.0)}
  fig = plots.draw_block_bars(values, ylabel="lambda_max", title="t", log=True, whole="network")
  whole, blocks = fig.axes
  assert [t.get_text() for t in whole.get_xticklabels()] == ["network"]
  assert [t.get_text() for t in blocks.get_xticklabels()] == BLOCKS
  assert whole.get_legend() is None and whole.get_ylim() == blocks.get_ylim()  # Log: shared.
  assert [t.get_text() for t in blocks.get_legend().get_texts()] == ["base", "SAM"]
  for ax, names in ((whole, ["network"]), (blocks, BLOCKS)):
    expected = [values[run][name] for run in values for name in names]
    assert [p.get_height() for p in ax.patches] == expected  # Per run and block.
    assert [t.get_text() for t in ax.texts] == [f"{v:.3g}" for v in expected]
    assert ax.get_yscale() == "log"
  path = plots.block_bars(tmp_path / "h.png", values, ylabel="lambda_max", title="t",
                          whole="network")
  assert matplotlib.image.imread(path).std() > 0


def test_without_the_whole_key_one_panel():
  fig = plots.draw_block_bars({"a": {"x": 1.0, "y": 2.0}}, ylabel="v", title="t", whole="total")
  assert len(fig.axes) == 1 and [t.get_text() for t in fig.axes[0].texts] == ["1", "2"]
  assert np.allclose([p.get_height() for p in fig.axes[0].patches], [1.0, 2.0])
