"""No module of ``sam_jax.optim`` shares a name with a function the package exports: such a
module would be shadowed (or shadow the function) depending on import order."""

import importlib
import pathlib
import pkgutil

import sam_jax.optim


def test_no_optim_module_is_named_as_an_exported_function():
  folder = pathlib.Path(sam_jax.optim.__file__).parent
  modules = {m.name for m in pkgutil.iter_modules([str(folder)])}
  exported = {name for name in sam_jax.optim.__all__
              if callable(getattr(sam_jax.optim, name))}
  assert modules and exported
  assert not modules & exported, sorted(modules & exported)
  for name in modules:  # And every module imports as itself.
    module = importlib.import_module(f"sam_jax.optim.{name}")
    assert module.__name__ == f"sam_jax.optim.{name}"
