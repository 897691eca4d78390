"""Box sums by running sums (long windows) equal the direct sums and the row-level oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import assert_frames_close, reference_fit

import xslide
from xslide import _numba
from xslide.errors import TooLargeError
from xslide.window import (
    RUNNING_FROM,
    RUNNING_RESTART,
    Window,
    _box_sums_at_centers,
    _box_sums_scipy,
    window_sum,
)

needs_numba = pytest.mark.skipif(not _numba.numba_available(), reason="the numba box sums")
DIRECT, RUNNING = 10**9, 1  # running_from: every axis direct, every axis running


def box_window(shape, spans) -> Window:
    sizes = [b + a + 1 for b, a in spans]
    return Window(tuple(shape), tuple(spans), ("truncate",) * len(shape), np.ones(sizes))


def explicit_sums(values: np.ndarray, shape, spans, centers) -> np.ndarray:
    """(m, channels) sums of ``values`` (n_bins, channels) over each center's clipped box."""
    grid = values.reshape(*shape, -1)
    out = np.empty((centers.size, values.shape[1]))
    for k, index in enumerate(zip(*np.unravel_index(centers, shape), strict=True)):
        box = tuple(
            slice(max(i - b, 0), min(i + a + 1, n))
            for i, (b, a), n in zip(index, spans, shape, strict=True)
        )
        out[k] = grid[box].reshape(-1, values.shape[1]).sum(axis=0)
    return out


def assert_sums_close(got, rows_got, sums, rows, shape, spans, centers, rtol=1e-9):
    """Within ``rtol`` of the exact sums, relative to the sum of magnitudes in each window
    (a sum that cancels to ~0 is compared with the size of what it cancelled); the row counts
    exactly."""
    flat = sums.reshape(rows.size, -1)
    exact = explicit_sums(flat, shape, spans, centers)
    magnitude = explicit_sums(np.abs(flat), shape, spans, centers)
    error = np.abs(got.reshape(exact.shape) - exact)
    assert np.all(error <= rtol * magnitude + 1e-300), float(np.max(error / magnitude))
    counts = explicit_sums(rows[:, None].astype(float), shape, spans, centers)[:, 0]
    np.testing.assert_array_equal(rows_got, counts)


@st.composite
def grids_and_windows(draw):
    n_dims = draw(st.integers(1, 3))
    limit = {1: 300, 2: 40, 3: 12}[n_dims]
    shape = tuple(draw(st.lists(st.integers(1, limit), min_size=n_dims, max_size=n_dims)))
    spans = tuple(
        (draw(st.integers(0, 2 * n)), draw(st.integers(0, 2 * n)))  # windows beyond the grid too
        for n in shape
    )
    n_bins = int(np.prod(shape))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offset = draw(st.sampled_from([0.0, 1e4, -1e4]))  # data offset by 1e4 spreads
    sums = offset + rng.normal(size=(n_bins, 2, 3))
    rows = rng.integers(0, 4, n_bins)
    centers = np.flatnonzero(rng.random(n_bins) < draw(st.sampled_from([1.0, 0.5, 0.05])))
    if draw(st.booleans()):
        centers = rng.permutation(centers)
    return shape, spans, sums, rows, centers


@needs_numba
@given(grids_and_windows())
def test_running_and_direct_box_sums_equal_the_exact_sums_to_1e9(case):
    shape, spans, sums, rows, centers = case
    window = box_window(shape, spans)
    for running_from in (DIRECT, RUNNING, RUNNING_FROM):
        got, n_rows, n_with_rows = _box_sums_at_centers(sums, rows, window, centers, running_from)
        assert got.shape == (centers.size, *sums.shape[1:])
        assert_sums_close(got, n_rows, sums, rows, shape, spans, centers)
        occupied = explicit_sums((rows > 0)[:, None].astype(float), shape, spans, centers)
        np.testing.assert_array_equal(n_with_rows, occupied[:, 0])


@needs_numba
@pytest.mark.parametrize("centers", ["all", "sparse"])
def test_running_sums_restart_along_a_long_series_and_stay_exact(centers):
    n = 3 * RUNNING_RESTART + 17  # three restarts of the running sums
    rng = np.random.default_rng(5)
    sums = 1e4 + rng.normal(size=(n, 1, 4))
    sums[:, 0, 1] = rng.normal(size=n)  # a channel that cancels
    rows = rng.integers(0, 3, n)
    ids = np.arange(n) if centers == "all" else np.sort(rng.choice(n, 300, replace=False))
    spans = ((40, 25),)
    got, n_rows, _ = _box_sums_at_centers(sums, rows, box_window((n,), spans), ids)
    assert_sums_close(got, n_rows, sums, rows, (n,), spans, ids, rtol=1e-13)


@needs_numba
@pytest.mark.parametrize("shape", [(200,), (9, 8, 7)], ids=str)
def test_small_windows_stay_direct_and_bit_identical_to_correlate1d(shape):
    """The benchmark references (windows ±1, ±2) keep their bits: direct sums, added in
    ``ndimage.correlate1d``'s order."""
    assert RUNNING_FROM > 5
    rng = np.random.default_rng(3)
    n_bins = int(np.prod(shape))
    sums = 1e4 + rng.normal(size=(n_bins, 2, 3))
    rows = rng.integers(0, 4, n_bins)
    centers = np.arange(n_bins)
    for half in (1, 2):
        window = box_window(shape, ((half, half),) * len(shape))
        got, n_rows, n_with_rows = _box_sums_at_centers(sums, rows, window, centers)
        scipy = _box_sums_scipy(sums, rows, window, centers)
        np.testing.assert_array_equal(got.reshape(n_bins, -1), scipy[:, :-2])
        np.testing.assert_array_equal(n_rows, scipy[:, -2])
        np.testing.assert_array_equal(n_with_rows, scipy[:, -1])
        direct, _, _ = _box_sums_at_centers(sums, rows, window, centers, DIRECT)
        np.testing.assert_array_equal(got, direct)


@pytest.mark.parametrize(
    ("dims", "window"),
    [(["t"], {"t": 30}), (["t"], {"t": (45, 0)}), (["u", "v"], {"u": (20, 17), "v": 1})],
    ids=["series ±30", "series trailing 45", "2-D long u"],
)
def test_long_windows_on_offset_data_match_the_row_oracle(dims, window):
    rng = np.random.default_rng(11)
    n = 600
    if dims == ["t"]:
        df = pd.DataFrame({"t": np.arange(n)})
    else:
        df = pd.DataFrame({"u": rng.integers(0, 60, n), "v": rng.integers(0, 4, n)})
    df["x"] = 1e4 + rng.normal(size=n)  # offset by 1e4 spreads
    df["y"] = 2e4 + 3.0 * (df.x - 1e4) + rng.normal(size=n)
    args = (df, dims, window, ["y"], ["x"])
    got = xslide.make_sliding_window_fit(*args, min_entries=3)
    assert_frames_close(got, reference_fit(*args, min_entries=3), rtol=1e-9)


def test_a_long_box_window_on_a_long_series_needs_no_neighbor_tables():
    """Box sums build no per-bin neighbor tables (3 x 100k bins x 40001 offsets here, 96 GB):
    only a step that reads the window's rows (the median) needs them, and is refused."""
    n = 100_000
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"t": np.arange(n), "x": rng.normal(size=n)})
    df["y"] = 1.0 + 2.0 * df.x + rng.normal(0, 0.1, n)
    window = {"t": 20_000}
    summed = ["mean", "std", "entries"]
    fit = xslide.fit(df, ["t"], ["y"], ["x"], window, aggregation=summed, max_memory=2**30)
    center = fit.sel(t=n // 2)
    rows = df[(df.t >= n // 2 - 20_000) & (df.t <= n // 2 + 20_000)]
    slope, intercept = np.polyfit(rows.x, rows.y, 1)
    assert float(center.n_rows_aggregated) == len(rows)
    assert float(center.coef.sel(target="y", term="x")) == pytest.approx(slope, rel=1e-9)
    const = float(center.coef.sel(target="y", term="Intercept"))
    assert const == pytest.approx(intercept, rel=1e-9)
    with pytest.raises(TooLargeError, match="the window"):
        xslide.fit(df, ["t"], ["y"], ["x"], window, aggregation=["median"], max_memory=2**30)


@pytest.mark.parametrize(
    ("shape", "spans"),
    [
        ((3 * RUNNING_RESTART + 5,), ((40, 25),)),  # restarts of the prefix sums
        ((50, 30), ((20, 9), (2, 2))),  # one axis by prefix sums, one direct
        ((7, 40, 3), ((1, 1), (0, 60), (30, 30))),  # windows beyond the grid
    ],
    ids=str,
)
def test_window_sum_of_long_windows_by_prefix_sums_equals_the_exact_sums(shape, spans):
    """The scipy path (no numba) takes prefix sums where the window is long, to 1e-9."""
    rng = np.random.default_rng(8)
    n_bins = int(np.prod(shape))
    values = 1e4 + rng.normal(size=(n_bins, 3))
    values[:, 1] -= 1e4  # a channel that cancels
    got = window_sum(values.reshape(*shape, 3), spans).reshape(n_bins, 3)
    centers = np.arange(n_bins) if n_bins < 5_000 else rng.choice(n_bins, 500, replace=False)
    exact = explicit_sums(values, shape, spans, centers)
    magnitude = explicit_sums(np.abs(values), shape, spans, centers)
    assert np.all(np.abs(got[centers] - exact) <= 1e-9 * magnitude)


@pytest.mark.parametrize("shape", [(300,), (40, 3, 30)], ids=str)
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_non_finite_bin_spoils_only_the_windows_that_hold_it(shape, bad):
    """inf - inf is NaN: running and prefix sums cannot subtract a bin that overflowed, so
    the windows after it are summed anew: inf, NaN and finite where the direct sums are."""
    rng = np.random.default_rng(4)
    n_bins = int(np.prod(shape))
    sums = 1e4 + rng.normal(size=(n_bins, 1, 3))
    sums[n_bins // 3, 0, 1] = bad
    rows = rng.integers(0, 3, n_bins)
    spans = tuple((20, 17) for _ in shape)
    centers = np.arange(n_bins)
    exact = explicit_sums(sums.reshape(n_bins, 3), shape, spans, centers)
    got = {"scipy": window_sum(sums.reshape(*shape, 3), spans).reshape(n_bins, 3)}
    if _numba.numba_available():
        window = box_window(shape, spans)
        got["numba"] = _box_sums_at_centers(sums, rows, window, centers, RUNNING)[0][:, 0]
    for path, values in got.items():
        np.testing.assert_array_equal(values[~np.isfinite(exact)], exact[~np.isfinite(exact)])
        finite = np.isfinite(exact)
        np.testing.assert_allclose(values[finite], exact[finite], rtol=1e-12, err_msg=path)
    assert np.isfinite(exact).sum() > n_bins  # most windows do not hold the bad bin
