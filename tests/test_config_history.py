"""Every start's config is kept; a resume that changes the run stops with the differences."""

import json
import shutil

import jax
import numpy as np
import pytest

from sam_jax.config import defaults
from sam_jax.training import config_history, loop
from tests import test_configs, tiny_digits_config


def test_differences_name_each_changed_added_and_removed_leaf():
  old = {"batch_size": 16, "model": {"name": "vit", "depth": 2}, "gone": 1}
  new = {"batch_size": 8, "model": {"name": "vit", "depth": 2, "width": 4}}
  assert config_history.differences(old, new) == [
      ("batch_size", "16 -> 8"), ("gone", "1 -> (absent)"), ("model.width", "(absent) -> 4")]


def _history(workdir):
  return sorted((workdir / config_history.HISTORY_DIR).iterdir(), key=lambda p: int(p.stem))


def test_resume_with_another_batch_size_is_refused_listing_it_then_allowed(tmp_path):
  loop.train_and_evaluate(tiny_digits_config.get_config(4), str(tmp_path))
  changed = tiny_digits_config.get_config(6, batch_size=8, log_every_steps=3)
  with pytest.raises(config_history.ConfigChanged) as error:
    loop.train_and_evaluate(changed, str(tmp_path))
  message = str(error.value)
  assert "batch_size: 16 -> 8" in message and "num_train_steps: 4 -> 6" in message
  assert "log_every_steps" not in message  # Changes nothing the run computes.
  assert len(_history(tmp_path)) == 1  # The refused start recorded nothing.

  state = loop.train_and_evaluate(changed, str(tmp_path), allow_config_changes=True)
  assert int(state.step) == 6
  first, second = (json.loads(p.read_text()) for p in _history(tmp_path))
  assert (first["start_step"], first["config"]["batch_size"]) == (0, 16)
  assert (second["start_step"], second["config"]["batch_size"]) == (4, 8)
  assert "  batch_size: 16 -> 8" in second["changes"]
  assert json.loads((tmp_path / "config.json").read_text())["batch_size"] == 8


def _drop_recorded_section(workdir, name, entry=0):
  """Edits a recorded config as code from before section (or dotted key) ``name`` existed
  wrote it."""
  entry = _history(workdir)[entry]
  recorded = json.loads(entry.read_text())
  *parents, key = name.split(".")
  section = recorded["config"]
  for parent in parents:
    section = section[parent]
  del section[key]
  entry.write_text(json.dumps(recorded))


def test_a_section_added_since_the_run_started_resumes_at_its_default_only(tmp_path):
  """An old run's recorded config lacks a section (config.augment, or adversarial_training):
  resuming with it at its defaults (off) is logged, not refused; switching it on is a change."""
  loop.train_and_evaluate(tiny_digits_config.get_config(5), str(tmp_path))
  shutil.rmtree(tmp_path / "checkpoints" / "5")  # Killed after the step-4 checkpoint.
  for name in ("augment", "contrastive", "trainable", "classes", "reinit_head", "model.remat"):
    _drop_recorded_section(tmp_path, name)  # Top-level keys added since, too.
  state = loop.train_and_evaluate(tiny_digits_config.get_config(5), str(tmp_path))
  assert int(state.step) == 5
  second = json.loads(_history(tmp_path)[1].read_text())
  assert second["start_step"] == 4
  assert "  augment.mixup_alpha: (absent) -> 0.0" in second["changes"]
  assert "  trainable: (absent) -> ''" in second["changes"]
  assert "  model.remat: (absent) -> False" in second["changes"]

  _drop_recorded_section(tmp_path, "adversarial_training", entry=-1)
  changed = tiny_digits_config.get_config(5)
  changed.adversarial_training = dict(epsilon=8.0)
  with pytest.raises(config_history.ConfigChanged,
                     match=r"adversarial_training.epsilon: \(absent\) -> 8.0") as error:
    loop.train_and_evaluate(changed, str(tmp_path))
  assert "num_steps" not in str(error.value)  # At its default: not a change of the run.


def test_num_train_steps_at_or_below_the_checkpoint(tmp_path):
  first = loop.train_and_evaluate(tiny_digits_config.get_config(4), str(tmp_path))
  with pytest.raises(ValueError, match=r"step 4 .* past config.num_train_steps=3"):
    loop.train_and_evaluate(tiny_digits_config.get_config(3), str(tmp_path),
                            allow_config_changes=True)
  again = loop.train_and_evaluate(tiny_digits_config.get_config(4), str(tmp_path))
  assert int(again.step) == 4  # Already finished: nothing to do.
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(first.params),
               jax.device_get(again.params))


def test_a_changed_model_is_refused_naming_the_parameters(tmp_path):
  loop.train_and_evaluate(tiny_digits_config.get_config(3), str(tmp_path))
  wider = tiny_digits_config.get_config(3)
  wider.model.mlp_dim = 48
  with pytest.raises(config_history.ConfigChanged, match=r"model.mlp_dim: 32 -> 48"):
    loop.train_and_evaluate(wider, str(tmp_path))
  with pytest.raises(ValueError, match=r"(?s)another model.*MlpBlock_0/Dense_0/kernel: checkpoint "
                     r"shape \(16, 32\) != model shape \(16, 48\)"):
    loop.train_and_evaluate(wider, str(tmp_path), allow_config_changes=True)


def _flat_sam(config: dict) -> dict:
  """A completed config as recorded before the SAM kinds had sections: flat sam keys."""
  config = json.loads(json.dumps(config))
  sam = config["sam"]
  for old, new in defaults.RENAMED_SAM_KEYS.items():
    kind, key = new.split(".")
    sam[old] = sam[kind][key]
  for kind in {new.split(".")[0] for new in defaults.RENAMED_SAM_KEYS.values()}:
    del sam[kind]
  return config


def test_an_old_runs_flat_sam_keys_are_read_at_their_new_places(tmp_path, caplog):
  """A workdir recorded with ``sam.looksam_alpha`` etc. resumes with the same settings as
  no change; another LookSAM alpha is refused under its new name."""
  config = tiny_digits_config.get_config(4)
  config.sam.kind = "looksam"
  config = defaults.complete(config)
  config_history.record(str(tmp_path), config, 0, [])
  entry = _history(tmp_path)[0]
  recorded = json.loads(entry.read_text())
  recorded["config"] = _flat_sam(recorded["config"])
  assert "looksam" not in recorded["config"]["sam"] and "looksam_alpha" in recorded["config"]["sam"]
  entry.write_text(json.dumps(recorded))
  assert config_history.check_resume(str(tmp_path), config, 2, allow_changes=False) == []
  assert "config.sam.looksam_alpha is config.sam.looksam.alpha now" in caplog.text
  config.sam.looksam.alpha = 0.2
  with pytest.raises(config_history.ConfigChanged, match=r"sam\.looksam\.alpha: 0\.7 -> 0\.2"):
    config_history.check_resume(str(tmp_path), config, 2, allow_changes=False)


def test_an_old_key_on_the_command_line_is_moved_naming_its_new_key(caplog):
  config = test_configs.parse(f"--config={test_configs.CONFIG_DIR / 'default.py'}",
                              "--config.sam.kind=looksam", "--config.sam.looksam_alpha=0.2",
                              "--config.sam.eta=0.5")
  complete = defaults.complete(config)
  assert (complete.sam.looksam.alpha, complete.sam.asam.eta) == (0.2, 0.5)
  assert "looksam_alpha" not in complete.sam and "eta" not in complete.sam
  assert "config.sam.looksam_alpha is config.sam.looksam.alpha now" in caplog.text
  assert "config.sam.eta is config.sam.asam.eta now" in caplog.text
