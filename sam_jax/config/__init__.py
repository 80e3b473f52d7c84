"""Configs: the paper's recipes, the analysis and evaluation settings, validation.

Plain Python and ml_collections only: the files in ``configs/`` import this package,
and loading a config imports no JAX.
"""
