"""Robust window aggregates (``ltm``, ``ltm_std``, ``mad``, ``trimmed_mean``) and the
median/MAD clipping of ``n_sigma_cut``: equal to the definitions applied to gathered rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import (
    MODES,
    offset_weight,
    robust_aggregates,
    weighted_fit,
    weighted_lower_median,
    window_bins,
)

import xslide
from xslide.aggregates import FIELDS, Fractions, window_robust
from xslide.rows import WindowIndex
from xslide.window import Window

ROBUST = ("ltm", "ltm_std", "mad", "trimmed_mean")


def gathered_windows(df, dims, half, boundary, kernel, extent):
    """(center, row numbers, kernel weights) of every observed center, sorted, gathered bin by
    bin from the window's definition (a bin read twice under mirror gives its rows twice)."""
    lows = [extent[d][0] for d in dims]
    sizes = [extent[d][1] - extent[d][0] + 1 for d in dims]
    rows_of: dict[tuple, list[int]] = {}
    for i, key in enumerate(map(tuple, df[dims].to_numpy().tolist())):
        rows_of.setdefault(key, []).append(i)
    for center in sorted(rows_of):
        idx, kw = [], []
        modes = [MODES[boundary]] * len(dims)
        for neighbor, offset in window_bins(center, half, lows, sizes, modes):
            k = offset_weight(kernel, offset, half, dims, None)
            members = rows_of.get(neighbor, [])
            if k and members:
                idx += members
                kw += [k] * len(members)
        yield center, np.array(idx, dtype=np.int64), np.array(kw, dtype=np.float64)


@st.composite
def cases(draw):
    ndim = draw(st.integers(1, 2))
    dims = [f"g{d}" for d in range(ndim)]
    shape = [draw(st.integers(1, 6)) for _ in dims]
    boundary = draw(st.sampled_from(["truncate", "mirror", "periodic", "shrink"]))
    half = []
    for n in shape:
        w = draw(st.integers(0, 2))
        half.append(min(w, (n - 1) // 2) if boundary == "periodic" else w)
    kernel = draw(st.sampled_from(["uniform", "gaussian", "integers", "floats"]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if kernel in ("integers", "floats"):
        size = tuple(2 * w + 1 for w in half)
        raw = rng.integers(1, 4, size) if kernel == "integers" else rng.uniform(0.2, 2.0, size)
        kernel = raw.astype(np.float64)
    counts = rng.integers(0, draw(st.integers(1, 8)), int(np.prod(shape)))
    flat = np.repeat(np.arange(counts.size), counts)
    idx = np.unravel_index(flat, shape)
    df = pd.DataFrame({d: idx[k] for k, d in enumerate(dims)})
    y = rng.normal(size=len(df)) * rng.uniform(0.1, 5.0) + rng.uniform(-3, 3)
    if draw(st.booleans()):
        y = y.round(1)  # ties, within and across bins
    y[rng.random(len(df)) < draw(st.sampled_from([0.0, 0.1]))] = np.nan
    df["y"] = y
    df["w"] = rng.uniform(0.5, 2.0, len(df))  # row weights: ignored, as by the median
    options = {
        "ltm_fraction": draw(st.sampled_from([0.8, 0.5, 0.3, 1.0, 0.75])),
        "trim_fraction": draw(st.sampled_from([0.1, 0.0, 0.25, 0.45])),
        "backend": draw(st.sampled_from(["auto", "numpy"])),
    }
    options["extent"] = {d: (0, n - 1) for d, n in zip(dims, shape, strict=True)}
    return df, dims, half, boundary, kernel, options


@given(case=cases())
def test_each_aggregate_equals_the_definition_on_gathered_window_rows(case):
    df, dims, half, boundary, kernel, options = case
    if df.empty or df.y.isna().all():
        return
    window = dict(zip(dims, half, strict=True))
    extent = options["extent"]
    out = xslide.make_sliding_window_fit(
        df, dims, window, ["y"], [], aggregation_functions={"y": ["entries", *ROBUST]},
        weights_column="w", boundary=boundary, kernel=kernel, min_entries=1, **options,
    )  # fmt: skip
    offsets = [np.array(o) for o in np.ndindex(*(2 * w + 1 for w in half))]
    weighted = any(
        offset_weight(kernel, tuple(o - np.array(half)), half, dims, None) != 1.0 for o in offsets
    )
    windows = list(gathered_windows(df, dims, half, boundary, kernel, extent))
    assert len(out) == len(windows)
    for row, (center, idx, kw) in zip(out.itertuples(), windows, strict=True):
        assert tuple(getattr(row, d) for d in dims) == center
        y = df.y.to_numpy()[idx]
        valid = ~np.isnan(y)
        expected = robust_aggregates(
            y[valid], kw[valid], weighted, options["ltm_fraction"], options["trim_fraction"]
        )
        assert row.y_entries == valid.sum()
        for name in ROBUST:
            np.testing.assert_allclose(
                getattr(row, f"y_{name}"), expected[name], rtol=1e-9, atol=1e-9, err_msg=name
            )


def test_equal_weights_follow_alice_ltm_and_scipy_trim_mean():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    window = Window((1,), (0,), ("truncate",), np.ones(1))
    for n in (1, 2, 7, 10, 33, 200):
        y = rng.standard_cauchy(n)
        index = WindowIndex(window, np.array([0, n]))
        for f, t in ((0.8, 0.1), (0.6, 0.25), (1.0, 0.0)):
            for backend in ("numba", "numpy"):
                ltm, ltm_std, mad, trimmed, median = window_robust(
                    np.array([0]), index, y[None], n, backend, Fractions(f, t)
                )[0, 0]
                k = max(1, int(f * n))  # ALICE: Int_t(f * n) values kept
                v = np.sort(y)
                best = min(range(n - k + 1), key=lambda i: np.var(v[i : i + k]))
                assert ltm == pytest.approx(np.mean(v[best : best + k]), rel=1e-12)
                expected_std = np.std(v[best : best + k], ddof=1) if k > 1 else np.nan
                np.testing.assert_allclose(ltm_std, expected_std, rtol=1e-10)
                assert trimmed == pytest.approx(scipy_stats.trim_mean(y, t), rel=1e-12)
                assert mad == pytest.approx(1.4826 * np.median(np.abs(y - np.median(y))))
                assert median == np.median(y)


def outlier_frame(fraction: float, seed: int = 0, n: int = 40_000) -> pd.DataFrame:
    """y = 10 + N(0, 1) in 8 bins; a fraction of the rows pushed up by 20 sigma."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"b": rng.integers(0, 8, n), "y": 10.0 + rng.normal(size=n)})
    df.loc[rng.random(n) < fraction, "y"] += 20.0
    return df


def test_ltm_and_mad_resist_ten_percent_outliers_where_mean_and_std_do_not():
    aggregates = ["mean", "std", "ltm", "mad"]
    clean = xslide.make_sliding_window_fit(
        outlier_frame(0.0), ["b"], {"b": 1}, ["y"], [], aggregation_functions={"y": aggregates}
    )
    dirty = xslide.make_sliding_window_fit(
        outlier_frame(0.1), ["b"], {"b": 1}, ["y"], [], aggregation_functions={"y": aggregates}
    )
    assert ((dirty.y_mean / clean.y_mean - 1).abs() > 0.15).all()
    assert ((dirty.y_std / clean.y_std - 1).abs() > 3.0).all()
    np.testing.assert_allclose(dirty.y_ltm, clean.y_ltm, rtol=0.05)
    np.testing.assert_allclose(dirty.y_ltm, 10.0, rtol=0.05)
    # the MAD of a sample with a fraction e of far outliers on one side is the half-width
    # holding 1/2 / (1 - e) of the clean values about a median shifted to the 1/2 / (1 - e)
    # quantile: 1.134 sigma for e = 0.1 (its bias, not noise); 1.4 % for e = 0.01
    np.testing.assert_allclose(dirty.y_mad, 1.134 * clean.y_mad, rtol=0.05)
    slight = xslide.make_sliding_window_fit(
        outlier_frame(0.01), ["b"], {"b": 1}, ["y"], [], aggregation_functions={"y": aggregates}
    )
    np.testing.assert_allclose(slight.y_mad, clean.y_mad, rtol=0.05)
    assert ((slight.y_std / clean.y_std - 1).abs() > 0.5).all()


def test_seed_columns_follow_the_existing_aggregates_in_a_fixed_order():
    df = outlier_frame(0.0, n=2000)
    out = xslide.make_sliding_window_fit(
        df, ["b"], {"b": 1}, ["y"], [],
        aggregation_functions={"y": ["trimmed_mean", "mad", "entries", "ltm_std", "ltm", "mean"]},
    )  # fmt: skip
    assert list(out.columns[1:7]) == [
        "y_mean", "y_entries", "y_ltm", "y_ltm_std", "y_mad", "y_trimmed_mean",
    ]  # fmt: skip
    default = xslide.make_sliding_window_fit(df, ["b"], {"b": 1}, ["y"], [])
    assert not {f"y_{name}" for name in ROBUST} & set(default.columns)


def test_dataset_variables_carry_long_names_units_and_the_options():
    df = outlier_frame(0.05, n=3000)
    df["z"] = df.y * 2
    ds = xslide.fit(
        df, dims=["b"], targets=["y", "z"], window={"b": 1}, units={"y": "cm", "z": "cm"},
        aggregation={"y": ["ltm", "mad"], "z": ["trimmed_mean", "ltm_std"]},
        ltm_fraction=0.7, trim_fraction=0.2,
    )  # fmt: skip
    for name in ROBUST:
        assert ds[name].attrs["units"] == "cm"
        assert "window" in ds[name].attrs["long_name"]
    assert np.isnan(ds.ltm.sel(target="z")).all() and np.isfinite(ds.ltm.sel(target="y")).all()
    assert np.isnan(ds.trimmed_mean.sel(target="y")).all()
    assert ds.attrs["ltm_fraction"] == 0.7 and ds.attrs["trim_fraction"] == 0.2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ltm_fraction": 0.0, "aggregation": ["ltm"]}, r"ltm_fraction must be in \(0, 1\]"),
        ({"ltm_fraction": 1.5, "aggregation": ["ltm"]}, r"ltm_fraction must be in"),
        ({"ltm_fraction": "a", "aggregation": ["ltm"]}, r"ltm_fraction must be a number"),
        ({"trim_fraction": 0.5, "aggregation": ["trimmed_mean"]}, r"trim_fraction must be in"),
        ({"ltm_fraction": 0.7}, r"ltm_fraction shapes the 'ltm' and 'ltm_std'"),
        ({"trim_fraction": 0.2, "aggregation": ["ltm"]}, r"trim_fraction shapes"),
        ({"aggregation": ["lts"]}, r"choose from \[.*'trimmed_mean'\]"),
        ({"clip_center": "median"}, r"give n_sigma_cut too"),
        ({"clip_scale": "std", "n_sigma_cut": 3}, r"clip_scale must be one of"),
        (
            {"clip_center": "median", "clip_scale": "mad", "n_sigma_cut": 3, "max_iter": 2},
            r"max_iter does not apply",
        ),
    ],
)
def test_bad_robust_options_are_refused_naming_them(options, message):
    df = outlier_frame(0.0, n=200)
    with pytest.raises((ValueError, TypeError), match=message):
        xslide.fit(df, dims=["b"], targets=["y"], window={"b": 1}, **options)


def test_statistics_input_refuses_the_robust_aggregates():
    df = outlier_frame(0.0, n=500)
    stats = xslide.bin_stats(df, ["b"], ["y"])
    with pytest.raises(ValueError, match="robust aggregates"):
        xslide.fit(stats, window={"b": 1}, aggregation=["ltm"])


def _clip_oracle(x, y, kw, n_sigma, center, scale, max_iter, weighted):
    """Explicit clipping of one window: median/MAD of all its rows (or the previous fit and
    its rmse), rows beyond n_sigma x scale dropped, WLS on the rest; returns (coef, n kept)."""
    design = np.column_stack([np.ones_like(x), x])
    median = weighted_lower_median(y, kw) if weighted else np.median(y)
    mad = 1.4826 * (
        weighted_lower_median(np.abs(y - median), kw) if weighted else np.median(np.abs(y - median))
    )

    def wls(keep):
        fit = weighted_fit(x[keep, None], y[keep], kw[keep], 10)
        return fit.coef, fit.rmse

    keep = np.ones(y.size, dtype=bool)
    coef, rmse = wls(keep)
    for _ in range(max_iter):
        middle = median if center == "median" else design @ coef
        limit = n_sigma * (mad if scale == "mad" else rmse)
        if not limit > 0:
            break
        again = np.abs(y - middle) <= limit
        if (again == keep).all():
            break
        keep = again
        coef, rmse = wls(keep)
    return coef, keep.sum()


@pytest.mark.parametrize(
    ("center", "scale"), [("median", "mad"), ("median", "rmse"), ("fit", "mad")]
)
@pytest.mark.parametrize("kernel", ["uniform", "gaussian"])
def test_median_and_mad_clipping_equals_the_explicit_cut_and_fit(center, scale, kernel):
    rng = np.random.default_rng(11)
    n = 3000
    df = pd.DataFrame({"b": rng.integers(0, 6, n), "x": rng.normal(size=n)})
    df["y"] = 1.0 + 0.5 * df.x + rng.normal(0, 0.2, n)
    bad = rng.random(n) < 0.1
    df.loc[bad, "y"] += rng.uniform(1.0, 5.0, bad.sum())
    max_iter = 1 if (center, scale) == ("median", "mad") else 3
    extra = {} if max_iter == 1 else {"max_iter": max_iter}
    out = xslide.make_sliding_window_fit(
        df, ["b"], {"b": 1}, ["y"], ["x"], n_sigma_cut=2.5, clip_center=center,
        clip_scale=scale, kernel=kernel, **extra,
    )  # fmt: skip
    assert out.attrs["clip_center"] == center and out.attrs["clip_scale"] == scale
    assert out.attrs["max_iter"] == max_iter
    extent = {"b": (0, 5)}
    for row, (_, idx, kw) in zip(
        out.itertuples(), gathered_windows(df, ["b"], [1], "truncate", kernel, extent), strict=True
    ):
        coef, kept = _clip_oracle(
            df.x.to_numpy()[idx], df.y.to_numpy()[idx], kw, 2.5, center, scale, max_iter,
            kernel != "uniform",
        )  # fmt: skip
        assert row.y_n_fitted == kept
        assert row.y_n_rejected == idx.size - kept
        np.testing.assert_allclose([row.y_intercept, row.y_slope_x], coef, rtol=1e-9)


def test_median_and_mad_clipping_ignores_outliers_that_pull_the_first_fit():
    rng = np.random.default_rng(5)
    n = 4000
    df = pd.DataFrame({"b": rng.integers(0, 4, n), "x": rng.normal(size=n)})
    df["y"] = 2.0 + rng.normal(0, 0.1, n)
    bad = rng.random(n) < 0.3  # so many that the all-rows fit's rmse hides them
    df.loc[bad, "y"] += 3.0
    kwargs = {"n_sigma_cut": 3.0}
    around_fit = xslide.make_sliding_window_fit(df, ["b"], {}, ["y"], [], **kwargs)
    alice = xslide.make_sliding_window_fit(
        df, ["b"], {}, ["y"], [], clip_center="median", clip_scale="mad", **kwargs
    )
    assert (around_fit.y_intercept - 2.0).abs().min() > 0.5
    np.testing.assert_allclose(alice.y_intercept, 2.0, atol=0.01)


def test_the_command_line_takes_the_robust_options(tmp_path):
    from xslide import cli

    df = outlier_frame(0.1, n=4000)
    df.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "out.parquet"
    code = cli.main([
        "fit", str(tmp_path / "rows.csv"), "--dims", "b", "--targets", "y", "--window", "b=1",
        "--aggregations", "ltm,mad,trimmed_mean", "--ltm-fraction", "0.7",
        "--trim-fraction", "0.2", "--n-sigma-cut", "3", "--clip-center", "median",
        "--clip-scale", "mad", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    frame = pd.read_parquet(out)
    expected = xslide.make_sliding_window_fit(
        df, ["b"], {"b": 1}, ["y"], [], aggregation_functions={"y": ["ltm", "mad", "trimmed_mean"]},
        ltm_fraction=0.7, trim_fraction=0.2, n_sigma_cut=3, clip_center="median", clip_scale="mad",
    )  # fmt: skip
    expected = expected.rename(columns={"y_intercept": "y_coef_Intercept"})
    for name in ("y_ltm", "y_mad", "y_trimmed_mean", "y_coef_Intercept", "y_n_rejected"):
        np.testing.assert_allclose(frame[name], expected[name], rtol=1e-12)


def test_blocks_of_centers_with_their_halo_rows_equal_the_whole_grid():
    from xslide import aggregates

    rng = np.random.default_rng(2)
    shape = (7, 5)
    window = Window(shape, (1, 2), ("mirror", "periodic"), rng.uniform(0.5, 2.0, (3, 5)))
    counts = rng.integers(0, 5, 35)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    ys = rng.normal(size=(2, offsets[-1]))
    ys[0, ::7] = np.nan
    index = WindowIndex(window, offsets)
    centers = np.arange(35)
    for backend in ("numba", "numpy"):
        runs = aggregates.sorted_runs(ys, offsets, backend)
        whole = window_robust(centers, index, runs, 200, backend)
        work = (index, runs, 200, backend, aggregates.DEFAULT_FRACTIONS)
        for block in np.array_split(centers, 4):
            shipped = aggregates._halo(work, block)
            assert shipped[1].values.shape[1] < offsets[-1]  # only the halo's rows travel
            np.testing.assert_array_equal(aggregates._block(shipped, block), whole[block])


@pytest.mark.slow
@pytest.mark.needs_numba
def test_robust_aggregates_on_a_dask_cluster_equal_the_serial_run():
    distributed = pytest.importorskip("distributed")
    df = outlier_frame(0.1, n=6000)
    df["c"] = df.index % 5
    kwargs = {"aggregation": ["ltm", "ltm_std", "mad", "trimmed_mean"], "kernel": "gaussian"}
    serial = xslide.fit(df, dims=["b", "c"], targets=["y"], window={"b": 1, "c": 1}, **kwargs)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_cluster = xslide.fit(
            df, dims=["b", "c"], targets=["y"], window={"b": 1, "c": 1},
            partition_strategy=client, **kwargs,
        )  # fmt: skip
    for name in ROBUST:
        np.testing.assert_array_equal(on_cluster[name].values, serial[name].values)


@pytest.mark.needs_numba
@pytest.mark.parametrize("values", ["normal", "ties", "few_values", "outliers", "sentinels"])
def test_large_windows_take_the_bracketed_path_with_the_same_values(values):
    """Windows of thousands of values (the numba kernel brackets the tails, the median and
    the MAD from a sample; a missed bracket falls back) equal the numpy sort; -999 sentinels
    around values of spread 0.01 (the LTM block then summed alone) keep rtol 1e-9."""
    rng = np.random.default_rng(7)
    window = Window((5, 4), (1, 1), ("mirror", "truncate"), np.ones((3, 3)))
    offsets = np.concatenate([[0], np.cumsum(rng.integers(50, 400, 20))])
    ys = rng.normal(size=(1, offsets[-1]))
    if values == "ties":
        ys = ys.round(1)
    elif values == "few_values":
        ys = ys.round(0)
    elif values == "outliers":
        ys[rng.random(ys.shape) < 0.1] += 20.0
    elif values == "sentinels":
        ys = 5.0 + 0.01 * ys
        ys[rng.random(ys.shape) < 0.15] = -999.0
    ys[rng.random(ys.shape) < 0.05] = np.nan
    index = WindowIndex(window, offsets)
    centers = np.arange(20)
    for fractions in (Fractions(0.8, 0.1), Fractions(0.7, 0.3), Fractions(0.9, 0.05)):
        fast = window_robust(centers, index, ys, offsets[-1], "numba", fractions)
        plain = window_robust(centers, index, ys, offsets[-1], "numpy", fractions)
        np.testing.assert_allclose(fast, plain, rtol=1e-9, atol=1e-9)


@pytest.mark.needs_numba
@pytest.mark.parametrize(
    "need", [("mad", "median"), ("trimmed_mean", "median"), ("ltm", "median"), ("median",)]
)
def test_asking_for_some_aggregates_computes_those_with_the_same_values(need):
    """Fractions.need names the fields wanted: on the bracketed path the others are left NaN
    (the MAD alone or the trimmed mean alone skips the LTM's sorted tails), the asked ones
    equal those of the whole set."""
    rng = np.random.default_rng(11)
    window = Window((5, 4), (1, 1), ("mirror", "truncate"), np.ones((3, 3)))
    offsets = np.concatenate([[0], np.cumsum(rng.integers(200, 400, 20))])
    ys = rng.normal(size=(1, offsets[-1]))
    ys[rng.random(ys.shape) < 0.1] += 20.0
    index = WindowIndex(window, offsets)
    centers = np.arange(20)
    whole = window_robust(centers, index, ys, offsets[-1], "numba", Fractions(0.8, 0.1))
    some = window_robust(centers, index, ys, offsets[-1], "numba", Fractions(0.8, 0.1, need))
    for f, name in enumerate(FIELDS):
        if name in need or (name == "ltm_std" and "ltm" in need):
            np.testing.assert_allclose(some[..., f], whole[..., f], rtol=1e-12, err_msg=name)
        else:
            assert np.isnan(some[..., f]).all(), name


@pytest.mark.needs_numba
@pytest.mark.parametrize("size", [10, 64, 300, 2000])
def test_the_radix_sort_of_window_values_equals_numpy_sort(size):
    """The comparison-free sort of the LTM's tails and the samples orders negatives,
    signed zeros, ties, subnormals and wide ranges as np.sort."""
    from xslide.aggregates import _radix_sort

    rng = np.random.default_rng(size)
    a = rng.normal(size=size) * 10.0 ** rng.integers(-300, 300, size)
    a[::7] = a[::7].round(0)  # ties and signed zeros
    a[1::11] = -0.0
    a[2::13] = 5e-324
    a[3::17] = -np.inf
    expected = np.sort(a)
    _radix_sort(a)
    np.testing.assert_array_equal(a, expected)
    assert np.all(a[1:] >= a[:-1])


@pytest.mark.needs_numba
@pytest.mark.parametrize("size", [10, 64, 300, 2000, 70_000])
@pytest.mark.parametrize("values", ["normal", "outliers", "ties", "specials"])
def test_the_key_sort_of_the_tails_equals_numpy_sort(size, values):
    """The tails' sort (16-bit keys linear in the value, two radix passes, an insertion pass
    that gives up to the radix sort where keys crowd) orders any values as np.sort: smooth
    ones, a few far outliers squeezing the rest into few keys, ties, infinities, signed zeros
    and subnormals; over 65536 values it is the radix sort."""
    from xslide.aggregates import _key_sort

    rng = np.random.default_rng(size)
    a = rng.normal(size=size)
    if values == "outliers":
        a[:: max(size // 20, 1)] = -999.0 * rng.random(len(a[:: max(size // 20, 1)]))
        a[1] = np.finfo(float).max
    elif values == "ties":
        a = a.round(1)
    elif values == "specials":
        a[::7] = -0.0
        a[1::11] = 5e-324
        a[2::13] = np.inf
        a[3::17] = -np.inf
    dest = np.full(size + 3, 7.0)
    keys, spare = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
    before = a.copy()
    _key_sort(a, dest, keys, spare, np.empty(1024, dtype=np.int64))
    np.testing.assert_array_equal(dest[:size], np.sort(before))
    np.testing.assert_array_equal(a, before)  # the input is left as it was
    assert (dest[size:] == 7.0).all()  # and nothing is written past its length


@pytest.mark.needs_numba
@pytest.mark.parametrize("drift", [0.0, 0.5, 5.0])
def test_the_tails_do_not_depend_on_the_last_window(drift):
    """The tails' thresholds follow the last window's (a window alone takes them from a
    sample, a window after another from it, hit or missed; a drift of the values from bin to
    bin makes them miss): the aggregates are bit for bit those of each window alone."""
    rng = np.random.default_rng(5)
    window = Window((40,), (3,), ("truncate",), np.ones(7))
    offsets = np.concatenate([[0], np.cumsum(rng.integers(150, 450, 40))])
    bins = np.repeat(np.arange(40), np.diff(offsets))
    ys = (rng.normal(size=offsets[-1]) + drift * bins)[None, :]
    ys[0, rng.random(offsets[-1]) < 0.02] = -999.0
    index = WindowIndex(window, offsets)
    centers = np.arange(40)
    for need in (FIELDS, ("trimmed_mean",), ("ltm", "mad")):
        fractions = Fractions(0.8, 0.1, need)
        together = window_robust(centers, index, ys, offsets[-1], "numba", fractions)
        alone = [window_robust(centers[i : i + 1], index, ys, offsets[-1], "numba", fractions)
                 for i in centers]  # fmt: skip
        np.testing.assert_array_equal(together, np.concatenate(alone))
        plain = window_robust(centers, index, ys, offsets[-1], "numpy", fractions)
        wanted = np.isin(FIELDS, need) | (np.isin("ltm", need) & (np.array(FIELDS) == "ltm_std"))
        np.testing.assert_allclose(together[..., wanted], plain[..., wanted], rtol=1e-9)
