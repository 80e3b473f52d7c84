"""The launch scripts: --dry-run prints exactly what a real run executes, bad usage fails early.

A real run is made against fake ``gcloud`` / ``srun`` executables first on PATH, which
record their arguments; the printed dry-run lines, split as a shell would, must equal
those records. Remote commands (``--command=...``) are split once more to check the
``sam_jax.main`` command line each TPU worker runs, quoting included.
"""

import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TPU = ROOT / "launch" / "tpu_vm.sh"
SLURM = ROOT / "launch" / "slurm_gpu.sbatch"
TPU_ARGS = ["--name", "my-tpu", "--zone", "us-central2-b", "--project", "proj", "--spot",
            "--repo", "https://example.com/sam_jax.git", "--ref", "v1",
            "--config", "configs/vit_b16.py", "--workdir", "gs://bucket/vit_b16",
            "--tfds-data-dir", "gs://bucket/tfds"]
MAIN_FLAGS = ["--config.sam.rho=0", "--config.dataset=it's here"]  # A quote and a space.
FAKE = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
  f.write(json.dumps(dict(argv=[os.path.basename(sys.argv[0])] + sys.argv[1:], cwd=os.getcwd(),
                          tfds=os.environ.get("TFDS_DATA_DIR"))) + "\\n")
"""


@pytest.fixture
def launch(tmp_path):
  """``launch(script, *args, env=...) -> (returncode, stdout, stderr, fake calls)``."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  for name in ("gcloud", "srun", "python3"):  # python3: the local preflight.
    (bin_dir / name).write_text(FAKE)
    (bin_dir / name).chmod(0o755)
  log = tmp_path / "calls.jsonl"

  def call(script, *args, env=None):
    log.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLURM_", "TPU_", "TFDS_"))}
    full_env = dict(base, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
                    FAKE_LOG=str(log), **(env or {}))
    result = subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                            env=full_env, cwd=ROOT, check=False, timeout=60)
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result.returncode, result.stdout, result.stderr, calls

  return call


def remote_words(command_flag: str) -> list[str]:
  """A worker's --command split as its shell would (operators as separate words)."""
  assert command_flag.startswith("--command=")
  lexer = shlex.shlex(command_flag.removeprefix("--command="), posix=True,
                      punctuation_chars=True)
  lexer.whitespace_split = True  # Words break at blanks and at ; & | < > only.
  return list(lexer)


def test_tpu_dry_run_prints_what_a_real_run_executes(launch):
  actions = ["create", "setup", "train", "logs", "stop", "delete"]
  rc, out, err, calls = launch(TPU, "--dry-run", *actions, *TPU_ARGS, "--", *MAIN_FLAGS)
  assert rc == 0, err
  assert calls == []  # A dry run runs nothing.
  printed = [shlex.split(line) for line in out.splitlines()]
  rc, _, err, calls = launch(TPU, *actions, *TPU_ARGS, "--", *MAIN_FLAGS)
  assert rc == 0, err
  assert printed == [call["argv"] for call in calls]

  where = ["my-tpu", "--zone=us-central2-b", "--project=proj"]
  tpu_vm = ["gcloud", "compute", "tpus", "tpu-vm"]
  preflight, create, setup, train, logs, stop, delete = printed
  # First the run is compiled here for the slice, with the config overrides of the run.
  assert preflight == ["python3", "-m", "sam_jax.preflight", "--config=configs/vit_b16.py",
                       "--topology=v4-32", *MAIN_FLAGS]
  assert create == [*tpu_vm, "create", *where, "--accelerator-type=v4-32",
                    "--version=tpu-ubuntu2204-base", "--spot"]
  for command in (setup, train, stop):
    assert command[:-1] == [*tpu_vm, "ssh", *where, "--worker=all"]
  assert logs == [*tpu_vm, "ssh", *where, "--worker=0", "--command=tail -n +1 -F train.log"]
  assert delete == [*tpu_vm, "delete", *where, "--quiet"]

  setup_words = remote_words(setup[-1])
  for words in (["git", "clone", "-q", "https://example.com/sam_jax.git", "sam_jax"],
                ["git", "-C", "sam_jax", "fetch", "-q", "origin", "v1"],
                ["venv/bin/pip", "install", "-q", "-e", "./sam_jax[tpu]"]):
    assert " ".join(words) in " ".join(setup_words)
  train_words = remote_words(train[-1])
  main = ["../venv/bin/python", "-m", "sam_jax.main", "--config=configs/vit_b16.py",
          "--workdir=gs://bucket/vit_b16", *MAIN_FLAGS]
  start = train_words.index(main[0])
  assert train_words[start - 3:start] == ["TFDS_DATA_DIR=gs://bucket/tfds", "setsid", "nohup"]
  assert train_words[start:start + len(main)] == main
  assert train_words[start + len(main)] == ">"
  assert "train.pid" in remote_words(stop[-1])


def test_tpu_name_and_zone_default_to_the_environment(launch):
  rc, out, err, _ = launch(TPU, "--dry-run", "delete",
                           env={"TPU_NAME": "env-tpu", "TPU_ZONE": "europe-west4-a"})
  assert rc == 0, err
  assert shlex.split(out) == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "env-tpu",
                              "--zone=europe-west4-a", "--quiet"]


NAME_ZONE = ["--name", "n", "--zone", "z"]


@pytest.mark.parametrize("args, message", [
    ([], "no action given"),
    (["frobnicate", *NAME_ZONE], "unknown argument 'frobnicate'"),
    (["create", "--zone", "z"], "--name"),
    (["create", "--name", "n"], "--zone"),
    (["create", "--name"], "--name needs a value"),
    (["setup", *NAME_ZONE], "--repo"),
    (["train", *NAME_ZONE, "--workdir", "gs://b/w"], "--config"),
    (["train", *NAME_ZONE, "--config", "configs/nope.py", "--workdir", "gs://b/w"], "no file"),
    (["train", *NAME_ZONE, "--config", "configs/vit_b16.py", "--workdir", "/tmp/w"], "gs://"),
    (["create", *NAME_ZONE, "--", "--config.sam.rho=0"], "need the train action"),
    (["logs", *NAME_ZONE, "--log-worker", "x"], "worker index"),
    (["create", *NAME_ZONE], "needs --config (or --skip-preflight)"),
])
def test_tpu_usage_errors_fail_before_any_command(launch, args, message):
  rc, out, err, calls = launch(TPU, *args)
  assert rc == 2
  assert message in err and "--help" in err
  assert (out, calls) == ("", [])


SLURM_ENV = {"SLURM_JOB_ID": "42", "SLURM_SUBMIT_DIR": str(ROOT), "SLURM_GPUS_ON_NODE": "8",
             "SLURM_NTASKS_PER_NODE": "8", "SLURM_CPUS_PER_TASK": "12"}
SLURM_ARGS = ["--config=configs/resnet50.py", "--workdir", "/shared/resnet50",
              "--tfds-data-dir", "/shared/tfds", "--python", "/opt/venv/bin/python"]


def test_slurm_dry_run_prints_what_the_job_executes(launch):
  rc, out, err, calls = launch(SLURM, "--dry-run", *SLURM_ARGS, "--", *MAIN_FLAGS, env=SLURM_ENV)
  assert rc == 0, err
  assert calls == []
  cd, export, srun = [shlex.split(line) for line in out.splitlines()]
  assert cd == ["cd", str(ROOT)]
  assert export == ["export", "TFDS_DATA_DIR=/shared/tfds"]
  assert srun == ["srun", "--kill-on-bad-exit=1", "--gpu-bind=none", "--cpus-per-task=12",
                  "/opt/venv/bin/python", "-m", "sam_jax.main", "--config=configs/resnet50.py",
                  "--workdir=/shared/resnet50", *MAIN_FLAGS]
  rc, _, err, calls = launch(SLURM, *SLURM_ARGS, "--", *MAIN_FLAGS, env=SLURM_ENV)
  assert rc == 0, err
  assert calls == [dict(argv=srun, cwd=str(ROOT), tfds="/shared/tfds")]


@pytest.mark.parametrize("args, env, message", [
    (["--workdir", "/w"], SLURM_ENV, "--config is required"),
    (["--config", "configs/resnet50.py"], SLURM_ENV, "--workdir is required"),
    (["--config", "configs/nope.py", "--workdir", "/w"], SLURM_ENV, "no file"),
    (["--bogus"], SLURM_ENV, "unknown argument '--bogus'"),
    (SLURM_ARGS, {}, "not in a SLURM job"),
    (SLURM_ARGS, dict(SLURM_ENV, SLURM_NTASKS_PER_NODE="1"), "must equal the GPUs per node"),
])
def test_slurm_usage_errors_fail_before_srun(launch, args, env, message):
  rc, _, err, calls = launch(SLURM, *args, env=env)
  assert rc == 2
  assert message in err
  assert calls == []


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not on PATH")
def test_scripts_pass_shellcheck():
  scripts = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "launch").iterdir()
                   if p.suffix in (".sh", ".sbatch"))
  result = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True,
                          cwd=ROOT, check=False)
  assert result.returncode == 0, result.stdout


def test_tpu_remote_train_and_stop_commands_run_detached_and_end_the_run(launch, tmp_path):
  """The worker-side train and stop commands, run by bash in a stand-in home directory."""
  rc, out, err, _ = launch(TPU, "--dry-run", "train", "stop", "--skip-preflight", *TPU_ARGS, "--",
                           *MAIN_FLAGS)
  assert rc == 0, err
  train_command, stop_command = (shlex.split(line)[-1].removeprefix("--command=")
                                 for line in out.splitlines())
  home = tmp_path / "home"
  (home / "sam_jax").mkdir(parents=True)
  (home / "venv" / "bin").mkdir(parents=True)
  python = home / "venv" / "bin" / "python"  # Records how it was started, then waits.
  python.write_text('#!/bin/bash\nprintf "%s\\n" "$TFDS_DATA_DIR" "$@" > started\nexec sleep 60\n')
  python.chmod(0o755)
  subprocess.run(["bash", "-c", train_command], cwd=home, check=True, timeout=30)
  pid = int((home / "train.pid").read_text())
  try:
    for _ in range(100):
      if (home / "sam_jax" / "started").exists():
        break
      time.sleep(0.05)
    lines = (home / "sam_jax" / "started").read_text().splitlines()
    assert lines == ["gs://bucket/tfds", "-m", "sam_jax.main", "--config=configs/vit_b16.py",
                     "--workdir=gs://bucket/vit_b16", *MAIN_FLAGS]
    assert os.getpgid(pid) == pid  # Its own process group (setsid), which stop ends.
    subprocess.run(["bash", "-c", stop_command], cwd=home, check=True, timeout=30)
    for _ in range(100):
      if not _alive(pid):
        break
      time.sleep(0.05)
    assert not _alive(pid)
    assert not (home / "train.pid").exists()
    subprocess.run(["bash", "-c", stop_command], cwd=home, check=True, timeout=30)  # No run: ok.
  finally:
    if _alive(pid):
      os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
  """Whether ``pid`` is a running (not zombie) process."""
  try:
    state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
  except FileNotFoundError:
    return False
  return state != "Z"


FAILING_PREFLIGHT = f"""#!{sys.executable}
import sys
sys.exit(6)
"""


def test_tpu_a_run_that_does_not_fit_creates_nothing(launch, tmp_path):
  """The preflight's exit status stops the script before gcloud; --skip-preflight skips it."""
  (tmp_path / "bin" / "python3").write_text(FAILING_PREFLIGHT)
  rc, _, err, calls = launch(TPU, "create", "train", *TPU_ARGS)
  assert rc == 6 and calls == []
  assert "does not fit" in err and "--skip-preflight" in err
  rc, out, err, calls = launch(TPU, "create", "--skip-preflight", *TPU_ARGS)
  assert rc == 0, err
  assert [call["argv"][0] for call in calls] == ["gcloud"]
