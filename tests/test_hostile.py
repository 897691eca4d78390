"""Hostile inputs to the engine: no crash, no hang, no silent wrong result, one-line refusals.

Cases that could crash the interpreter (out-of-bounds writes in numba kernels) run in a
subprocess under an address-space limit and with ``NUMBA_BOUNDSCHECK=1``; the others run here.
The predict, expression and file cases live in ``test_hostile_predict.py``,
``test_hostile_expressions.py`` and ``test_hostile_io.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

import xslide
import xslide._numba
from xslide.errors import TooLargeError

DBL_MAX = np.finfo(float).max


def rows(n: int = 2000, seed: int = 0, n_bins: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, n_bins, n), "x": rng.normal(size=n)})
    df["y"] = 0.2 * df.a + df.x + rng.normal(0, 0.1, n)
    df["w"] = rng.uniform(0.5, 2.0, n)
    return df


def one_line(err: BaseException, *fragments: str) -> None:
    text = str(err)
    assert "\n" not in text.strip(), text
    for fragment in fragments:
        assert fragment in text, text


# ---- in a subprocess: what once crashed the interpreter ----

_PRELUDE = """
import resource, numpy as np, pandas as pd, xslide
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
rng = np.random.default_rng(0)
n = 2000
df = pd.DataFrame({"a": rng.integers(0, 5, n), "x": rng.normal(size=n)})
df["y"] = 0.2 * df.a + df.x + rng.normal(0, 0.1, n)
df["w"] = rng.uniform(0.5, 2.0, n)
DBL_MAX = np.finfo(float).max
"""


def run_isolated(code: str, cache_dir=None) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter limited to 6 GiB; with ``cache_dir``, numba compiles
    every kernel afresh there with bounds checks on (a cached kernel would skip them)."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1"}
    if cache_dir is not None:
        env.update(NUMBA_CACHE_DIR=str(cache_dir), XSLIDE_CACHE_DIR=str(cache_dir))
    script = _PRELUDE + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env
    )


@pytest.mark.slow
def test_sentinels_and_adversarial_values_under_bounds_checks(tmp_path):
    """DBL_MAX in a predictor or a target are invalid rows on every pass (the fit equals the
    fit without them); ±inf, NaN, denormals and extreme weights never make a kernel write
    past a buffer: with NUMBA_BOUNDSCHECK=1 that would raise, before it would corrupt."""
    done = run_isolated(
        """
        for column in ("x", "y"):
            bad = df.copy()
            bad.loc[[3, 7], column] = DBL_MAX
            for options in ({}, {"n_sigma_cut": 3.0}):
                got = xslide.make_sliding_window_fit(bad, ["a"], {"a": 1}, ["y"], ["x"], **options)
                want = xslide.make_sliding_window_fit(
                    bad.drop(index=[3, 7]), ["a"], {"a": 1}, ["y"], ["x"], **options
                )
                cols = [c for c in want.columns if c.startswith("y_")]
                assert np.allclose(got[cols], want[cols], rtol=1e-9, equal_nan=True), options
                assert got.attrs["n_rows_invalid_json"] == '{"y": 2}', got.attrs
        bad = df.copy()
        specials = [DBL_MAX, -DBL_MAX, np.inf, -np.inf, np.nan, 5e-324, 1e160, -1e-160]
        for k, v in enumerate(specials):
            bad.loc[10 * k : 10 * k + 4, "x"] = v
            bad.loc[10 * k + 5 : 10 * k + 9, "y"] = v
            bad.loc[200 + k, "w"] = abs(v) if v == v else v
        for options in ({}, {"n_sigma_cut": 2.0}, {"weights_column": "w"},
                        {"boundary": "mirror", "kernel": "gaussian"}, {"trend": 1}):
            out = xslide.make_sliding_window_fit(bad, ["a"], {"a": 2}, ["y"], ["x"], **options)
            assert np.isfinite(out.y_mean).all() and np.isfinite(out.y_median).all(), options
        print("ok")
        """,
        cache_dir=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")


@pytest.mark.slow
def test_eight_dims_of_256_bins_are_refused_not_wrapped():
    done = run_isolated("""
        big = pd.DataFrame({f"d{i}": rng.integers(0, 256, 100) for i in range(8)})
        big["y"] = 1.0
        try:
            xslide.make_sliding_window_fit(big, [f"d{i}" for i in range(8)], {}, ["y"], [])
        except xslide.TooLargeError as err:
            print("refused:", err)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused:" in done.stdout and "bins (shape" in done.stdout


# ---- sizes ----


def test_a_grid_whose_size_overflows_int64_is_refused_with_its_shape():
    df = pd.DataFrame({"a": [0, 2**62], "b": [0, 2**62], "y": [1.0, 2.0]})
    with pytest.raises(TooLargeError) as err:
        xslide.fit(df, ["a", "b"], ["y"])
    one_line(err.value, "bins (shape", "max_bins")


def test_extents_beyond_int64_are_refused():
    with pytest.raises(ValueError, match="int64") as err:
        xslide.fit(rows(), ["a"], ["y"], extent={"a": (0, 2**70)})
    one_line(err.value, "extent['a']")


def test_unsigned_bins_beyond_int64_are_refused_not_wrapped():
    df = pd.DataFrame({"a": np.array([0, 2**64 - 1], dtype=np.uint64), "y": [1.0, 2.0]})
    with pytest.raises(ValueError) as err:
        xslide.fit(df, ["a"], ["y"])
    one_line(err.value, "'a'", "int64")


def test_a_huge_window_is_built_no_wider_than_the_grid():
    df = rows(n_bins=30)
    df["b"] = np.arange(len(df)) % 20
    whole = xslide.fit(df, ["a", "b"], ["y"], ["x"], {"a": 29, "b": 19})
    huge = xslide.fit(df, ["a", "b"], ["y"], ["x"], {"a": 10**6, "b": 10**6})
    np.testing.assert_array_equal(huge.coef.values, whole.coef.values)
    # the volume is that of the whole window, as the user asked for it
    used = int(whole.n_neighbors_used.max())
    assert float(huge.effective_window_fraction.max()) == pytest.approx(used / (2e6 + 1) ** 2)


def test_a_mirrored_huge_window_is_refused_with_its_bytes():
    with pytest.raises(TooLargeError) as err:
        xslide.fit(rows(), ["a"], ["y"], window={"a": 10**9}, boundary="mirror")
    one_line(err.value, "the window", "max_memory")


def test_a_kernel_callable_is_not_called_on_a_window_too_large():
    calls = []

    def kernel(*offsets):
        calls.append(1)
        return np.ones_like(offsets[0], dtype=float)

    df = rows()
    df["b"] = np.arange(len(df)) % 3
    with pytest.raises(TooLargeError, match="kernel callable"):
        xslide.fit(df, ["a", "b"], ["y"], window={"a": 10**5, "b": 10**5}, kernel=kernel)
    assert not calls


@pytest.mark.parametrize("max_memory", [1_000, 20_000])
def test_max_memory_refuses_before_allocating(max_memory):
    with pytest.raises(TooLargeError) as err:
        xslide.fit(rows(), ["a"], ["y"], ["x"], {"a": 1}, max_memory=max_memory)
    one_line(err.value, "max_memory")


@pytest.mark.parametrize("bad", [0, -5, "8GB", True])
def test_max_memory_must_be_a_positive_number(bad):
    with pytest.raises(ValueError, match="max_memory"):
        xslide.fit(rows(), ["a"], ["y"], max_memory=bad)


def test_many_predictors_on_a_large_grid_are_refused_up_front():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.integers(0, 50_000, 1000), "y": rng.normal(size=1000)})
    names = [f"p{k}" for k in range(200)]
    df = pd.concat([df, pd.DataFrame(rng.normal(size=(1000, 200)), columns=names)], axis=1)
    with pytest.raises(TooLargeError) as err:
        xslide.bin_stats(df, ["a"], ["y"], names, max_memory=2**30)
    one_line(err.value, "per-bin statistics", "fewer predictors")


# ---- values ----


def test_a_non_finite_reference_is_refused():
    for value in (np.inf, np.nan, DBL_MAX):
        with pytest.raises(ValueError, match=r"reference\['x'\]"):
            xslide.fit(rows(), ["a"], ["y"], ["x"], reference={"x": value})


def test_sentinels_never_become_the_reference():
    df = rows()
    df.loc[:5, "x"] = 1e300
    stats = xslide.bin_stats(df, ["a"], ["y"], ["x"])
    assert abs(float(stats.x_reference.sel(term="x"))) < 10


@pytest.mark.parametrize("scale", [1e160, 1e-160, 1e300, 1e-300])
def test_weighted_fits_do_not_depend_on_the_weights_scale(scale):
    df = rows()
    base = xslide.make_sliding_window_fit(df, ["a"], {"a": 1}, ["y"], ["x"], weights_column="w")
    scaled = xslide.make_sliding_window_fit(
        df.assign(w=df.w * scale), ["a"], {"a": 1}, ["y"], ["x"], weights_column="w"
    )
    for column in ("y_mean", "y_std", "y_slope_x", "y_slope_x_err", "y_rmse", "y_entries"):
        np.testing.assert_allclose(scaled[column], base[column], rtol=1e-12, err_msg=column)


def test_denormal_and_negative_zero_values_are_ordinary_values():
    df = rows()
    df.loc[:50, "x"] = 5e-324
    df.loc[51:60, "y"] = -0.0
    out = xslide.make_sliding_window_fit(df, ["a"], {}, ["y"], ["x"])
    assert out.y_entries.sum() == len(df)


@pytest.mark.parametrize("stderr", [np.inf, -1.0])
def test_a_callable_fitter_returning_invalid_errors_fails_its_window(stderr):
    def fitter(x, y, w, terms):
        return {"Intercept": 1.0, "x": 2.0, "stderr": {"Intercept": stderr, "x": 0.1}}

    with pytest.warns(xslide.FitFailedWarning, match="FloatingPointError"):
        out = xslide.make_sliding_window_fit(rows(), ["a"], {}, ["y"], ["x"], fit_formula=fitter)
    assert out.quality_flag.str.contains("fit_failed_y").all()
    assert "FloatingPointError" in out.attrs["fit_failures_json"]


@pytest.mark.parametrize("coef", [np.inf, np.nan])
def test_a_callable_fitter_returning_non_finite_coefficients_fails_its_window(coef):
    def fitter(x, y, w, terms):
        return {"Intercept": coef, "x": 2.0}

    with pytest.warns(xslide.FitFailedWarning, match="FloatingPointError"):
        out = xslide.make_sliding_window_fit(rows(), ["a"], {}, ["y"], ["x"], fit_formula=fitter)
    assert out.quality_flag.str.contains("fit_failed_y").all()


def test_a_callable_fitter_may_leave_out_standard_errors():
    def fitter(x, y, w, terms):
        return {"Intercept": 1.0, "x": 2.0, "stderr": {"Intercept": np.nan}}

    out = xslide.make_sliding_window_fit(rows(), ["a"], {}, ["y"], ["x"], fit_formula=fitter)
    assert (out.quality_flag == "").all() and out.y_intercept_err.isna().all()


def test_duplicated_column_names_are_refused_by_name():
    df = rows()[["a", "x", "y"]]
    df.columns = ["a", "x", "x"]
    with pytest.raises(ValueError) as err:
        xslide.make_sliding_window_fit(df, ["a"], {}, ["x"], [])
    one_line(err.value, "'x'", "2 times")


# ---- the seed API's callers catch ValueError ----


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"group_columns": ["nope"]}, "nope"),
        ({"predictor_columns": ["nope"]}, "nope"),
        ({"fit_columns": ["nope"]}, "nope"),
        ({"weights_column": "nope"}, "nope"),
        ({"group_columns": ["x"], "predictor_columns": [], "window_spec": {}}, "integer dtype"),
        ({"min_entries": 2.5}, "min_entries"),
        ({"min_entries": True}, "min_entries"),
        ({"min_entries": 0}, "min_entries"),
        ({"min_entries": -1}, "min_entries"),
        ({"selection": np.ones(2000)}, "selection"),
        ({"selection": np.ones(5, bool)}, "selection"),
        ({"window_spec": {"a": -1}}, ">= 0"),
        ({"window_spec": {"a": 1.5}}, "half-width"),
        ({"window_spec": {"nope": 1}}, "nope"),
        ({"kernel": "triangle"}, "'triangle'"),
    ],
)
def test_every_seed_refusal_is_a_value_error(change, fragment):
    arguments = {
        "df": rows(), "group_columns": ["a"], "window_spec": {"a": 1}, "fit_columns": ["y"],
        "predictor_columns": ["x"], **change,
    }  # fmt: skip
    with pytest.raises(ValueError) as err:
        xslide.make_sliding_window_fit(**arguments)
    one_line(err.value, fragment)


def test_an_all_false_selection_gives_the_empty_result_with_every_column():
    df = rows()
    full = xslide.make_sliding_window_fit(df, ["a"], {"a": 1}, ["y"], ["x"])
    with pytest.warns(UserWarning, match="result is empty"):
        empty = xslide.make_sliding_window_fit(
            df, ["a"], {"a": 1}, ["y"], ["x"], selection=np.zeros(len(df), bool)
        )
    assert len(empty) == 0
    assert list(empty.columns) == list(full.columns)
    pd.testing.assert_series_equal(empty.dtypes, full.dtypes)
    assert empty.attrs["n_rows_not_selected"] == len(df)


def test_fit_of_zero_rows_with_an_extent_is_the_all_empty_grid():
    df = rows()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xslide.fit(
            df, ["a"], ["y"], ["x"], selection=np.zeros(len(df), bool), extent={"a": (0, 4)}
        )
    assert ds.sizes["a"] == 5 and int(ds.n_rows_aggregated.sum()) == 0
    assert (ds.quality_flag == 5).all()  # not a center


def test_fit_of_zero_rows_without_an_extent_raises_naming_the_selection():
    with pytest.raises(xslide.EmptyGridError, match="selection"):
        xslide.fit(rows(), ["a"], ["y"], selection=np.zeros(2000, bool))


# ---- streams ----


def test_a_first_batch_without_finite_values_does_not_fix_the_reference():
    df = rows()
    first = df.iloc[:300].assign(y=np.nan)
    streamed = xslide.fit([first, df.iloc[300:]], ["a"], ["y"], ["x"], {"a": 1})
    memory = xslide.fit(pd.concat([first, df.iloc[300:]]), ["a"], ["y"], ["x"], {"a": 1},
                        aggregation=["mean", "std", "entries"])  # fmt: skip
    np.testing.assert_allclose(streamed.coef, memory.coef, rtol=1e-9)
    np.testing.assert_allclose(streamed["std"], memory["std"], rtol=1e-9)
    assert (streamed.quality_flag == 0).all()


def test_arrow_batches_with_null_bins_stream_as_in_memory():
    pa = pytest.importorskip("pyarrow")
    df = rows()
    df["a"] = pd.array(df.a, dtype="Int64")
    df.loc[::7, "a"] = pd.NA
    reference = {"x": 0.0, "y": 0.0}
    memory = xslide.bin_stats(df, ["a"], ["y"], ["x"], reference=reference)
    batches = [pa.RecordBatch.from_pandas(df.iloc[k : k + 500]) for k in range(0, len(df), 500)]
    streamed = xslide.bin_stats(batches, ["a"], ["y"], ["x"], reference=reference)
    assert streamed.attrs["n_rows_without_bin"] == memory.attrs["n_rows_without_bin"] > 0
    if xslide._numba.HAVE_NUMBA:  # the numba pass adds rows in order: bit-identical
        np.testing.assert_array_equal(streamed.sum_wxy.values, memory.sum_wxy.values)
    np.testing.assert_allclose(streamed.sum_wxy.values, memory.sum_wxy.values, rtol=1e-12)


def test_a_column_changing_type_between_batches_is_named_with_its_batch():
    df = rows()
    second = df.iloc[500:].assign(x=df.x.iloc[500:].astype(str))
    with pytest.raises(ValueError) as err:
        xslide.bin_stats([df.iloc[:500], second], ["a"], ["y"], ["x"])
    one_line(err.value, "batch 2", "'x' was float64")


# ---- determinism ----


@pytest.mark.needs_numba
@pytest.mark.parametrize(
    "options",
    [{}, {"weights_column": "w"}, {"boundary": "mirror", "kernel": "gaussian"}, {"trend": 1},
     {"n_sigma_cut": 2.0}, {"boundary": "shrink", "weights_column": "w", "n_sigma_cut": 2.5}],
    ids=str,
)  # fmt: skip
def test_the_numba_and_numpy_backends_agree_bit_for_bit(options):
    df = rows()
    df["b"] = np.arange(len(df)) % 4
    df.loc[::17, "y"] = np.nan
    frames = [
        xslide.make_sliding_window_fit(
            df, ["a", "b"], {"a": 1, "b": 1}, ["y"], ["x"], backend=backend, **options
        )
        for backend in ("numba", "numpy")
    ]
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


# ---- found by review: fill values, overflowing sums, extreme and mixed weights ----


def test_a_few_fill_values_do_not_drag_the_reference_of_the_other_bins():
    df = rows()
    bad = df.copy()
    bad.loc[bad.index[bad.a == 4][:2], "y"] = 9.96921e36  # netCDF's default fill value
    got = xslide.make_sliding_window_fit(bad, ["a"], {}, ["y"], ["x"])
    want = xslide.make_sliding_window_fit(df, ["a"], {}, ["y"], ["x"])
    cols = ["y_mean", "y_std", "y_intercept", "y_slope_x", "y_slope_x_err"]
    np.testing.assert_allclose(got[cols][got.a < 4], want[cols][want.a < 4], rtol=1e-9)


@pytest.mark.parametrize("column", ["x", "y"])
def test_values_whose_sums_would_overflow_are_invalid_rows(column):
    df = rows()
    bad = df.copy()
    index = bad.index[bad.a == 2][:3]
    bad.loc[index, column] = 1.2e154  # each square is finite, their sum is not
    got = xslide.make_sliding_window_fit(bad, ["a"], {}, ["y"], ["x"])
    want = xslide.make_sliding_window_fit(bad.drop(index=index), ["a"], {}, ["y"], ["x"])
    cols = ["y_mean", "y_std", "y_intercept", "y_slope_x", "y_entries"]
    np.testing.assert_allclose(got[cols], want[cols], rtol=1e-9)
    assert got.attrs["n_rows_invalid_json"] == '{"y": 3}'


def test_sums_that_overflow_fail_their_window_instead_of_lying():
    stats = xslide.bin_stats(rows(), ["a"], ["y"], ["x"])
    stats["sum_wy2"].loc[{"a": 1}] = np.inf  # e.g. statistics summed elsewhere
    out = xslide.fit(stats)
    assert (out.quality_flag.sel(a=1) == 4).all()  # fit_failed
    assert np.isnan(out["std"].sel(a=1)).all() and np.isnan(out.coef.sel(a=1)).all()
    assert (out.quality_flag.sel(a=[0, 2, 3, 4]) == 0).all()


def test_a_stream_whose_first_batch_holds_only_sentinels_fits_the_others():
    df = rows()
    first = df.iloc[:400].assign(y=DBL_MAX)
    streamed = xslide.fit([first, df.iloc[400:]], ["a"], ["y"], ["x"])
    memory = xslide.fit(pd.concat([first, df.iloc[400:]]), ["a"], ["y"], ["x"],
                        aggregation=["mean", "std", "entries"])  # fmt: skip
    np.testing.assert_array_equal(streamed.entries.values, memory.entries.values)
    np.testing.assert_allclose(streamed.coef.values, memory.coef.values, rtol=1e-9)


def test_a_stream_of_tiny_then_ordinary_weights_equals_the_rows_in_memory():
    df = rows()
    df.loc[:299, "w"] *= 1e-200
    streamed = xslide.fit([df.iloc[:300], df.iloc[300:]], ["a"], ["y"], ["x"], weights="w")
    memory = xslide.fit(df, ["a"], ["y"], ["x"], weights="w", aggregation=["mean", "entries"])
    np.testing.assert_array_equal(streamed.entries.values, memory.entries.values)
    np.testing.assert_allclose(streamed.coef.values, memory.coef.values, rtol=1e-9)


def test_combining_parts_of_different_weight_scales_does_not_depend_on_their_order():
    df = rows()
    parts = [df.iloc[:1000], df.iloc[1000:].assign(w=df.w.iloc[1000:] * 1e200)]
    stats = [xslide.bin_stats(p, ["a"], ["y"], ["x"], weights="w") for p in parts]
    forward = xslide.fit(xslide.combine_stats(stats))
    backward = xslide.fit(xslide.combine_stats(stats[::-1]))
    for name in ("coef", "std", "stderr"):
        np.testing.assert_allclose(forward[name], backward[name], rtol=1e-9)
    assert np.isfinite(forward["std"]).all()


@pytest.mark.parametrize("extreme", [1e160, 1e200, 1e300])
def test_weights_spanning_extreme_scales_keep_every_bin_fitted(extreme):
    df = rows()
    plain = xslide.make_sliding_window_fit(df, ["a"], {}, ["y"], ["x"], weights_column="w")
    factor = np.where(df.a == 0, 1.0 / extreme, extreme)  # one factor per window
    if extreme == 1e300:
        factor = np.where(df.a == 0, 1.0, extreme)
    mixed = xslide.make_sliding_window_fit(
        df.assign(w=df.w * factor), ["a"], {}, ["y"], ["x"], weights_column="w"
    )
    for column in ("y_mean", "y_intercept", "y_slope_x", "y_slope_x_err", "y_entries"):
        np.testing.assert_allclose(mixed[column], plain[column], rtol=1e-9, err_msg=column)


@pytest.mark.parametrize(
    "options", [{"centers": "grid"}, {"boundary": "periodic"}, {"trend": 1, "centers": "grid"}]
)
def test_an_all_false_selection_is_empty_whatever_the_options(options):
    df = rows()
    df["a"] += 100
    with pytest.warns(UserWarning, match="result is empty"):
        out = xslide.make_sliding_window_fit(
            df, ["a"], {"a": 1}, ["y"], ["x"], selection=np.zeros(len(df), bool), **options
        )
    assert len(out) == 0


@pytest.mark.needs_numba
def test_an_all_false_selection_on_dask_is_empty():
    dd = pytest.importorskip("dask.dataframe")
    df = rows().assign(keep=False)
    with pytest.warns(UserWarning, match="result is empty"):
        out = xslide.make_sliding_window_fit(
            dd.from_pandas(df, npartitions=2), ["a"], {"a": 1}, ["y"], ["x"], selection="keep"
        )
    assert len(out) == 0 and out.attrs["n_rows_input"] == len(df)


@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov", "linear"])
def test_named_kernels_take_windows_beyond_int64(kernel):
    out = xslide.fit(rows(), ["a"], ["y"], window={"a": 10**30}, kernel=kernel)
    assert np.isfinite(out.coef.values).all()
