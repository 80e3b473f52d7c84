"""sam_jax: Sharpness-Aware Minimization for ViT, MLP-Mixer and ResNet in JAX/Flax/Optax."""

import setuptools

INSTALL_REQUIRES = [
    "jax>=0.7,<0.11",
    "flax>=0.11,<0.13",
    "optax>=0.2.5,<0.3",
    "tensorflow-cpu>=2.18,<2.22",
    "tensorflow-datasets>=4.9.7,<4.10",
    "ml_collections>=1.0,<2",
    "clu>=0.0.12,<0.1",
    "tensorboard>=2.18,<2.22",
    "orbax-checkpoint>=0.11,<0.13",
    "absl-py>=2.1",
    "numpy>=1.26",
    "scikit-learn>=1.4",   # The offline default job's digits.
    "matplotlib>=3.8",     # PNG plots of the analyses.
    "pillow>=10",          # JPEG files of sam_jax.data.make_cifar10_folder.
]

# libtpu as jax[tpu] 0.10.2 pins it: compiles for TPU topologies without a TPU (the preflight).
TPU_COMPILE = ["libtpu==0.0.42.*"]

setuptools.setup(
    name="sam_jax",
    version="0.1.0",
    description="Sharpness-Aware Minimization for ViT, MLP-Mixer and ResNet (JAX/Flax/Optax).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["sam_jax", "sam_jax.*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5", *TPU_COMPILE,
                 # tests/test_notebook.py runs notebooks/ on an ipykernel of the test's Python.
                 "nbclient>=0.10", "nbformat>=5.10", "ipykernel>=6.29", "jupyter_client>=8",
                 # .ci/run's lint and type check (ruff.toml, pyrightconfig.json).
                 "ruff>=0.14,<0.15", "pyright>=1.1.414,<1.2"],
        # experiments/cifar10/corrupt.py: the corrupted test images of the CIFAR-10 study.
        "study": ["imagecorruptions>=1.1.2"],
        "gpu": ["jax[cuda12]>=0.7,<0.11"],
        "tpu": ["jax[tpu]>=0.7,<0.11"],
        # Compiling for a TPU slice on any machine (python -m sam_jax.preflight).
        "tpu-compile": TPU_COMPILE,
    },
    license="Apache-2.0",
)
