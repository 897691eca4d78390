"""Optional dependencies, imported only on the paths that need them."""

from __future__ import annotations

import importlib
from types import ModuleType

# the extra of pyproject.toml that provides each optional package
EXTRAS = {
    "statsmodels": "stats",
    "patsy": "stats",
    "pyarrow": "io",
    "uproot": "io",
    "netCDF4": "io",
    "zarr": "io",
    "matplotlib": "plot",
    "dask": "dask",
    "distributed": "dask",
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the feature and the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        extra = EXTRAS.get(package)
        hint = f"pip install 'xslide[{extra}]'" if extra else f"pip install {package}"
        raise ImportError(
            f"{feature} needs {package}, which is not installed; install it with: {hint}"
        ) from err
