"""What the command-line programs share: ``--config`` (with every key the defaults and the
model know settable), ``--run``/``--output_dir``, ``--debug``, and the exit codes, with one
line for an error the user can fix.

``sam_jax.main``, ``sam_jax.evaluate``, ``sam_jax.analyze`` and ``sam_jax.preflight`` are programs; no library
module imports them or this one. Exit codes (a wrapper reruns on ``EXIT_STOPPED`` only):

====  ==================================================================================
0     finished: training reached ``config.num_train_steps`` (saved), or the program ran;
      also ``--help``, ``--helpshort``, ``--helpfull``
1     an unexpected error, with its traceback (a bug)
2     a user error: bad flags, config, input data, checkpoint or workdir (one line)
3     the workdir is held by another run (``training.workdir_lock``)
4     diverged: a non-finite loss, gradient or state stopped training
5     a checkpoint could not be written (e.g. a full disk)
6     ``sam_jax.preflight``: the run does not fit the TPU slice's memory
75    stopped by SIGTERM or SIGINT after saving a checkpoint: rerun to resume
130   interrupted by Ctrl-C without saving (training: a second Ctrl-C; the steps since the
      last checkpoint are lost, rerun to resume from it)
====  ==================================================================================
"""

import contextlib
import dataclasses
import difflib
import logging as std_logging
import os
import re
import sys
import traceback
from typing import Any, Callable, Iterator, Mapping, NoReturn

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags
from ml_collections.config_dict import placeholder

from sam_jax import models
from sam_jax.config import defaults

FLAGS = flags.FLAGS
EXIT_FINISHED, EXIT_INTERNAL, EXIT_USER_ERROR = 0, 1, 2
EXIT_LOCKED, EXIT_DIVERGED, EXIT_SAVE_FAILED = 3, 4, 5
EXIT_DOES_NOT_FIT = 6  # sam_jax.preflight: the compiled step exceeds the core's HBM.
EXIT_STOPPED = 75  # sysexits.h EX_TEMPFAIL: "the user is invited to retry".
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's code for a process ended by Ctrl-C.
ErrorCodes = Mapping[type[Exception], int]  # An error's type -> the exit code.
# Errors whose message says what to fix; a program adds its own (``run``).
USER_ERRORS: ErrorCodes = {ValueError: EXIT_USER_ERROR, OSError: EXIT_USER_ERROR}
SHARED_FLAGS = ("config", "run", "output_dir", "debug")
HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")


class ConfigFileError(Exception):
  """A config file that does not load, or an override of a key no config has."""


def define_debug_flag() -> None:
  """``--debug``: print an error's traceback as well as its one line."""
  flags.DEFINE_bool("debug", False, "On an error, print its traceback, not just its message.")


def define_config_flag(help_string: str, *, lock_config: bool,
                       flag_values: flags.FlagValues = FLAGS,
                       sys_argv: list[str] | None = None) -> None:
  """``--config=FILE[:ARG]``: ml_collections' config file flag, where ``--config.KEY=VALUE``
  may also set a key the file leaves out that ``config.defaults`` or the config's model
  family knows (``settable``). ``sys_argv``: the command line (default ``sys.argv``)."""
  config_flags.DEFINE_config_file("config", None, help_string, flag_values=flag_values,
                                  lock_config=False, sys_argv=sys_argv)
  flag_values["config"].parser = _ConfigFileParser(flag_values["config"].parser, lock_config,
                                                   sys_argv)


def define_run_flags(output_help: str) -> None:
  """``--run`` (repeatable), ``--config`` and ``--output_dir`` of the evaluation programs.

  Defined only when a module runs as a program, so the modules import freely.
  """
  flags.DEFINE_multi_string("run", None, "[LABEL=]PATH of a training workdir (local or gs://) "
                            "or an official .npz; repeat to compare runs.")
  flags.DEFINE_string("output_dir", None, output_help)
  define_config_flag("Model config; default: each workdir's config.json (required for .npz "
                     "runs).", lock_config=False)
  flags.mark_flag_as_required("run")
  define_debug_flag()


class _ConfigFileParser(flags.ArgumentParser):
  """ml_collections' config file parser (``file_parser``), refusing a broken file with
  ``ConfigFileError`` and adding each overridden key that the file lacks but ``settable``
  knows (before the overrides apply)."""

  def __init__(self, file_parser: flags.ArgumentParser, lock_config: bool,
               sys_argv: list[str] | None):
    self._file_parser = file_parser
    self._lock = lock_config
    self._argv = sys_argv

  def flag_type(self) -> str:
    return self._file_parser.flag_type()

  def parse(self, argument: str) -> Any:
    try:
      config = self._file_parser.parse(argument)
    except SyntaxError as e:
      raise ConfigFileError(f"{e.filename}:{e.lineno}: {e.msg} (a syntax error in the config "
                            "file).") from e
    except Exception as e:  # pylint: disable=broad-except
      raise ConfigFileError(f"the config file {argument} failed to load: {_last_line(e)}") from e
    if isinstance(config, ml_collections.ConfigDict):
      add_overridden_keys(config, overridden_keys("config", self._argv or sys.argv))
      if self._lock:  # ml_collections is untyped, so isinstance does not rule out None.
        config.lock()  # pyright: ignore[reportOptionalMemberAccess]
    return config


def _last_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
  return f"{type(error).__name__}: {lines[-1] if lines else ''}"


def overridden_keys(name: str, argv: list[str]) -> list[str]:
  """The dotted keys that ``--NAME.KEY=VALUE`` arguments of ``argv`` set, in order."""
  pattern = re.compile(rf"^--?(no)?{re.escape(name)}\.([^=]+)")
  return list(dict.fromkeys(m.group(2) for m in map(pattern.match, argv) if m))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, (dict, ml_collections.ConfigDict)) and len(tree):
    flat = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}{key}."))
    return flat
  return {prefix[:-1]: tree}


def settable(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Dotted key -> default of every key a command line may set on ``config``: its own, every
  key of ``defaults.complete``, and each field of its model family (``models.model_fields``;
  the variant's sizes, else the module's defaults)."""
  known = _flatten(defaults.complete(config))
  model = config.get("model") or {}
  name = model.get("name")
  if name in models.MODELS:
    family = models.family(name)
    fields = {f.name: f.default for f in dataclasses.fields(family.module)}
    fields |= family.sizes.get(str(model.get("variant", "")).partition("/")[0], {})
    known |= {f"model.{k}": fields.get(k) for k in models.model_fields(name)}
  return known | _flatten(config)


def add_overridden_keys(config: ml_collections.ConfigDict, keys: list[str]) -> None:
  """Adds each of ``keys`` that ``config`` lacks at its default, so that an override can set
  it; a None there (also one the file holds) becomes a placeholder of any type.

  Raises:
    ConfigFileError: a key ``settable`` does not know, naming the nearest ones.
  """
  known = settable(config) if keys else {}
  for key in keys:
    if key not in known:
      nearest = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
      section = key.rpartition(".")[0]
      valid = sorted(k for k in known if k.rpartition(".")[0] == section)
      raise ConfigFileError(
          f"--config.{key}: the config has no key {key!r} and no default for it; " +
          (f"did you mean {' or '.join(nearest)}?" if nearest else
           f"the keys of config{'.' + section if section else ''}: {valid}."))
    *parents, leaf = key.split(".")
    section = config
    for part in parents:
      if part not in section:
        section[part] = ml_collections.ConfigDict()
      section = section[part]
    if leaf not in section or section.get_type(leaf) is type(None):
      value = known[key]
      settable_value = value is not None and isinstance(value, (bool, int, float, str, tuple))
      section[leaf] = value if settable_value else placeholder(object)


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
  """absl's flag parsing for ``app.run(flags_parser=...)``: a bad flag or config file exits
  with one line and ``EXIT_USER_ERROR``; a help flag exits 0 after the help."""
  def parse(argv: list[str]) -> list[str]:
    try:
      return FLAGS(argv)
    except SystemExit:  # absl exits 1 after printing a help flag's help.
      if any(a.split("=")[0] in HELP_FLAGS for a in argv[1:]):
        raise SystemExit(EXIT_FINISHED) from None
      raise
    except flags.Error as e:
      _exit(program, f"{e} (--helpfull lists the flags).", EXIT_USER_ERROR)
    except ConfigFileError as e:
      _exit(program, str(e), EXIT_USER_ERROR)
    except (KeyError, AttributeError) as e:
      message = " ".join(str(e.args[0] if e.args else e).split())
      _exit(program, f"the config has no such key: {message}", EXIT_USER_ERROR)
  return parse


@contextlib.contextmanager
def exit_on_errors(program: str, codes: ErrorCodes = USER_ERRORS,
                   interrupted: str = "interrupted (Ctrl-C).") -> Iterator[None]:
  """An error of a type in ``codes`` (most specific first) exits with its code after one
  line ``program: message`` (and its traceback with --debug); Ctrl-C exits
  ``EXIT_INTERRUPTED`` after the line ``interrupted``; any other error keeps Python's
  traceback and exit code 1."""
  try:
    yield
  except tuple(codes) as e:  # pylint: disable=catching-non-exception
    _print_traceback_if_debug()
    _exit(program, str(e), next(code for error, code in codes.items() if isinstance(e, error)))
  except KeyboardInterrupt:
    _print_traceback_if_debug()
    _exit(program, interrupted, EXIT_INTERRUPTED)


def _print_traceback_if_debug() -> None:
  if FLAGS.is_parsed() and FLAGS.debug:
    traceback.print_exc()


def quiet_library_logs(record: std_logging.LogRecord) -> bool:
  """A console log filter: drops Orbax's INFO chatter, and the tracebacks that Orbax's and
  asyncio's background threads log for an error the program reports in its own line
  (e.g. a failed save), unless --debug."""
  if "/orbax/" not in record.pathname and record.name != "asyncio":
    return True
  debug = FLAGS.is_parsed() and FLAGS.debug
  return record.levelno >= std_logging.WARNING and (not record.exc_info or debug)


def _quiet_unraisable(unraisable: Any) -> None:
  """``sys.unraisablehook`` unless --debug: drops errors raised where nothing can catch them
  (e.g. "Event loop is closed" from a background writer's coroutine after a failure)."""
  if FLAGS.is_parsed() and FLAGS.debug:
    sys.__unraisablehook__(unraisable)


def run(program: str, main: Callable[[list[str]], None], codes: ErrorCodes = USER_ERRORS,
        interrupted: str = "interrupted (Ctrl-C).") -> None:
  """``app.run(main)`` with ``flags_parser``, ``exit_on_errors`` around ``main`` and
  ``quiet_library_logs`` on the console; the shared flags (``--config``, ``--run``...) are listed by ``--helpshort`` with the program's own."""
  for name in SHARED_FLAGS:
    if name in FLAGS:  # The main module is sys.argv[0] to absl's help.
      FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[name])

  def guarded(argv: list[str]) -> None:
    logging.get_absl_handler().addFilter(quiet_library_logs)
    sys.unraisablehook = _quiet_unraisable
    with exit_on_errors(program, codes, interrupted):
      main(argv)
  app.run(guarded, flags_parser=flags_parser(program))
