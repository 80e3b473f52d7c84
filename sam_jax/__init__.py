"""sam_jax: train ViT, MLP-Mixer and ResNet with Sharpness-Aware Minimization in JAX.

Laid out by role (``docs/architecture.md``): ``models`` and ``optim`` (the SAM family as
Optax transformations) are the core and need only JAX, Flax and Optax, as do
``training.train_step`` (the shard_map step), ``parallel`` and ``metrics``; ``data``
reads datasets, ``training.loop`` trains, ``checkpoints`` saves and loads runs,
``analysis`` and ``evaluation`` study trained models, ``config`` holds the recipes,
defaults and checks. The programs are ``sam_jax.main``, ``sam_jax.evaluate`` and
``sam_jax.analyze``.
"""

__version__ = "0.1.0"
