r"""Trains a model with SAM: ``python -m sam_jax.main --config=CONFIG --workdir=DIR``.

Any config value can be overridden on the command line, e.g.
``--config.sam.rho=0`` (the non-SAM baseline) or ``--config.batch_size=512``. Rerunning
on the same ``--workdir`` resumes; a resume whose config changes the run stops with the
differences unless ``--allow_config_changes``. Exit codes: ``cli`` (0 finished, 75 stopped
by a signal after saving: rerun to resume).
"""

from sam_jax.training import cpu_runtime

if __name__ == "__main__":  # A process of its own: importing this module changes nothing.
  cpu_runtime.skip_tpu_probe()  # Both before JAX or TensorFlow start: see the module.
  cpu_runtime.configure()

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags, logging
from ml_collections import config_flags

from sam_jax import cli
from sam_jax.checkpoints import checkpointing
from sam_jax.training import distributed, loop, workdir_lock

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard summaries.")
cli.define_config_flag("Training configuration file; --config.KEY=VALUE sets any key of it, "
                       "of config.defaults or of its model.", lock_config=True)
flags.DEFINE_enum("multihost", "auto", distributed.MODES,
                  "Initialise jax.distributed: auto-detect (Cloud TPU pod, SLURM), on or off.")
flags.DEFINE_string("coordinator_address", None,
                    "host:port of process 0, for explicit multi-process.")
flags.DEFINE_integer("num_processes", None, "Number of processes, with --coordinator_address.")
flags.DEFINE_integer("process_id", None, "This process's index, with --coordinator_address.")
flags.DEFINE_bool("allow_config_changes", False, "Resume even if the config changes what the run "
                  "computes (batch size, schedule, model, data...); the changes are recorded.")
cli.define_debug_flag()
flags.mark_flags_as_required(["config", "workdir"])
INTERRUPTED = ("stopped at once by a second Ctrl-C, without saving: the steps since the last "
               "checkpoint are lost; rerun to resume from it.")
# Training's errors with their own exit codes, then the user errors (most specific first).
EXIT_CODES = {workdir_lock.WorkdirLocked: cli.EXIT_LOCKED,
              checkpointing.CheckpointSaveFailed: cli.EXIT_SAVE_FAILED,
              FloatingPointError: cli.EXIT_DIVERGED, **cli.USER_ERRORS}


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  distributed.initialize(FLAGS.multihost, FLAGS.coordinator_address, FLAGS.num_processes,
                         FLAGS.process_id)
  overrides = config_flags.get_override_values(FLAGS["config"])
  logging.info("Config %s%s; the whole config goes to the workdir's config.json.",
               config_flags.get_config_filename(FLAGS["config"]),
               f" with {overrides}" if overrides else "")
  logging.info("CPU runtime: %s.", cpu_runtime.describe())
  checkpointing.check_reachable(FLAGS.workdir, tensorstore=True)  # The lock's, Orbax's client.
  state = loop.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                                  allow_config_changes=FLAGS.allow_config_changes)
  if int(state.step) < FLAGS.config.num_train_steps:  # Stopped on a signal, after saving.
    raise SystemExit(cli.EXIT_STOPPED)


if __name__ == "__main__":
  cli.run("sam_jax.main", main, EXIT_CODES, INTERRUPTED)
