"""Optional dependencies, imported only on the paths that need them."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the feature and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{feature} needs {module.split('.')[0]}, which is not installed; "
            "install it with: pip install 'xslide[stats]'"
        ) from err
