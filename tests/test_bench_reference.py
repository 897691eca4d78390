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


# NIST StRD Longley (higher difficulty): certified coefficients and standard errors of
# TOTEMP ~ GNPDEFL + GNP + UNEMP + ARMED + POP + YEAR
LONGLEY_TERMS = ["GNPDEFL", "GNP", "UNEMP", "ARMED", "POP", "YEAR"]
LONGLEY_COEF = [-3482258.63459582, 15.0618722713733, -0.358191792925910e-01, -2.02022980381683,
                -1.03322686717359, -0.511041056535807e-01, 1829.15146461355]  # fmt: skip
LONGLEY_STDERR = [890420.383607373, 84.9149257747669, 0.334910077722432e-01, 0.488399681651699,
                  0.214274163161675, 0.226073200069370, 455.478499142212]  # fmt: skip
LONGLEY_RESIDUAL_SD = 304.854073561965
LONGLEY_R2 = 0.995479004577296


def log_relative_error(got: np.ndarray, certified: np.ndarray) -> np.ndarray:
    """NIST's LRE: the number of correct significant digits."""
    with np.errstate(divide="ignore"):
        return -np.log10(np.abs(got - certified) / np.abs(certified))


def test_longley_keeps_twelve_digits_through_the_seed_api():
    import xslide

    longley = pytest.importorskip("statsmodels.datasets.longley").load_pandas().data
    longley["bin"] = 0  # one bin, window 0: a plain regression through the whole pipeline
    out = xslide.make_sliding_window_fit(
        longley, ["bin"], {}, ["TOTEMP"], LONGLEY_TERMS, min_entries=1
    )
    row = out.iloc[0]
    names = ["TOTEMP_intercept", *[f"TOTEMP_slope_{t}" for t in LONGLEY_TERMS]]
    coef = row[names].to_numpy(dtype=float)
    stderr = row[[f"{n}_err" for n in names]].to_numpy(dtype=float)
    assert log_relative_error(coef, np.array(LONGLEY_COEF)).min() >= 12
    assert log_relative_error(stderr, np.array(LONGLEY_STDERR)).min() >= 12
    # xslide's rmse is sqrt(rss / Σw) (docs/contract.md), NIST's residual SD sqrt(rss / (n - p))
    n, p = len(longley), len(names)
    rmse = LONGLEY_RESIDUAL_SD * np.sqrt((n - p) / n)
    assert log_relative_error(row["TOTEMP_rmse"], rmse) >= 12
    assert log_relative_error(row["TOTEMP_r_squared"], LONGLEY_R2) >= 12
