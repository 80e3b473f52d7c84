"""Data reading behind ``sam_jax.data.input_pipeline``.

TensorFlow modules: ``preprocessing`` (per-example image ops), ``epochs`` (the
resumable training stream), ``tfds_source`` (TFDS datasets), ``image_folder``
(``root/<split>/<class>/<image>`` folders).
TensorFlow-free modules: ``catalog`` (the datasets the paper reports and how to
read them), ``imagenet_real``, ``imagenet_r`` and ``imagenet_c`` (their metrics
and label mappings). This file imports nothing, so the TensorFlow-free modules
load without TensorFlow.
"""
