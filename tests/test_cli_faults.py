"""Issue 34's faults reproduced through the programs: each ends with its exit code and at most
a few lines after the log (no traceback), and loses nothing.

The runs are tiny digits runs (``tests/tiny_digits_config.py``); gs:// goes to a closed port
on 127.0.0.1 (every HTTP client pointed there by proxy variables), nothing else is contacted.
"""

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys

import ml_collections
import pytest

from sam_jax import cli
from sam_jax.checkpoints import checkpointing, loading
from sam_jax.data import input_pipeline
from sam_jax.training import loop
from tests import tiny_digits_config
from tests.test_input_pipeline import make_folder

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The run of tiny_digits_config from the command line (two blocks: a smaller model exists).
TINY = ["--config=configs/default.py", "--config.batch_size=16", "--config.eval_batch_size=40",
        "--config.image_size=8", "--config.model.hidden_size=16", "--config.model.mlp_dim=32",
        "--config.model.num_heads=2", "--config.model.num_layers=2"]
LOG_RECORD = re.compile(r"^[IWEF]\d{4} ")


def _config(**model) -> ml_collections.ConfigDict:
  config = tiny_digits_config.get_config(4)
  config.model.update({"num_layers": 2, **model})
  return config


def _run(*args, env=None, pre="", timeout=300):
  command = [sys.executable, "-m", *args]
  if pre:  # A shell setting (ulimit) for the program alone.
    command = ["bash", "-c", f"{pre} exec \"$@\"", "bash", *command]
  return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))


def _after_log(stderr: str) -> list[str]:
  """The lines after the last log record (the config dump is logged): what the user reads."""
  lines = stderr.strip().splitlines()
  last = max((i for i, line in enumerate(lines) if LOG_RECORD.match(line)), default=-1)
  return lines[last + 1:]


def assert_user_error(result, code: int, *words: str) -> str:
  """Exit ``code``, no traceback, at most 5 lines after the log; the last names ``words``."""
  assert result.returncode == code, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  tail = _after_log(result.stderr)
  assert 1 <= len(tail) <= 5, tail
  for word in words:
    assert word in tail[-1], tail[-1]
  return tail[-1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("run"))
  loop.train_and_evaluate(_config(), path)
  return path


def test_1_a_checkpoint_is_evaluated_exactly_or_not_at_all(workdir, tmp_path):
  for program in ("sam_jax.evaluate", "sam_jax.analyze"):
    result = _run(program, f"--run={workdir}", *TINY, "--config.model.num_layers=1",
                  f"--output_dir={tmp_path / program}")
    last = assert_user_error(result, cli.EXIT_USER_ERROR, "encoderblock_1",
                             "in the checkpoint, not in the model", "model.num_layers=1",
                             "(the run's: 2)")
    assert "damaged" not in last
  with pytest.raises(ValueError, match="model.num_layers=1"):  # The notebook's loader.
    loading.load(workdir, _config(num_layers=1))
  assert loading.load(workdir).config.model.num_layers == 2  # The run's own config: exact.


def test_2_an_unreachable_gs_workdir_fails_fast(tmp_path):
  with socket.socket() as s:  # A port nothing listens on.
    s.bind(("127.0.0.1", 0))
    closed = f"127.0.0.1:{s.getsockname()[1]}"
  proxy = f"http://{closed}"
  env = dict(HOME=str(tmp_path), GCE_METADATA_HOST=closed, GCE_METADATA_ROOT=closed,
             TENSORSTORE_GCS_HTTP_URL=proxy, http_proxy=proxy, https_proxy=proxy,
             HTTP_PROXY=proxy, HTTPS_PROXY=proxy, no_proxy="", NO_PROXY="",
             GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "none.json"))
  main = _run("sam_jax.main", *TINY, "--workdir=gs://bucket/run", env=env, timeout=240)
  assert_user_error(main, cli.EXIT_USER_ERROR, "gs://bucket/run cannot be reached",
                    "credentials")
  evaluate = _run("sam_jax.evaluate", "--run=gs://bucket/run", env=env, timeout=240)
  assert_user_error(evaluate, cli.EXIT_USER_ERROR, "gs://bucket/run cannot be reached")


def test_3_a_failed_save_is_one_line_and_leaves_no_temporary_directory(tmp_path):
  result = _run("sam_jax.main", *TINY, "--config.model.hidden_size=64",
                "--config.model.mlp_dim=256", f"--workdir={tmp_path}",
                "--config.num_train_steps=2", "--config.checkpoint_every_steps=2",
                pre="ulimit -f 100;")  # 100 KiB per file: the checkpoint's data is larger.
  assert_user_error(result, cli.EXIT_SAVE_FAILED, "Saving the checkpoint of step 2",
                    "File too large", "removed its incomplete 2.orbax-checkpoint-tmp")
  assert not list((tmp_path / "checkpoints").glob(f"*{checkpointing.TMP_SUFFIX}"))


def test_4_another_model_is_a_config_error_and_truncation_names_its_cause(workdir, tmp_path):
  result = _run("sam_jax.evaluate", f"--run={workdir}", *TINY, "--config.model.hidden_size=32",
                f"--output_dir={tmp_path}")
  last = assert_user_error(result, cli.EXIT_USER_ERROR, "checkpoint shape", "model shape",
                           "model.hidden_size=32 (the run's: 16)")
  assert "damaged" not in last
  copy = tmp_path / "truncated"
  shutil.copytree(workdir, copy)
  for data in (copy / "checkpoints").glob("*/default/**/d/*"):
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
  with pytest.raises(ValueError, match="No intact checkpoint") as error:
    loading.load(str(copy))
  del error  # The reasons are logged per step:
  steps = checkpointing.Checkpoints(str(copy), keep=1, read_only=True)
  target = {"params": loading.load(workdir).params}
  _, problems = steps._read(steps.latest_step(), target, partial=True)  # pylint: disable=protected-access
  assert problems and "is not valid for value of size" in problems[0], problems
  assert "tensorstore_spec" not in problems[0] and problems[0].endswith(")"), problems


def test_5_a_non_finite_float_is_refused_before_any_work(tmp_path):
  result = _run("sam_jax.main", *TINY, f"--workdir={tmp_path}",
                "--config.optimizer.learning_rate=nan")
  assert_user_error(result, cli.EXIT_USER_ERROR, "config.optimizer.learning_rate=nan",
                    "finite")
  assert not (tmp_path / "checkpoints").exists()


def test_6_a_config_file_with_a_syntax_error_is_one_line(tmp_path):
  config = tmp_path / "config.py"
  config.write_text("def get_config(:\n  pass\n")
  result = _run("sam_jax.main", f"--config={config}", f"--workdir={tmp_path}")
  assert_user_error(result, cli.EXIT_USER_ERROR, f"{config}:1:", "syntax")
  assert len(result.stderr.strip().splitlines()) <= 5


def test_7_a_bad_eval_set_is_named_with_the_valid_ones(workdir, tmp_path):
  result = _run("sam_jax.evaluate", f"--run={workdir}", "--eval_sets=bogus",
                f"--output_dir={tmp_path}")
  assert_user_error(result, cli.EXIT_USER_ERROR, "'bogus' is not an eval set", "imagenet_real",
                    "'digits'")


def test_8_a_second_ctrl_c_is_one_line_and_exit_130(tmp_path):
  process = subprocess.Popen(
      [sys.executable, "-m", "sam_jax.main", *TINY, f"--workdir={tmp_path}",
       "--config.num_train_steps=100000", "--config.checkpoint_every_steps=100000",
       "--config.eval_every_steps=100000", "--config.log_every_steps=1"],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE, text=True)
  lines = []
  for line in process.stderr:
    lines.append(line)
    if "train/loss=" in line and not any("SIGINT received" in l for l in lines):
      process.send_signal(signal.SIGINT)  # Training: the first Ctrl-C asks for a save.
    if "SIGINT received" in line:
      process.send_signal(signal.SIGINT)  # The second, before the save: stop at once.
      break
  lines += process.stderr.readlines()
  process.wait(timeout=300)
  result = subprocess.CompletedProcess(process.args, process.returncode, "", "".join(lines))
  assert_user_error(result, cli.EXIT_INTERRUPTED, "second Ctrl-C", "rerun to resume")


def test_9_smaller_faults(workdir, tmp_path):
  corrupt = tmp_path / "corrupt"
  shutil.copytree(workdir, corrupt)
  (corrupt / "config.json").write_text("{not json")
  result = _run("sam_jax.evaluate", f"--run={corrupt}", f"--output_dir={tmp_path}")
  assert_user_error(result, cli.EXIT_USER_ERROR, f"{corrupt}/config.json is not valid JSON")

  result = _run("sam_jax.main", *TINY, f"--workdir={tmp_path}", "--config.sam.rhoo=1")
  last = assert_user_error(result, cli.EXIT_USER_ERROR, "'sam.rhoo'", "did you mean sam.rho")
  assert "\\n" not in last and "\\'" not in last

  garbage = tmp_path / "garbage.npz"
  garbage.write_bytes(b"not a zip archive" * 10)
  result = _run("sam_jax.main", *TINY, f"--workdir={tmp_path / 'init'}",
                f"--config.init_from={garbage}")
  last = assert_user_error(result, cli.EXIT_USER_ERROR, "not an .npz file")
  assert "pickle" not in last
  assert not (tmp_path / "init" / "checkpoints").exists()


def test_representation_size_of_a_config_without_it_trains(tmp_path):
  """Issue 36: any key the defaults or the model know is settable on every config."""
  result = _run("sam_jax.main", *TINY, "--config.model.representation_size=8",
                "--config.num_train_steps=2", "--config.checkpoint_every_steps=2",
                "--config.eval_every_steps=2", f"--workdir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert loading.load(str(tmp_path)).params["pre_logits"]["kernel"].shape == (16, 8)


@pytest.mark.parametrize("program, own", [
    ("sam_jax.main", ["--workdir", "--config", "--debug", "--allow_config_changes"]),
    ("sam_jax.evaluate", ["--run", "--config", "--output_dir", "--debug", "--eval_sets"]),
    ("sam_jax.analyze", ["--run", "--config", "--output_dir", "--debug", "--analyses"])])
def test_helpshort_lists_the_programs_flags_and_exits_0(program, own):
  result = _run(program, "--helpshort")
  assert result.returncode == 0, result.stderr[-2000:]
  listed = set(re.findall(r"^\s+--(?:\[no\])?(\w+)", result.stdout, re.M))
  assert {flag.removeprefix("--") for flag in own} <= listed, result.stdout
  assert "--jax_" not in result.stdout  # Only the program's flags, not every library's.


def test_9_an_eval_split_missing_a_class_warns(tmp_path, caplog):
  make_folder(str(tmp_path), "train", ["ant", "moth", "zebra"], 2)
  make_folder(str(tmp_path), "test", ["moth", "zebra"], 1)  # No ant.
  config = ml_collections.ConfigDict(dict(dataset="folder", data_dir=str(tmp_path),
                                          image_size=8, train_split="train", eval_split="test"))
  assert input_pipeline.get_info(config).eval_num_examples == 2
  assert "has no images of 1 of the 3 classes" in caplog.text and "ant" in caplog.text
