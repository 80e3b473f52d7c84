"""Analysis ``ntk``: the condition number of the NTK as TE-NAS measures it (Table 1).

For a network f(x; w) with K outputs (logits) and the Jacobian J_i = df(x_i)/dw
(K x P), the empirical NTK on a batch x_1..x_n is

    full:  Theta[(i,k), (j,l)] = <J_ik, J_jl>                  (nK x nK)
    trace: Theta[i, j] = sum_k <J_ik, J_jk> = tr(J_i J_j^T)    (n x n, per-logit trace)
    sum:   Theta[i, j] = <sum_k J_ik, sum_l J_jl>              (n x n, NTK of sum_k f_k)

and its condition number is kappa = lambda_max / lambda_min (Xiao et al., 2020; the
paper's trainability measure). The default is ``trace``, the convention of
neural-tangents' ``trace_axes=(-1,)``: it sums the per-logit kernels, which for
i.i.d. logits equals K times the kernel of one logit. A kernel that is singular
(e.g. n > P, or duplicate inputs) has kappa = inf.

The Jacobian is formed per parameter leaf with ``jax.jacrev`` (memory n * K * P
floats) and contracted leaf by leaf in float32, so lambda_min is resolved to about
1e-7 lambda_max: kappa above ~1e6 needs ``jax_enable_x64``.

The paper's trainability measure (Table 1, docs/paper.md M1) is TE-NAS's
(VITA-Group/TENAS ``lib/procedures/ntk.py``): ``weight_ntk`` is the ``sum`` kernel over
the *weights* only (kernels and normalisation scales, ``WEIGHT_LEAVES``),
with BatchNorm on the batch's statistics (train mode) and no dropout, and
``tenas_initialization`` re-draws every kernel as TE-NAS does before measuring.
A model's own initialisation is no substitute: ViT and Mixer heads start at zero,
so every Jacobian but the head's vanishes and the "NTK" is K (Phi Phi^T + 1), the
kernel of the features Phi fed to the head, while a ResNet's head is random.

The analysis takes the first ``ntk.batch_size`` examples of ``analysis.split``:
``weight_ntk`` at TE-NAS's initialisation of the model that training with
``config.seed`` starts from (the paper's measure, docs/paper.md M1), and at the trained
weights.
"""

import functools
import math
from typing import Any, Callable, Sequence

from etils import epath
import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from sam_jax.analysis import plots
from sam_jax.analysis.context import Analysis, Context, Results
from sam_jax.checkpoints import loading

CONVENTIONS = ("trace", "full", "sum")
# TE-NAS differentiates the parameters PyTorch names ``weight``: kernels and normalisation
# scales (the same leaves as ASAM's ``optim.masks.WEIGHT_LEAVES``; tests/test_layering.py).
WEIGHT_LEAVES = ("kernel", "scale")
FIGURE = "ntk_condition_number.png"
MEASURE = "tenas"
ApplyFn = Callable[[Any, jax.Array], jax.Array]  # (params, inputs [n, ...]) -> outputs [n, K].


def empirical_ntk(apply_fn: ApplyFn, params: Any, inputs: jax.Array,
                  convention: str = "trace") -> jax.Array:
  """Theta of ``apply_fn`` (hashable) at ``params`` on ``inputs``: [n, n], or [nK, nK] (full)."""
  if convention not in CONVENTIONS:
    raise ValueError(f"ntk: convention={convention!r} is not one of {CONVENTIONS}.")
  return _kernel(apply_fn, convention, params, inputs)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _kernel(apply_fn: ApplyFn, convention: str, params: Any, inputs: jax.Array) -> jax.Array:
  jacobian = jax.jacrev(apply_fn)(params, inputs)  # Leaves [n, K, *leaf_shape].
  leaves = [j.reshape(j.shape[:2] + (-1,)) for j in jax.tree.leaves(jacobian)]
  if convention == "full":
    n, k = leaves[0].shape[:2]
    kernel = jnp.asarray(sum(jnp.einsum("ikp,jlp->ikjl", j, j) for j in leaves))
    return kernel.reshape(n * k, n * k)
  if convention == "sum":
    return jnp.asarray(sum(jnp.einsum("ip,jp->ij", j.sum(1), j.sum(1)) for j in leaves))
  return jnp.asarray(sum(jnp.einsum("ikp,jkp->ij", j, j) for j in leaves))


def condition_number(kernel: jax.Array | np.ndarray) -> dict[str, float]:
  """kappa = lambda_max / lambda_min of a symmetric PSD kernel (eigenvalues in float64)."""
  kernel = np.asarray(kernel, np.float64)
  if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
    raise ValueError(f"ntk: kernel must be a square matrix, got shape {kernel.shape}.")
  eigenvalues = np.linalg.eigvalsh((kernel + kernel.T) / 2)
  lo, hi = float(eigenvalues[0]), float(eigenvalues[-1])
  kappa = hi / lo if lo > 0 else float("inf")
  return {"kappa": kappa, "lambda_max": hi, "lambda_min": lo}


def _fan_out(path: tuple[str, ...], shape: Sequence[int]) -> int:
  """PyTorch's fan-out of a flax kernel: the output features times the receptive field.

  Dense [in, out]: out. Conv [kh, kw, in, out]: kh kw out. Attention (DenseGeneral):
  q/k/v [width, heads, head_dim]: heads head_dim; ``out`` [heads, head_dim, width]: width.
  """
  if len(shape) == 3:
    return shape[-1] if path[-2] == "out" else shape[1] * shape[2]
  return math.prod(shape[:-2]) * shape[-1] if len(shape) > 2 else shape[-1]


def tenas_initialization(params: Any, rng: jax.Array) -> Any:
  """TE-NAS's re-initialisation before its NTK (``prune_tenas.py``, ``kaiming_norm_fanout``).

  Every kernel ~ N(0, 2 / fan_out) (Kaiming normal, fan-out, ReLU gain), normalisation
  scales 1, biases 0; leaves of neither kind (class token, position embedding) are kept.
  """
  flat = flax.traverse_util.flatten_dict(params)
  keys = jax.random.split(rng, len(flat))
  out = {}
  for key, (path, value) in zip(keys, sorted(flat.items())):
    if path[-1] == "kernel":
      std = math.sqrt(2.0 / _fan_out(path, value.shape))
      value = std * jax.random.normal(key, value.shape, value.dtype)
    elif path[-1] in ("scale", "bias"):
      value = (jnp.ones_like if path[-1] == "scale" else jnp.zeros_like)(value)
    out[path] = value
  return flax.traverse_util.unflatten_dict(out)


def weight_ntk(model: nn.Module, variables: dict[str, Any], inputs: jax.Array) -> jax.Array:
  """TE-NAS's NTK [n, n]: Theta_ij = <d sum_k f_k(x_i) / dW, d sum_k f_k(x_j) / dW>.

  W are the weights (leaves named in ``WEIGHT_LEAVES``); the others are held fixed. A
  model with BatchNorm runs in train mode (statistics of ``inputs``, as TE-NAS's
  ``train_mode=True``); dropout is off (TE-NAS's networks have none).
  """
  params = variables["params"]
  state = {k: v for k, v in variables.items() if k != "params"}
  flat = flax.traverse_util.flatten_dict(params)
  weights = {"/".join(k): v for k, v in flat.items() if k[-1] in WEIGHT_LEAVES}
  fixed = {k: v for k, v in flat.items() if k[-1] not in WEIGHT_LEAVES}
  batch_norm = "batch_stats" in state

  def apply_fn(w: dict[str, jax.Array], x: jax.Array) -> Any:
    merged = {**fixed, **{tuple(k.split("/")): v for k, v in w.items()}}
    variables_ = {"params": flax.traverse_util.unflatten_dict(merged), **state}
    if batch_norm:
      return model.apply(variables_, x, train=True, mutable=["batch_stats"])[0]
    return model.apply(variables_, x, train=False)

  return empirical_ntk(apply_fn, weights, inputs, "sum")


def at_initialisation(config: ml_collections.ConfigDict, images: jax.Array) -> dict[str, float]:
  """kappa of TE-NAS's NTK for the model at TE-NAS's initialisation (key ``config.seed``)."""
  init = loading.initial(config)
  params = tenas_initialization(init.params, jax.random.PRNGKey(config.seed))
  return condition_number(weight_ntk(init.model, {"params": params, **init.model_state}, images))


def run(context: Context) -> dict[str, Any]:
  n = context.settings.ntk.batch_size
  images = context.batches(1, batch_size=n)[0]["image"]
  trained = weight_ntk(context.loaded.model, context.loaded.variables, images)
  return {"measure": MEASURE, "num_examples": n,
          "init": at_initialisation(context.config, images),
          "trained": condition_number(trained)}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  del first
  values = {label: {"initialisation": r["ntk"]["init"]["kappa"],
                    "trained": r["ntk"]["trained"]["kappa"]} for label, r in results.items()}
  return [plots.block_bars(output_dir / FIGURE, values, ylabel="kappa",
                           title="NTK condition number (TE-NAS)", log=True)]


ANALYSIS = Analysis("ntk", run, figures)
