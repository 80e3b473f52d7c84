"""What the command-line programs share: the ``--run``/``--config``/``--output_dir`` flags,
``--debug``, and the exit codes, with one line for an error the user can fix.

``sam_jax.main``, ``sam_jax.evaluate`` and ``sam_jax.analyze`` are programs; no library
module imports them or this one. Exit codes (a wrapper reruns on ``EXIT_STOPPED`` only):

====  ==================================================================================
0     finished: training reached ``config.num_train_steps`` (saved), or the program ran
1     an unexpected error, with its traceback (a bug)
2     a user error: bad flags, config, input data, checkpoint or workdir (one line)
3     the workdir is held by another run (``training.workdir_lock``)
4     diverged: a non-finite loss, gradient or state stopped training
5     a checkpoint could not be written (e.g. a full disk)
75    stopped by SIGTERM or SIGINT after saving a checkpoint: rerun to resume
====  ==================================================================================
"""

import contextlib
import os
import sys
import traceback
from typing import Callable, Iterator, Mapping, NoReturn

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
EXIT_FINISHED, EXIT_INTERNAL, EXIT_USER_ERROR = 0, 1, 2
EXIT_LOCKED, EXIT_DIVERGED, EXIT_SAVE_FAILED = 3, 4, 5
EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: "the user is invited to retry".
# Errors whose message says what to fix; a program adds its own (``exit_on_errors``).
USER_ERRORS: Mapping[type, int] = {ValueError: EXIT_USER_ERROR, OSError: EXIT_USER_ERROR}


def define_debug_flag() -> None:
  """``--debug``: print an error's traceback as well as its one line."""
  flags.DEFINE_bool("debug", False, "On an error, print its traceback, not just its message.")


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
  define_debug_flag()


def no_arguments(argv: list[str]) -> None:
  """Raises ``app.UsageError`` for positional arguments (all input is given by flags)."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")


def _exit(program: str, message: str, code: int) -> NoReturn:
  """Prints ``program: message`` last and exits with ``code`` at once: background threads of
  a failed run (e.g. Orbax's writers) are not waited for, so no later output buries it."""
  logging.flush()
  sys.stdout.flush()
  print(f"{program}: {message}", file=sys.stderr, flush=True)
  os._exit(code)  # pylint: disable=protected-access


def flags_parser(program: str) -> Callable[[list[str]], list[str]]:
  """absl's flag parsing for ``app.run(flags_parser=...)``, where a bad flag, and a
  ``--config.KEY`` override of a key the config lacks (a KeyError traceback from
  ml_collections), exit with one line and ``EXIT_USER_ERROR``."""
  def parse(argv: list[str]) -> list[str]:
    try:
      return FLAGS(argv)
    except flags.Error as e:
      _exit(program, f"{e} (--helpfull lists the flags).", EXIT_USER_ERROR)
    except (KeyError, AttributeError) as e:
      overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
      _exit(program, f"the config has no key {str(e).strip(chr(34))} (overridden by one of "
            f"{overrides}); only keys the config file defines can be set.", EXIT_USER_ERROR)
  return parse


@contextlib.contextmanager
def exit_on_errors(program: str, codes: Mapping[type, int] = USER_ERRORS) -> Iterator[None]:
  """An error of a type in ``codes`` (most specific first) exits with its code after one
  line ``program: message`` (and its traceback with --debug); any other error keeps
  Python's traceback and exit code 1."""
  try:
    yield
  except tuple(codes) as e:  # pylint: disable=catching-non-exception
    if FLAGS.is_parsed() and FLAGS.debug:
      traceback.print_exc()
    _exit(program, str(e), next(code for error, code in codes.items() if isinstance(e, error)))
