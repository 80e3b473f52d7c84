"""The CIFAR-10 study's result rows (``results/REGIME/*.json``): loading, naming, summarising."""

import glob
import json
import os
import pathlib
import re
from typing import Sequence

import numpy as np

from sam_jax.config import defaults

import config as study_config  # pylint: disable=g-bad-import-order  (experiments/cifar10/)

MODELS = ("vit", "mixer", "resnet")
NAMES = {"vit": "ViT", "mixer": "Mixer", "resnet": "ResNet"}
KINDS = {"looksam": "LookSAM", "msam": "Momentum-SAM", "aesam": "AE-SAM"}


def kind(row: dict) -> str:
  """The row's SAM kind (rows from before the cheaper kinds are SAM's)."""
  return row.get("kind", "sam")


def optimizer(row: dict) -> str:
  """The row's base optimizer (rows without a config: the model's own)."""
  own = study_config.DEFAULT_OPTIMIZER[row["model"]]
  return row.get("config", {}).get("optimizer", {}).get("name", own)


def is_control(row: dict) -> bool:
  """A run of the optimizer control: the model trained with another model's optimizer."""
  return optimizer(row) != study_config.DEFAULT_OPTIMIZER[row["model"]]


def load_rows(results_dir: str) -> list[dict]:
  rows = [json.loads(pathlib.Path(p).read_text())
          for p in sorted(glob.glob(os.path.join(results_dir, "*.json")))]
  if not rows:
    raise SystemExit(f"report: no result rows in {results_dir}; run run_all.sh first.")
  return rows


def setting(row: dict) -> tuple[str, float, float | None]:
  """(kind, rho, LookSAM's alpha or None) of a cheaper-kind row."""
  sam = defaults.upgrade(row.get("config", {})).get("sam", {})  # Old rows: sam.looksam_alpha.
  alpha = sam.get("looksam", {}).get("alpha")
  return kind(row), row["rho"], alpha if kind(row) == "looksam" else None


def block_of(unit: str) -> str:
  """The block a unit's path belongs to: up to its first numbered component
  (``Transformer/encoderblock_0/MlpBlock_0`` -> ``Transformer/encoderblock_0``,
  ``MixerBlock_1/token_mixing`` -> ``MixerBlock_1``, ``ResNetBlock_2`` -> itself)."""
  parts = unit.split("/")
  numbered = [i for i, part in enumerate(parts) if re.fullmatch(r".+_\d+", part)]
  if not numbered:
    raise ValueError(f"block_of: {unit!r} has no numbered block in its path.")
  return "/".join(parts[:numbered[0] + 1])


def first_block_active(row: dict) -> float:
  """Mean active fraction over the units of the first block (e.g. both mixings of a Mixer's)."""
  fractions = row["active_fraction"]
  first = block_of(next(iter(fractions)))
  return float(np.mean([v for k, v in fractions.items() if block_of(k) == first]))


def output_norms(row: dict) -> tuple[float, float]:
  """The mean output norm of the first and of the last block (``activation_norm`` is in
  network order)."""
  norms = list(row["activation_norm"].values())
  return norms[0], norms[-1]


def stat(values: Sequence[float], fmt: str) -> str:
  values = np.asarray(values, np.float64)
  if len(values) == 1:
    return f"{fmt.format(values[0])} (1)"
  return f"{fmt.format(values.mean())} ± {fmt.format(values.std(ddof=1))} ({len(values)})"


def table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])
