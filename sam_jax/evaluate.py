r"""Eval-set accuracy and adversarial robustness of trained models: ``python -m sam_jax.evaluate``.

  python -m sam_jax.evaluate --run=SAM=/tmp/sam_jax_default --run="no SAM=/tmp/sam_jax_default_rho0"

``--run`` and ``--config`` as for ``sam_jax.analyze``. Results go to
``<output_dir>/evaluation.json`` (default ``<first workdir>/evaluation.json``); workdirs
and the output may be ``gs://``.

- Eval sets (``--eval_sets``, else the config's own eval split): names of
  ``data.catalog.PAPER_EVAL_SETS`` (``imagenet_real``, ``imagenet_c/fog_3``...) or
  ``DATASET[:SPLIT]``, see ``evaluation.eval_sets``. ``imagenet_c`` stands for all 95
  ImageNet-C sets and adds their summary (``data.imagenet_c.summarize``).
- Robustness on the config's eval split (``config.adversarial``, see
  ``evaluation.robustness``): clean, FGSM and PGD accuracy.
"""

from sam_jax.training import cpu_runtime

if __name__ == "__main__":  # A process of its own: importing this module changes nothing.
  cpu_runtime.skip_tpu_probe()  # Before JAX starts: see the module.

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from sam_jax import cli
from sam_jax.checkpoints import loading
from sam_jax.evaluation import runner

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  runs, output_dir = loading.load_runs(FLAGS.run, FLAGS.config, FLAGS.output_dir, "")
  runner.run(runs, FLAGS.eval_sets, output_dir)


if __name__ == "__main__":
  cli.define_run_flags("Where evaluation.json goes; default the first workdir.")
  flags.DEFINE_list("eval_sets", [], "Eval sets (see the module docstring); empty: the "
                    "config's eval split.")
  cli.run("sam_jax.evaluate", main)
