"""Analysis ``hessian``: the dominant Hessian eigenvalue lambda_max of a loss (Table 1).

The analysis takes the cross-entropy with ``train=False`` on the first
``hessian.num_batches`` batches of ``analysis.split``; ``block_hessian`` uses the same
functions per parameter block (Table 3).

Hessian-vector products are forward-over-reverse,

    H v = d/dt grad L(w + t v) |_{t=0} = jax.jvp(jax.grad(L), (w,), (v,))[1],

so H (size P x P) is never formed. The loss is the mean over a fixed list of
batches, ``L(w) = mean_b loss_fn(w, batch_b)``, so ``H v`` is the mean of the
per-batch products (equal-sized batches). Each product is one ``jit`` over a batch
that may be sharded across devices (e.g. ``NamedSharding(mesh, P("data"))``): XLA
splits the work and reduces the mean over the whole batch.

A diagonal block H_BB of a parameter subset B (Table 3) is the Hessian of
``w_B -> L(w_B, w_rest)`` with the rest fixed. With the 0/1 mask m of B's entries,
H_BB acts on vectors v that are zero outside B as v -> m * (H v), so every block
uses the same compiled product.

Eigenvalues come from the Lanczos iteration (default) or power iteration on the
flattened parameters:

- Lanczos (three-term recurrence, each new vector re-orthogonalised against the two
  it depends on; only three vectors are stored, so memory is O(P)): after k steps
  the eigenvalues of the k x k tridiagonal matrix T_k (the Ritz values) approximate
  the extremes of the spectrum; the largest converges first. Lost orthogonality
  only repeats converged Ritz values, it does not move the largest one.
- Power iteration: v <- Hv / ||Hv||, lambda = v^T H v; converges to the eigenvalue
  of largest magnitude (the most negative one if it dominates), at rate
  |lambda_2 / lambda_1|.
"""

import functools
from typing import Any, Callable, Mapping, Sequence

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sam_jax.analysis import plots
from sam_jax.analysis.context import Analysis, Context, Results
from sam_jax.models import param_blocks

Params = Any
Batch = Any
LossFn = Callable[[Params, Batch], jax.Array]   # (params, batch) -> scalar mean loss.
MatVec = Callable[[jax.Array], jax.Array]       # flat vector -> flat vector.
METHODS = ("lanczos", "power")
FIGURE = "hessian_lambda_max.png"


def hvp(loss_fn: Callable[[Params], jax.Array], params: Params, vector: Params) -> Params:
  """H v for the Hessian of ``loss_fn`` at ``params`` (forward-over-reverse)."""
  return jax.jvp(jax.grad(loss_fn), (params,), (vector,))[1]


@jax.jit
def _lanczos_step(w, v, v_prev, beta):
  """From w = A v: alpha = v^T A v, the next residual's norm beta', and the next vector."""
  w = w - beta * v_prev
  alpha = jnp.vdot(w, v)
  w = w - alpha * v
  w = w - jnp.vdot(w, v) * v - jnp.vdot(w, v_prev) * v_prev  # Local re-orthogonalisation.
  norm = jnp.linalg.norm(w)
  return alpha, norm, w / jnp.where(norm > 0, norm, 1)


def lanczos(matvec: MatVec, v0: jax.Array, num_steps: int, *, progress: str | None = None
            ) -> np.ndarray:
  """Ritz values (ascending, float64) of a symmetric operator after ``num_steps`` steps.

  Stops early when the Krylov space is exhausted (beta below 1e-6 of the largest |alpha|).
  ``progress``: a label to log the steps under (every 10 s), or None.
  """
  v = v0 / jnp.linalg.norm(v0)
  v_prev = 0 * v
  alphas, betas = [], []
  beta = 0.0
  for step in range(num_steps):
    _log_progress(progress, step, num_steps)
    alpha, beta, v_next = _lanczos_step(matvec(v), v, v_prev, beta)
    alphas.append(float(alpha))
    beta = float(beta)
    if beta <= 1e-6 * max(abs(a) for a in alphas) or len(alphas) == num_steps:
      break
    betas.append(beta)
    v_prev, v = v, v_next
  t = np.diag(np.array(alphas)) + np.diag(betas, 1) + np.diag(betas, -1)
  return np.linalg.eigvalsh(t)


@jax.jit
def _power_step(w, v):
  """From w = A v: the Rayleigh quotient v^T A v, ||w|| and w / ||w||."""
  norm = jnp.linalg.norm(w)
  return jnp.vdot(v, w), norm, w / jnp.where(norm > 0, norm, 1)


def power_iteration(matvec: MatVec, v0: jax.Array, num_steps: int, *, tol: float = 1e-6,
                    progress: str | None = None) -> float:
  """The eigenvalue of largest magnitude, stopping when it changes by < ``tol`` relative."""
  v = v0 / jnp.linalg.norm(v0)
  eigenvalue = np.nan
  for step in range(num_steps):
    _log_progress(progress, step, num_steps)
    quotient, norm, v = _power_step(matvec(v), v)
    previous, eigenvalue = eigenvalue, float(quotient)
    if norm == 0 or abs(eigenvalue - previous) <= tol * abs(eigenvalue):
      break
  return eigenvalue


@functools.partial(jax.jit, static_argnums=0)
def _add_hvp(loss_fn: LossFn, params: Params, batch: Batch, vector: jax.Array,
             mask: jax.Array, weight: float, total: jax.Array) -> jax.Array:
  """total + weight * mask * (H v) on one batch; vectors flattened like ``ravel_pytree``."""
  flat, unravel = ravel_pytree(params)
  hv = hvp(lambda x: loss_fn(unravel(x), batch), flat, vector)
  return total + weight * mask * hv


def block_mask(params: Params, paths: Sequence[str]) -> jax.Array:
  """1 on the entries of the flat parameter paths ``paths`` of ``ravel_pytree(params)``, else 0."""
  flat = param_blocks.flatten(params)
  unknown = sorted(set(paths) - set(flat))
  if unknown:
    raise ValueError(f"hessian: unknown parameter paths {unknown[:5]}; e.g. {list(flat)[:5]}.")
  chosen = set(paths)
  ones = {p: jnp.full(np.shape(x), p in chosen, jnp.float32) for p, x in flat.items()}
  return ravel_pytree(param_blocks.unflatten(ones))[0]


def lambda_max(loss_fn: LossFn, params: Params, batches: Sequence[Batch], *,
               paths: Sequence[str] | None = None, method: str = "lanczos",
               num_steps: int = 20, seed: int = 0, progress: str | None = None) -> float:
  """The largest Hessian eigenvalue of the mean loss over ``batches`` at ``params``.

  Args:
    loss_fn: (params, batch) -> scalar mean loss (e.g. cross-entropy with ``train=False``);
      a hashable function (jit caches on it), e.g. a module-level function or a
      ``model_functions.Loss``.
    paths: restrict to the diagonal block of these flat parameter paths (see
      ``param_blocks``); None for all parameters. The iteration then runs on vectors
      that are zero outside the block, with H_BB v = mask * (H v).
    method: ``"lanczos"`` (largest Ritz value) or ``"power"`` (largest |eigenvalue|).
    num_steps: Lanczos steps, or the most power iterations.
  """
  if method not in METHODS:
    raise ValueError(f"hessian: method={method!r} is not one of {METHODS}.")
  if not batches:
    raise ValueError("hessian: needs at least one batch.")
  if num_steps < 1:
    raise ValueError(f"hessian: num_steps={num_steps} must be >= 1.")
  dim = sum(np.size(x) for x in jax.tree.leaves(params))
  mask = jnp.ones((dim,), jnp.float32) if paths is None else block_mask(params, paths)
  # Vectors live where the parameters do, so every product sees the same input shardings.
  mask = jax.device_put(mask, jax.tree.leaves(params)[0].sharding)
  weight = 1 / len(batches)

  def matvec(v):
    total = 0 * v
    for batch in batches:
      total = _add_hvp(loss_fn, params, batch, v, mask, weight, total)
    return total

  v0 = mask * jax.random.normal(jax.random.PRNGKey(seed), (dim,), jnp.float32)
  if method == "power":
    return power_iteration(matvec, v0, num_steps, progress=progress)
  return float(lanczos(matvec, v0, num_steps, progress=progress)[-1])


def block_lambda_max(loss_fn: LossFn, params: Params, batches: Sequence[Batch],
                     blocks: Mapping[str, Sequence[str]], **kwargs) -> dict[str, float]:
  """lambda_max of each diagonal block ``{name: paths}``; ``kwargs`` as for ``lambda_max``."""
  return {name: lambda_max(loss_fn, params, batches, paths=paths, **kwargs)
          for name, paths in blocks.items()}


def _log_progress(label: str | None, step: int, num_steps: int) -> None:
  if label is not None:
    logging.log_every_n_seconds(logging.INFO, "%s: step %d of at most %d.", 10, label, step + 1,
                                num_steps)


def settings(context: Context) -> dict[str, Any]:
  """The iteration's settings (``analysis.hessian``), passed to ``lambda_max`` and reported."""
  h = context.settings.hessian
  return dict(method=h.method, num_steps=h.num_steps, seed=h.seed)


def num_examples(context: Context) -> int:
  return context.settings.hessian.num_batches * context.settings.batch_size


def run(context: Context) -> dict[str, Any]:
  kwargs = settings(context)
  value = lambda_max(context.loss, context.params,
                     context.batches(context.settings.hessian.num_batches),
                     progress="Hessian", **kwargs)
  return {"lambda_max": value, "num_examples": num_examples(context), **kwargs}


def figures(results: Results, output_dir: epath.Path, first: Context) -> list[str]:
  """One figure for ``hessian`` and ``block_hessian``: the network's and each block's
  lambda_max, per run."""
  del first
  values = {label: {**({"network": r["hessian"]["lambda_max"]} if "hessian" in r else {}),
                    **r.get("block_hessian", {}).get("lambda_max", {})}
            for label, r in results.items()}
  return [plots.block_bars(output_dir / FIGURE, values, ylabel="lambda_max",
                           title="Dominant Hessian eigenvalue (network and blocks)", log=True)]


ANALYSIS = Analysis("hessian", run, figures)
