"""Runs the registered analyses on trained models and writes ``analysis.json`` and the figures.

``analyze`` runs analyses on one model; ``run`` on several, writing the results and the
PNGs comparing them to an output directory (local or ``gs://``, through ``etils.epath``).
Every request is checked (names, what each run can have) before any work.
"""

import json
import time
from typing import Any, Sequence

from absl import logging
from etils import epath
from jax.sharding import Mesh

from sam_jax import parallel
from sam_jax.analysis.context import Context
from sam_jax.analysis.registry import ANALYSES
from sam_jax.checkpoints import loading

RESULTS_FILE = "analysis.json"


def check(loaded: loading.Loaded, names: Sequence[str]) -> None:
  """Raises ValueError for an unknown analysis, or one this run cannot have."""
  unknown = sorted(set(names) - set(ANALYSES))
  if unknown:
    raise ValueError(f"analyze: unknown analyses {unknown}; valid: {list(ANALYSES)}.")
  for name in names:
    reason = ANALYSES[name].unavailable(loaded)
    if reason:
      raise ValueError(f"analyze: {reason}")


def applicable(loaded: loading.Loaded) -> list[str]:
  """All analyses this run can have."""
  return [name for name, a in ANALYSES.items() if not a.unavailable(loaded)]


def analyze(loaded: loading.Loaded, names: Sequence[str], mesh: Mesh | None = None,
            context: Context | None = None) -> dict[str, Any]:
  """Runs ``names`` on one model; returns JSON-serialisable results keyed by analysis."""
  check(loaded, names)
  if context is None:
    context = Context(loaded, parallel.create_mesh() if mesh is None else mesh)
  results = {}
  for name in names:
    start = time.time()
    logging.info("Analysis %r of %s...", name, loaded.source)
    results[name] = ANALYSES[name].run(context)
    logging.info("Analysis %r done in %.1fs.", name, time.time() - start)
  return results


def run(runs: dict[str, loading.Loaded], names: Sequence[str] | None, output_dir: str,
        mesh: Mesh | None = None) -> dict[str, Any]:
  """Analyses of each run (None: all applicable), ``analysis.json`` and figures in ``output_dir``.

  ``mesh``: the devices the batches are split over (default: all).
  """
  if not runs:
    raise ValueError("analyze: no runs given.")
  for loaded in runs.values():  # All checks before any work.
    check(loaded, names or [])
  mesh = parallel.create_mesh() if mesh is None else mesh
  contexts = {label: Context(loaded, mesh) for label, loaded in runs.items()}
  results = {label: analyze(loaded, names or applicable(loaded), context=contexts[label])
             for label, loaded in runs.items()}
  out = epath.Path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  common = [n for n in ANALYSES if all(n in r for r in results.values())]
  first = next(iter(contexts.values()))
  paths, drawn = [], set()
  for name in common:
    figures = ANALYSES[name].figures
    if figures not in drawn:  # One figure function may serve several analyses.
      drawn.add(figures)
      paths.extend(figures(results, out, first))
  summary = {"runs": {label: {"source": runs[label].source, "step": runs[label].step, **r}
                      for label, r in results.items()},
             "figures": [epath.Path(p).name for p in paths]}
  (out / RESULTS_FILE).write_text(json.dumps(summary, indent=1))
  logging.info("Wrote %s and %d figures.", out / RESULTS_FILE, len(paths))
  return summary
