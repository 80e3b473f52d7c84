"""Per-block statistics of a network (Fig. 2, Table 3): active neurons, activation and weight norms.

The models sow per-block tensors into the ``intermediates`` collection
(``model.apply(..., mutable=["intermediates"])``); these functions walk that tree
generically and pick the entries by name:

- active fraction of a hidden layer h (post-GELU units ``hidden``, or the post-ReLU
  block outputs ``out`` of a ResNet): mean over examples, tokens and units of
  1[h > 0] (the paper's "active neurons", GELU output > 0);
- activation norm of a block output a (``out``): mean over examples i of ||a_i||_2,
  the norm of the whole [tokens, width] output of one example;
- weight norm of a parameter block B (see ``param_blocks``): ||w_B||_2, all its
  parameters as one vector; ``"total"`` is the norm of all parameters.
"""

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sam_jax.models import param_blocks


def sown(intermediates: Mapping[str, Any], name: str) -> dict[str, jax.Array]:
  """``{module path: value}`` of every value sown under ``name``, in natural path order.

  Accepts the ``intermediates`` collection or the whole mutable output holding it. A
  module that sowed several values under one name gets entries ``path/0``, ``path/1``...
  """
  tree = intermediates.get("intermediates", intermediates)
  found = {}
  for path, values in param_blocks.flatten(tree).items():
    module, _, leaf = path.rpartition("/")
    if leaf != name:
      continue
    values = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if len(values) == 1:
      found[module] = values[0]
    else:
      found.update({f"{module}/{i}": v for i, v in enumerate(values)})
  return {k: found[k] for k in sorted(found, key=param_blocks.natural_key)}


def active_fractions(intermediates: Mapping[str, Any], name: str = "hidden"
                     ) -> dict[str, float]:
  """Fraction of units > 0 in each layer sown as ``name``.

  Raises:
    ValueError: nothing was sown under ``name``.
  """
  layers = _require(intermediates, name)
  return {k: float(jnp.mean(v > 0)) for k, v in layers.items()}


def activation_norms(intermediates: Mapping[str, Any], name: str = "out") -> dict[str, float]:
  """Mean over examples of the L2 norm of each block output sown as ``name``."""
  layers = _require(intermediates, name)
  return {k: float(jnp.mean(jnp.sqrt(jnp.sum(jnp.square(v.reshape(v.shape[0], -1).astype(
      jnp.float32)), axis=1)))) for k, v in layers.items()}


def weight_norms(params: Mapping[str, Any], blocks: Mapping[str, Sequence[str]]
                 ) -> dict[str, float]:
  """||w_B||_2 of each block ``{name: flat paths}`` and of all parameters (``"total"``)."""
  flat = param_blocks.flatten(params)
  squares = {path: float(np.sum(np.square(np.asarray(leaf, np.float64))))
             for path, leaf in flat.items()}
  norms = {name: float(np.sqrt(sum(squares[p] for p in paths))) for name, paths in blocks.items()}
  norms["total"] = float(np.sqrt(sum(squares.values())))
  return norms


def _require(intermediates: Mapping[str, Any], name: str) -> dict[str, jax.Array]:
  layers = sown(intermediates, name)
  if not layers:
    names = sorted({p.rpartition("/")[2] for p in param_blocks.flatten(
        intermediates.get("intermediates", intermediates))})
    raise ValueError(f"block_stats: nothing sown under {name!r}; sown names: {names}.")
  return layers
