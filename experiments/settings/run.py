r"""One offline demonstration of the paper's settings (docs/settings.md), +/- SAM: one row.

  python experiments/settings/run.py --demo=transfer_pretrain_sam --data_dir=/tmp/cifar10

Each demo (``DEMOS``) is a ``python -m sam_jax.main`` run of a config in ``configs/`` on the
CIFAR-10 image folder, with the small ViT of the CIFAR-10 study (``SMALL``: width 64, 4
layers, 4x4 patches, batch 64), then ``python -m sam_jax.evaluate`` on its eval split
(accuracy on the whole test split, and clean/FGSM/PGD accuracy on the first
``--attacked_per_class`` test images of each class under the config's
``config.adversarial``), given the training config and overrides again. A demo that starts from another one
(``init_from``) runs that one first. The row, with the exact commands and the CPU and wall
seconds of the child processes, goes to ``<results_dir>/<demo>.json``; a demo whose row
exists is skipped. Workdirs: ``<workdir_root>/<demo>`` (a rerun resumes there).
"""

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_string("demo", None, "A DEMOS name, or 'all'.")
flags.DEFINE_string("data_dir", "/tmp/cifar10", "The CIFAR-10 image folder.")
flags.DEFINE_string("workdir_root", "/tmp/sam_settings", "Where the demos train.")
flags.DEFINE_string("results_dir", os.path.join(os.path.dirname(__file__), "results"),
                    "Where the rows go.")
flags.DEFINE_integer("attacked_per_class", 100, "Test images of each class attacked by the "
                     "evaluation (the first in sorted order).")
flags.DEFINE_bool("reevaluate", False, "Evaluate a demo whose row exists again (its training "
                  "figures kept).")
FLAGS = flags.FLAGS

SMALL = ("--config.model.hidden_size=64", "--config.model.mlp_dim=128",
         "--config.model.num_heads=2", "--config.model.num_layers=4",
         "--config.batch_size=64", "--config.eval_batch_size=500")
SUBSET = "--config.train_split=train[:200/class]"  # The study's fit regime: 2,000 images.


@dataclasses.dataclass(frozen=True)
class Demo:
  setting: str        # The docs/settings.md section.
  label: str          # The row's name in its table.
  config: str         # configs/<config>.
  args: tuple[str, ...] = ()
  init_from: str = ""  # Another demo whose workdir this one starts from.
  evaluate: bool = True


def _pm(setting, label, config, rho, *args, **kw):
  return Demo(setting, label, config, (*SMALL, f"--config.sam.rho={rho}", *args), **kw)


def _demos() -> dict[str, Demo]:
  demos = {}
  for sam, rho in (("base", 0.0), ("sam", 0.05)):
    demos[f"augment_none_{sam}"] = _pm("augment", f"crop+flip, {sam}", "cifar10_folder.py", rho,
                                       SUBSET, "--config.num_train_steps=3000")
    demos[f"augment_strong_{sam}"] = _pm("augment", f"+RandAugment+mixup, {sam}",
                                         "cifar10_augment.py", rho, SUBSET,
                                         "--config.num_train_steps=3000")
    demos[f"adversarial_{sam}"] = _pm("adversarial", f"PGD-7 training, {sam}",
                                      "cifar10_adversarial.py", rho,
                                      "--config.num_train_steps=500")
    demos[f"transfer_pretrain_{sam}"] = _pm("transfer", f"pretrain, {sam}",
                                            "cifar10_transfer.py:pretrain", rho,
                                            "--config.num_train_steps=2000")
    demos[f"transfer_finetune_{sam}"] = _pm("transfer", f"fine-tune from {sam}",
                                            "cifar10_transfer.py:finetune", 0.0,
                                            init_from=f"transfer_pretrain_{sam}")
    demos[f"contrastive_pretrain_{sam}"] = _pm("contrastive", f"pretrain, {sam}",
                                               "cifar10_contrastive.py:pretrain", rho,
                                               "--config.num_train_steps=1000", evaluate=False)
    for stage in ("probe", "finetune"):
      demos[f"contrastive_{stage}_{sam}"] = _pm("contrastive", f"{stage} from {sam}",
                                                f"cifar10_contrastive.py:{stage}", 0.0,
                                                "--config.num_train_steps=1000",
                                                init_from=f"contrastive_pretrain_{sam}")
  demos["transfer_finetune_scratch"] = _pm("transfer", "fine-tune from scratch",
                                           "cifar10_transfer.py:finetune", 0.0)
  return demos


DEMOS = _demos()


def _run(cmd: list[str]) -> tuple[float, float]:
  """Runs ``cmd`` (its output to this process's); (wall, CPU) seconds."""
  before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
  print(" ".join(cmd), flush=True)
  subprocess.run(cmd, check=True)
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  return time.time() - start, (after.ru_utime - before.ru_utime) + (after.ru_stime -
                                                                     before.ru_stime)


def _evaluate(workdir: str, train: list[str]) -> dict:
  """``sam_jax.evaluate`` of ``workdir``: the row's evaluation fields."""
  # The training config again (evaluate's --config is a config file); the eval split a
  # class-balanced part of the test split, which the attacks read.
  evaluate = [sys.executable, "-m", "sam_jax.evaluate", f"--run={workdir}",
              f"--output_dir={workdir}/evaluation", "--eval_sets=folder:test", *train[3:4],
              *train[5:], f"--config.eval_split=test[:{FLAGS.attacked_per_class}/class]"]
  wall, cpu = _run(evaluate)
  with open(os.path.join(workdir, "evaluation", "evaluation.json")) as f:
    return dict(eval_wall_seconds=wall, eval_cpu_seconds=cpu, eval_command=" ".join(evaluate[1:]),
                evaluation=json.load(f))


def run_demo(name: str) -> dict:
  """Trains and evaluates ``name`` (after the demo it starts from); returns its row."""
  path = os.path.join(FLAGS.results_dir, f"{name}.json")
  demo = DEMOS[name]
  workdir = os.path.join(FLAGS.workdir_root, name)
  init = []
  if demo.init_from:
    init = [f"--config.init_from={os.path.join(FLAGS.workdir_root, demo.init_from)}"]
  train = [sys.executable, "-m", "sam_jax.main", f"--config=configs/{demo.config}",
           f"--workdir={workdir}", f"--config.data_dir={FLAGS.data_dir}", *demo.args, *init]
  if os.path.exists(path):
    with open(path) as f:
      row = json.load(f)
    if not (FLAGS.reevaluate and demo.evaluate):
      return row
    if "commands" in row:  # Rows of the first version: the training command first.
      row["command"] = row.pop("commands")[0]
  else:
    if demo.init_from:
      run_demo(demo.init_from)
    wall, cpu = _run(train)
    row = dict(name=name, setting=demo.setting, label=demo.label, command=" ".join(train[1:]),
               train_wall_seconds=wall, train_cpu_seconds=cpu)
  if demo.evaluate:
    row.update(_evaluate(workdir, train))
  os.makedirs(FLAGS.results_dir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(row, f, indent=1)
  return row


def main(argv):
  del argv
  names = list(DEMOS) if FLAGS.demo == "all" else [FLAGS.demo]
  unknown = [n for n in names if n not in DEMOS]
  if unknown:
    raise app.UsageError(f"--demo={FLAGS.demo}: valid: 'all' or one of {sorted(DEMOS)}.")
  for name in names:
    run_demo(name)


if __name__ == "__main__":
  flags.mark_flag_as_required("demo")
  app.run(main)
