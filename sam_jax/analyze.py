r"""The paper's analyses of trained models (Tables 1, 3; Figs. 1-3): ``python -m sam_jax.analyze``.

  python -m sam_jax.analyze --run=SAM=/tmp/sam_jax_default --run="no SAM=/tmp/sam_jax_default_rho0" \
      --analyses=hessian,block_hessian,ntk,neurons,norms,landscape,attention,curves

``--run=[LABEL=]PATH`` (repeatable) is a training workdir, local or ``gs://`` (its
``config.json``, newest checkpoint) or an official ``.npz`` (needs ``--config``);
``--config`` replaces the workdirs' configs. All runs' results go to
``<output_dir>/analysis.json`` and the figures comparing them to ``<output_dir>/*.png``;
``--output_dir`` defaults to ``<first workdir>/analysis``. Settings: ``config.analysis``
(``config.defaults.analysis``). The analyses are listed in ``analysis.registry``, one
module each (its docstring says what it measures).
"""

from sam_jax.training import cpu_runtime

if __name__ == "__main__":  # A process of its own: importing this module changes nothing.
  cpu_runtime.skip_tpu_probe()  # Before JAX starts: see the module.

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags

from sam_jax import cli
from sam_jax.analysis import registry, runner
from sam_jax.checkpoints import loading

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  runner.check_names(FLAGS.analyses)  # Before any checkpoint loads.
  runs, output_dir = loading.load_runs(FLAGS.run, FLAGS.config, FLAGS.output_dir, "analysis")
  runner.run(runs, FLAGS.analyses or None, output_dir)


if __name__ == "__main__":
  cli.define_run_flags("Where analysis.json and the PNGs go; default <first workdir>/analysis.")
  flags.DEFINE_list("analyses", [], f"Comma-separated subset of {list(registry.ANALYSES)}; "
                    "empty: all that apply to the runs.")
  cli.run("sam_jax.analyze", main)
