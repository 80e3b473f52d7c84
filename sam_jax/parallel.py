"""Data parallelism: the device mesh, replicated and batch-split arrays, means over named axes.

Every program of the library (the train and eval steps, the analyses, the evaluation)
runs on one mesh of all (or the given) devices with the two axes ``DATA = ("replica",
"member")``. A batch is split over both; ``"member"`` holds the devices of one SAM
perturbation group (size 1 unless a group spans devices, see
``training.train_step.SamGroups``). Parameters and state are replicated, so a ``jax.jit``
over (params, batch) runs data-parallel and its means are over the whole batch.

Inside per-device code (``jax.shard_map`` with pmap semantics, or ``jax.vmap`` with an
``axis_name``), ``mean_over`` averages over named axes.
"""

from typing import Any, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

DATA = ("replica", "member")  # Mesh axes; the batch is split over both.
AxisName = str | tuple[str, ...]
AxisNames = AxisName | Sequence[AxisName] | None
# jax.Device is an alias of jaxlib's class, which pyright cannot resolve as a type.
Devices = Sequence[jax.Device]  # pyright: ignore[reportInvalidTypeForm]


def create_mesh(devices: Devices | None = None, devices_per_group: int = 1) -> Mesh:
  """The ("replica", "member") mesh over all (or the given) devices, ``devices_per_group`` wide.

  Raises:
    ValueError: ``devices_per_group`` does not divide the number of devices.
  """
  grid = np.asarray(jax.devices() if devices is None else devices)
  if devices_per_group < 1 or grid.size % devices_per_group:
    raise ValueError(f"{devices_per_group} devices per SAM group do not divide "
                     f"{grid.size} devices.")
  return Mesh(grid.reshape(-1, devices_per_group), DATA)


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of an array held whole by every device of ``mesh``."""
  return NamedSharding(mesh, P())


def replicate(tree: Any, mesh: Mesh) -> Any:
  """``tree`` placed whole on every device of ``mesh``."""
  return jax.device_put(tree, replicated(mesh))


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's part of a global batch as global arrays split over the mesh's ``DATA`` axes."""
  sharding = NamedSharding(mesh, P(DATA))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def axis_list(axis_name: AxisNames) -> list[AxisName]:
  """``axis_name`` as a list of entries (a name or a tuple of names each); None is []."""
  if axis_name is None:
    return []
  if isinstance(axis_name, str):
    return [axis_name]
  return list(axis_name)


def mean_over(tree: Any, axis_name: AxisNames) -> Any:
  """pmean over each entry of ``axis_name`` in turn (equal-sized axes: the mean over all)."""
  for name in axis_list(axis_name):
    tree = jax.lax.pmean(tree, name)
  return tree
