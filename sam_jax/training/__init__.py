"""Training: the loop, the shard_map train and eval steps, multi-process start, CPU runtime.

Imports nothing itself, so ``sam_jax.training.cpu_runtime`` can configure the heap
before JAX or TensorFlow start a thread.
"""
