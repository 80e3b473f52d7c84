"""Checkpoints: a run's Orbax checkpoints, official ``.npz`` files, and loading a run."""
