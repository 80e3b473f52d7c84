"""The empirical neural tangent kernel and its condition number (Table 1, at initialisation).

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
1e-7 lambda_max: kappa above ~1e6 needs ``jax_enable_x64``. Note that ViT and Mixer
heads start at zero, so at initialisation only the head has a nonzero Jacobian and
the trace NTK is exactly K (Phi Phi^T + 1), Phi the features fed to the head.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

CONVENTIONS = ("trace", "full", "sum")
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
    return sum(jnp.einsum("ikp,jlp->ikjl", j, j) for j in leaves).reshape(n * k, n * k)
  if convention == "sum":
    return sum(jnp.einsum("ip,jp->ij", j.sum(1), j.sum(1)) for j in leaves)
  return sum(jnp.einsum("ikp,jkp->ij", j, j) for j in leaves)


def condition_number(kernel: jax.Array | np.ndarray) -> dict[str, float]:
  """kappa = lambda_max / lambda_min of a symmetric PSD kernel (eigenvalues in float64)."""
  kernel = np.asarray(kernel, np.float64)
  if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
    raise ValueError(f"ntk: kernel must be a square matrix, got shape {kernel.shape}.")
  eigenvalues = np.linalg.eigvalsh((kernel + kernel.T) / 2)
  lo, hi = float(eigenvalues[0]), float(eigenvalues[-1])
  kappa = hi / lo if lo > 0 else float("inf")
  return {"kappa": kappa, "lambda_max": hi, "lambda_min": lo}
