"""Non-linear models per window: ``fitter='curve_fit'`` with ``model=f(x1, ..., *params)``.

The oracle is ``scipy.optimize.curve_fit`` on each window's rows gathered explicitly (the bins
of the window from ``tests/reference.py``, each row weighted by its kernel weight times its own
weight, ``sigma = 1 / sqrt(w)``); a linear model must give the closed-form fit.
"""

from __future__ import annotations

import itertools
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from reference import offset_weight, window_bins
from scipy.optimize import curve_fit

import xslide
import xslide.fitters
from xslide import curve
from xslide.fitters import split_at

TIGHT = {"ftol": 1e-13, "xtol": 1e-13, "gtol": 1e-13}
PARAMS = ["amp", "rate", "base"]


def decay(x, amp, rate, base):
    return amp * np.exp(-rate * x) + base


def decay_jac(x, amp, rate, base):
    e = np.exp(-rate * x)
    return np.column_stack([e, -amp * x * e, np.ones_like(x)])


def decay_rows(shape=(6, 5), per_bin=40, seed=0, noise=0.05) -> pd.DataFrame:
    """Rows on a 2-D grid: y = a·exp(−b·x) + c with a, b varying smoothly over the bins."""
    rng = np.random.default_rng(seed)
    a, b = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    a, b = np.repeat(a.ravel(), per_bin), np.repeat(b.ravel(), per_bin)
    x = rng.uniform(0.0, 3.0, a.size)
    y = decay(x, 2.0 + 0.1 * a, 1.2 + 0.05 * b, 0.5) + rng.normal(0.0, noise, a.size)
    df = pd.DataFrame({"a": a, "b": b, "x": x, "y": y, "w": rng.uniform(0.5, 2.0, a.size)})
    return df.iloc[rng.permutation(a.size)].reset_index(drop=True)


def gathered(df, center, window, kernel="uniform", boundary="truncate", weights=None):
    """x, y and kernel x row weights of the rows of one window, mirror duplicates included."""
    dims = list(window)
    lows = [int(df[d].min()) for d in dims]
    sizes = [int(df[d].max()) - lo + 1 for d, lo in zip(dims, lows, strict=True)]
    half = [window[d] for d in dims]
    xs, ys, ws = [], [], []
    for bin_, offset in window_bins(center, half, lows, sizes, [boundary] * len(dims)):
        k = offset_weight(kernel, offset, half, dims, None)
        rows = df[np.all([df[d] == v for d, v in zip(dims, bin_, strict=True)], axis=0)]
        if k == 0 or rows.empty:
            continue
        xs.append(rows["x"].to_numpy())
        ys.append(rows["y"].to_numpy())
        own = np.ones(len(rows)) if weights is None else rows[weights].to_numpy()
        ws.append(k * own)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws)


def coefficients(out: pd.DataFrame, names=PARAMS, target="y"):
    coef = out[[f"{target}_slope_{p}" for p in names]].to_numpy()
    stderr = out[[f"{target}_slope_{p}_err" for p in names]].to_numpy()
    return coef, stderr


def fit_frame(df, window=None, **kwargs) -> pd.DataFrame:
    kwargs.setdefault("min_entries", 5)
    kwargs.setdefault("model", decay)
    kwargs.setdefault("p0", [1.0, 1.0, 0.0])
    return xslide.make_sliding_window_fit(
        df, ["a", "b"], window or {"a": 1, "b": 1}, ["y"], ["x"], fitter="curve_fit", **kwargs
    )


# --- the oracle ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "boundary", "weights"),
    [("uniform", "truncate", None), ("gaussian", "mirror", "w"), ("linear", "shrink", None)],
)
def test_exponential_windows_equal_curve_fit_on_the_gathered_rows(kernel, boundary, weights):
    df = decay_rows(seed=1)
    window = {"a": 1, "b": 1}
    out = fit_frame(df, window, kernel=kernel, boundary=boundary, weights_column=weights)
    coef, stderr = coefficients(out)
    assert out.quality_flag.eq("").all()
    for k, (a, b) in enumerate(zip(out.a, out.b, strict=True)):
        x, y, w = gathered(df, (a, b), window, kernel, boundary, weights)
        expected, cov = curve_fit(decay, x, y, p0=[1.0, 1.0, 0.0], sigma=1 / np.sqrt(w), **TIGHT)
        np.testing.assert_allclose(coef[k], expected, rtol=1e-6)
        np.testing.assert_allclose(stderr[k], np.sqrt(np.diag(cov)), rtol=1e-5)
        assert out.y_n_fitted[k] == y.size
        rss = np.sum(w * (y - decay(x, *expected)) ** 2)
        np.testing.assert_allclose(out.y_rmse[k], np.sqrt(rss / w.sum()), rtol=1e-6)
        tss = np.sum(w * (y - np.average(y, weights=w)) ** 2)
        np.testing.assert_allclose(out.y_r_squared[k], 1 - rss / tss, rtol=1e-6)


def test_pulls_of_the_coefficients_have_unit_width():
    rng = np.random.default_rng(3)
    n_bins, per_bin, truth = 1000, 40, np.array([2.0, 1.5, 0.3])
    a = np.repeat(np.arange(n_bins), per_bin)
    x = rng.uniform(0.0, 3.0, a.size)
    sigma = rng.uniform(0.02, 0.08, a.size)
    y = decay(x, *truth) + rng.normal(0.0, sigma, a.size)
    df = pd.DataFrame({"a": a, "x": x, "y": y, "w": sigma**-2})
    fit = xslide.fit(
        df,
        ["a"],
        ["y"],
        ["x"],
        fitter="curve_fit",
        model=decay,
        p0=[1, 1, 0],
        jac=decay_jac,
        weights="w",
    )
    pulls = (fit.coef.sel(target="y") - truth[:, None]) / fit.stderr.sel(target="y")
    widths = pulls.std("a").values
    np.testing.assert_allclose(widths, 1.0, atol=0.1)
    assert np.abs(pulls.mean("a").values).max() < 0.2


@pytest.mark.parametrize(("kernel", "weights"), [("uniform", None), ("gaussian", "w")])
def test_a_linear_model_equals_the_closed_form_fit(kernel, weights):
    rng = np.random.default_rng(4)
    df = decay_rows(seed=4)
    df["z"] = rng.normal(size=len(df))
    df["y"] = 1.0 + 0.2 * df.a - 0.7 * df.x + 0.3 * df.z + rng.normal(0, 0.1, len(df))
    common = {"kernel": kernel, "weights_column": weights, "min_entries": 5}
    dims, window = ["a", "b"], {"a": 1, "b": 2}
    closed = xslide.make_sliding_window_fit(df, dims, window, ["y"], ["x", "z"], **common)

    def line(x, z, Intercept, bx, bz):  # 'Intercept': the seed's intercept column
        return Intercept + bx * x + bz * z

    curved = xslide.make_sliding_window_fit(
        df, dims, window, ["y"], ["x", "z"], fitter="curve_fit", model=line, p0=[0, 0, 0], **common
    )
    same = {"intercept": "intercept", "slope_bx": "slope_x", "slope_bz": "slope_z"}
    same |= {f"{k}_err": f"{v}_err" for k, v in same.items()}
    for mine, theirs in {**same, "r_squared": "r_squared", "rmse": "rmse"}.items():
        np.testing.assert_allclose(curved[f"y_{mine}"], closed[f"y_{theirs}"], rtol=1e-8)
    pd.testing.assert_series_equal(curved.y_n_fitted, closed.y_n_fitted)


def test_each_target_is_fitted_on_its_own_valid_rows():
    df = decay_rows(shape=(2, 4), seed=21)
    df["y2"] = 3.0 * df.y
    df.loc[df.index % 4 == 0, "y2"] = np.nan
    out = xslide.make_sliding_window_fit(
        df, ["a", "b"], {"b": 1}, ["y", "y2"], ["x"], fitter="curve_fit", model=decay, p0=[1, 1, 0]
    )
    for k, (a, b) in enumerate(zip(out.a, out.b, strict=True)):
        rows = df[(df.a == a) & ((df.b - b).abs() <= 1)]
        for target in ("y", "y2"):
            valid = rows[rows[target].notna()]
            expected, _ = curve_fit(decay, valid.x, valid[target], p0=[1, 1, 0], **TIGHT)
            got = coefficients(out.iloc[[k]], target=target)[0][0]
            np.testing.assert_allclose(got, expected, rtol=1e-6)
            assert out[f"{target}_n_fitted"].iloc[k] == len(valid)


# --- warm starts, parallel runs ------------------------------------------------------------------


def test_each_window_starts_from_its_converged_neighbor_within_a_chain(monkeypatch):
    monkeypatch.setattr(curve, "CHAIN_LENGTH", 3)
    df = decay_rows(shape=(2, 7), seed=5)
    first = {}  # least_squares evaluates the model at the start first

    def model(x, amp, rate, base):
        key = round(float(x.sum()), 9)
        first.setdefault(key, (amp, rate, base))
        return decay(x, amp, rate, base)

    out = fit_frame(df, {"a": 0, "b": 1}, model=model, p0=[1.0, 1.0, 0.0])
    coef, _ = coefficients(out)
    for k, (a, b) in enumerate(zip(out.a, out.b, strict=True)):
        x, _, _ = gathered(df, (a, b), {"a": 0, "b": 1})
        start = np.array(first[round(float(x.sum()), 9)])
        if b % 3 == 0:  # first of its chain (b = 0, 3, 6): p0
            np.testing.assert_array_equal(start, [1.0, 1.0, 0.0])
        else:  # the neighbor's solution at b - 1
            np.testing.assert_array_equal(start, coef[k - 1])


def test_a_callable_p0_starts_every_window_from_its_rows():
    df = decay_rows(shape=(3, 3), seed=6)
    seen = []

    def guess(x, y):
        seen.append(x.size)
        return [y.max() - y.min(), 1.0, y.min()]

    out = fit_frame(df, p0=guess)
    plain = fit_frame(df)
    assert len(seen) == len(out) and seen == out.y_n_fitted.tolist()
    np.testing.assert_allclose(coefficients(out)[0], coefficients(plain)[0], rtol=1e-6)


def test_process_pool_gives_bit_identical_results():
    df = decay_rows(shape=(4, 20), per_bin=15, seed=7)
    serial = fit_frame(df, weights_column="w", kernel="gaussian")
    pooled = fit_frame(df, weights_column="w", kernel="gaussian", partition_strategy={"n_jobs": 2})
    assert serial.quality_flag.eq("").all()
    pd.testing.assert_frame_equal(pooled, serial, check_exact=True)


@pytest.mark.slow
def test_dask_client_gives_bit_identical_results():
    distributed = pytest.importorskip("distributed")
    df = decay_rows(shape=(3, 20), per_bin=15, seed=8)
    serial = fit_frame(df)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = fit_frame(df, partition_strategy=client)
    pd.testing.assert_frame_equal(on_dask, serial, check_exact=True)


def test_blocks_never_split_a_warm_start_chain():
    ids = np.arange(100)
    groups = ids // 7
    blocks = split_at(ids, groups, 5)
    np.testing.assert_array_equal(np.concatenate(blocks), ids)
    assert 2 <= len(blocks) <= 5
    for left, right in itertools.pairwise(blocks):
        assert groups[left[-1]] != groups[right[0]]
    assert [b.tolist() for b in split_at(ids, np.zeros(100, int), 4)] == [ids.tolist()]


# --- the options of the model --------------------------------------------------------------------


def test_bounds_hold_and_equal_curve_fit_with_the_same_bounds():
    df = decay_rows(shape=(3, 3), seed=9)
    bounds = ([0.0, 0.0, 0.6], [10.0, 5.0, 2.0])  # base truly 0.5: held at its bound
    out = fit_frame(df, {"a": 0, "b": 0}, bounds=bounds, p0=[1.0, 1.0, 1.0])
    coef, _ = coefficients(out)
    np.testing.assert_allclose(coef[:, 2], 0.6, atol=1e-9)
    for k, (a, b) in enumerate(zip(out.a, out.b, strict=True)):
        x, y, _ = gathered(df, (a, b), {"a": 0, "b": 0})
        expected, _ = curve_fit(decay, x, y, p0=[1.0, 1.0, 1.0], bounds=bounds, **TIGHT)
        np.testing.assert_allclose(coef[k], expected, rtol=1e-6, atol=1e-9)
    by_name = fit_frame(df, {"a": 0, "b": 0}, bounds={"base": (0.6, 2.0)}, p0=[1.0, 1.0, 1.0])
    np.testing.assert_allclose(coefficients(by_name)[0][:, 2], 0.6, atol=1e-9)


def test_an_analytic_jac_is_used_and_gives_the_finite_difference_fit():
    df = decay_rows(shape=(3, 3), seed=10)
    calls = []

    def jac(x, amp, rate, base):
        calls.append(x.size)
        return decay_jac(x, amp, rate, base)

    analytic = fit_frame(df, jac=jac)
    numeric = fit_frame(df)
    assert calls
    coef, stderr = coefficients(analytic)
    np.testing.assert_allclose(coef, coefficients(numeric)[0], rtol=1e-6)
    np.testing.assert_allclose(stderr, coefficients(numeric)[1], rtol=1e-4)


def test_the_dataset_names_its_terms_after_the_model_parameters():
    df = decay_rows(shape=(3, 3), seed=11)
    fit = xslide.fit(
        df, ["a", "b"], ["y"], ["x"], {"a": 1}, fitter="curve_fit", model=decay, p0=[1, 1, 0]
    )
    assert fit.term.values.tolist() == PARAMS and fit.term_.values.tolist() == PARAMS
    assert fit.attrs["fitter_used"] == "curve_fit:decay"
    assert fit.attrs["formula"] == "curve_fit"
    cov = fit.cov.sel(target="y", a=1, b=1).values
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), fit.stderr.sel(target="y", a=1, b=1))
    assert abs(cov[0, 1]) > 0  # a full covariance, not just the variances
    with pytest.raises(ValueError, match=r"curve_fit.*model"):
        xslide.predict(fit, df)


def test_a_model_of_two_predictors_gets_them_in_order():
    rng = np.random.default_rng(12)
    df = decay_rows(shape=(2, 2), seed=12)
    df["t"] = rng.uniform(1.0, 2.0, len(df))
    df["y"] = 2.0 * np.exp(-0.8 * df.x) * df.t**1.5 + rng.normal(0, 0.01, len(df))

    def power(x, t, amp, rate, power):
        return amp * np.exp(-rate * x) * t**power

    out = xslide.make_sliding_window_fit(
        df, ["a", "b"], {}, ["y"], ["x", "t"], fitter="curve_fit", model=power, p0=[1, 1, 1]
    )
    np.testing.assert_allclose(coefficients(out, ["amp", "rate", "power"])[0], [[2, 0.8, 1.5]] * 4,
                               rtol=0.02)  # fmt: skip


# --- failures ------------------------------------------------------------------------------------


def test_failed_windows_are_flagged_and_counted_by_reason():
    df = decay_rows(shape=(3, 3), seed=13)

    def fragile(x, amp, rate, base):
        if x.size > 300:  # the windows of the inner bins
            raise ZeroDivisionError("too many rows")
        return decay(x, amp, rate, base)

    with pytest.warns(xslide.FitFailedWarning) as caught:
        out = fit_frame(df, model=fragile)
    failed = out.quality_flag.eq("fit_failed_y")
    assert failed.sum() == (out.y_n_fitted > 300).sum() > 0
    assert out.loc[failed, "y_slope_amp"].isna().all()
    assert out.loc[~failed, "y_slope_amp"].notna().all()
    message = str(caught[0].message)
    assert re.search(rf"{failed.sum()} of 9 window fits with 'curve_fit:.*fragile' failed", message)
    assert "ZeroDivisionError x" in message
    assert '"ZeroDivisionError"' in out.attrs["fit_failures_json"]


def test_a_search_that_does_not_converge_is_a_failed_fit():
    df = decay_rows(shape=(2, 2), seed=14)
    with pytest.warns(xslide.FitFailedWarning, match="NotConvergedError x4"):
        out = fit_frame(df, fit_kwargs={"max_nfev": 2})
    assert out.quality_flag.eq("fit_failed_y").all()


def test_undetermined_parameters_are_flagged_singular_not_failed():
    df = decay_rows(shape=(2, 2), seed=15)

    def redundant(x, amp, scale, rate, base):  # only amp * scale is determined
        return amp * scale * np.exp(-rate * x) + base

    with warnings.catch_warnings():
        warnings.simplefilter("error", xslide.FitFailedWarning)
        out = fit_frame(df, model=redundant, p0=[1, 1, 1, 0])
    assert out.quality_flag.eq("singular_y").all()
    assert out.y_slope_amp.isna().all() and out.y_n_fitted.gt(0).all()


def test_fewer_rows_than_parameters_is_singular_and_min_entries_still_applies():
    df = decay_rows(shape=(2, 2), per_bin=2, seed=16)
    out = fit_frame(df, {"a": 0, "b": 0}, min_entries=2)
    assert out.quality_flag.eq("singular_y").all()
    skipped = fit_frame(df, {"a": 0, "b": 0}, min_entries=3)
    assert skipped.quality_flag.eq("insufficient_stats").all()


def test_a_model_returning_the_wrong_shape_is_a_failed_fit():
    df = decay_rows(shape=(2, 2), seed=17)
    with pytest.warns(xslide.FitFailedWarning, match="model returned shape"):
        out = fit_frame(df, model=lambda x, a, b, c: np.ones((x.size, 2)))
    assert out.quality_flag.eq("fit_failed_y").all()


# --- time estimate and progress ------------------------------------------------------------------


def test_many_windows_warn_with_the_expected_duration(monkeypatch):
    df = decay_rows(shape=(3, 5), per_bin=10, seed=18)
    quiet = fit_frame(df)
    monkeypatch.setattr(xslide.fitters, "WARN_WINDOWS", 5)
    with pytest.warns(xslide.PerformanceWarning, match=r"fitting 15 windows with 'curve_fit:"):
        loud = fit_frame(df)
    np.testing.assert_allclose(coefficients(loud)[0], coefficients(quiet)[0], rtol=1e-6)


def test_progress_true_draws_a_bar(capfd):
    fit_frame(decay_rows(shape=(2, 3), seed=19), progress=True)
    assert "xslide curve_fit:decay" in capfd.readouterr().err


# --- bad options ---------------------------------------------------------------------------------


def star(x, *params):
    return x


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"model": None}, TypeError, "needs model="),
        ({"model": "exp"}, TypeError, "needs model="),
        ({"model": star}, ValueError, r"\*params"),
        ({"model": lambda x: x}, ValueError, "at least one parameter"),
        ({"p0": [1.0, 2.0]}, ValueError, "3 finite numbers"),
        ({"p0": [1.0, np.nan, 0.0]}, ValueError, "3 finite numbers"),
        ({"p0": {"amp": 1.0, "rate": 1.0}}, ValueError, r"missing \['base'\]"),
        ({"p0": ["a", "b", "c"]}, TypeError, "p0 must be numbers"),
        ({"bounds": (0.0, 0.0)}, ValueError, "lower < upper"),
        ({"bounds": (0.0,)}, ValueError, "bounds must be"),
        ({"bounds": {"speed": (0, 1)}}, ValueError, r"\['speed'\]"),
        ({"bounds": (2.0, 10.0)}, ValueError, "outside the bounds"),
        ({"jac": "exact"}, ValueError, "jac must be"),
        ({"fit_kwargs": {"loss": "soft_l1"}}, ValueError, "loss"),
        ({"fit_kwargs": ["max_nfev"]}, TypeError, "fit_kwargs"),
        ({"fit_kwargs": {"method": "lm"}, "bounds": (0, 5)}, ValueError, "cannot handle bounds"),
        ({"trend": 1}, ValueError, "trend"),
        ({"n_sigma_cut": 3.0}, ValueError, "n_sigma_cut"),
        ({"fit_formula": "target ~ x"}, ValueError, "fit_formula"),
    ],
)
def test_bad_curve_fit_options_are_refused(kwargs, error, pattern):
    df = decay_rows(shape=(2, 2))
    with pytest.raises(error, match=pattern):
        fit_frame(df, **kwargs)


def test_curve_fit_keywords_need_fitter_curve_fit():
    df = decay_rows(shape=(2, 2))
    with pytest.raises(TypeError, match=r"unexpected fitter options \['model'\] for fitter='ols'"):
        xslide.make_sliding_window_fit(df, ["a"], {}, ["y"], ["x"], model=decay)


def test_curve_fit_needs_predictors_and_rows():
    df = decay_rows(shape=(2, 2))
    with pytest.raises(ValueError, match="needs predictor_columns"):
        xslide.make_sliding_window_fit(df, ["a"], {}, ["y"], [], fitter="curve_fit", model=decay)
    stats = xslide.bin_stats(df, ["a", "b"], ["y"], ["x"])
    with pytest.raises(ValueError, match="need the rows"):
        xslide.fit(stats, fitter="curve_fit", model=decay)


def test_a_warm_start_that_does_not_converge_is_retried_from_p0(monkeypatch):
    model = curve.make_curve_model({"model": decay, "p0": [1.0, 1.0, 0.0]}, ["x"])
    df = decay_rows(shape=(1, 1), seed=20)
    solve, tried = curve.CurveModel._solve, []

    def stuck_far_away(self, columns, y, w, x0):
        tried.append(x0.tolist())
        if x0[0] == 99.0:
            raise curve.NotConvergedError("stuck")
        return solve(self, columns, y, w, x0)

    monkeypatch.setattr(curve.CurveModel, "_solve", stuck_far_away)
    x, y = df[["x"]].to_numpy(), df.y.to_numpy()
    coef = model.fit(x, y, None, np.array([99.0, 1.0, 0.0]))[0]
    assert tried == [[99.0, 1.0, 0.0], [1.0, 1.0, 0.0]]
    np.testing.assert_allclose(coef, curve_fit(decay, df.x, y, p0=[1, 1, 0], **TIGHT)[0], rtol=1e-6)


# --- the command line ----------------------------------------------------------------------------

MODEL_FILE = """
import numpy as np


def saturating(qpt, amp, scale, base):
    return amp * np.tanh(qpt / scale) + base
"""


def saturating(qpt, amp, scale, base):
    return amp * np.tanh(qpt / scale) + base


def cli(capsys, *argv) -> tuple[int, str]:
    from xslide.cli import main

    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def test_the_command_line_fits_a_model_from_a_file_as_the_api(files, track_table, tmp_path, capsys):
    xr = pytest.importorskip("xarray")
    models = tmp_path / "models.py"
    models.write_text(MODEL_FILE)
    out = tmp_path / "fit.nc"
    base = ["--dims", "rBin,zBin", "--window", "rBin=1", "--targets", "dX", "--predictors", "qpt"]
    code, err = cli(capsys, "fit", files["parquet"], *base, "--fitter", "curve_fit",
                    "--model", f"{models}:saturating", "--p0", "1,1,0",
                    "--bounds", "scale=0.1:inf", "--out", out)  # fmt: skip
    assert code == 0, err
    want = xslide.fit(track_table, ["rBin", "zBin"], ["dX"], ["qpt"], {"rBin": 1},
                      fitter="curve_fit", model=saturating, p0=[1, 1, 0],
                      bounds={"scale": (0.1, np.inf)})  # fmt: skip
    with xr.open_dataset(out) as got:
        assert got.term.values.tolist() == ["amp", "scale", "base"]
        assert got.attrs["fitter_used"] == "curve_fit:saturating"
        assert got.attrs["read_mode"] == "memory"
        np.testing.assert_allclose(got.coef.values, want.coef.values, rtol=1e-12)
        np.testing.assert_allclose(got.stderr.values, want.stderr.values, rtol=1e-12)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--fitter", "curve_fit"], "--fitter curve_fit needs --model"),
        (["--model", "{models}:saturating"], "options of --fitter curve_fit"),
        (["--fitter", "curve_fit", "--model", "{models}"], "FILE.py:FUNCTION"),
        (["--fitter", "curve_fit", "--model", "{models}:nothing"], "no function 'nothing'"),
        (["--fitter", "curve_fit", "--model", "missing.py:f"], "cannot import"),
        (["--fitter", "curve_fit", "--model", "{broken}:f"], "SyntaxError"),
        (["--fitter", "curve_fit", "--model", "{models}:saturating", "--p0", "1,x"], "--p0"),
        (["--fitter", "curve_fit", "--model", "{models}:saturating", "--bounds", "amp=1"], "lo:hi"),
        (["--fitter", "curve_fit", "--model", "{models}:saturating", "--p0", "1,1"], "p0"),
    ],
)
def test_bad_curve_fit_flags_exit_2_with_one_line(files, tmp_path, capsys, argv, fragment):
    models, broken = tmp_path / "models.py", tmp_path / "broken.py"
    models.write_text(MODEL_FILE)
    broken.write_text("def f(:\n")
    argv = [a.format(models=models, broken=broken) for a in argv]
    base = ["--dims", "rBin,zBin", "--targets", "dX", "--predictors", "qpt"]
    code, err = cli(capsys, "fit", files["parquet"], *base, *argv, "--out", tmp_path / "f.nc")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xslide: error: ") and fragment in lines[0]
    assert not (tmp_path / "f.nc").exists()
