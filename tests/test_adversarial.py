"""FGSM against its closed form on a linear classifier; PGD stays in the ball and below clean."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_jax.objectives import adversarial

N, D, K = 64, 12, 4


def _linear_problem(seed=0):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(D, K)).astype(np.float32)
  b = rng.normal(size=(K,)).astype(np.float32)
  x = rng.uniform(-0.9, 0.9, size=(N, D)).astype(np.float32)
  y = np.argmax(x @ w + b + rng.normal(scale=1.5, size=(N, K)), axis=1)  # Some wrong.
  return w, b, x, y


def test_epsilon_units():
  assert adversarial.to_model_units(255.0) == 2.0
  assert adversarial.to_model_units(8.0) == pytest.approx(16 / 255)
  with pytest.raises(ValueError, match="epsilon"):
    adversarial.to_model_units(-1.0)


def test_fgsm_on_a_linear_classifier_is_its_closed_form():
  """d CE / dx = (softmax(xW + b) - onehot(y)) W^T, so x' = clip(x + eps sign(that))."""
  w, b, x, y = _linear_problem()
  eps = adversarial.to_model_units(8.0)
  logits_fn = lambda images: images @ w + b
  z = x @ w + b
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  grad = (p - np.eye(K)[y]) @ w.T
  expected = np.clip(x + eps * np.sign(grad), -1, 1)
  np.testing.assert_allclose(adversarial.fgsm(logits_fn, jnp.asarray(x), jnp.asarray(y), eps),
                             expected, atol=1e-6)


def test_pgd_one_step_without_random_start_is_fgsm():
  w, b, x, y = _linear_problem(1)
  eps = adversarial.to_model_units(4.0)
  logits_fn = lambda images: images @ w + b
  x_pgd, _ = adversarial.pgd(logits_fn, jnp.asarray(x), jnp.asarray(y), epsilon=eps,
                             step_size=eps, num_steps=1)
  np.testing.assert_array_equal(x_pgd, adversarial.fgsm(logits_fn, jnp.asarray(x),
                                                        jnp.asarray(y), eps))


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_stays_in_the_ball_and_is_never_above_clean_accuracy(random_start):
  rng = np.random.default_rng(2)
  w1 = jnp.asarray(rng.normal(size=(D, 16)), jnp.float32)
  w2 = jnp.asarray(rng.normal(size=(16, K)), jnp.float32)
  logits_fn = lambda images: jnp.tanh(images @ w1) @ w2
  x = jnp.asarray(rng.uniform(-1, 1, size=(N, D)), jnp.float32)
  y = jnp.argmax(logits_fn(x) + jnp.asarray(rng.normal(scale=0.5, size=(N, K))), axis=1)
  eps = adversarial.to_model_units(16.0)
  clean = adversarial.correct(logits_fn, x, y)
  x_adv, robust = jax.jit(lambda x, key: adversarial.pgd(
      logits_fn, x, y, epsilon=eps, step_size=eps / 4, num_steps=10,
      rng=key if random_start else None))(x, jax.random.PRNGKey(0))
  assert np.all(np.abs(x_adv - x) <= eps + 1e-6)
  assert np.all((x_adv >= -1) & (x_adv <= 1))
  assert not np.any(robust & ~clean)  # Robust implies clean-correct, example by example.
  assert robust.mean() < clean.mean()  # The attack does something here.
  assert not np.any(robust & ~adversarial.correct(logits_fn, x_adv, y))
  with pytest.raises(ValueError, match="num_steps"):
    adversarial.pgd(logits_fn, x, y, epsilon=eps, step_size=eps, num_steps=0)


@pytest.mark.parametrize("random_start", [False, True])
def test_training_pgd_finds_the_worst_case_of_a_linear_binary_classifier(random_start):
  """For logits x W, the loss of label y rises along W[:, o] - W[:, y] (o the other class),
  so the worst case in the ball is x + eps sign(W[:, o] - W[:, y]); PGD reaches it."""
  rng = np.random.default_rng(3)
  w = rng.normal(size=(D, 2)).astype(np.float32)
  x = rng.uniform(-0.8, 0.8, size=(N, D)).astype(np.float32)  # Inside [-1, 1] by > eps.
  y = rng.integers(0, 2, size=N)
  attack = adversarial.PgdAttack.from_pixels(epsilon=16.0, step_size=8.0, num_steps=4,
                                              random_start=random_start)
  keys = jax.random.split(jax.random.key(0), N)
  x_adv = attack.examples(lambda z: z @ w, jnp.asarray(x), jnp.asarray(y), keys)
  direction = np.sign(w[:, 1 - y].T - w[:, y].T)
  np.testing.assert_allclose(x_adv, x + attack.epsilon * direction, atol=1e-6)
  grad = jax.grad(lambda z: jnp.sum(attack.examples(lambda v: v @ w, z, jnp.asarray(y),
                                                    keys)))(jnp.asarray(x))
  np.testing.assert_array_equal(grad, 0.0)  # No gradient flows through the examples.


def test_training_pgd_settings_are_checked():
  assert adversarial.PgdAttack.from_pixels(epsilon=0.0, step_size=2.0, num_steps=7) is None
  with pytest.raises(ValueError, match="step_size=0.0 must be > 0"):
    adversarial.PgdAttack.from_pixels(epsilon=8.0, step_size=0.0, num_steps=7)
