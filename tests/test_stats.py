"""Per-bin sufficient statistics (``xslide.bin_stats``) and their additivity (``combine_stats``).

``bin_stats`` is checked against explicit per-bin sums of the shifted columns, the numba
accumulation kernels against the numpy ones and against each other; statistics of disjoint parts
add up to those of the union, and a fit of combined statistics equals the fit of the union's rows.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xslide

DIMS = ["xBin", "yBin"]


TARGETS = ["y", "z"]


PREDICTORS = ["x", "x2"]


SUM_VARS = ["sum_w", "sum_w2", "sum_wx", "sum_wy", "sum_wxx", "sum_wxy", "sum_wy2"]


INT_VARS = ["count", "rows"]


def make_rows(seed: int, n: int = 400, weights: bool = True, bad: bool = True) -> pd.DataFrame:
    """Rows on a 5 x 4 grid (xBin 1..5, yBin -3..0) with offsets, NaN/inf cells and weights."""
    rng = np.random.default_rng(seed)
    x = rng.normal(50.0, 3.0, n)  # a large mean against its spread: the shift matters
    x2 = rng.uniform(-1.0, 1.0, n)
    df = pd.DataFrame(
        {
            "xBin": rng.integers(1, 6, n).astype(np.int64),
            "yBin": rng.integers(-3, 1, n).astype(np.int64),
            "x": x,
            "x2": x2,
            "y": 1000.0 + 0.7 * x - 2.0 * x2 + rng.normal(0.0, 1.0, n),
            "z": rng.normal(-3.0, 2.0, n),
        }
    )
    if weights:
        df["w"] = rng.uniform(0.1, 4.0, n)
    if bad:
        df.loc[rng.random(n) < 0.10, "y"] = np.nan
        df.loc[rng.random(n) < 0.05, "z"] = rng.choice([np.inf, -np.inf, np.nan])
        df.loc[rng.random(n) < 0.03, "x2"] = np.nan
        if weights:
            df.loc[rng.random(n) < 0.03, "w"] = np.nan
    return df


def grid_of(df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {d: np.arange(df[d].min(), df[d].max() + 1) for d in DIMS}


def explicit_stats(
    df: pd.DataFrame,
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    weights: str | None,
    selected: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Per-bin sums of the shifted columns, one bin at a time with boolean masks."""
    selected = np.ones(len(df), dtype=bool) if selected is None else selected
    grid = grid_of(df.loc[selected])
    shape = tuple(len(v) for v in grid.values())
    p = len(PREDICTORS) + 1
    nt = len(TARGETS)
    out = {
        "count": np.zeros((*shape, nt), dtype=np.int64),
        "sum_w": np.zeros((*shape, nt)),
        "sum_w2": np.zeros((*shape, nt)),
        "sum_wy": np.zeros((*shape, nt)),
        "sum_wy2": np.zeros((*shape, nt)),
        "sum_wx": np.zeros((*shape, nt, p)),
        "sum_wxy": np.zeros((*shape, nt, p)),
        "sum_wxx": np.zeros((*shape, nt, p, p)),
        "rows": np.zeros(shape, dtype=np.int64),
    }
    x = df[PREDICTORS].to_numpy()
    w = df[weights].to_numpy() if weights else np.ones(len(df))
    for (i, bx), (j, by) in itertools.product(enumerate(grid["xBin"]), enumerate(grid["yBin"])):
        in_bin = selected & (df["xBin"].to_numpy() == bx) & (df["yBin"].to_numpy() == by)
        out["rows"][i, j] = in_bin.sum()
        for t, name in enumerate(TARGETS):
            y = df[name].to_numpy()
            ok = in_bin & np.isfinite(y) & np.isfinite(w) & np.isfinite(x).all(axis=1)
            wv = w[ok]
            z = np.column_stack([np.ones(ok.sum()), x[ok] - x_ref[1:]])
            ys = y[ok] - y_ref[t]
            out["count"][i, j, t] = ok.sum()
            out["sum_w"][i, j, t] = wv.sum()
            out["sum_w2"][i, j, t] = (wv**2).sum()
            out["sum_wy"][i, j, t] = (wv * ys).sum()
            out["sum_wy2"][i, j, t] = (wv * ys**2).sum()
            out["sum_wx"][i, j, t] = (wv[:, None] * z).sum(axis=0)
            out["sum_wxy"][i, j, t] = (wv[:, None] * z * ys[:, None]).sum(axis=0)
            out["sum_wxx"][i, j, t] = (wv[:, None, None] * z[:, :, None] * z[:, None, :]).sum(0)
    return out


def assert_sums_close(actual: xr.DataArray, expected: xr.DataArray | np.ndarray, rtol: float):
    """rtol on every element, with an absolute floor of rtol x the variable's largest value
    (shifted sums can cancel to ~0, where only an absolute comparison is meaningful)."""
    a = np.asarray(actual)
    e = np.asarray(expected)
    atol = rtol * max(1.0, float(np.abs(e).max(initial=0.0)))
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)


def stats_of(df: pd.DataFrame, **kwargs) -> xr.Dataset:
    return xslide.bin_stats(df, DIMS, TARGETS, PREDICTORS, **kwargs)


# --------------------------------------------------------------------------------------------
# bin_stats against explicit sums
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=pytest.mark.needs_numba)])
@pytest.mark.parametrize("weights", [None, "w"])
def test_bin_stats_equal_explicit_shifted_sums_per_bin(backend: str, weights: str | None) -> None:
    df = make_rows(seed=3)
    rng = np.random.default_rng(30)
    selected = rng.random(len(df)) < 0.85
    stats = stats_of(df, weights=weights, selection=selected, backend=backend)
    assert stats.attrs["backend_used"] == backend
    x_ref = stats["x_reference"].values
    y_ref = stats["y_reference"].values
    assert x_ref[0] == 0.0  # the intercept column is never shifted
    assert list(stats["term"].values) == ["Intercept", *PREDICTORS]
    assert list(stats["target"].values) == TARGETS
    expected = explicit_stats(df, x_ref, y_ref, weights, selected)
    for d, values in grid_of(df.loc[selected]).items():
        np.testing.assert_array_equal(stats[d].values, values)
    order = {
        "count": (*DIMS, "target"),
        "sum_w": (*DIMS, "target"),
        "sum_w2": (*DIMS, "target"),
        "sum_wy": (*DIMS, "target"),
        "sum_wy2": (*DIMS, "target"),
        "sum_wx": (*DIMS, "target", "term"),
        "sum_wxy": (*DIMS, "target", "term"),
        "sum_wxx": (*DIMS, "target", "term", "term_"),
        "rows": tuple(DIMS),
    }
    for name, dims in order.items():
        actual = stats[name].transpose(*dims).values
        if name in INT_VARS:
            np.testing.assert_array_equal(actual, expected[name], err_msg=name)
        else:
            assert_sums_close(actual, expected[name], rtol=1e-12)


def test_nan_in_a_target_excludes_the_row_from_that_target_only() -> None:
    df = make_rows(seed=4, bad=False)
    df.loc[df.index[::5], "y"] = np.nan  # y loses every 5th row, z keeps them
    df.loc[df.index[1], "x2"] = np.inf  # a bad predictor drops the row for both targets
    stats = stats_of(df, weights="w")
    count_y = stats["count"].sel(target="y")
    count_z = stats["count"].sel(target="z")
    n_y_bad = int((df["y"].isna() | np.isinf(df["x2"])).sum())
    assert int(count_y.sum()) == len(df) - n_y_bad
    assert int(count_z.sum()) == len(df) - 1
    assert (count_z >= count_y).all() and (count_z > count_y).any()
    # rows counts every selected row, valid or not
    np.testing.assert_array_equal(
        stats["rows"].values,
        df.groupby(DIMS).size().unstack(fill_value=0).to_numpy(),
    )
    assert int(stats["rows"].sum()) == len(df)
    assert stats.attrs["n_rows_invalid_y"] == n_y_bad
    assert stats.attrs["n_rows_invalid_z"] == 1
    # the valid rows of y: its sums never see a NaN
    assert np.isfinite(stats["sum_wy2"]).all()


def test_rows_counts_selected_rows_only() -> None:
    df = make_rows(seed=5)
    selected = (df["x2"] > 0).fillna(False)
    stats = stats_of(df, selection=selected)
    expected = df[selected].groupby(DIMS).size().unstack(fill_value=0)
    np.testing.assert_array_equal(stats["rows"].values, expected.to_numpy())
    assert stats.attrs["n_rows_not_selected"] == int((~selected).sum())


def test_given_reference_is_used_as_the_shift() -> None:
    df = make_rows(seed=6, bad=False)
    reference = {"x": 49.0, "x2": 0.25, "y": 1030.0, "z": -2.5}
    stats = stats_of(df, reference=reference)
    np.testing.assert_array_equal(stats["x_reference"].values, [0.0, 49.0, 0.25])
    np.testing.assert_array_equal(stats["y_reference"].values, [1030.0, -2.5])
    sum_wy = stats["sum_wy"].sel(target="y").sum().item()
    assert sum_wy == pytest.approx((df["y"] - 1030.0).sum(), rel=1e-12)


# --------------------------------------------------------------------------------------------
# Additivity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [None, "w"])
def test_stats_of_disjoint_subsets_add_up_to_stats_of_union(weights: str | None) -> None:
    df = make_rows(seed=8)
    in_a = np.random.default_rng(80).random(len(df)) < 0.4
    reference = {"x": 50.0, "x2": 0.0, "y": 1035.0, "z": -3.0}
    extent = {"xBin": (0, 6), "yBin": (-4, 1)}  # wider than the data on purpose
    kwargs = {"weights": weights, "reference": reference, "extent": extent}
    stats_a = stats_of(df[in_a], **kwargs)
    stats_b = stats_of(df[~in_a], **kwargs)
    union = stats_of(df, **kwargs)
    assert union.sizes["xBin"] == 7 and union.sizes["yBin"] == 6
    for name in INT_VARS:
        xr.testing.assert_equal(stats_a[name] + stats_b[name], union[name])
    for name in SUM_VARS:
        assert_sums_close(stats_a[name] + stats_b[name], union[name].values, rtol=1e-12)
    # not vacuous: each part holds a real share of the rows
    assert 0 < int(stats_a["rows"].sum()) < int(union["rows"].sum())


def split_ranges(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two disjoint parts whose bin ranges differ in every dim; neither spans the union's grid."""
    in_a = (df["xBin"] <= 3) & (df["yBin"] <= -1)
    in_b = ~in_a & (df["xBin"] >= 3) & (df["yBin"] >= -2)
    return df[in_a], df[in_b]


@pytest.mark.parametrize("same_ranges", [True, False], ids=["same_grid", "grid_union"])
@pytest.mark.parametrize("weights", [None, "w"])
def test_fit_of_combined_stats_equals_fit_of_union_rows(
    same_ranges: bool, weights: str | None
) -> None:
    df = make_rows(seed=9, n=500)
    if same_ranges:
        in_a = np.random.default_rng(91).random(len(df)) < 0.5
        part_a, part_b = df[in_a], df[~in_a]
    else:
        part_a, part_b = split_ranges(df)
        df = pd.concat([part_a, part_b])
        for d in DIMS:
            assert part_a[d].max() < df[d].max() and part_b[d].min() > df[d].min()
    # own default references: every part is shifted differently
    stats_a = stats_of(part_a, weights=weights)
    stats_b = stats_of(part_b, weights=weights)
    assert not np.array_equal(stats_a["y_reference"].values, stats_b["y_reference"].values)
    copies = [stats_a.copy(deep=True), stats_b.copy(deep=True)]
    combined = xslide.combine_stats([stats_a, stats_b])
    for part, copy in zip([stats_a, stats_b], copies, strict=True):
        xr.testing.assert_identical(part, copy)  # the parts are left as they were
    union_rows = stats_of(df, weights=weights)
    for d in DIMS:
        np.testing.assert_array_equal(combined[d].values, union_rows[d].values)
    for name in INT_VARS:
        np.testing.assert_array_equal(
            combined[name].transpose(*union_rows[name].dims).values, union_rows[name].values
        )
    assert combined.attrs["n_rows_input"] == len(df)
    # the combined sums are the union's sums under the first part's references
    same_ref = stats_of(
        df,
        weights=weights,
        reference=dict(
            zip(
                [*PREDICTORS, *TARGETS],
                [*stats_a["x_reference"].values[1:], *stats_a["y_reference"].values],
                strict=True,
            )
        ),
    )
    for name in SUM_VARS:
        assert_sums_close(
            combined[name].transpose(*same_ref[name].dims), same_ref[name].values, rtol=1e-10
        )

    for window in ({"xBin": 1, "yBin": 1}, {"yBin": 2}):
        refit = xslide.fit(combined, window=window, min_entries=5)
        direct = xslide.fit(
            df, DIMS, TARGETS, PREDICTORS, window=window, weights=weights, min_entries=5
        )
        for name in ("coef", "stderr", "mean", "std"):
            xr.testing.assert_allclose(
                refit[name].transpose(*direct[name].dims), direct[name], rtol=1e-9, atol=1e-12
            )
        for name in ("entries", "quality_flag", "n_rows_aggregated"):
            xr.testing.assert_equal(refit[name].transpose(*direct[name].dims), direct[name])
        assert np.isfinite(direct["coef"]).sum() > 0


# --------------------------------------------------------------------------------------------
# numba backend against numpy, determinism
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [None, "w"])
@pytest.mark.needs_numba
def test_numba_bin_stats_equal_numpy_bin_stats(weights: str | None) -> None:
    df = make_rows(seed=11, n=700)
    fast = stats_of(df, weights=weights, backend="numba")
    slow = stats_of(df, weights=weights, backend="numpy")
    assert fast.attrs["backend_used"] == "numba"
    assert slow.attrs["backend_used"] == "numpy"
    for name in INT_VARS:
        xr.testing.assert_equal(fast[name], slow[name])
    for name in SUM_VARS:
        assert_sums_close(fast[name], slow[name].values, rtol=1e-13)
    for name in ("x_reference", "y_reference"):
        xr.testing.assert_equal(fast[name], slow[name])
    for t in TARGETS:
        key = f"n_rows_invalid_{t}"
        assert fast.attrs[key] == slow.attrs[key] > 0


@pytest.mark.needs_numba
def test_numba_bin_stats_are_bitwise_reproducible() -> None:
    df = make_rows(seed=12, n=2000)
    first = stats_of(df, weights="w", backend="numba")
    second = stats_of(df, weights="w", backend="numba")
    xr.testing.assert_identical(first, second)
    for name in SUM_VARS:
        assert first[name].values.tobytes() == second[name].values.tobytes(), name


@pytest.mark.needs_numba
def test_numba_bin_stats_do_not_depend_on_thread_count(monkeypatch) -> None:
    from xslide import grid, stats

    numba = pytest.importorskip("numba")
    df = make_rows(seed=13, n=2000)
    serial_only = stats_of(df, weights="w", backend="numba")  # few rows: one thread
    for module in (grid, stats):  # the parallel passes, even for these few rows
        monkeypatch.setattr(module, "_PARALLEL_ROWS", 0)
    monkeypatch.setattr(grid, "_BLOCK_ROWS", 300)
    monkeypatch.setattr(stats, "_CHUNK_BYTES", 1000)  # more bin ranges than threads
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = stats_of(df, weights="w", backend="numba")
    finally:
        numba.set_num_threads(threads)
    parallel = stats_of(df, weights="w", backend="numba")
    for name in SUM_VARS:
        assert serial[name].values.tobytes() == parallel[name].values.tobytes(), name
        assert serial[name].values.tobytes() == serial_only[name].values.tobytes(), name
    xr.testing.assert_identical(serial, parallel)


@pytest.mark.needs_numba  # the unrolled kernel is generated numba source
@pytest.mark.parametrize("q", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_chunks", [1, 3])
def test_unrolled_row_pass_is_bit_identical_to_the_generic_kernel(q, weighted, n_chunks):
    from xslide import design, stats
    from xslide._numba import run_chunks

    rng = np.random.default_rng(q)
    n, n_bins = 5000, 37  # more rows than one scan of the kernels (stats._SCAN)
    flat = rng.integers(-1, n_bins, n)
    x = rng.normal(size=(q, n)) * 3 + 1
    y = rng.normal(size=(2, n))
    x[:, :5] = np.nan
    y[1, 10:20] = np.inf
    w = rng.uniform(0, 2, n) if weighted else np.ones(1)
    x_ref, y_ref = np.full(q, 0.5), np.array([0.1, -0.2])
    xs = tuple(design.read_only(row) for row in x)
    ys = tuple(design.read_only(row) for row in y)
    w = design.read_only(w)
    module = stats._unrolled_kernel(q, 2)
    if n_chunks == 1:
        unrolled = functools.partial(module.serial, flat, xs, ys)
    else:
        unrolled = functools.partial(run_chunks, module.kernel, n_chunks, flat, n_bins, xs, ys)
    generic = functools.partial(run_chunks, stats._accumulate_numba, n_chunks, flat, n_bins, x, y)
    results = []
    for kernel in (unrolled, generic):
        out = np.zeros((n_bins, 2, stats.n_stats(q + 1)))
        invalid = np.zeros((n_chunks, 2), dtype=np.int64)
        counts = np.zeros(n_bins, dtype=np.int64)
        kernel(w, weighted, x_ref, y_ref, out, invalid, counts)
        results.append((out, invalid.sum(axis=0)))
        np.testing.assert_array_equal(counts, np.bincount(flat[flat >= 0], minlength=n_bins))
    assert results[0][0][..., 0].sum() > 0
