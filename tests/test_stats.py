"""Sufficient statistics per bin, their additivity, and the kernels under them.

``xslide.bin_stats`` is checked against explicit per-bin sums of the shifted columns, the numba
kernels against the numpy ones (and against plain loops), and the low-level pieces (bin index,
median selection, windowed sums) against obvious implementations.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numba
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xslide
from xslide.grid import bin_index
from xslide.rows import WindowIndex, _median_of, window_median
from xslide.window import Window, window_sum

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


@pytest.mark.parametrize("backend", ["numpy", "numba"])
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


def test_numba_bin_stats_are_bitwise_reproducible() -> None:
    df = make_rows(seed=12, n=2000)
    first = stats_of(df, weights="w", backend="numba")
    second = stats_of(df, weights="w", backend="numba")
    xr.testing.assert_identical(first, second)
    for name in SUM_VARS:
        assert first[name].values.tobytes() == second[name].values.tobytes(), name


def test_numba_bin_stats_do_not_depend_on_thread_count() -> None:
    df = make_rows(seed=13, n=2000)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = stats_of(df, weights="w", backend="numba")
    finally:
        numba.set_num_threads(threads)
    parallel = stats_of(df, weights="w", backend="numba")
    for name in SUM_VARS:
        assert serial[name].values.tobytes() == parallel[name].values.tobytes(), name


# --------------------------------------------------------------------------------------------
# The bin index
# --------------------------------------------------------------------------------------------


def random_flat(seed: int, n_rows: int, n_bins: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flat = rng.integers(-1, n_bins, n_rows).astype(np.int64)
    if n_bins > 3:
        flat[flat == n_bins - 1] = -1  # the last bin stays empty
        flat[flat == 1] = 2  # and bin 1
    return flat


@pytest.mark.parametrize(
    ("n_rows", "n_bins"), [(0, 4), (1, 1), (50, 1), (500, 17), (3000, 200), (40, 300)]
)
def test_bin_index_lists_each_bins_rows_in_row_order(n_rows: int, n_bins: int) -> None:
    flat = random_flat(n_rows + n_bins, n_rows, n_bins)
    order, offsets = bin_index(flat, n_bins, "numba")
    order_np, offsets_np = bin_index(flat, n_bins, "numpy")
    np.testing.assert_array_equal(order, order_np)
    np.testing.assert_array_equal(offsets, offsets_np)
    assert offsets.shape == (n_bins + 1,)
    assert offsets[0] == 0
    assert offsets[-1] == order.size == int((flat >= 0).sum())
    for b in range(n_bins):
        np.testing.assert_array_equal(order[offsets[b] : offsets[b + 1]], np.flatnonzero(flat == b))
    assert not np.isin(np.flatnonzero(flat == -1), order).any()


def test_bin_index_of_only_unselected_rows_is_empty() -> None:
    flat = np.full(10, -1, dtype=np.int64)
    for backend in ("numba", "numpy"):
        order, offsets = bin_index(flat, 5, backend)
        assert order.size == 0
        np.testing.assert_array_equal(offsets, np.zeros(6))


# --------------------------------------------------------------------------------------------
# The median kernel
# --------------------------------------------------------------------------------------------

SIZES = [*range(1, 51), 1000, 2047, 3000]


def median_cases(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [
        rng.normal(size=n),
        rng.integers(0, 3, n).astype(np.float64),  # heavy duplicates
        rng.integers(-1, 1, n).astype(np.float64),  # two values
        np.full(n, 7.0),
        np.sort(rng.integers(0, 10, n).astype(np.float64)),  # sorted with duplicates
        np.sort(rng.normal(size=n))[::-1].copy(),  # descending
    ]


@pytest.mark.parametrize("n", SIZES)
def test_median_of_equals_numpy_median(n: int) -> None:
    rng = np.random.default_rng(n)
    junk = 5
    for values in median_cases(n, rng):
        buffer = np.empty(n + junk)
        buffer[:n] = values
        buffer[n:] = -1e300  # beyond n: must be neither read nor written
        result = _median_of(buffer, n)
        assert result == np.median(values), (n, values[:10])
        np.testing.assert_array_equal(np.sort(buffer[:n]), np.sort(values))
        np.testing.assert_array_equal(buffer[n:], np.full(junk, -1e300))


def test_median_of_nothing_is_nan() -> None:
    assert np.isnan(_median_of(np.empty(3), 0))


def window_median_inputs(
    seed: int, shape: tuple[int, ...], n_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat ids (some rows unselected, some bins empty), the bin index and two targets."""
    rng = np.random.default_rng(seed)
    n_bins = int(np.prod(shape))
    flat = rng.integers(-1, n_bins, n_rows).astype(np.int64)
    flat[flat == 0] = -1  # the first bin is empty
    y = np.vstack(
        [rng.normal(size=n_rows), rng.integers(0, 4, n_rows).astype(np.float64)]
    )  # a continuous and an integer-valued target
    y[0, rng.random(n_rows) < 0.1] = np.nan
    order, offsets = bin_index(flat, n_bins, "numpy")
    ys = y[:, order]
    return flat, order, offsets, y, ys


def brute_force_window_median(
    flat: np.ndarray, y: np.ndarray, shape: tuple[int, ...], half: Sequence[int]
) -> np.ndarray:
    pos = np.column_stack(np.unravel_index(np.where(flat >= 0, flat, 0), shape))
    out = np.empty((int(np.prod(shape)), y.shape[0]))
    for c, center in enumerate(itertools.product(*[range(n) for n in shape])):
        inside = (flat >= 0) & np.all(np.abs(pos - np.array(center)) <= np.array(half), axis=1)
        for t in range(y.shape[0]):
            v = y[t, inside]
            v = v[~np.isnan(v)]
            out[c, t] = np.median(v) if v.size else np.nan
    return out


@pytest.mark.parametrize(
    ("shape", "half", "n_rows"),
    [
        ((9,), (2,), 40),
        ((4, 5), (1, 2), 80),
        ((3, 4, 3), (1, 0, 1), 120),
        ((3, 2, 2), (5, 5, 5), 120),
        ((4, 3), (1, 1), 6000),  # windows of thousands of values (the large-window path)
    ],
    ids=str,
)
def test_window_median_numba_equals_numpy(
    shape: tuple[int, ...], half: tuple[int, ...], n_rows: int
) -> None:
    flat, _, offsets, y, ys = window_median_inputs(len(shape), shape, n_rows)
    n_bins = int(np.prod(shape))
    centers = np.arange(n_bins)
    valid_per_bin = np.stack(
        [np.bincount(flat[(flat >= 0) & ~np.isnan(row)], minlength=n_bins) for row in y], -1
    ).reshape((*shape, 2))
    max_count = int(window_sum(valid_per_bin.astype(np.float64), half).max())
    window = Window(shape, half, ("truncate",) * len(shape), np.ones([2 * w + 1 for w in half]))
    index = WindowIndex(window, offsets)
    fast = window_median(centers, index, ys, max_count, "numba")
    slow = window_median(centers, index, ys, max_count, "numpy")
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast, brute_force_window_median(flat, y, shape, half))
    assert np.isfinite(fast).sum() > 0
    # a subset of centers, out of order, gives the same values
    some = np.array([n_bins - 1, 0, n_bins // 2])
    subset = window_median(some, index, ys, max_count, "numba")
    np.testing.assert_array_equal(subset, fast[some])


# --------------------------------------------------------------------------------------------
# The windowed sum
# --------------------------------------------------------------------------------------------


def explicit_window_sum(values: np.ndarray, half: Sequence[int]) -> np.ndarray:
    """Sum of every in-grid neighbour within ±half along the leading axes."""
    shape = values.shape[: len(half)]
    out = np.zeros_like(values)
    offsets = list(itertools.product(*[range(-w, w + 1) for w in half]))
    for idx in np.ndindex(*shape):
        for off in offsets:
            nb = tuple(i + o for i, o in zip(idx, off, strict=True))
            if all(0 <= j < n for j, n in zip(nb, shape, strict=True)):
                out[idx] += values[nb]
    return out


@pytest.mark.parametrize(
    ("shape", "half"),
    [
        ((7,), (1,)),
        ((7,), (10,)),  # window larger than the grid
        ((5, 3), (0, 1)),
        ((4, 6), (2, 7)),
        ((3, 4, 5), (1, 0, 2)),
        ((2, 3, 2), (3, 3, 3)),
        ((4, 5, 3, 2), (1, 1, 0)),  # trailing axes are carried along, not summed
    ],
    ids=str,
)
def test_window_sum_equals_explicit_neighbour_loop(
    shape: tuple[int, ...], half: tuple[int, ...]
) -> None:
    values = np.random.default_rng(sum(shape)).normal(size=shape)
    actual = window_sum(values, half)
    assert actual.shape == values.shape
    np.testing.assert_allclose(actual, explicit_window_sum(values, half), rtol=1e-12, atol=1e-13)


def test_window_sum_of_integers_is_exact() -> None:
    values = np.random.default_rng(2).integers(0, 100, (6, 5, 4)).astype(np.float64)
    half = (2, 1, 3)
    np.testing.assert_array_equal(window_sum(values, half), explicit_window_sum(values, half))
    # a window covering the whole grid sums everything at every bin
    total = window_sum(values, (6, 5, 4))
    np.testing.assert_array_equal(total, np.full(values.shape, values.sum()))


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)], ids=str)
def test_window_sum_with_zero_half_widths_is_identity(shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(1).normal(size=(*shape, 3))
    out = window_sum(values, (0,) * len(shape))
    np.testing.assert_array_equal(out, values)


@pytest.mark.parametrize("q", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_unrolled_row_pass_is_bit_identical_to_the_generic_kernel(q, weighted, tmp_path):
    from xslide import stats

    rng = np.random.default_rng(q)
    n, n_bins = 2000, 37
    flat = rng.integers(-1, n_bins, n)
    x = rng.normal(size=(q, n)) * 3 + 1
    y = rng.normal(size=(2, n))
    x[:, :5] = np.nan
    y[1, 10:20] = np.inf
    w = rng.uniform(0, 2, n) if weighted else np.ones(1)
    x_ref, y_ref = np.full(q, 0.5), np.array([0.1, -0.2])
    results = []
    for kernel in (stats._unrolled_kernel(q), stats._accumulate_numba):
        out = np.zeros((n_bins, 2, stats.n_stats(q + 1)))
        invalid = np.zeros((3, 2), dtype=np.int64)
        kernel(flat, x, y, w, weighted, x_ref, y_ref, n_bins, 3, out, invalid)
        results.append((out, invalid.sum(axis=0)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][0][..., 0].sum() > 0
