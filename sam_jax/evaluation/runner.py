"""The evaluation of trained models: eval-set accuracies, the ImageNet-C summary, robustness.

``evaluate`` scores one model; ``run`` scores several and writes ``evaluation.json``
(local or ``gs://``, through ``etils.epath``).
"""

import json
from typing import Any, Sequence

from absl import logging
from etils import epath
from jax.sharding import Mesh

from sam_jax import parallel
from sam_jax.checkpoints import loading
from sam_jax.data import imagenet_c
from sam_jax.evaluation import eval_sets, robustness

RESULTS_FILE = "evaluation.json"


def evaluate(loaded: loading.Loaded, names: Sequence[str] | None = None,
             mesh: Mesh | None = None) -> dict[str, Any]:
  """Eval-set accuracies and robustness of one model.

  ``names``: eval sets (``eval_sets.eval_sets``); None: the config's own eval split.
  """
  config = loaded.config
  mesh = parallel.create_mesh() if mesh is None else mesh
  sets = eval_sets.eval_sets(names or [eval_sets.default_name(config)], config)
  batch_size = config.adversarial.batch_size
  results = {name: eval_sets.accuracy(loaded, dataset, split, batch_size, mesh)
             for name, (dataset, split) in sets.items()}
  by_dataset = {sets[name][0]: r["accuracy"] for name, r in results.items()}
  summary = {}
  if all(n in by_dataset for n in imagenet_c.dataset_names()):
    summary["imagenet_c"] = imagenet_c.summarize(by_dataset)
  return {"eval": results, **summary, "adversarial": robustness.robustness(loaded, mesh)}


def run(runs: dict[str, loading.Loaded], names: Sequence[str] | None, output_dir: str,
        mesh: Mesh | None = None) -> dict[str, Any]:
  """``evaluate`` of each run, written to ``<output_dir>/evaluation.json`` (returned too)."""
  mesh = parallel.create_mesh() if mesh is None else mesh
  results = {label: {"source": loaded.source, "step": loaded.step,
                     **evaluate(loaded, names, mesh)}
             for label, loaded in runs.items()}
  out = epath.Path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  summary = {"runs": results}
  (out / RESULTS_FILE).write_text(json.dumps(summary, indent=1))
  logging.info("Wrote %s:\n%s", out / RESULTS_FILE, json.dumps(results, indent=1))
  return summary
