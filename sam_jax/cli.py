"""What the command-line programs share: the ``--run``/``--config``/``--output_dir`` flags and
turning a missing-data error into a one-line exit.

``sam_jax.main``, ``sam_jax.evaluate`` and ``sam_jax.analyze`` are programs; no library
module imports them or this one.
"""

import contextlib
from typing import Iterator

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_run_flags(output_help: str) -> None:
  """``--run`` (repeatable), ``--config`` and ``--output_dir`` of the evaluation programs.

  Defined only when a module runs as a program, so the modules import freely.
  """
  flags.DEFINE_multi_string("run", None, "[LABEL=]PATH of a training workdir (local or gs://) "
                            "or an official .npz; repeat to compare runs.")
  flags.DEFINE_string("output_dir", None, output_help)
  config_flags.DEFINE_config_file("config", None, "Model config; default: each workdir's "
                                  "config.json (required for .npz runs).", lock_config=False)
  flags.mark_flag_as_required("run")


def no_arguments(argv: list[str]) -> None:
  """Raises ``app.UsageError`` for positional arguments (all input is given by flags)."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")


@contextlib.contextmanager
def exit_on_missing_files(program: str) -> Iterator[None]:
  """A ``FileNotFoundError`` (missing data or files: its message says what to do) exits
  with that message alone, no traceback."""
  try:
    yield
  except FileNotFoundError as e:
    raise SystemExit(f"{program}: {e}") from None
