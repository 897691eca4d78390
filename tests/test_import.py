"""``import xslide`` stays light: the optional and heavy packages are imported by the paths
that use them, and no numba kernel is compiled (or loaded from the cache) at import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# imported by xslide only where used: the fit's window sums and predict's nearest models
# (scipy.ndimage), the glm/rlm fitters, plots, dask inputs, parquet/ROOT/netCDF/zarr files
HEAVY = ("scipy.", "statsmodels", "patsy", "matplotlib", "dask", "distributed", "uproot",
         "awkward", "netCDF4", "zarr", "tqdm")  # fmt: skip

CODE = """
import json, sys
import pandas, xarray, numba  # what xslide needs; whatever they import is theirs
before = set(sys.modules)
import xslide
from numba.core.dispatcher import Dispatcher
compiled = [
    f"{name}.{attr}"
    for name, module in list(sys.modules.items()) if name.startswith("xslide")
    for attr, value in vars(module).items()
    if isinstance(value, Dispatcher) and value.overloads
]
print(json.dumps({"new": sorted(set(sys.modules) - before), "compiled": compiled}))
"""


@pytest.mark.needs_numba  # a new interpreter, which imports numba itself
def test_import_xslide_imports_no_optional_package_and_compiles_no_kernel():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    heavy = [m for m in found["new"] if m.startswith(HEAVY) or m in {"scipy", "pyarrow"}]
    assert heavy == []
    assert "xslide.plots" not in found["new"] and "xslide.demo" not in found["new"]
    assert found["compiled"] == []
