r"""Compiles a run for a TPU slice on any machine and says whether it fits, before paying for it.

  python -m sam_jax.preflight --config=configs/vit_b16.py --topology=v3-256
  python -m sam_jax.preflight --config=configs/mixer_b16.py --config.sam.rho=0 \
      --topology=v5litepod-256 --json=report.json

``--topology``: a Cloud slice name (v3-8, v3-256, v4-128, v5litepod-256, v5p-128, v6e-64)
or libtpu's (v3:8x16). Needs libtpu (``pip install 'sam_jax[tpu-compile]'``), not a TPU:
the train and eval steps training would run on the slice are compiled for it
(``sam_jax.compilation.preflight``), and the report gives the memory per core against the
core's HBM, the FLOPs, a projected step and run time, and the collectives per step; a run
that does not fit is compiled again with each remedy (rematerialisation, bf16 activations,
the fewest micro-batches of gradient accumulation). ``--devices=1 --hbm_gib=80`` on a v5p
slice approximates one GPU with 80 GiB.

Exit codes: those of ``sam_jax.cli`` (0: fits; 2: bad flags or config, or no libtpu;
``cli.EXIT_DOES_NOT_FIT``, 6: the train or eval step does not fit the core's HBM).
"""

import json

from absl import flags
from ml_collections import config_flags

from sam_jax import cli
from sam_jax.compilation import preflight, summary, topology

FLAGS = flags.FLAGS
cli.define_config_flag("Training configuration file; --config.KEY=VALUE sets any key of it, "
                       "of config/defaults.py or of the model family.", lock_config=False)
flags.DEFINE_string("topology", None, "TPU slice: v3-256, v4-128, v5litepod-256, v3:8x16...")
flags.DEFINE_string("json", None, "Also write the report as JSON to this path.")
REMEDIES = [*preflight.REMEDIES, preflight.ACCUMULATION]
flags.DEFINE_list("remedies", REMEDIES, "When the run does not fit, compile these remedies "
                  f"({', '.join(REMEDIES)}: the fewest micro-batches that fit; empty: none).")
flags.DEFINE_integer("devices", None, "Compile for the slice's first N devices only (1: one "
                     "chip, e.g. --topology=v5p-8 --devices=1); default all.")
flags.DEFINE_float("hbm_gib", None, "Judge the fit against this many GiB per device (e.g. 80, "
                   "a GPU's, on a v5p chip's 95); default the chip's share.")
cli.define_debug_flag()
flags.mark_flags_as_required(["config", "topology"])
EXIT_CODES = {topology.LibtpuMissing: cli.EXIT_USER_ERROR, **cli.USER_ERRORS}


def main(argv: list[str]) -> None:
  cli.no_arguments(argv)
  hbm = None if FLAGS.hbm_gib is None else int(FLAGS.hbm_gib * topology.GIB)
  report = preflight.preflight(FLAGS.config, FLAGS.topology, remedies=FLAGS.remedies,
                               config_name=config_flags.get_config_filename(FLAGS["config"]),
                               num_devices=FLAGS.devices, hbm_bytes=hbm)
  print(summary.format_report(report), flush=True)
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump(summary.to_dict(report), f, indent=1, default=str)
  if not report.verdict:
    raise SystemExit(cli.EXIT_DOES_NOT_FIT)


if __name__ == "__main__":
  cli.run("sam_jax.preflight", main, EXIT_CODES)
