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
``w_B -> L(w_B, w_rest)`` with the rest fixed, so its product differentiates B's
parameters only, ``H_BB v_B = jax.jvp(jax.grad(L_B), (w_B,), (v_B,))[1]``: the tangent
starts at B's layers and the backward pass stops there (the head's block costs about a
forward pass, the embedding's a whole product). The iteration runs on flat vectors
that are zero outside B. The blocks' iterations run together: each product takes a
stack of k vectors [k, P], one per block, in one compiled program (the blocks share
its forward pass), so each step is one dispatch for all of them.

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
MatVec = Callable[[jax.Array], jax.Array]       # [k, P] flat vectors -> [k, P].
METHODS = ("lanczos", "power")
FIGURE = "hessian_lambda_max.png"


def hvp(loss_fn: Callable[[Params], jax.Array], params: Params, vector: Params) -> Params:
  """H v for the Hessian of ``loss_fn`` at ``params`` (forward-over-reverse)."""
  return jax.jvp(jax.grad(loss_fn), (params,), (vector,))[1]


@jax.jit
@jax.vmap
def _lanczos_step(w, v, v_prev, beta):
  """From w = A v (each row): alpha = v^T A v, the next residual's norm beta', the next vector."""
  w = w - beta * v_prev
  alpha = jnp.vdot(w, v)
  w = w - alpha * v
  w = w - jnp.vdot(w, v) * v - jnp.vdot(w, v_prev) * v_prev  # Local re-orthogonalisation.
  norm = jnp.linalg.norm(w)
  return alpha, norm, w / jnp.where(norm > 0, norm, 1)


def lanczos(matvec: MatVec, v0: jax.Array, num_steps: int, *, progress: str | None = None
            ) -> list[np.ndarray]:
  """Ritz values (ascending, float64) of a symmetric operator after ``num_steps`` steps, one
  iteration per row of ``v0`` [k, P], all k run together (``matvec``: [k, P] -> [k, P]).

  A row stops early when its Krylov space is exhausted (beta below 1e-6 of its largest
  |alpha|); the others go on. ``progress``: a label to log the steps under (every 10 s).
  """
  v = v0 / jnp.linalg.norm(v0, axis=1, keepdims=True)
  v_prev, beta = jnp.zeros_like(v), jnp.zeros(len(v), v.dtype)
  alphas, betas = [], []
  lengths = np.full(len(v), num_steps)  # Each row's number of steps.
  for step in range(num_steps - 1):
    _log_progress(progress, step, num_steps)
    alpha, beta, v_next = _lanczos_step(matvec(v), v, v_prev, beta)
    alphas.append(np.asarray(alpha, np.float64))
    betas.append(np.asarray(beta, np.float64))
    running = lengths == num_steps
    lengths[running & (betas[-1] <= 1e-6 * np.max(np.abs(alphas), axis=0))] = step + 1
    if not np.any(lengths == num_steps):
      break
    v_prev, v = v, v_next
  else:  # The last step needs alpha only.
    _log_progress(progress, num_steps - 1, num_steps)
    alphas.append(np.asarray(_lanczos_step(matvec(v), v, v_prev, beta)[0], np.float64))
  a, b = np.array(alphas), np.array(betas)
  return [np.linalg.eigvalsh(np.diag(a[:n, i]) + np.diag(b[:n - 1, i], 1) +
                             np.diag(b[:n - 1, i], -1)) for i, n in enumerate(lengths)]


@jax.jit
@jax.vmap
def _power_step(w, v):
  """From w = A v (each row): the Rayleigh quotient v^T A v, ||w|| and w / ||w||."""
  norm = jnp.linalg.norm(w)
  return jnp.vdot(v, w), norm, w / jnp.where(norm > 0, norm, 1)


def power_iteration(matvec: MatVec, v0: jax.Array, num_steps: int, *, tol: float = 1e-6,
                    progress: str | None = None) -> np.ndarray:
  """The eigenvalue of largest magnitude, one iteration per row of ``v0`` [k, P] run
  together (as ``lanczos``); a row stops when its value changes by < ``tol`` relative."""
  v = v0 / jnp.linalg.norm(v0, axis=1, keepdims=True)
  eigenvalues = np.full(len(v), np.nan)
  running = np.ones(len(v), bool)
  for step in range(num_steps):
    _log_progress(progress, step, num_steps)
    quotient, norm, v = _power_step(matvec(v), v)
    previous = eigenvalues.copy()
    eigenvalues[running] = np.asarray(quotient, np.float64)[running]
    converged = np.abs(eigenvalues - previous) <= tol * np.abs(eigenvalues)
    running &= ~((np.asarray(norm) == 0) | converged)
    if not np.any(running):
      break
  return eigenvalues


@functools.partial(jax.jit, static_argnums=(0, 4))
def _add_hvps(loss_fn: LossFn, params: Params, batch: Batch, vectors: jax.Array,
              blocks: tuple[tuple[str, ...], ...], weight: float, totals: jax.Array
              ) -> jax.Array:
  """totals + weight * H_BB v_B on one batch for each row v of ``vectors`` [k, P] and its
  block B (``blocks[j]``: flat parameter paths), vectors flattened like ``ravel_pytree``.

  Each product differentiates the block's parameters only, the rest held fixed: its
  tangent starts at the block and its backward pass stops there, and the rows share the
  forward pass (one program).
  """
  tree = param_blocks.flatten(params)
  unravel = ravel_pytree(params)[1]
  zeros = {path: jnp.zeros_like(leaf) for path, leaf in tree.items()}
  rows = []
  for vector, paths in zip(vectors, blocks):
    def block_loss(leaves: list[jax.Array], paths=paths) -> jax.Array:
      return loss_fn(param_blocks.unflatten({**tree, **dict(zip(paths, leaves))}), batch)
    tangent = param_blocks.flatten(unravel(vector))
    hv = hvp(block_loss, [tree[p] for p in paths], [tangent[p] for p in paths])
    rows.append(ravel_pytree(param_blocks.unflatten({**zeros, **dict(zip(paths, hv))}))[0])
  return totals + weight * jnp.stack(rows)


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
      ``param_blocks``); None for all parameters.
    method: ``"lanczos"`` (largest Ritz value) or ``"power"`` (largest |eigenvalue|).
    num_steps: Lanczos steps, or the most power iterations.
  """
  every = tuple(param_blocks.flatten(params)) if paths is None else tuple(paths)
  return float(_lambda_maxes(loss_fn, params, batches, (every,), method=method,
                             num_steps=num_steps, seed=seed, progress=progress)[0])


def block_lambda_max(loss_fn: LossFn, params: Params, batches: Sequence[Batch],
                     blocks: Mapping[str, Sequence[str]], *, blocks_at_once: int = 0,
                     progress: str | None = None, **kwargs) -> dict[str, float]:
  """lambda_max of each diagonal block ``{name: paths}``; ``kwargs`` as for ``lambda_max``.

  The blocks' iterations run together, ``blocks_at_once`` of them (0: all) in each
  compiled product (``_add_hvps``), with the values of ``lambda_max(paths=...)`` one block
  after another (each row's arithmetic is the same). Memory: a few [k, P] float32 stacks;
  compile time grows with k.
  """
  if blocks_at_once < 0:
    raise ValueError(f"hessian: blocks_at_once={blocks_at_once} must be >= 0 (0: all).")
  names = list(blocks)
  size = blocks_at_once or len(names) or 1
  values: dict[str, float] = {}
  for start in range(0, len(names), size):
    group = names[start:start + size]
    label = None if progress is None else (
        f"{progress} {', '.join(group)} ({start + 1}-{start + len(group)} of {len(names)})")
    found = _lambda_maxes(loss_fn, params, batches, tuple(tuple(blocks[n]) for n in group),
                          progress=label, **kwargs)
    for name, value in zip(group, found):
      values[name] = float(value)
      if progress is not None:
        logging.info("%s %s: lambda_max %.6g.", progress, name, value)
  return values


def _lambda_maxes(loss_fn: LossFn, params: Params, batches: Sequence[Batch],
                  blocks: tuple[tuple[str, ...], ...], *, method: str = "lanczos",
                  num_steps: int = 20, seed: int = 0, progress: str | None = None
                  ) -> np.ndarray:
  """lambda_max of the diagonal block of each of ``blocks`` (flat parameter paths), run
  together; each starts from the same seed's random vector, zero outside its block."""
  if method not in METHODS:
    raise ValueError(f"hessian: method={method!r} is not one of {METHODS}.")
  if not batches:
    raise ValueError("hessian: needs at least one batch.")
  if num_steps < 1:
    raise ValueError(f"hessian: num_steps={num_steps} must be >= 1.")
  masks = jnp.stack([block_mask(params, paths) for paths in blocks])
  # Vectors live where the parameters do, so every product sees the same input shardings.
  masks = jax.device_put(masks, jax.tree.leaves(params)[0].sharding)
  weight = 1 / len(batches)

  def matvec(v):
    total = 0 * v
    for batch in batches:
      total = _add_hvps(loss_fn, params, batch, v, blocks, weight, total)
    return total

  v0 = masks * jax.random.normal(jax.random.PRNGKey(seed), masks.shape[1:], jnp.float32)
  if method == "power":
    return power_iteration(matvec, v0, num_steps, progress=progress)
  return np.array([ritz[-1] for ritz in lanczos(matvec, v0, num_steps, progress=progress)])


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
                           title="Dominant Hessian eigenvalue: whole network and its blocks",
                           log=True, whole="network")]


ANALYSIS = Analysis("hessian", run, figures)
