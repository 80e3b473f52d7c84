"""Adversarial robustness on the config's eval split: clean, FGSM and PGD accuracy.

Settings: ``config.adversarial`` (``config.defaults.adversarial``): an L-inf budget of
``epsilon`` pixel units of [0, 255], PGD with ``pgd_steps`` steps of ``pgd_step_size``.
An example counts when it is classified correctly at the clean input and at every point
the attack visits (``adversarial``), so robust accuracy is never above clean accuracy.
"""

import functools
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from sam_jax import metrics, parallel
from sam_jax.checkpoints import loading
from sam_jax.data import eval_batches
from sam_jax.objectives import adversarial


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _attack_counts(model: nn.Module, epsilon: float, step_size: float, num_steps: int,
                   variables: Any, batch: dict[str, jax.Array], rng: jax.Array | None
                   ) -> dict[str, jax.Array]:
  """Sums over real examples of: clean-correct, FGSM-robust, PGD-robust, 1."""
  logits_fn = lambda x: cast(jax.Array, model.apply(variables, x, train=False))
  x, y, mask = batch["image"], batch["label"], batch["mask"] > 0
  clean = adversarial.correct(logits_fn, x, y)
  fgsm = clean & adversarial.correct(logits_fn, adversarial.fgsm(logits_fn, x, y, epsilon), y)
  _, pgd = adversarial.pgd(logits_fn, x, y, epsilon=epsilon, step_size=step_size,
                           num_steps=num_steps, rng=rng)
  counts = {"clean": clean, "fgsm": fgsm, "pgd": pgd, "count": jnp.ones_like(mask)}
  return {k: jnp.sum(c & mask) for k, c in counts.items()}


def robustness(loaded: loading.Loaded, mesh: Mesh) -> dict[str, float]:
  """Clean, FGSM and PGD accuracy on the config's eval split (``config.adversarial``)."""
  settings = loaded.config.adversarial
  attack = (adversarial.to_model_units(settings.epsilon),
            adversarial.to_model_units(settings.pgd_step_size), settings.pgd_steps)
  variables = parallel.replicate(loaded.variables, mesh)
  batches = eval_batches.iterate(loaded.config, loaded.config.eval_split, settings.batch_size)

  def counts(item):
    i, batch = item
    rng = jax.random.fold_in(jax.random.PRNGKey(settings.seed), i)
    return _attack_counts(loaded.model, *attack, variables, parallel.shard_batch(batch, mesh),
                          rng if settings.random_start else None)

  enough = None
  if settings.num_examples:
    enough = lambda totals: totals["count"] >= settings.num_examples
  totals = metrics.sum_over(counts, enumerate(batches), stop=enough)
  n = totals["count"]
  return {"clean_accuracy": totals["clean"] / n, "fgsm_accuracy": totals["fgsm"] / n,
          "pgd_accuracy": totals["pgd"] / n, "num_examples": n, "epsilon": settings.epsilon,
          "pgd_steps": settings.pgd_steps, "pgd_step_size": settings.pgd_step_size,
          "random_start": settings.random_start}
