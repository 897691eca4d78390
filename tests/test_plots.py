"""Plots: maps of fit variables and pull histograms (matplotlib, the ``plot`` extra)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xslide

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 30_000
    df = pd.DataFrame({"r": rng.uniform(0, 10, n), "b": rng.integers(0, 6, n)})
    df["c"] = rng.integers(0, 3, n)
    df["x"] = rng.normal(size=n)
    df["y"] = 0.5 * df.r + df.x + rng.normal(0, 0.1, n)
    return xslide.digitize(df, {"r": (0, 10, 10)})


def test_plot_map_draws_a_two_dim_slice_on_physical_axes(rows):
    fit = xslide.fit(rows, ["rBin", "b", "c"], ["y"], ["x"], {"rBin": 1}, trend=1)
    ax = fit.slidewin.plot_map("coef", "y", "Intercept", c=1)
    # xarray labels the axes by long_name: "r at the bin center", "bin number of b"
    assert ax.get_xlabel().startswith("r at the bin center") and ax.get_ylabel().endswith("b")
    mesh = ax.collections[0]
    assert mesh.get_array().size == 10 * 6
    np.testing.assert_allclose(np.sort(mesh.get_array().ravel())[[0, -1]], [0.25, 4.75], atol=0.02)
    ax = fit.slidewin.plot_map("entries", "y", c=0)
    assert ax.collections[0].get_array().min() > 0
    with pytest.raises(ValueError, match="two dims"):
        fit.slidewin.plot_map("coef", "y")
    with pytest.raises(KeyError, match="nope"):
        fit.slidewin.plot_map("nope")


def test_pulls_of_a_good_model_are_unit_normal():
    rng = np.random.default_rng(1)
    n = 30_000
    rows = pd.DataFrame({"a": rng.integers(0, 10, n), "x": rng.normal(size=n)})
    rows["y"] = 0.5 * rows.a + rows.x + rng.normal(0, 0.1, n)  # the local model is exact
    fit = xslide.fit(rows, ["a"], ["y"], ["x"], {"a": 1}, trend=1)
    ax = fit.slidewin.plot_pulls(rows)
    pulls = ax.pulls["y"]
    assert pulls.size == len(rows)
    assert abs(pulls.mean()) < 0.05 and 0.9 < pulls.std() < 1.1
    assert len(ax.patches) >= 1
