"""Ahead-of-time compilation of the training steps for a TPU slice on any machine (libtpu)."""
