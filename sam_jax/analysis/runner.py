"""Runs the registered analyses on trained models and writes ``analysis.json`` and the figures.

``analyze`` runs analyses on one model; ``run`` on several, writing the results and the
PNGs comparing them to an output directory (local or ``gs://``, through ``etils.epath``).
Every request is checked (names, what each run can have) before any work. After each
analysis, the training loop's progress line (clu's ``ReportProgress``: "x steps/s, y%
(i/n), ETA: ...") counts the analyses of all runs, its rate averaged since the start.
"""

import json
import time
from typing import Any, Sequence

from absl import logging
from clu import periodic_actions
from etils import epath
from jax.sharding import Mesh

from sam_jax import parallel
from sam_jax.analysis.context import Context
from sam_jax.analysis.registry import ANALYSES
from sam_jax.checkpoints import loading

RESULTS_FILE = "analysis.json"


class Progress(periodic_actions.ReportProgress):
  """clu's progress line of the training loop, one per finished analysis (``advance``) of
  ``total``, its rate and ETA measured from the start rather than the last line."""

  def __init__(self, total: int):
    super().__init__(num_train_steps=total, every_steps=1, every_secs=None)
    self.done = 0
    self(0)  # The start of the rate (clu's first call only records it).

  def advance(self) -> None:
    self.done += 1
    self(self.done)

  def _after_apply(self, step: int, t: float) -> None:
    del step, t  # Keeps the start as the rate's origin.


def check_names(names: Sequence[str]) -> None:
  """Raises ValueError naming the unknown analyses of ``names`` and the valid ones."""
  unknown = sorted(set(names) - set(ANALYSES))
  if unknown:
    raise ValueError(f"analyze: unknown analyses {unknown}; valid: {list(ANALYSES)}.")


def check(loaded: loading.Loaded, names: Sequence[str]) -> None:
  """Raises ValueError for an unknown analysis, or one this run cannot have."""
  check_names(names)
  for name in names:
    reason = ANALYSES[name].unavailable(loaded)
    if reason:
      raise ValueError(f"analyze: {reason}")


def applicable(loaded: loading.Loaded) -> list[str]:
  """All analyses this run can have."""
  return [name for name, a in ANALYSES.items() if not a.unavailable(loaded)]


def analyze(loaded: loading.Loaded, names: Sequence[str], mesh: Mesh | None = None,
            context: Context | None = None, progress: Progress | None = None
            ) -> dict[str, Any]:
  """Runs ``names`` on one model; returns JSON-serialisable results keyed by analysis.

  ``progress``: advanced after each analysis (default: one counting ``names``).
  """
  check(loaded, names)
  if context is None:
    context = Context(loaded, parallel.create_mesh() if mesh is None else mesh)
  progress = Progress(len(names)) if progress is None else progress
  results = {}
  for name in names:
    start = time.time()
    logging.info("Analysis %r of %s...", name, loaded.source)
    results[name] = ANALYSES[name].run(context)
    logging.info("Analysis %r done in %.1fs.", name, time.time() - start)
    progress.advance()
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
  todo = {label: names or applicable(loaded) for label, loaded in runs.items()}
  progress = Progress(sum(map(len, todo.values())))
  results = {label: analyze(loaded, todo[label], context=contexts[label], progress=progress)
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
