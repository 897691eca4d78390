"""Speed work keeps the numbers: the benchmark scenarios equal their saved outputs (rtol 1e-12)."""

from __future__ import annotations

import numpy as np
import pytest
from bench_reference import CASES, PATH, compute


@pytest.fixture(scope="module")
def saved() -> dict[str, np.ndarray]:
    with np.load(PATH) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.needs_numba  # the compiled paths are what the speed work changes (and fast)
@pytest.mark.parametrize("case", list(CASES))
def test_benchmark_scenarios_equal_their_saved_outputs(case, saved):
    got = compute(case)
    want = {key.split("/", 1)[1]: v for key, v in saved.items() if key.startswith(f"{case}/")}
    assert sorted(got.columns) == sorted(want)
    for column, expected in want.items():
        values = got[column].to_numpy()
        if expected.dtype.kind in "biu":
            np.testing.assert_array_equal(values, expected, err_msg=f"{case} {column}")
            continue
        finite = np.isfinite(expected)
        scale = np.abs(expected[finite]).max() if finite.any() else 0.0
        np.testing.assert_allclose(
            values, expected, rtol=1e-12, atol=1e-12 * scale, err_msg=f"{case} {column}"
        )
