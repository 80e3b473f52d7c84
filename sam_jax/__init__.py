"""sam_jax: train ViT, MLP-Mixer and ResNet with Sharpness-Aware Minimization in JAX.

The core (``sam_jax.models``, ``sam_jax.optim``, ``sam_jax.training.train_step``) needs only
JAX, Flax and Optax; input pipelines, logging and checkpointing live in
``sam_jax.training.loop`` and ``sam_jax.data.input_pipeline``.
"""

__version__ = "0.1.0"
