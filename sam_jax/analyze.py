r"""The paper's analyses of trained models (Tables 1, 3; Figs. 1-3): ``python -m sam_jax.analyze``.

  python -m sam_jax.analyze --run=SAM=/tmp/digits_sam --run="no SAM=/tmp/digits_base" \
      --analyses=hessian,block_hessian,ntk,neurons,norms,landscape,attention,curves

``--run=[LABEL=]PATH`` (repeatable) is a training workdir (its ``config.json``, newest
checkpoint) or an official ``.npz`` (needs ``--config``); ``--config`` replaces the
workdirs' configs. All runs' results go to ``<output_dir>/analysis.json`` and the
figures comparing them to ``<output_dir>/*.png``; ``--output_dir`` defaults to
``<first workdir>/analysis``. Settings: ``config.analysis`` (see ``analysis_settings``).

- hessian / block_hessian: lambda_max of the training loss (cross-entropy, ``train=False``,
  the first ``num_batches`` batches of ``split``), whole and per parameter block.
- ntk: condition number of TE-NAS's NTK (``ntk.weight_ntk``: summed logits, weights only,
  BatchNorm on batch statistics) on ``ntk.batch_size`` examples, at TE-NAS's
  initialisation (``config.seed``; the paper's measure, docs/paper.md M1) and at the
  trained weights.
- neurons: fraction of post-GELU units > 0 per MLP (post-ReLU block outputs for ResNets).
- norms: weight norm per parameter block, mean L2 norm of each block's output.
- landscape: 1-D and 2-D slices along filter-normalised random directions.
- attention: class-token attention rollout over the first images of ``attention.split``.
- curves: the runs' TensorBoard scalars (workdirs only).
"""

import json
import os
import time
from typing import Any, Sequence

from absl import app, flags, logging
import jax
import ml_collections
import numpy as np
from ml_collections import config_flags

from sam_jax.analysis import (attention_maps, block_stats, hessian, landscape, model_functions,
                              ntk, plots, training_curves)
from sam_jax.checkpoints import loading
from sam_jax.config import analysis_settings
from sam_jax.data import eval_batches
from sam_jax.models import param_blocks, patches

ANALYSES = ("hessian", "block_hessian", "ntk", "neurons", "norms", "landscape", "attention",
            "curves")
CURVE_TAGS = ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy")


def check(loaded: loading.Loaded, analyses: Sequence[str]) -> None:
  """Raises ValueError for an unknown analysis, or one this run cannot have."""
  unknown = sorted(set(analyses) - set(ANALYSES))
  if unknown:
    raise ValueError(f"analyze: unknown analyses {unknown}; valid: {list(ANALYSES)}.")
  if "attention" in analyses and (loaded.config.model.name != "vit" or
                                  getattr(loaded.model, "classifier", None) != "token"):
    raise ValueError("analyze: 'attention' needs a ViT with a class token (classifier='token'); "
                     f"{loaded.source} is a {loaded.config.model.name}.")
  if "curves" in analyses and not os.path.isdir(loaded.source):
    raise ValueError(f"analyze: 'curves' needs a training workdir; {loaded.source} is not one.")


def _mean_dicts(dicts: Sequence[dict[str, float]]) -> dict[str, float]:
  return {k: float(np.mean([d[k] for d in dicts])) for k in dicts[0]}


def ntk_at_initialisation(config: ml_collections.ConfigDict, images: jax.Array) -> dict[str, float]:
  """kappa of TE-NAS's NTK (docs/paper.md M1) for the model at TE-NAS's initialisation.

  The model is built and initialised as training with ``config.seed`` starts; TE-NAS
  then re-draws the kernels (``ntk.tenas_initialization``, key ``config.seed``).
  """
  init = loading.initial(config)
  params = ntk.tenas_initialization(init.params, jax.random.PRNGKey(config.seed))
  return ntk.condition_number(ntk.weight_ntk(init.model, {"params": params, **init.model_state},
                                             images))


def analyze(loaded: loading.Loaded, analyses: Sequence[str],
            settings: ml_collections.ConfigDict | None = None,
            mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """Runs ``analyses`` on one model; returns JSON-serialisable results keyed by analysis."""
  check(loaded, analyses)
  config = loaded.config
  settings = analysis_settings.resolve(config, "analysis") if settings is None else settings
  mesh = eval_batches.data_mesh() if mesh is None else mesh
  params, state = eval_batches.replicate((loaded.params, loaded.model_state), mesh)
  loss = model_functions.Loss(loaded.model, state, config.get("loss", "softmax_xent"))
  metrics = model_functions.Metrics(loaded.model, state, config.get("loss", "softmax_xent"))
  intermediates = model_functions.Intermediates(loaded.model, state)
  blocks = param_blocks.partition(params, config.model.name)
  data = lambda n, split=settings.split, size=settings.batch_size: eval_batches.batches(
      config, mesh, split=split, batch_size=size, num_batches=n)
  hidden_name = "out" if config.model.name == "resnet" else "hidden"
  results: dict[str, Any] = {}
  for name in analyses:
    start = time.time()
    logging.info("Analysis %r of %s...", name, loaded.source)
    if name in ("hessian", "block_hessian"):
      h = settings.hessian
      kwargs = dict(method=h.method, num_steps=h.num_steps, seed=h.seed)
      batches = data(h.num_batches)
      if name == "hessian":
        value = hessian.lambda_max(loss, params, batches, progress="Hessian", **kwargs)
        results[name] = {"lambda_max": value}
      else:
        results[name] = {"lambda_max": hessian.block_lambda_max(
            loss, params, batches, blocks, progress="Hessian block", **kwargs)}
      results[name].update(num_examples=h.num_batches * settings.batch_size, **kwargs)
    elif name == "ntk":
      n = settings.ntk.batch_size
      images = data(1, size=n)[0]["image"]
      trained = ntk.condition_number(ntk.weight_ntk(loaded.model, loaded.variables, images))
      results[name] = {"measure": "tenas", "num_examples": n,
                       "init": ntk_at_initialisation(config, images), "trained": trained}
    elif name in ("neurons", "norms"):
      inter = [intermediates(params, b["image"]) for b in data(settings.neurons.num_batches)]
      if name == "neurons":
        results[name] = {"active_fraction": _mean_dicts(
            [block_stats.active_fractions(i, hidden_name) for i in inter]), "unit": hidden_name}
      else:
        results[name] = {"weight_norm": block_stats.weight_norms(params, blocks),
                         "activation_norm": _mean_dicts(
                             [block_stats.activation_norms(i, "out") for i in inter])}
    elif name == "landscape":
      s = settings.landscape
      batches = data(s.num_batches)
      key1, key2 = jax.random.split(jax.random.PRNGKey(s.seed))
      d1, d2 = (landscape.filter_normalized_direction(params, k) for k in (key1, key2))
      line = np.linspace(-s.radius, s.radius, s.points_1d)
      grid = np.linspace(-s.radius, s.radius, s.points_2d)
      one = landscape.loss_surface(metrics, params, [d1], [line], batches,
                                   progress="Landscape 1-D")
      two = landscape.loss_surface(metrics, params, [d1, d2], [grid, grid], batches,
                                   progress="Landscape 2-D")
      results[name] = {"coordinates_1d": line.tolist(), "coordinates_2d": grid.tolist(),
                       **{f"{k}_1d": v.tolist() for k, v in one.items()},
                       **{f"{k}_2d": v.tolist() for k, v in two.items()}}
    elif name == "attention":
      images = attention_images(config, settings, mesh)
      rolled = attention_maps.rollout(attention_maps.attention_weights(
          intermediates(params, images)))
      ph, pw = patches.patch_shape(loaded.model.patch_size)
      grid_shape = (config.image_size // ph, config.image_size // pw)
      maps = attention_maps.class_token_maps(rolled, grid_shape)[:settings.attention.num_images]
      results[name] = {"maps": np.asarray(maps).tolist()}
    elif name == "curves":
      scalars = training_curves.read_scalars(loaded.source)
      results[name] = {t: {"steps": s.tolist(), "values": v.tolist()}
                       for t, (s, v) in scalars.items() if t in CURVE_TAGS}
    logging.info("Analysis %r done in %.1fs.", name, time.time() - start)
  return results


def attention_images(config: ml_collections.ConfigDict, settings: ml_collections.ConfigDict,
                     mesh: jax.sharding.Mesh) -> jax.Array:
  """The first batch of the attention split (the maps keep its first ``num_images``)."""
  size = settings.batch_size
  return eval_batches.batches(config, mesh, split=settings.attention.split, batch_size=size,
                               num_batches=1)[0]["image"]


def applicable(loaded: loading.Loaded) -> list[str]:
  """All analyses this run can have (attention: ViTs with a class token; curves: workdirs)."""
  names = []
  for name in ANALYSES:
    try:
      check(loaded, [name])
      names.append(name)
    except ValueError:
      pass
  return names


def figures(results: dict[str, dict[str, Any]], output_dir: str,
            images: np.ndarray | None = None) -> list[str]:
  """PNGs comparing the runs ``{label: analyze(...)}`` in each analysis they all have."""
  common = set.intersection(*(set(r) for r in results.values()))
  path = lambda name: os.path.join(output_dir, name)
  pick = lambda get: {label: get(r) for label, r in results.items()}
  paths = []
  if "hessian" in common or "block_hessian" in common:
    paths.append(plots.block_bars(path("hessian_lambda_max.png"), pick(lambda r: {
        **({"network": r["hessian"]["lambda_max"]} if "hessian" in r else {}),
        **r.get("block_hessian", {}).get("lambda_max", {})}),
        ylabel="lambda_max", title="Dominant Hessian eigenvalue (network and blocks)", log=True))
  if "ntk" in common:
    paths.append(plots.block_bars(path("ntk_condition_number.png"), pick(lambda r: {
        "initialisation": r["ntk"]["init"]["kappa"], "trained": r["ntk"]["trained"]["kappa"]}),
        ylabel="kappa", title="NTK condition number", log=True))
  if "neurons" in common:
    paths.append(plots.block_bars(path("active_neurons.png"), pick(
        lambda r: r["neurons"]["active_fraction"]), ylabel="fraction of units > 0",
                                  title="Active neurons per layer"))
  if "norms" in common:
    paths.append(plots.block_bars(path("weight_norms.png"), pick(
        lambda r: r["norms"]["weight_norm"]), ylabel="||w||_2", title="Weight norm per block"))
    paths.append(plots.block_bars(path("activation_norms.png"), pick(
        lambda r: r["norms"]["activation_norm"]), ylabel="mean ||a||_2",
                                  title="Activation norm per block output"))
  if "landscape" in common:
    first = next(iter(results.values()))["landscape"]
    paths.append(plots.landscape_1d(path("landscape_1d.png"), first["coordinates_1d"], pick(
        lambda r: np.array(r["landscape"]["loss_1d"]))))
    paths.append(plots.landscape_2d(path("landscape_2d.png"), first["coordinates_2d"],
                                    first["coordinates_2d"], pick(
                                        lambda r: np.array(r["landscape"]["loss_2d"]))))
  if "attention" in common and images is not None:
    paths.append(plots.attention_overlays(path("attention_rollout.png"), images, pick(
        lambda r: np.array(r["attention"]["maps"]))))
  if "curves" in common:
    paths.append(plots.training_curves(path("training_curves.png"), pick(lambda r: {
        t: (np.array(c["steps"]), np.array(c["values"])) for t, c in r["curves"].items()})))
  return paths


def run(runs: dict[str, loading.Loaded], analyses: Sequence[str] | None, output_dir: str,
        mesh: jax.sharding.Mesh | None = None) -> dict[str, Any]:
  """Analyses of each run (None: all applicable), ``analysis.json`` and figures in ``output_dir``.

  ``mesh``: the devices the batches are split over (default: all).
  """
  if not runs:
    raise ValueError("analyze: no runs given.")
  settings = {}
  for label, loaded in runs.items():  # All checks before any work.
    check(loaded, analyses or [])
    settings[label] = analysis_settings.resolve(loaded.config, "analysis")
  mesh = eval_batches.data_mesh() if mesh is None else mesh
  results = {label: analyze(loaded, analyses or applicable(loaded), settings[label], mesh)
             for label, loaded in runs.items()}
  os.makedirs(output_dir, exist_ok=True)
  label, first = next(iter(runs.items()))
  images = None
  if all("attention" in r for r in results.values()):
    images = np.asarray(attention_images(first.config, settings[label], mesh))
    images = images[:settings[label].attention.num_images]
  paths = figures(results, output_dir, images)
  summary = {"runs": {label: {"source": runs[label].source, "step": runs[label].step, **r}
                      for label, r in results.items()},
             "figures": [os.path.basename(p) for p in paths]}
  with open(os.path.join(output_dir, "analysis.json"), "w") as f:
    json.dump(summary, f, indent=1)
  logging.info("Wrote %s and %d figures.", os.path.join(output_dir, "analysis.json"), len(paths))
  return summary


FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so the module imports freely)."""
  flags.DEFINE_multi_string("run", None, "[LABEL=]PATH of a training workdir or an official .npz; "
                            "repeat to compare runs.")
  flags.DEFINE_list("analyses", [], f"Comma-separated subset of {list(ANALYSES)}; empty: all that "
                    "apply to the runs.")
  flags.DEFINE_string("output_dir", None, "Where analysis.json and the PNGs go; default "
                      "<first workdir>/analysis.")
  config_flags.DEFINE_config_file("config", None, "Model config; default: each workdir's "
                                  "config.json (required for .npz runs).", lock_config=False)
  flags.mark_flag_as_required("run")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    runs, output_dir = loading.load_runs(FLAGS.run, FLAGS.config, FLAGS.output_dir, "analysis")
    run(runs, FLAGS.analyses or None, output_dir)
  except FileNotFoundError as e:  # Missing data: the message says how to prepare it.
    raise SystemExit(f"sam_jax.analyze: {e}") from None


if __name__ == "__main__":
  define_flags()
  app.run(main)
