"""Determinism of the parallel kernels: a fit repeated in one process is bit-identical, and
one thread or two give results equal to 1e-12 (the row pass, windows, median, n_sigma_cut and
predict split their work by the thread count, and must reduce it in a fixed order).

numba's thread count is switched in the process with ``numba.set_num_threads``; where numba
was launched with a single thread (a 1-core machine), the 2-thread side runs in a new
interpreter with ``NUMBA_NUM_THREADS=2``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import xslide
from xslide.bench import DIMS, PREDICTORS, SCENARIOS, TARGETS, make_rows

pytestmark = pytest.mark.needs_numba  # thread counts are numba's

# (name, options of make_sliding_window_fit): every parallel path on small data
CASES = {
    "ols_weighted": {"weights_column": "w", "aggregation_functions": {"y1": ["mean"]}},
    "median": {},
    "n_sigma_cut": {"n_sigma_cut": 3.0},
    "gaussian_trend": {"kernel": "gaussian", "trend": 1, "boundary": "shrink"},
}


def _rows() -> tuple[pd.DataFrame, list[str], dict[str, int]]:
    s = SCENARIOS["small"]  # 10x10x10 bins; 5 rows per bin at this scale
    dims = list(DIMS[: len(s.shape)])
    return make_rows(s, scale=0.25), dims, dict(zip(dims, s.window, strict=True))


def outputs() -> dict[str, np.ndarray]:
    """Every case's numeric output columns and a linear predict, as flat named arrays."""
    df, dims, window = _rows()
    arrays = {}
    for case, options in CASES.items():
        out = xslide.make_sliding_window_fit(df, dims, window, TARGETS, PREDICTORS, **options)
        for column in out.columns:
            if out[column].dtype.kind in "biuf":
                arrays[f"{case}/{column}"] = out[column].to_numpy()
    fit = xslide.fit(df, dims, TARGETS, PREDICTORS, window, aggregation=["entries"])
    rng = np.random.default_rng(1)
    at = df[PREDICTORS].copy()
    for dim, size in zip(dims, SCENARIOS["small"].shape, strict=True):
        at[dim] = np.clip(df[dim] + rng.uniform(-0.5, 0.5, len(df)), 0, size - 1)
    predicted = xslide.predict(fit, at, method="linear")
    for column in predicted.columns:
        arrays[f"predict_linear/{column}"] = np.asarray(predicted[column], dtype=float)
    return arrays


def _with_threads(n: int) -> dict[str, np.ndarray]:
    numba = pytest.importorskip("numba")
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        return outputs()
    finally:
        numba.set_num_threads(before)


def _in_new_process(n: int, tmp_path: Path) -> dict[str, np.ndarray]:
    path = tmp_path / f"threads{n}.npz"
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import test_threads; "
        "np.savez(sys.argv[2], **test_threads.outputs())"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": str(n)}
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def test_a_fit_repeated_in_one_process_is_bit_identical():
    first, second = outputs(), outputs()
    assert first.keys() == second.keys()
    for key, values in first.items():
        np.testing.assert_array_equal(values, second[key], err_msg=key)


def test_one_thread_and_two_threads_agree_to_1e12(tmp_path):
    numba = pytest.importorskip("numba")
    one = _with_threads(1)
    if numba.config.NUMBA_NUM_THREADS >= 2:
        two = _with_threads(2)
    else:  # numba cannot raise its thread count above the launch count
        two = _in_new_process(2, tmp_path)
    assert one.keys() == two.keys()
    for key, values in one.items():
        if values.dtype.kind in "biu":
            np.testing.assert_array_equal(two[key], values, err_msg=key)
            continue
        finite = np.isfinite(values)
        scale = np.abs(values[finite]).max() if finite.any() else 0.0
        np.testing.assert_allclose(two[key], values, rtol=1e-12, atol=1e-12 * scale, err_msg=key)


def test_run_chunks_runs_every_chunk_once_and_serves_concurrent_callers():
    """The thread runner behind every parallel kernel: each chunk once, any caller thread."""
    from concurrent.futures import ThreadPoolExecutor

    from xslide._numba import run_chunks

    numba = pytest.importorskip("numba")

    @numba.njit(nogil=True)
    def square_chunk(c, n_chunks, values, out):
        n = values.shape[0]
        for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            out[i] += values[i] * values[i]

    values = np.arange(10_001, dtype=np.float64)

    def one_caller(n_chunks: int) -> np.ndarray:
        out = np.zeros_like(values)
        run_chunks(square_chunk, n_chunks, values, out)
        return out

    np.testing.assert_array_equal(one_caller(7), values * values)  # += : each chunk once
    with ThreadPoolExecutor(4) as callers:  # e.g. dask's threads, each running a fit
        results = list(callers.map(one_caller, [1, 3, 8, 64] * 3))
    for out in results:
        np.testing.assert_array_equal(out, values * values)

    def failing(c, n_chunks):
        if c == 5:
            raise ValueError("chunk 5 failed")

    with pytest.raises(ValueError, match="chunk 5 failed"):  # a helper's error reaches the caller
        run_chunks(failing, 8)


def test_run_chunks_stops_taking_chunks_after_a_failure():
    """An error (or Ctrl-C) in one chunk: the threads take no further chunk, so the caller
    does not wait for the rest of the work before it sees the error."""
    import time

    from xslide._numba import run_chunks

    pytest.importorskip("numba")
    done = []

    def slow(c, n_chunks):
        if c == 2:
            raise KeyboardInterrupt
        time.sleep(0.01)
        done.append(c)

    with pytest.raises(KeyboardInterrupt):
        run_chunks(slow, 200)
    assert len(done) < 20
