"""Scalar curves a run wrote to TensorBoard event files in its workdir.

The train loop (clu metric writers) writes ``train_loss``, ``train_accuracy``,
``eval_loss``, ``eval_accuracy``... as TF2 tensor summaries; older writers use
``simple_value`` scalars. Both are read with TensorBoard's ``EventAccumulator``
(no TensorFlow needed). A step written twice (a run resumed from an earlier
checkpoint) keeps its last value.
"""

import os

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

Curve = tuple[np.ndarray, np.ndarray]  # (steps, values), steps ascending.


def read_scalars(logdir: str) -> dict[str, Curve]:
  """``{tag: (steps, values)}`` of every scalar summary in the event files of ``logdir``.

  Raises:
    ValueError: ``logdir`` holds no event files.
  """
  if not os.path.isdir(logdir) or not any(
      f.startswith("events.out.tfevents") for f in os.listdir(logdir)):
    raise ValueError(f"training_curves: no TensorBoard event files in {logdir!r}.")
  acc = event_accumulator.EventAccumulator(logdir, size_guidance={
      event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0})
  acc.Reload()
  points: dict[str, dict[int, float]] = {}
  tags = acc.Tags()
  for tag in tags[event_accumulator.SCALARS]:
    for event in acc.Scalars(tag):
      points.setdefault(tag, {})[event.step] = float(event.value)
  for tag in tags[event_accumulator.TENSORS]:
    for event in acc.Tensors(tag):
      value = tensor_util.make_ndarray(event.tensor_proto)
      if value.size == 1 and value.dtype.kind in "fiub":
        points.setdefault(tag, {})[event.step] = float(value.reshape(()))
  return {tag: (np.array(sorted(p)), np.array([p[s] for s in sorted(p)]))
          for tag, p in sorted(points.items())}
