"""The exact window median: the bracketed selection equals np.median on any data."""

from __future__ import annotations

import numpy as np
import pytest

from xslide.rows import _SAMPLE, _median_bracketed


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


@pytest.mark.parametrize("n", [1, 2, 3, 10, 4 * _SAMPLE - 1, 4 * _SAMPLE, 2701, 2702, 10_001])
def test_bracketed_median_equals_numpy(n):
    rng = np.random.default_rng(n)
    sample, middle = np.empty(_SAMPLE), np.empty(n)
    for name, values in _cases(rng, n).items():
        work = values.copy()
        assert _median_bracketed(work, n, sample, middle) == np.median(values), name
        assert sorted(work) == sorted(values), f"{name}: values were lost while selecting"


def test_bracket_miss_falls_back_to_full_selection():
    """The stratified sample sees only the low half: the bracket misses, the answer is exact."""
    n = 4 * _SAMPLE
    values = np.r_[np.zeros(n - 10), np.arange(10.0) + 1.0]
    values[(np.arange(_SAMPLE) * n) // _SAMPLE] = -1.0  # every sampled position is the minimum
    sample, middle = np.empty(_SAMPLE), np.empty(n)
    assert _median_bracketed(values.copy(), n, sample, middle) == np.median(values)
