"""What a train step minimises: an ``Objective`` of the model's outputs on a SAM group's batch.

``objective``: the seam (``Objective``) and the default, ``Supervised`` cross-entropy.
``adversarial``: L-inf attacks (FGSM, PGD) on a model's logits, used by the evaluation
(robust accuracy) and by adversarial training (Madry et al.: the loss on PGD examples,
generated inside the step, ``training.train_step``). ``contrastive``: SimCLR's NT-Xent
over the two views of a group's examples. Imports only ``sam_jax.metrics``.
"""
