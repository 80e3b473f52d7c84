"""Analysis ``curves``: the runs' training loss, training error and eval accuracy.

``read_scalars`` reads them from the TensorBoard event files of a training workdir
(local or ``gs://``). The train loop (clu metric writers) writes ``train/loss``,
``train/accuracy``, ``eval/loss``, ``eval/accuracy``... as TF2 tensor summaries; older
writers use ``simple_value`` scalars, and older runs flat tags (``train_loss``), read under
the grouped ones (``metrics.grouped_tag``). Both are read with TensorBoard's
``EventAccumulator`` (no TensorFlow needed). A remote workdir's event files are first
copied to a local temporary directory through ``etils.epath`` (any filesystem epath
reads). A step written twice (a run resumed from an earlier checkpoint) keeps its last
value.
"""

import tempfile
from typing import Any

from etils import epath
import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from sam_jax import metrics
from sam_jax.analysis import plots
from sam_jax.analysis.context import Analysis, Context, Results
from sam_jax.analysis.plots import Curve
from sam_jax.checkpoints import loading

EVENT_FILES = "events.out.tfevents*"
TAGS = ("train/loss", "train/accuracy", "eval/loss", "eval/accuracy")
FIGURE = "training_curves.png"


def read_scalars(logdir: epath.PathLike) -> dict[str, Curve]:
  """``{tag: (steps, values)}`` of every scalar summary in the event files of ``logdir``,
  flat tags of older runs under their grouped names (``train_loss`` as ``train/loss``).

  Raises:
    ValueError: ``logdir`` holds no event files.
  """
  root = epath.Path(logdir)
  files = sorted(root.glob(EVENT_FILES)) if root.is_dir() else []
  if not files:
    raise ValueError(f"curves: no TensorBoard event files in {str(logdir)!r}.")
  if "://" not in str(logdir):
    return _read_local(str(root))
  with tempfile.TemporaryDirectory() as local:
    for f in files:
      (epath.Path(local) / f.name).write_bytes(f.read_bytes())
    return _read_local(local)


def _read_local(logdir: str) -> dict[str, Curve]:
  acc = event_accumulator.EventAccumulator(logdir, size_guidance={
      event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
  acc.Reload()
  points: dict[str, dict[int, float]] = {}
  tags = acc.Tags()
  for tag in tags[event_accumulator.SCALARS]:
    for event in acc.Scalars(tag):
      points.setdefault(metrics.grouped_tag(tag), {})[event.step] = float(event.value)
  for tag in tags[event_accumulator.TENSORS]:
    for event in acc.Tensors(tag):
      value = tensor_util.make_ndarray(event.tensor_proto)
      if value.size == 1 and value.dtype.kind in "fiub":
        points.setdefault(metrics.grouped_tag(tag), {})[event.step] = float(value.reshape(()))
  return {tag: (np.array(sorted(p)), np.array([p[s] for s in sorted(p)]))
          for tag, p in sorted(points.items())}


def unavailable(loaded: loading.Loaded) -> str | None:
  if not epath.Path(loaded.source).is_dir():
    return f"'curves' needs a training workdir; {loaded.source} is not one."
  return None


def run(context: Context) -> dict[str, Any]:
  scalars = read_scalars(context.loaded.source)
  return {tag: {"steps": steps.tolist(), "values": values.tolist()}
          for tag, (steps, values) in scalars.items() if tag in TAGS}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  del first
  curves = {label: {tag: (np.array(c["steps"]), np.array(c["values"]))
                    for tag, c in r["curves"].items()} for label, r in results.items()}
  return [plots.training_curves(output_dir / FIGURE, curves)]


ANALYSIS = Analysis("curves", run, figures, unavailable)
