"""Every user error of the programs is one line and exit code 2 (a traceback only with --debug);
the default configs take any step count and an init_from."""

import importlib
import pathlib
import subprocess
import sys

import pytest

from sam_jax import cli
from sam_jax.config import defaults, validation

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = ["--config.batch_size=16", "--config.eval_batch_size=40", "--config.image_size=8"]


def _run(*args):
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


@pytest.mark.parametrize("args, message", [
    (["sam_jax.main", "--config=configs/default.py", "--config.no_such_key=1"],
     "sam_jax.main: --config.no_such_key: the config has no key 'no_such_key'"),
    (["sam_jax.main", "--config=configs/default.py", "--config.num_train_steps=0"],
     "sam_jax.main: config.num_train_steps=0 must be a positive integer."),
    (["sam_jax.evaluate", "--run=/no/such/run"],
     "sam_jax.evaluate: loading: /no/such/run does not exist"),
])
def test_a_user_error_is_one_line_and_exit_code_2(tmp_path, args, message):
  if args[0] == "sam_jax.main":
    args = [*args, f"--workdir={tmp_path}", *TINY]
  result = _run(*args)
  assert result.returncode == cli.EXIT_USER_ERROR, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-2000:]
  assert "Traceback" not in result.stderr


def test_debug_adds_the_traceback(tmp_path):
  result = _run("sam_jax.main", "--config=configs/default.py", f"--workdir={tmp_path}",
                "--config.num_train_steps=0", "--debug", *TINY)
  assert result.returncode == cli.EXIT_USER_ERROR
  assert "Traceback" in result.stderr and "validation.py" in result.stderr


@pytest.mark.parametrize("name", ["default", "cifar10_folder"])
def test_the_default_configs_take_a_short_run_and_an_init_from(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  config.num_train_steps = 30  # Warm-up follows: a twelfth (a tenth) of the steps.
  config.init_from = "weights.npz"
  config = defaults.complete(config)
  validation.validate(config, num_devices=8)
  assert 0 < config.optimizer.warmup_steps < 30
