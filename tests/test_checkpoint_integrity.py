"""A damaged checkpoint (flipped bytes, a truncated or missing file) is detected when read;
training resumes from the previous intact one exactly, and analysis tools never load it."""

import json
import logging
import os
import re
import shutil

import jax
import numpy as np
import pytest
import tensorstore as ts

from sam_jax.checkpoints import checkpointing, integrity, loading, npz
from sam_jax.models import param_blocks
from sam_jax.training import config_history, loop
from tests import tiny_digits_config

TOTAL = 8


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """An undamaged 8-step run keeping every checkpoint (steps 2, 4, 6, 8)."""
  workdir = tmp_path_factory.mktemp("straight")
  state = loop.train_and_evaluate(
      tiny_digits_config.get_config(TOTAL, keep_checkpoints=10), str(workdir))
  return workdir, jax.device_get(state)


def _damage(step_dir, how):
  """Damages the checkpoint in ``step_dir`` as a disk, a copy or a person might."""
  if how in ("nan", "altered"):  # Silently: values rewritten in place (through TensorStore).
    array = ts.open({"driver": "zarr", "kvstore": {
        "driver": "ocdbt", "base": f"file://{step_dir}/default/",
        "path": "params.head.kernel/" if how == "nan" else "opt_state.2.0.mu.head.bias/"}}).result()
    array[0] = np.nan if how == "nan" else array[0].read().result() + 1e-3
    return
  data = os.path.join(step_dir, "default", "d")  # Orbax's OCDBT data file(s).
  path = max((os.path.join(data, f) for f in os.listdir(data)), key=os.path.getsize)
  content = bytearray(open(path, "rb").read())
  if how == "flipped":
    for i in np.random.default_rng(0).choice(len(content), 64, replace=False):
      content[i] ^= 0xFF
    open(path, "wb").write(content)
  elif how == "truncated":
    open(path, "wb").write(content[:len(content) // 3])
  else:
    os.remove(path)


@pytest.mark.parametrize("how", ["nan", "altered", "flipped", "truncated", "missing"])
def test_a_damaged_newest_checkpoint_resumes_from_the_previous_one_exactly(
    straight, tmp_path, how, caplog):
  source, final = straight
  for name in ("4", "6"):  # The run as if stopped after saving step 6.
    shutil.copytree(source / "checkpoints" / name, tmp_path / "checkpoints" / name)
  shutil.copytree(source / config_history.HISTORY_DIR, tmp_path / config_history.HISTORY_DIR)
  _damage(tmp_path / "checkpoints" / "6", how)

  caplog.set_level(logging.INFO)
  resumed = loop.train_and_evaluate(
      tiny_digits_config.get_config(TOTAL, keep_checkpoints=10), str(tmp_path))
  assert "The checkpoint of step 6" in caplog.text and "is damaged" in caplog.text
  assert "Resuming from the checkpoint of step 4" in caplog.text
  assert sorted(os.listdir(tmp_path / checkpointing.DAMAGED)) == ["6"]  # Kept aside.
  assert json.loads(sorted((tmp_path / config_history.HISTORY_DIR).iterdir())[-1].read_text())[
      "start_step"] == 4
  assert int(resumed.step) == TOTAL
  jax.tree.map(np.testing.assert_array_equal, final.params, jax.device_get(resumed.params))
  jax.tree.map(np.testing.assert_array_equal, final.opt_state,
               jax.device_get(resumed.opt_state))


def test_analysis_tools_skip_a_damaged_newest_checkpoint_and_refuse_it_by_name(
    straight, tmp_path):
  source, final = straight
  shutil.copytree(source, tmp_path / "run")
  _damage(tmp_path / "run" / "checkpoints" / str(TOTAL), "nan")
  loaded = loading.from_workdir(str(tmp_path / "run"))
  assert loaded.step == TOTAL - 2
  with pytest.raises(ValueError, match=f"step {TOTAL} .* is damaged"):
    loading.from_workdir(str(tmp_path / "run"), step=TOTAL)


def test_checksums_detect_any_changed_value():
  arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": np.int32(3)}
  expected = integrity.checksums(arrays)
  assert integrity.problems(arrays, expected) == []
  changed = dict(arrays, w=arrays["w"].copy())
  changed["w"][1, 2] = np.nextafter(np.float32(5), np.float32(6))  # One ulp.
  assert integrity.problems(changed, expected) == ["checksum mismatch in w"]
  changed["w"][0, 0] = np.nan
  assert "non-finite values in w" in integrity.problems(changed, None)


def test_a_nan_npz_is_refused_by_training_and_evaluation(tmp_path):
  config = tiny_digits_config.get_config(3)
  fresh = loading.initial(config)
  flat = param_blocks.flatten(jax.device_get(fresh.params))
  key = sorted(flat)[0]
  flat[key] = np.array(flat[key]).copy()
  flat[key].flat[0] = np.nan
  path = str(tmp_path / "nan.npz")
  npz.export_npz(path, param_blocks.unflatten(flat))
  with pytest.raises(ValueError, match=f"{re.escape(key)}.*non-finite"):
    loading.from_npz(path, config)
  config.init_from = path
  with pytest.raises(ValueError, match=f"{re.escape(key)}.*non-finite"):
    loop.train_and_evaluate(config, str(tmp_path / "w"))
  assert not (tmp_path / "w" / "checkpoints").exists()  # Refused before any step: none left.
