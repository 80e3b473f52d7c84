"""What a train step can minimise besides cross-entropy on the batch as given.

``adversarial``: L-inf attacks (FGSM, PGD) on a model's logits, used by the evaluation
(robust accuracy) and by adversarial training (Madry et al.: the loss on PGD examples,
generated inside the step, ``training.train_step``). Imports only ``sam_jax.metrics``.
"""
