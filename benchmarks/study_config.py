"""The CIFAR-10 study's config (``experiments/cifar10/config.py``) for the benchmarks that time
its steps."""

import importlib.util
import os

import ml_collections

PATH = os.path.join(os.path.dirname(__file__), "..", "experiments", "cifar10", "config.py")


def get_config(arg: str) -> ml_collections.ConfigDict:
  """``experiments/cifar10/config.py:ARG`` (e.g. ``vit,fit``), not yet completed."""
  spec = importlib.util.spec_from_file_location("study_config", PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)
