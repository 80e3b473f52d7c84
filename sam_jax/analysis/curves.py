"""Analysis ``curves``: the runs' training loss, training error and eval accuracy.

Read from the TensorBoard event files of a training workdir (``training_curves``).
"""

from typing import Any

from etils import epath
import numpy as np

from sam_jax.analysis import plots, training_curves
from sam_jax.analysis.context import Analysis, Context, Results
from sam_jax.checkpoints import loading

TAGS = ("train_loss", "train_accuracy", "eval_loss", "eval_accuracy")
FIGURE = "training_curves.png"


def unavailable(loaded: loading.Loaded) -> str | None:
  if not epath.Path(loaded.source).is_dir():
    return f"'curves' needs a training workdir; {loaded.source} is not one."
  return None


def run(context: Context) -> dict[str, Any]:
  scalars = training_curves.read_scalars(context.loaded.source)
  return {tag: {"steps": steps.tolist(), "values": values.tolist()}
          for tag, (steps, values) in scalars.items() if tag in TAGS}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  del first
  curves = {label: {tag: (np.array(c["steps"]), np.array(c["values"]))
                    for tag, c in r["curves"].items()} for label, r in results.items()}
  return [plots.training_curves(output_dir / FIGURE, curves)]


CURVES = Analysis("curves", run, figures, unavailable)
