r"""A fingerprint of every program the library compiles: for each config case of
``tests/test_configs.py`` (shrunk as ``tests/test_setup.py`` shrinks it) and each SAM kind
(every step, and every 2nd where the kind allows), the sha256 of each program's lowered
StableHLO. Two commits that print the same lines build the same steps: a refactor that
should change no behaviour is checked by diffing its output before and after.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 PYTHONPATH=. \
      python benchmarks/program_fingerprints.py > after.txt
"""

import hashlib
import os
import sys

sys.path[:0] = [os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "tests")]

# pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections
import test_configs
import test_setup

from sam_jax.config import defaults, validation
from sam_jax.training import setup


def digest(config: ml_collections.ConfigDict) -> dict[str, str]:
  """Each program's name -> the first 16 hex digits of its lowered text's sha256."""
  texts = test_setup._texts(setup.build(defaults.complete(config)))  # pylint: disable=protected-access
  return {name: hashlib.sha256(text.encode()).hexdigest()[:16] for name, text in texts.items()}


def main() -> None:
  for name, arg in test_configs.CASES:
    print(name, arg, digest(test_setup._tiny(name, arg)), flush=True)  # pylint: disable=protected-access
  for kind in defaults.SAM_KINDS:
    for every in (1,) if kind in validation.SELF_PACED_KINDS else (1, 2):
      config = test_setup._tiny("default", None)  # pylint: disable=protected-access
      config.sam.kind, config.sam.rho, config.sam.every_k_steps = kind, 0.05, every
      print("kind", kind, every, digest(config), flush=True)


if __name__ == "__main__":
  main()
