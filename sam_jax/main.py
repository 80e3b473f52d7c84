r"""Trains a model with SAM: ``python -m sam_jax.main --config=CONFIG --workdir=DIR``.

Any config value can be overridden on the command line, e.g.
``--config.sam.rho=0`` (the non-SAM baseline) or ``--config.batch_size=512``.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from sam_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard summaries.")
config_flags.DEFINE_config_file("config", None, "Training configuration file.",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_orbax(record) -> bool:
  """Drops Orbax's per-save INFO chatter from the console; keeps its warnings."""
  return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_quiet_orbax)
  logging.info("Config:\n%s", FLAGS.config)
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
