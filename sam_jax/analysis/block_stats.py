"""Per-block statistics of the analyses ``neurons`` and ``norms`` (Fig. 2, Table 3).

The models sow per-block tensors into the ``intermediates`` collection
(``model.apply(..., mutable=["intermediates"])``); these functions pick the entries by
name (``model_functions.sown``):

- active fraction of a hidden layer h (post-GELU units ``hidden``, or the post-ReLU
  block outputs ``out`` of a ResNet): mean over examples, tokens and units of
  1[h > 0] (the paper's "active neurons", GELU output > 0);
- activation norm of a block output a (``out``): mean over examples i of ||a_i||_2,
  the norm of the whole [tokens, width] output of one example;
- weight norm of a parameter block B (see ``param_blocks``): ||w_B||_2, all its
  parameters as one vector; ``"total"`` is the norm of all parameters.

Statistics of several batches are averaged with ``mean_dicts``; ``by_block`` names the
sown modules' values by their parameter blocks (``param_blocks.module_blocks``) for the
figures.
"""

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sam_jax.analysis import model_functions
from sam_jax.models import param_blocks


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


def mean_dicts(dicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
  """The mean of each key over dicts with the same keys (e.g. one per batch)."""
  return {k: float(np.mean([d[k] for d in dicts])) for k in dicts[0]}


def by_block(values: Mapping[str, Mapping[str, float]], blocks: Mapping[str, Sequence[str]]
             ) -> dict[str, dict[str, float]]:
  """``{run label: {module path: value}}`` with each module named by its block, in network
  order (``param_blocks.module_blocks``), as the per-block figures label them."""
  return {label: {name: v[module] for module, name in param_blocks.module_blocks(
      list(v), blocks).items()} for label, v in values.items()}


def _require(intermediates: Mapping[str, Any], name: str) -> dict[str, jax.Array]:
  layers = model_functions.sown(intermediates, name)
  if not layers:
    raise ValueError(f"block_stats: nothing sown under {name!r}; sown names: "
                     f"{model_functions.sown_names(intermediates)}.")
  return layers
