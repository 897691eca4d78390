"""Every missing optional dependency names the extra that provides it."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import xslide
from xslide import _optional


def hide(monkeypatch, *modules: str) -> None:
    """Make ``import module`` fail, as where the package is not installed."""
    for name in modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.setitem(sys.modules, loaded, None)
        monkeypatch.setitem(sys.modules, name, None)


def rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.integers(0, 4, 400), "b": rng.integers(0, 3, 400)})
    df["x"] = rng.normal(size=400)
    df["y"] = df.x + rng.normal(0, 0.1, 400)
    return df


@pytest.mark.parametrize(
    ("module", "extra"),
    [("statsmodels.api", "stats"), ("patsy", "stats"), ("pyarrow.parquet", "io"),
     ("uproot", "io"), ("netCDF4", "io"), ("zarr", "io"), ("matplotlib.pyplot", "plot"),
     ("dask.array", "dask"), ("distributed", "dask")],
)  # fmt: skip
def test_require_names_the_extra_of_each_package(monkeypatch, module, extra):
    hide(monkeypatch, module.split(".")[0])
    with pytest.raises(ImportError, match=rf"pip install 'xslide\[{extra}\]'") as err:
        _optional.require(module, "the feature")
    assert str(err.value).count("pip install") == 1


def test_a_glm_without_statsmodels_names_the_stats_extra(monkeypatch):
    hide(monkeypatch, "statsmodels")
    with pytest.raises(ImportError, match=r"fitter='glm'.*xslide\[stats\]"):
        xslide.fit(rows(), ["a"], ["y"], ["x"], fitter="glm")


def test_a_formula_without_patsy_names_the_stats_extra(monkeypatch):
    hide(monkeypatch, "patsy")
    with pytest.raises(ImportError, match=r"xslide\[stats\]"):
        xslide.fit(rows(), ["a"], ["y"], formula="target ~ x")


def test_plots_without_matplotlib_name_the_plot_extra(monkeypatch):
    fit = xslide.fit(rows(), ["a", "b"], ["y"], ["x"])
    hide(monkeypatch, "matplotlib")
    with pytest.raises(ImportError, match=r"xslide\[plot\]"):
        fit.slidewin.plot_map("mean")


def test_chunked_grids_without_dask_name_the_dask_extra(monkeypatch):
    hide(monkeypatch, "dask")
    with pytest.raises(ImportError, match=r"chunks=.*xslide\[dask\]"):
        xslide.fit(rows(), ["a"], ["y"], window={"a": 1}, chunks={"a": 2})


def test_parquet_streams_without_pyarrow_name_the_io_extra(monkeypatch, tmp_path):
    path = tmp_path / "rows.parquet"
    rows().to_parquet(path)
    hide(monkeypatch, "pyarrow")
    with pytest.raises(ImportError, match=r"xslide\[io\]"):
        xslide.bin_stats(path, ["a"], ["y"])
