"""Asymmetric windows ``{dim: (before, after)}``: offsets -before..+after (trailing, leading),
against the oracle for every boundary, kernel and trend, on every path (box sums, neighbor
loop, median, clipping, raw-row fitters, dask chunks, the seed API, the CLI), and the trailing
1-D window against statsmodels' RollingOLS / RollingWLS through ``rolling_ols_view``."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from data import build_case, params_strategy
from hypothesis import given, note
from hypothesis import strategies as st
from reference import assert_frames_close, dim_neighbors, reference_fit, shrunk
from statsmodels.regression.rolling import RollingOLS, RollingWLS

import xslide
from xslide import InvalidWindowSpec, make_sliding_window_fit
from xslide.stats import n_stats
from xslide.window import (
    Kernel,
    Window,
    _box_sums,
    _box_sums_scipy,
    kernel_weights,
    moment_layout,
    neighbor_sums,
    neighbor_table,
    shrunk_span,
    window_sum,
)

BOUNDARIES = ["truncate", "periodic", "mirror", "shrink"]


def series(n: int = 120, seed: int = 0, weights: bool = False) -> pd.DataFrame:
    """A 1-D series, one row per bin ``t``: y = 1 + 2 x1 - x2 + a drift + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    df = pd.DataFrame({"t": t, "x1": rng.normal(size=n), "x2": rng.uniform(-2, 2, n)})
    df["y"] = 1.0 + 2.0 * df.x1 - df.x2 + 0.01 * t + rng.normal(0.0, 0.5, n)
    if weights:
        df["w"] = rng.uniform(0.2, 3.0, n)
    return df


# ---- the window's shape: neighbor tables, shrink, kernels ----


def test_trailing_window_reads_the_bin_and_the_bins_before_it():
    j, o, length = neighbor_table(6, (2, 0), "truncate")
    assert [list(j[c, : length[c]]) for c in range(6)] == [
        [0], [0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5],
    ]  # fmt: skip
    assert list(o[5, : length[5]]) == [-2, -1, 0]
    j, o, length = neighbor_table(6, (0, 2), "truncate")  # leading
    assert list(j[4, : length[4]]) == [4, 5]
    assert list(o[0, : length[0]]) == [0, 1, 2]


@pytest.mark.parametrize("mode", BOUNDARIES)
@pytest.mark.parametrize("extent", [(2, 0), (0, 3), (3, 1), (1, 2), (0, 0)])
def test_neighbor_tables_equal_the_oracle_enumeration(mode, extent):
    n = 7
    j, o, length = neighbor_table(n, extent, mode)
    for c in range(n):
        got = list(zip(j[c, : length[c]], o[c, : length[c]], strict=True))
        assert got == dim_neighbors(c, extent, n, mode), (c, mode, extent)


def test_neighbor_tables_of_a_chunk_know_the_grid_edges():
    """A chunk (bins 3..8 of a 10-bin dim, halo included) lists, for every bin whose whole
    window lies in it, the whole dim's neighbors and offsets."""
    for mode in ("truncate", "mirror", "shrink"):
        j, o, length = neighbor_table(10, (3, 1), mode)
        jc, oc, lc = neighbor_table(6, (3, 1), mode, origin=3, n_global=10)
        checked = 0
        for c in range(6):
            whole = j[c + 3, : length[c + 3]]
            if whole.min() >= 3 and whole.max() <= 8:
                assert (jc[c, : lc[c]] + 3).tolist() == whole.tolist()
                assert oc[c, : lc[c]].tolist() == o[c + 3, : length[c + 3]].tolist()
                checked += 1
        assert checked >= 2, mode


def test_shrink_of_a_symmetric_window_keeps_today_s_definition():
    """min(w, c, n - 1 - c) on each side: symmetric windows keep their results exactly."""
    for n in range(1, 12):
        for w in range(6):
            g = np.arange(n)
            left, right = shrunk_span(g, w, w, n)
            expected = np.minimum(w, np.minimum(g, n - 1 - g))
            np.testing.assert_array_equal(left, expected)
            np.testing.assert_array_equal(right, expected)


def test_shrink_keeps_the_shape_of_an_asymmetric_window():
    """(before, after) scaled by the largest r <= 1 that fits, each rounded down."""
    n = 10
    for before, after in [(4, 0), (0, 3), (4, 2), (1, 3), (5, 5)]:
        left, right = shrunk_span(np.arange(n), before, after, n)
        for c in range(n):
            assert (left[c], right[c]) == shrunk(c, before, after, n)
    left, right = shrunk_span(np.arange(n), 4, 0, n)  # trailing: min(before, c) bins before
    assert left.tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 4, 4] and not right.any()
    left, right = shrunk_span(np.arange(n), 4, 2, n)
    assert (left[1], right[1]) == (1, 0)  # r = 1/4: (1, 0.5) rounded down
    assert (left[8], right[8]) == (2, 1)  # r = 1/2
    assert (left[9], right[9]) == (0, 0)


def test_a_trailing_named_kernel_is_one_sided():
    weights, volume = kernel_weights(Kernel("gaussian", "gaussian", (2.0,)), [(3, 0)])
    np.testing.assert_array_equal(weights, np.exp(-0.5 * (np.arange(-3, 1) / 2.0) ** 2))
    assert volume == 4
    weights, volume = kernel_weights(Kernel("linear", "linear", (1.0,)), [(0, 4)])
    np.testing.assert_array_equal(weights, [1.0, 0.5, 0.0, 0.0, 0.0])
    assert volume == 2  # offsets 0 and 1 weigh


def test_explicit_kernels_take_the_asymmetric_shape_and_offsets():
    seen = []

    def kernel(o):
        seen.append(o.copy())
        return 1.0 / (1.0 + np.abs(o))

    weights, _ = kernel_weights(Kernel("callable", kernel), [(2, 1)])
    np.testing.assert_array_equal(seen[0], [-2, -1, 0, 1])
    np.testing.assert_array_equal(weights, [1 / 3, 1 / 2, 1, 1 / 2])
    weights, _ = kernel_weights(Kernel("array", np.arange(1.0, 5.0)), [(2, 1)], reach=[(1, 1)])
    np.testing.assert_array_equal(weights, [2.0, 3.0, 4.0])  # the center is at index before
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        kernel_weights(Kernel("array", np.ones(3)), [(2, 1)])


# ---- windowed sums: box sums, scipy and the neighbor loop agree ----


@pytest.mark.parametrize("extents", [[(2, 0), 1], [(0, 3), (1, 2)], [(5, 1), 0], [(3, 0)]])
def test_asymmetric_window_sums_equal_the_explicit_sums(extents):
    rng = np.random.default_rng(1)
    shape = (6, 5)[: len(extents)]
    values = rng.normal(size=(*shape, 2))
    expected = np.zeros_like(values)
    spans = [(e, e) if isinstance(e, int) else e for e in extents]
    for index in np.ndindex(*shape):
        for offset in np.ndindex(*[b + a + 1 for b, a in spans]):
            j = tuple(i + k - b for i, k, (b, _) in zip(index, offset, spans, strict=True))
            if all(0 <= x < n for x, n in zip(j, shape, strict=True)):
                expected[index] += values[j]
    np.testing.assert_allclose(window_sum(values, extents), expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("extents", [((3, 0), (0, 2)), ((1, 4), 1), ((7, 0), (2, 9))])
def test_box_sums_equal_the_neighbor_loop_for_asymmetric_windows(extents):
    """The box-sum fast path takes asymmetric windows and equals the neighbor loop and scipy."""
    rng = np.random.default_rng(2)
    shape = (7, 6)
    n_bins = 42
    rows = rng.integers(0, 3, n_bins)
    sums = rng.normal(size=(n_bins, 1, n_stats(2))) * (rows > 0)[:, None, None]  # empty: 0
    spans = [(e, e) if isinstance(e, int) else e for e in extents]
    reach = tuple((min(b, n - 1), min(a, n - 1)) for (b, a), n in zip(spans, shape, strict=True))
    uniform = Kernel("uniform", "uniform", (1.0, 1.0))
    window = Window(shape, reach, ("truncate",) * 2, kernel_weights(uniform, extents, reach)[0])
    assert window.is_box and not window.symmetric
    centers = rng.permutation(n_bins)[:30]
    box, box_rows, box_bins = _box_sums(sums, rows, window, centers)
    loop, loop_rows, loop_bins = neighbor_sums(window, centers, sums, rows, moment_layout(2, []))
    np.testing.assert_allclose(box, loop, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(box_rows, loop_rows)
    np.testing.assert_array_equal(box_bins, loop_bins)
    scipy = _box_sums_scipy(sums, rows, window, centers)
    np.testing.assert_allclose(scipy[:, :-2].reshape(box.shape), box, rtol=1e-12, atol=1e-12)


# ---- the fits against the oracle ----


@given(
    params=params_strategy(),
    extents=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=4, max_size=4),
    modes=st.lists(st.sampled_from(BOUNDARIES), min_size=4, max_size=4),
    kernel=st.sampled_from(["uniform", "gaussian", "epanechnikov", "linear", "callable", "array"]),
    clip=st.booleans(),
    trend=st.sampled_from([0, 0, 1, 2]),
)
def test_asymmetric_windows_match_the_oracle(params, extents, modes, kernel, clip, trend):
    """Asymmetric windows x boundaries x kernels x trend (and n_sigma_cut), against the oracle."""
    df, kwargs = build_case(params)
    dims = kwargs["group_columns"]
    kwargs["extent"] = {
        d: (lo, lo + n - 1) for d, lo, n in zip(dims, params.offsets, params.extents, strict=True)
    }
    window, boundary = {}, {}
    for d, (before, after), mode, n in zip(dims, extents, modes, params.extents, strict=False):
        if mode == "periodic":  # no wider than the period
            before, after = min(before, n - 1), min(after, max(n - 1 - before, 0))
        window[d] = (before, after)
        boundary[d] = mode
    kwargs["window_spec"] = window
    extra: dict[str, Any] = {"boundary": boundary}
    if kernel == "callable":
        extra["kernel"] = lambda *o: np.exp(-0.3 * sum(np.abs(x) for x in o))
    elif kernel == "array":
        rng = np.random.default_rng(params.seed)
        weights = rng.uniform(0.0, 2.0, [b + a + 1 for b, a in window.values()])
        weights[weights < 0.4] = 0.0
        weights[tuple(b for b, _ in window.values())] = 1.0  # the center bin always counts
        extra["kernel"] = weights
    else:
        extra["kernel"] = kernel
    if clip:
        extra["n_sigma_cut"] = 2.0
    if trend:
        extra["trend"] = trend
    note(f"window {window}, boundary {boundary}, {extra}")
    expected = reference_fit(df, **kwargs, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # periodic dims without a period
        actual = make_sliding_window_fit(df, **kwargs, **extra)
    assert_frames_close(actual, expected, rtol=1e-9, atol_scale=1e-9)


def oracle_case(boundary: str = "truncate", **extra):
    """A 2-D grid with a trailing window along t and a leading one along u."""
    rng = np.random.default_rng(3)
    n = 900
    df = pd.DataFrame({"t": rng.integers(0, 12, n), "u": rng.integers(0, 5, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = 0.2 * df.t - 0.3 * df.u + 1.5 * df.x + rng.standard_t(3, n)
    df["w"] = rng.uniform(0.5, 2.0, n)
    kwargs = {
        "group_columns": ["t", "u"],
        "window_spec": {"t": (3, 0), "u": (0, 2)},
        "fit_columns": ["y"],
        "predictor_columns": ["x"],
        "weights_column": "w",
        "boundary": boundary,
        **extra,
    }
    return df, kwargs


@pytest.mark.parametrize("boundary", ["truncate", "mirror", "shrink"])
def test_median_and_clipping_of_asymmetric_windows_match_the_oracle(boundary):
    df, kwargs = oracle_case(boundary, n_sigma_cut=2.5, kernel="linear")
    expected = reference_fit(df, **kwargs)
    actual = make_sliding_window_fit(df, **kwargs)
    assert "y_median" in actual
    assert_frames_close(actual, expected, rtol=1e-9, atol_scale=1e-9)


def test_raw_row_fitters_see_the_asymmetric_windows():
    df, kwargs = oracle_case("mirror", kernel="gaussian")
    closed = make_sliding_window_fit(df, **kwargs)
    glm = make_sliding_window_fit(df, **kwargs, fitter="glm")
    for column in ("y_intercept", "y_slope_x"):
        np.testing.assert_allclose(glm[column], closed[column], rtol=1e-8)


def test_trend_offsets_of_a_trailing_window_are_measured_from_the_center():
    """A linear field seen by a trailing window: the intercept is the value at the center (the
    window's last bin) and d_t the slope, not the value at the window's middle."""
    t = np.repeat(np.arange(20), 5)
    df = pd.DataFrame({"t": t, "y": 3.0 + 0.5 * t})
    fit = xslide.fit(df, ["t"], ["y"], window={"t": (4, 0)}, trend=1, min_entries=1)
    np.testing.assert_allclose(fit.coef.sel(term="Intercept").values[0], 3.0 + 0.5 * np.arange(20))
    np.testing.assert_allclose(fit.coef.sel(term="d_t").values[0, 1:], 0.5)
    plain = xslide.fit(df, ["t"], ["y"], window={"t": (4, 0)}, min_entries=1)
    # without a trend the trailing mean lags: the middle of bins t-4..t (2 bins behind)
    np.testing.assert_allclose(plain["mean"].values[0, 4:], 3.0 + 0.5 * (np.arange(4, 20) - 2))


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("chunks", [{"t": 3, "u": 2}, {"t": 5, "u": 1}])
def test_chunked_asymmetric_windows_equal_memory(boundary, chunks):
    pytest.importorskip("dask.array")
    df, _ = oracle_case()
    args = (df, ["t", "u"], ["y"], ["x"], {"t": (3, 0), "u": (0, 2)})
    options = {"boundary": boundary, "extent": {"t": (0, 11), "u": (0, 4)}, "weights": "w"}
    memory = xslide.fit(*args, **options)
    chunked = xslide.fit(*args, chunks=chunks, **options)
    for name in ("coef", "stderr", "entries", "n_rows_aggregated", "n_neighbors_used"):
        np.testing.assert_allclose(
            chunked[name].values, memory[name].values, rtol=1e-12, atol=1e-12, err_msg=name
        )


# ---- the faces: options, attrs, accessor, seed API, CLI ----


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"xBin": (-1, 0)}, r"window_spec\['xBin'\] must be a half-width or a pair"),
        ({"xBin": (1.5, 0)}, r"window_spec\['xBin'\]"),
        ({"xBin": (1, 2, 3)}, r"window_spec\['xBin'\] must be a half-width or a pair"),
        ({"xBin": (1,)}, r"window_spec\['xBin'\]"),
        ({"xBin": "3:0"}, r"window_spec\['xBin'\] must be a non-negative integer"),
    ],
)
def test_bad_asymmetric_windows_are_refused_in_one_line_naming_the_dim(window, message):
    df = pd.DataFrame({"xBin": [0, 1, 2], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(InvalidWindowSpec, match=message) as info:
        make_sliding_window_fit(df, ["xBin"], window, ["y"], [])
    assert "\n" not in str(info.value)


def test_a_periodic_window_wider_than_the_period_is_refused():
    df = pd.DataFrame({"p": np.arange(6), "y": np.ones(6)})
    with pytest.raises(InvalidWindowSpec, match=r"\(before, after\) \(4, 2\) spans 7 bins"):
        xslide.fit(df, ["p"], ["y"], window={"p": (4, 2)}, boundary="periodic",
                   extent={"p": (0, 5)})  # fmt: skip


def test_attrs_record_before_after_pairs_and_keep_ints():
    df, kwargs = oracle_case()
    kwargs["window_spec"] = {"t": (3, 0), "u": 1}
    fit = make_sliding_window_fit(df, **kwargs)
    assert json.loads(fit.attrs["window_spec_json"]) == {"t": [3, 0], "u": 1}
    kwargs["window_spec"] = {"t": (2, 2), "u": [0, 1]}  # equal parts are a half-width
    fit = make_sliding_window_fit(df, **kwargs)
    assert fit.attrs["window_spec_json"] == '{"t": 2, "u": [0, 1]}'


def test_accessor_and_statistics_refit_take_asymmetric_windows():
    df, kwargs = oracle_case()
    expected = reference_fit(df, **kwargs)
    ds = xslide.fit(df, ["t", "u"], ["y"], ["x"], kwargs["window_spec"], weights="w")
    stats = xslide.bin_stats(df, ["t", "u"], ["y"], ["x"], weights="w")
    refit = stats.slidewin.fit(window=kwargs["window_spec"])
    for fit in (ds, refit):
        coef = fit.coef.sel(target="y", term="x").values
        got = coef[expected.t.to_numpy(), expected.u.to_numpy()]
        np.testing.assert_allclose(got, expected.y_slope_x, rtol=1e-9)


def test_cli_takes_before_colon_after(tmp_path, capsys):
    from xslide.cli import main

    df, _ = oracle_case()
    path = tmp_path / "rows.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "fit.nc"
    code = main(["fit", str(path), "--dims", "t,u", "--window", "t=3:0,u=0:2", "--targets", "y",
                 "--predictors", "x", "--weights", "w", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    want = xslide.fit(df, ["t", "u"], ["y"], ["x"], {"t": (3, 0), "u": (0, 2)}, weights="w")
    import xarray as xr

    with xr.open_dataset(out) as fit:
        np.testing.assert_allclose(fit.coef.values, want.coef.values, rtol=1e-12)
        assert json.loads(fit.attrs["window_spec_json"]) == {"t": [3, 0], "u": [0, 2]}
    code = main(["fit", str(path), "--dims", "t,u", "--window", "t=3:x", "--targets", "y",
                 "--out", str(tmp_path / "bad.nc")])  # fmt: skip
    assert code == 2
    assert "before:after" in capsys.readouterr().err


# ---- statsmodels: RollingOLS and RollingWLS ----


def assert_view_equals_statsmodels(view, statsmodels_fit, rtol=1e-9):
    np.testing.assert_array_equal(view.params.columns, statsmodels_fit.params.columns)
    for name in ("params", "bse"):
        got, want = getattr(view, name).to_numpy(), getattr(statsmodels_fit, name).to_numpy()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(
        view.rsquared.to_numpy(), np.asarray(statsmodels_fit.rsquared), rtol=rtol, atol=1e-12
    )
    np.testing.assert_array_equal(view.nobs.to_numpy(), np.asarray(statsmodels_fit.nobs))


# statsmodels divides by zero residual degrees of freedom in windows of exactly k rows
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("window", [5, 21, 60])
@pytest.mark.parametrize("expanding", [False, True])
def test_trailing_window_equals_rolling_ols(window, expanding):
    df = series(seed=window)
    fit = xslide.fit(df, ["t"], ["y"], ["x1", "x2"], {"t": (window - 1, 0)}, min_entries=1)
    view = xslide.rolling_ols_view(fit, expanding=expanding)
    exog = sm.add_constant(df[["x1", "x2"]])
    want = RollingOLS(df.y, exog, window=window, expanding=expanding).fit()
    assert_view_equals_statsmodels(view, want)
    assert view.nobs.iloc[-1] == window
    assert view.params.iloc[: window - 1].isna().all().all() != expanding


@pytest.mark.parametrize("window", [7, 30])
def test_trailing_weighted_window_equals_rolling_wls(window):
    df = series(n=150, seed=1, weights=True)
    fit = make_sliding_window_fit(
        df, ["t"], {"t": (window - 1, 0)}, ["y"], ["x1", "x2"], weights_column="w", min_entries=1
    )
    view = xslide.rolling_ols_view(fit)
    exog = sm.add_constant(df[["x1", "x2"]])
    want = RollingWLS(df.y, exog, window=window, weights=df.w).fit()
    assert_view_equals_statsmodels(view, want)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_missing_rows_and_min_nobs_match_rolling_ols():
    """NaN targets are dropped from their windows (statsmodels' missing='drop'); windows with
    fewer than min_nobs valid rows are empty in both."""
    df = series(n=80, seed=4)
    df.loc[[10, 11, 12, 13, 40], "y"] = np.nan
    fit = xslide.fit(df, ["t"], ["y"], ["x1", "x2"], {"t": (5, 0)}, min_entries=1)
    exog = sm.add_constant(df[["x1", "x2"]])
    for min_nobs in (3, 5):
        view = xslide.rolling_ols_view(fit, min_nobs=min_nobs)
        want = RollingOLS(df.y, exog, window=6, min_nobs=min_nobs).fit()
        assert_view_equals_statsmodels(view, want)
    assert view.params.x1.isna().sum() > 5


@pytest.mark.parametrize(
    ("window", "options", "message"),
    [
        ({"t": 3}, {}, r"trailing window \{'t': \(before, 0\)\}"),
        ({"t": (0, 3)}, {}, "trailing window"),
        ({"t": (3, 0)}, {"boundary": "shrink"}, "boundary='truncate'"),
        ({"t": (3, 0)}, {"kernel": "gaussian"}, "kernel='uniform'"),
    ],
)
def test_rolling_view_refuses_what_rolling_ols_cannot_be(window, options, message):
    fit = xslide.fit(series(n=30), ["t"], ["y"], ["x1"], window, **options)
    with pytest.raises(ValueError, match=message):
        xslide.rolling_ols_view(fit)


def test_rolling_view_refuses_bad_arguments():
    df = series(n=30)
    fit = xslide.fit(df, ["t"], ["y"], ["x1"], {"t": (3, 0)})
    with pytest.raises(ValueError, match="min_nobs must be between the 2 coefficients"):
        xslide.rolling_ols_view(fit, min_nobs=5)
    with pytest.raises(ValueError, match="target must be one of"):
        xslide.rolling_ols_view(fit, target="z")
    with pytest.raises(ValueError, match="one bin dim"):
        df["u"] = df.t % 2
        xslide.rolling_ols_view(xslide.fit(df, ["t", "u"], ["y"], ["x1"], {"t": (3, 0)}))
    with pytest.raises(ValueError, match="fit must be the Dataset"):
        xslide.rolling_ols_view(df)


def test_shrink_keeps_the_shape_of_a_window_wider_than_the_grid():
    """A (2, 3) window on 3 bins: at the middle bin r = 1/3 gives (0, 1), not the (2, 2) of
    the window clipped to the grid."""
    df = pd.DataFrame({"g": [0, 1, 1, 2], "y": [1.0, 2.0, 4.0, 8.0]})
    fit = xslide.fit(df, ["g"], ["y"], window={"g": (2, 3)}, boundary="shrink", min_entries=1)
    assert fit["mean"].values[0].tolist() == [1.0, 14.0 / 3.0, 8.0]
    assert fit.n_rows_aggregated.values.tolist() == [1, 3, 1]
