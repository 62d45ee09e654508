"""The package's C extensions (``metrics/_*.c``), imported with one clear error when a checkout
never built them."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["compiled"]


def compiled(name: str) -> ModuleType:
    """The built extension ``metrics.<name>``; an ImportError saying how to build it if absent."""
    try:
        return importlib.import_module(f"metrics.{name}")
    except ImportError as error:
        raise ImportError(
            f"metrics.{name} is not built: run `pip install -e .`, or in a worktree "
            '`python -c "import setuptools; setuptools.setup()" build_ext --inplace`'
        ) from error
