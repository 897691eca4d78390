"""Statistics that need the rows themselves, reached through the bin index: the bin index (each
bin's rows, contiguous and in row order), the window index and the halo rows of a block of
centers, and the exact median (the selection kernels and the window medians, numba kernel
against numpy and against brute force)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

import xslide
from xslide.bench import DIMS, SCENARIOS, make_rows
from xslide.grid import bin_index
from xslide.rows import WindowIndex, _median_of, _runs_median, window_median
from xslide.window import Window, window_sum

ARGS = (list(DIMS[:3]), ["y1", "y2"], ["x1", "x2"])


# ---- the bin index ----


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


# ---- the window index and its halo ----


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    df = make_rows(SCENARIOS["small"], seed=5)
    df.loc[[3, 300], "y2"] = np.nan
    return df


def bin_ordered(
    df: pd.DataFrame, dims: Sequence[str], targets: Sequence[str]
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """The grid's shape, the bin index offsets and the targets in bin order, built by hand."""
    bins = df[list(dims)].to_numpy()
    low = bins.min(axis=0)
    shape = tuple(int(n) for n in bins.max(axis=0) - low + 1)
    flat = np.ravel_multi_index(tuple((bins - low).T), shape).astype(np.int64)
    order, offsets = bin_index(flat, int(np.prod(shape)), "numpy")
    return shape, offsets, df[list(targets)].to_numpy().T[:, order].copy()


def test_a_block_of_centers_travels_with_its_halo_rows_only(rows):
    shape, offsets, ys = bin_ordered(rows, ARGS[0], ARGS[1])
    window = Window(shape, (1, 1, 0), ("truncate",) * 3, np.ones((3, 3, 1)))
    index = WindowIndex(window, offsets)
    block = np.arange(10, 30)
    local, positions = index.halo(block)
    assert positions.size < ys.shape[1] / 5  # a small part of the table
    whole = window_median(block, index, ys, 10_000, "numba")
    halo = window_median(block, local, ys[:, positions], 10_000, "numba")
    np.testing.assert_array_equal(halo, whole)


# ---- the median selection ----


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


def _cases(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "normal": rng.normal(size=n),
        "few distinct values": rng.integers(0, 3, n).astype(float),
        "sorted": np.sort(rng.normal(size=n)),
        "reverse sorted": np.sort(rng.normal(size=n))[::-1].copy(),
        "two clusters": np.r_[np.zeros(n // 2), rng.normal(size=n - n // 2) + 100],
        "all equal": np.full(n, 7.5),
        "heavy tail": rng.standard_cauchy(n),
    }


@pytest.mark.parametrize("n", [1, 2, 3, 10, 31, 32, 33, 600, 2701, 2702, 10_001])
def test_runs_median_equals_numpy_whatever_its_guide(n):
    """The median across runs is exact with no guide, a guide on the median, a narrow, wide,
    far or broken one (misses fall back to the full selection), over short or long runs."""
    rng = np.random.default_rng(n)
    buf, middle = np.empty(n), np.empty(n)
    for n_runs in {1, min(n, 7), min(n, 60)}:
        cuts = np.sort(rng.choice(np.arange(1, n), n_runs - 1, replace=False)) if n > 1 else []
        starts = np.r_[0, cuts].astype(np.int64)
        lengths = np.diff(np.r_[starts, n]).astype(np.int64)
        for name, values in _cases(rng, n).items():
            expected = np.median(values)
            guides = [(0.0, 0.0, 0.0), (expected, 0.0, 1.0), (expected, 1e-3, 1.0)]
            guides += [(-1e9, 1.0, 1.0), (1e9, 1e-12, 1.0), (0.0, np.inf, 1.0), (0.0, np.nan, 1.0)]
            for guide in guides:
                got = _runs_median(
                    values, starts.copy(), lengths.copy(), n_runs, n, np.array(guide), buf, middle
                )
                assert got == expected, (name, n_runs, guide)


# ---- window medians ----


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


def test_a_window_clipped_to_a_one_bin_grid_keeps_the_weighted_median_of_its_kernel():
    # found by hypothesis: with one bin, the clipped gaussian window has one offset of weight
    # 1, but the kernel is not uniform, so the median stays the lower weighted median
    df = pd.DataFrame({"g": [0, 0], "y": [1.258769, 0.083814]})
    fit = {
        kernel: xslide.make_sliding_window_fit(
            df, ["g"], {"g": 1}, ["y"], [], kernel=kernel, extent={"g": (0, 0)}, min_entries=1
        ).y_median[0]
        for kernel in ("gaussian", "uniform")
    }
    assert fit["gaussian"] == 0.083814  # the lower of two equal weights
    assert fit["uniform"] == pytest.approx((1.258769 + 0.083814) / 2)


@pytest.mark.parametrize(
    ("shape", "half", "modes"),
    [
        ((40,), (6,), ("truncate",)),
        ((6, 30), (1, 4), ("truncate", "mirror")),
        ((5, 24), (2, 3), ("periodic", "periodic")),
        ((4, 5, 20), (1, 1, 2), ("shrink", "truncate", "mirror")),
        ((3, 4, 18), (1, 2, 3), ("mirror", "truncate", "shrink")),
    ],
    ids=str,
)
def test_guided_window_median_equals_numpy_on_every_boundary(
    shape: tuple[int, ...], half: tuple[int, ...], modes: tuple[str, ...]
) -> None:
    # windows of dozens to hundreds of values, centers in order: the selection guided by the
    # last median runs, over runs of whole rows of bins and of single bins (invalid rows)
    n_bins = int(np.prod(shape))
    flat, _, offsets, _, ys = window_median_inputs(7, shape, 20 * n_bins)
    rng = np.random.default_rng(8)
    trend = np.linspace(0.0, 5.0, n_bins)[np.maximum(flat, 0)]
    extra = np.vstack(
        [
            trend + rng.normal(size=flat.size),  # a drifting median
            np.round(trend),  # few distinct values, long ties
            rng.normal(size=flat.size) * 10.0 ** rng.integers(-200, 200, flat.size),
        ]
    )
    order, _ = bin_index(flat, n_bins, "numpy")
    ys = np.vstack([ys, extra[:, order]])
    window = Window(shape, half, modes, np.ones([2 * w + 1 for w in half]))
    index = WindowIndex(window, offsets)
    centers = np.arange(n_bins)
    fast = window_median(centers, index, ys, flat.size, "numba")
    slow = window_median(centers, index, ys, flat.size, "numpy")
    np.testing.assert_array_equal(fast, slow)
    assert np.isfinite(fast).all(axis=0).sum() >= 4
    backwards = window_median(centers[::-1].copy(), index, ys, flat.size, "numba")
    np.testing.assert_array_equal(backwards, fast[::-1])
