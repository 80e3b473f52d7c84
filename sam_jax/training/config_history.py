"""The config of every start of a run, and what a resume changes.

Each start (fresh or resumed) writes ``<workdir>/config_history/<n>.json`` =
``{"start_step", "started", "config", "changes"}`` and ``<workdir>/config.json``
(the newest config, which ``evaluate`` and ``analyze`` read); nothing is
overwritten but ``config.json``. A resume compares its config with the newest
recorded one: a change of anything that alters the trained state or its recorded
metrics (every key outside ``NON_ALTERING``: batch size, step count and schedule,
model, data, seed...) stops the run with the list of differences unless
``allow_changes`` is set; changes of ``NON_ALTERING`` keys are logged. A key with a
default (a config section's, or a top-level data or training key of ``config.defaults``)
that the recorded config lacks and the new one holds at its default is logged only: a key
added to the code after the run started computes at its default what the code computed
before it (e.g. ``augment``, ``classes``, ``trainable``, ``model.remat``).
"""

import datetime
import json
from typing import Any

from absl import logging
from etils import epath
import ml_collections

from sam_jax.checkpoints import checkpointing
from sam_jax.config import defaults

HISTORY_DIR = "config_history"
# Keys (and sections) whose change leaves the trained state and eval metrics unchanged.
NON_ALTERING = ("log_every_steps", "eval_every_steps", "checkpoint_every_steps",
                "keep_checkpoints", "eval_batch_size", "analysis", "adversarial")


class ConfigChanged(ValueError):
  """A resume would change what the run computes."""


def as_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as plain JSON values (what is recorded)."""
  return json.loads(config.to_json_best_effort())


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict) and tree:
    flat = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}{key}."))
    return flat
  return {prefix[:-1]: tree}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, str]]:
  """``(dotted key, "old -> new")`` for each leaf that differs, sorted by key."""
  before, after = _flatten(old), _flatten(new)
  missing = object()
  changes = []
  for key in sorted(before.keys() | after.keys()):
    a, b = before.get(key, missing), after.get(key, missing)
    if a != b:
      changes.append((key, f"{'(absent)' if a is missing else repr(a)} -> "
                           f"{'(absent)' if b is missing else repr(b)}"))
  return changes


def _altering(key: str) -> bool:
  return not any(key == k or key.startswith(k + ".") for k in NON_ALTERING)


def _entries(workdir: epath.Path) -> list[epath.Path]:
  directory = workdir / HISTORY_DIR
  if not directory.exists():
    return []
  return sorted((p for p in directory.iterdir() if p.stem.isdigit()), key=lambda p: int(p.stem))


def last_recorded(workdir: str) -> dict[str, Any] | None:
  """The config of the newest recorded start (else an older run's ``config.json``), or None;
  renamed keys moved (``defaults.upgrade``)."""
  root = epath.Path(workdir)
  entries = _entries(root)
  if entries:
    return defaults.upgrade(checkpointing.read_json(entries[-1])["config"])
  if (root / checkpointing.CONFIG_FILE).exists():
    return defaults.upgrade(checkpointing.read_json(root / checkpointing.CONFIG_FILE))
  return None


def start_steps(workdir: str) -> list[int]:
  """The step each recorded start of the run began at, oldest first (0: a fresh start)."""
  return [checkpointing.read_json(p)["start_step"] for p in _entries(epath.Path(workdir))]


def check_resume(workdir: str, config: ml_collections.ConfigDict, step: int, *,
                 allow_changes: bool) -> list[str]:
  """The differences to the recorded config as lines; raises ``ConfigChanged`` for altering
  ones unless ``allow_changes``."""
  recorded = last_recorded(workdir)
  if recorded is None:
    logging.warning("Workdir %s holds a checkpoint but no recorded config: cannot check what "
                    "this resume changes.", workdir)
    return []
  changes = differences(recorded, as_dict(config))
  lines = [f"  {key}: {change}" for key, change in changes]
  before, after = _flatten(recorded), _flatten(as_dict(config))
  known = _flatten(as_dict(ml_collections.ConfigDict(
      {**defaults.sections(), **defaults.DATA, **defaults.TRAINING, "model": defaults.MODEL})))
  added_at_default = {key for key, _ in changes if key not in before
                      and key in known and after.get(key) == known[key]}
  altering = [f"  {key}: {change}" for key, change in changes
              if _altering(key) and key not in added_at_default]
  if altering and not allow_changes:
    raise ConfigChanged(
        f"Resuming {workdir} at step {step} with a config that changes the run:\n"
        + "\n".join(altering) + "\nRerun with the recorded config (config_history/ in the "
        "workdir), use another --workdir, or pass --allow_config_changes to continue with the "
        "new values.")
  if lines:
    logging.warning("Resuming at step %d with config changes:\n%s", step, "\n".join(lines))
  return lines


def record(workdir: str, config: ml_collections.ConfigDict, start_step: int,
           changes: list[str]) -> epath.Path:
  """Writes this start's history entry and ``config.json``; returns the entry's path."""
  root = epath.Path(workdir)
  entries = _entries(root)
  index = int(entries[-1].stem) + 1 if entries else 0
  path = root / HISTORY_DIR / f"{index}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  entry = {"start_step": start_step,
           "started": datetime.datetime.now(datetime.UTC).isoformat(),
           "config": as_dict(config), "changes": changes}
  path.write_text(json.dumps(entry, indent=2))
  (root / checkpointing.CONFIG_FILE).write_text(config.to_json_best_effort(indent=2))
  return path
