"""Local polynomial trends: ``trend=2``, per-dim orders and ``trend_interactions``.

The oracle comparisons over random grids, windows, kernels and boundaries are in
``test_property.py``; here: the edge-bias promise, every path (backends, n_sigma_cut, raw-row
fitters, chunked windows, predict, the command line), the terms and attributes, and the
refusals.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from reference import assert_frames_close, reference_fit

import xslide
from xslide.cli import main

N_BINS, HALF = 20, 3


def curved(n_bins: int = N_BINS, per_bin: int = 12) -> pd.DataFrame:
    """The README's edge-bias field, y = 0.5 bin + 0.01 (bin - 10)², without noise: what a
    fit returns is its bias."""
    phi = np.repeat(np.arange(n_bins), per_bin)
    return pd.DataFrame({"phi": phi, "y": 0.5 * phi + 0.01 * (phi - n_bins / 2) ** 2})


def rows_2d(seed: int = 0, n: int = 3000) -> pd.DataFrame:
    """A smooth 2-D field with a predictor and noise, every bin filled."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, 8, n), "b": rng.integers(0, 6, n)})
    df["x"] = rng.normal(size=n)
    df["w"] = rng.uniform(0.5, 2.0, n)
    df["y"] = (
        0.3 * df.a - 0.02 * df.a**2 + 0.1 * df.a * df.b + 0.05 * df.b**2 + 0.7 * df.x
        + rng.normal(0, 0.1, n)
    )  # fmt: skip
    return df


@pytest.mark.parametrize("boundary", ["truncate", "shrink"])
def test_trend_2_is_free_of_edge_and_curvature_bias(boundary):
    """The acceptance of issue 14: |bias| < 0.002 at every bin, both edges included, where
    trend=1 keeps the curvature's +0.044 everywhere."""
    df = curved()
    truth = 0.5 * np.arange(N_BINS) + 0.01 * (np.arange(N_BINS) - N_BINS / 2) ** 2

    def bias(trend: int) -> np.ndarray:
        out = xslide.make_sliding_window_fit(
            df, ["phi"], {"phi": HALF}, ["y"], [], boundary=boundary, trend=trend
        )
        return out.y_intercept.to_numpy() - truth

    quadratic = bias(2)
    assert np.all(np.isfinite(quadratic)) and np.abs(quadratic).max() < 0.002
    assert bias(1)[N_BINS // 2] == pytest.approx(0.04, abs=0.005)  # what order 2 removes


def test_the_terms_are_the_local_derivatives():
    """d_ = first derivative per bin, d2_ = half the second derivative per bin², exact on a
    quadratic field."""
    out = xslide.make_sliding_window_fit(curved(), ["phi"], {"phi": HALF}, ["y"], [], trend=2)
    phi = np.arange(N_BINS)
    np.testing.assert_allclose(out.y_slope_d_phi, 0.5 + 0.02 * (phi - N_BINS / 2), atol=1e-9)
    np.testing.assert_allclose(out.y_slope_d2_phi, 0.01, rtol=1e-9)


def test_a_shrunk_edge_window_fixes_the_terms_it_cannot_estimate_at_zero():
    """shrink at the edge bin leaves a window of one bin: its trend terms are fixed at 0
    (coefficient, error, covariance) and the intercept is that bin's mean, not NaN."""
    df = curved()
    ds = xslide.fit(df, ["phi"], ["y"], [], {"phi": HALF}, boundary="shrink", trend=2)
    edge = ds.isel(phi=0).sel(target="y")
    assert edge.quality_flag == 0
    assert edge.coef.sel(term="Intercept") == pytest.approx(df.y[df.phi == 0].mean())
    for term in ("d_phi", "d2_phi"):
        assert edge.coef.sel(term=term) == 0 and edge.stderr.sel(term=term) == 0
        assert np.all(edge.cov.sel(term=term).values == 0)
    inner = ds.isel(phi=1).sel(target="y")  # ±1: three bins, a quadratic is estimable
    assert inner.coef.sel(term="d2_phi") == pytest.approx(0.01, rel=1e-9)


def test_terms_attributes_and_per_dim_orders():
    df = rows_2d()
    ds = xslide.fit(
        df, ["a", "b"], ["y"], ["x"], {"a": 2, "b": 1}, trend={"a": 2, "b": 1},
        trend_interactions=True, units={"y": "cm", "x": "s"},
    )  # fmt: skip
    assert ds.term.values.tolist() == ["Intercept", "x", "d_a", "d_b", "d2_a", "d_a:d_b"]
    assert ds.attrs["trend"] == 2 and ds.attrs["trend_interactions"] == 1
    assert json.loads(ds.attrs["trend_json"]) == {"a": 2, "b": 1}
    # offsets are counted in bins: a trend coefficient has the target's unit
    coef_units = ds.coef_units.sel(target="y").values.tolist()
    units = dict(zip(ds.term.values.tolist(), coef_units, strict=True))
    trend_terms = ["Intercept", "d_a", "d_b", "d2_a", "d_a:d_b"]
    assert {t: units[t] for t in trend_terms} == dict.fromkeys(trend_terms, "cm")
    frame = xslide.make_sliding_window_fit(
        df, ["a", "b"], {"a": 2, "b": 1}, ["y"], ["x"], trend=2, trend_interactions=True
    )
    assert "y_slope_d_a_d_b" in frame and "y_slope_d2_b" in frame
    # the field's own curvature and cross term, read off in the middle of the grid
    middle = ds.sel(a=4, b=3, target="y").coef
    assert middle.sel(term="d2_a") == pytest.approx(-0.02, abs=0.01)
    assert middle.sel(term="d_a:d_b") == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("kernel", ["uniform", "gaussian"])
def test_weighted_kernels_and_n_sigma_cut_equal_the_oracle(kernel):
    df = rows_2d(seed=1, n=1500)
    df.loc[df.index[::37], "y"] += 5.0  # outliers for the cut
    kwargs = {
        "group_columns": ["a", "b"], "window_spec": {"a": 2, "b": 1}, "fit_columns": ["y"],
        "predictor_columns": ["x"], "weights_column": "w",
    }  # fmt: skip
    extra = {"kernel": kernel, "trend": 2, "trend_interactions": True, "n_sigma_cut": 3.0}
    actual = xslide.make_sliding_window_fit(df, **kwargs, boundary="shrink", **extra)
    expected = reference_fit(df, **kwargs, boundary="shrink", **extra)
    assert_frames_close(actual, expected, rtol=1e-9, atol_scale=1e-9)


def test_every_path_gives_the_same_fit():
    """numpy backend, raw-row glm (gaussian: the same least squares) and dask chunks of the
    grid equal the compiled closed form."""
    pytest.importorskip("statsmodels")
    df = rows_2d(seed=2, n=2000)
    args = (df, ["a", "b"], ["y"], ["x"], {"a": 2, "b": 1})
    options = {"trend": 2, "trend_interactions": True, "boundary": "truncate"}
    fast = xslide.fit(*args, **options)
    slow = xslide.fit(*args, backend="numpy", **options)
    np.testing.assert_allclose(slow.coef, fast.coef, rtol=1e-10)
    glm = xslide.fit(*args, fitter="glm", **options)
    np.testing.assert_allclose(glm.coef, fast.coef, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(glm.stderr, fast.stderr, rtol=1e-6)
    pytest.importorskip("dask")
    chunked = xslide.fit(*args, chunks={"a": 3, "b": 2}, aggregation=["mean"], **options)
    np.testing.assert_allclose(chunked.coef, fast.coef, rtol=1e-10)


def test_predict_evaluates_the_local_polynomial_at_a_fractional_offset():
    df = rows_2d(seed=3)
    fit = xslide.fit(df, ["a", "b"], ["y"], ["x"], {"a": 2, "b": 2}, trend=2,
                     trend_interactions=True)  # fmt: skip
    at = pd.DataFrame({"a": [3.3, 5.0, 0.2], "b": [2.4, 1.0, 4.8], "x": [0.5, -1.0, 2.0]})
    got = xslide.predict(fit, at, method="nearest").y_pred.to_numpy()
    for k, row in at.iterrows():
        a, b = round(row.a), round(row.b)
        c = fit.coef.sel(a=a, b=b, target="y")
        u, v = row.a - a, row.b - b
        want = (c.sel(term="Intercept") + c.sel(term="x") * row.x + c.sel(term="d_a") * u
                + c.sel(term="d_b") * v + c.sel(term="d2_a") * u * u + c.sel(term="d2_b") * v * v
                + c.sel(term="d_a:d_b") * u * v)  # fmt: skip
        assert got[k] == pytest.approx(float(want), rel=1e-12)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"trend": 3}, r"trend must be 0, 1 or 2"),
        ({"trend": True}, r"trend must be 0, 1 or 2"),
        ({"trend": "2"}, r"trend must be 0, 1 or 2"),
        ({"trend": {"b": 2}}, r"trend\['b'\]=2 needs a window along 'b'"),
        ({"trend": {"a": 1.5}}, r"trend\['a'\] must be 0, 1 or 2"),
        ({"trend": {"c": 2}}, r"trend names \['c'\], which are not bin dims"),
        ({"trend_interactions": True}, r"trend_interactions=True needs a trend"),
        ({"trend": 1, "trend_interactions": "yes"}, r"trend_interactions must be True or False"),
    ],
)
def test_bad_trends_are_refused_by_name(options, message):
    df = rows_2d(n=200)
    with pytest.raises((ValueError, TypeError), match=message):
        xslide.fit(df, ["a", "b"], ["y"], [], {"a": 1}, **options)


def test_a_window_too_small_for_order_2_is_flagged_singular():
    """truncate at the edge with ±1: offsets 0 and 1 give d = d2, the rank check flags it."""
    out = xslide.make_sliding_window_fit(curved(), ["phi"], {"phi": 1}, ["y"], [], trend=2)
    assert out.quality_flag.iloc[0] == "singular_y" and np.isnan(out.y_intercept.iloc[0])
    assert out.quality_flag.iloc[1] == "" and np.isfinite(out.y_intercept.iloc[1])


def test_the_command_line_takes_orders_per_dim_and_interactions(tmp_path, capsys):
    df = rows_2d(n=1000)
    path = tmp_path / "rows.parquet"
    df.to_parquet(path)
    argv = ["fit", str(path), "--dims", "a,b", "--window", "a=2,b=1", "--targets", "y",
            "--predictors", "x", "--trend", "a=2,b=1", "--trend-interactions",
            "--out", str(tmp_path / "fit.nc")]  # fmt: skip
    assert main(argv) == 0
    from xslide.io import open_fit

    fit = open_fit(tmp_path / "fit.nc")
    assert fit.term.values.tolist() == ["Intercept", "x", "d_a", "d_b", "d2_a", "d_a:d_b"]
    capsys.readouterr()
    assert main([*argv[:-2], "--trend", "a=3", "--out", str(tmp_path / "bad.nc")]) == 2
    assert "trend of 'a' must be 0, 1 or 2" in capsys.readouterr().err
