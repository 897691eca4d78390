"""``xslide.o2dpg.make_sliding_window_fit``: the upstream O2DPG keyword API on xslide.

The calls are those an upstream user makes (keyword-only, 3-D windows, each boundary, each
radial kernel, suffix, agg_columns, selection); every value is checked against xslide's own
``make_sliding_window_fit`` given the equivalent explicit kernel array, built here from the
upstream formula (one offset at a time, as upstream evaluates it).
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest

import xslide
from xslide.o2dpg import make_sliding_window_fit

GB = ["rBin", "zBin", "sBin"]
SHAPE = {"rBin": 7, "zBin": 5, "sBin": 6}
WINDOW = {"rBin": 2, "zBin": 1, "sBin": 1}
XSLIDE_BOUNDARY = {"full": "truncate", "symmetric": "shrink", "periodic": "periodic"}
UPSTREAM_COLUMNS = [
    "rBin", "zBin", "sBin",
    "dX_intercept_sw", "dX_intercept_err_sw", "dX_slope_qpt_sw", "dX_slope_qpt_err_sw",
    "dX_rmse_sw", "dX_n_fitted_sw",
    "dY_intercept_sw", "dY_intercept_err_sw", "dY_slope_qpt_sw", "dY_slope_qpt_err_sw",
    "dY_rmse_sw", "dY_n_fitted_sw",
    "quality_flag_sw", "n_neighbors_used_sw", "n_rows_aggregated_sw",
    "effective_window_fraction_sw",
]  # fmt: skip
METADATA_KEYS = {
    "version", "formulas", "residual_formulas", "pull_formulas", "columns", "parameters",
    "window_spec", "boundary_mode", "kernel", "kernel_width", "algorithm", "backend_used",
    "n_bins", "computation_time_sec", "python_version", "agg_columns", "agg_median",
}  # fmt: skip


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(14)
    n = 6_000
    df = pd.DataFrame({d: rng.integers(0, size, n) for d, size in SHAPE.items()})
    df["qpt"] = rng.normal(size=n)
    df["dX"] = 0.1 * df.rBin - 0.05 * df.zBin + 0.3 * df.qpt + rng.normal(0, 0.02, n)
    df["dY"] = np.sin(df.sBin) + 0.2 * df.qpt * df.rBin + rng.normal(0, 0.05, n)
    df.loc[::37, "dY"] = np.nan  # the targets have their own valid rows
    df["w"] = rng.uniform(0.5, 2.0, n)
    df["cog"] = df.rBin + rng.uniform(-0.5, 0.5, n)
    return df


def radial_weights(kernel: str, window: dict, widths: dict) -> np.ndarray:
    """The upstream kernel over the window's offsets: one offset vector at a time."""
    dims = list(window)
    shape = tuple(2 * window[d] + 1 for d in dims)
    out = np.empty(shape)
    for index in itertools.product(*[range(s) for s in shape]):
        u2 = sum(((i - window[d]) / widths[d]) ** 2 for i, d in zip(index, dims, strict=True))
        out[index] = {
            "uniform": 1.0,
            "gaussian": math.exp(-0.5 * u2),
            "epanechnikov": max(0.0, 1.0 - u2),
            "linear": max(0.0, 1.0 - math.sqrt(u2)),
        }[kernel]
    return out


def default_widths(window: dict) -> dict:
    return {d: float(max(w, 1)) for d, w in window.items()}


def reference(df, window, fit_columns, predictors, *, kernel="uniform", boundary="full", **kw):
    """xslide's own seed API with the upstream kernel as an explicit array."""
    widths = kw.pop("widths", default_widths(window))
    periodic = {d: (0, SHAPE[d] - 1) for d in GB if boundary == "periodic"}
    return xslide.make_sliding_window_fit(
        df,
        GB,
        window,
        fit_columns,
        predictors,
        boundary=XSLIDE_BOUNDARY[boundary],
        kernel=radial_weights(kernel, window, widths),
        extent=periodic or None,
        **kw,
    )


def assert_same_values(out: pd.DataFrame, ref: pd.DataFrame, suffix: str = "_sw") -> None:
    """Every upstream column equals xslide's column of the same meaning."""
    for column in out.columns:
        name = column if column in GB else column.removesuffix(suffix)
        if out[column].dtype.kind in "fi":
            np.testing.assert_allclose(
                out[column].to_numpy(), ref[name].to_numpy(), rtol=1e-12, atol=0, err_msg=column
            )
        else:
            assert out[column].tolist() == ref[name].tolist(), column


@pytest.mark.parametrize("kernel", ["uniform", "gaussian", "epanechnikov", "linear"])
@pytest.mark.parametrize("boundary", ["full", "symmetric", "periodic"])
def test_every_boundary_and_kernel_equals_xslide_with_the_radial_kernel_array(
    rows, boundary, kernel
):
    out = make_sliding_window_fit(
        df=rows,
        gb_columns=GB,
        fit_columns=["dX", "dY"],
        linear_columns=["qpt"],
        window_spec=WINDOW,
        min_stat=5,
        boundary=boundary,
        kernel=kernel,
        suffix="_sw",
    )
    ref = reference(rows, WINDOW, ["dX", "dY"], ["qpt"], kernel=kernel, boundary=boundary,
                    min_entries=5)  # fmt: skip
    assert list(out.columns) == UPSTREAM_COLUMNS
    assert len(out) == len(ref) == math.prod(SHAPE.values())
    assert_same_values(out, ref)
    assert out.attrs["kernel"] == kernel
    assert out.attrs["boundary_mode"] == dict.fromkeys(GB, boundary)
    assert out.attrs["kernel_width"] == {"rBin": 2.0, "zBin": 1.0, "sBin": 1.0}


def test_radial_kernels_reach_zero_at_u_one_unlike_xslides_product_kernels(rows):
    kw = dict(df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
              window_spec=WINDOW)  # fmt: skip
    radial = make_sliding_window_fit(**kw, kernel="epanechnikov")
    # u = 1 on the axes at |o| = h: of the 5 x 3 x 3 box only the center and rBin ± 1
    # (u² = 1/4) keep weight; xslide's product kernel keeps all 45
    assert int(radial.n_neighbors_used_sw.max()) == 3
    product = xslide.make_sliding_window_fit(
        rows, GB, WINDOW, ["dX"], ["qpt"], kernel="epanechnikov"
    )
    assert int(product.n_neighbors_used.max()) == 45
    assert not np.allclose(radial.dX_slope_qpt_sw, product.dX_slope_qpt, rtol=1e-6)


def test_kernel_width_as_number_and_per_dim(rows):
    kw = dict(df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
              window_spec=WINDOW, kernel="gaussian")  # fmt: skip
    number = make_sliding_window_fit(**kw, kernel_width=1.5)
    widths = {"rBin": 1.5, "zBin": 1.5, "sBin": 1.5}
    assert_same_values(number, reference(rows, WINDOW, ["dX"], ["qpt"], kernel="gaussian",
                                         widths=widths))  # fmt: skip
    per_dim = make_sliding_window_fit(**kw, kernel_width={"rBin": 0.7})
    widths = {"rBin": 0.7, "zBin": 1.0, "sBin": 1.0}
    assert per_dim.attrs["kernel_width"] == widths
    assert_same_values(per_dim, reference(rows, WINDOW, ["dX"], ["qpt"], kernel="gaussian",
                                          widths=widths))  # fmt: skip


def test_an_upstream_kernel_callable_runs_unchanged(rows):
    def upstream_epanechnikov(offset, sigma):  # f(offset vector, width vector), as upstream
        return max(0.0, 1.0 - float(np.sum((offset / sigma) ** 2)))

    kw = dict(df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
              window_spec=WINDOW)  # fmt: skip
    custom = make_sliding_window_fit(**kw, kernel=upstream_epanechnikov)
    named = make_sliding_window_fit(**kw, kernel="epanechnikov")
    assert custom.attrs["kernel"] == "custom"
    pd.testing.assert_frame_equal(custom, named, check_exact=False, rtol=1e-12)


def test_suffix_goes_on_every_column_but_the_bin_columns(rows):
    kw = dict(df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
              window_spec={"rBin": 1}, agg_columns=["cog"])  # fmt: skip
    v1 = make_sliding_window_fit(**kw, suffix="_v1")
    bare = make_sliding_window_fit(**kw, suffix="")
    assert [c for c in v1.columns if not c.endswith("_v1")] == GB
    assert [c.removesuffix("_v1") for c in v1.columns] == list(bare.columns)
    assert list(bare.columns)[3:6] == ["cog_mean", "cog_std", "dX_intercept"]
    pd.testing.assert_frame_equal(bare, v1.rename(columns=lambda c: c.removesuffix("_v1")))
    assert v1.attrs["parameters"]["suffix"] == "_v1"
    assert v1.attrs["formulas"] == {"dX_pred_v1": "dX_intercept_v1 + dX_slope_qpt_v1*qpt"}


@pytest.mark.parametrize("kernel", ["uniform", "linear"])
def test_agg_columns_are_window_mean_std_median_like_xslides(rows, kernel):
    out = make_sliding_window_fit(
        df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
        window_spec=WINDOW, weights="w", kernel=kernel, boundary="symmetric",
        agg_columns=["rBin", "cog", "dY"], agg_median=True,
    )  # fmt: skip
    assert list(out.columns[3:12]) == [
        f"{c}_{a}_sw" for c in ("rBin", "cog", "dY") for a in ("mean", "std", "median")
    ]
    # the same columns as xslide targets (a bin column copied: xslide cannot fit its own dims)
    copied = rows.assign(rBin_value=rows.rBin.astype(float))
    ref = reference(copied, WINDOW, ["rBin_value", "cog", "dY"], [], kernel=kernel,
                    boundary="symmetric", weights_column="w", min_entries=1,
                    aggregation_functions=["mean", "std", "median"])  # fmt: skip
    for c, name in (("rBin", "rBin_value"), ("cog", "cog"), ("dY", "dY")):
        for a in ("mean", "std", "median"):
            np.testing.assert_allclose(out[f"{c}_{a}_sw"], ref[f"{name}_{a}"], rtol=1e-12)
    assert out.attrs["agg_columns"] == ["rBin", "cog", "dY"] and out.attrs["agg_median"]
    assert_same_values(
        out.drop(columns=out.columns[3:12]),
        reference(rows, WINDOW, ["dX"], ["qpt"], kernel=kernel, boundary="symmetric",
                  weights_column="w"),
    )  # fmt: skip


def test_agg_columns_of_window_zero_are_the_plain_groupby(rows):
    out = make_sliding_window_fit(
        df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
        window_spec={"rBin": 0}, agg_columns=["cog"], min_stat=2,
    )  # fmt: skip
    manual = rows.groupby(GB).cog.agg(["mean", "std"]).reset_index()
    merged = out.merge(manual, on=GB)
    assert len(merged) == len(out)
    np.testing.assert_allclose(merged.cog_mean_sw, merged["mean"], rtol=1e-10)
    np.testing.assert_allclose(merged.cog_std_sw, merged["std"], rtol=1e-10)
    assert "cog_median_sw" not in out.columns


def test_selection_is_positional_and_equals_xslides(rows):
    shuffled = rows.sample(frac=1.0, random_state=1)  # an index that is not 0..n-1
    keep = (shuffled.qpt.abs() < 1).to_numpy()
    selection = pd.Series(keep)  # upstream reads it by position, whatever its index
    out = make_sliding_window_fit(
        df=shuffled, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
        window_spec=WINDOW, selection=selection, boundary="periodic", kernel="gaussian",
    )  # fmt: skip
    ref = reference(shuffled, WINDOW, ["dX"], ["qpt"], kernel="gaussian", boundary="periodic",
                    selection=keep)  # fmt: skip
    assert_same_values(out, ref)
    assert ref.attrs["n_rows_not_selected"] == int((~keep).sum()) > 0
    everything = make_sliding_window_fit(
        df=shuffled, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
        window_spec=WINDOW, boundary="periodic", kernel="gaussian",
    )  # fmt: skip
    assert (out.n_rows_aggregated_sw < everything.n_rows_aggregated_sw).all()


def test_periodic_wraps_over_the_selected_rows_bins_without_warning(rows):
    part = rows[rows.sBin <= 4]  # sBin 0..4 observed: the period is 5 bins, as upstream
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = make_sliding_window_fit(
            df=part, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
            window_spec={"sBin": 1}, boundary={"sBin": "periodic"},
        )  # fmt: skip
    ref = xslide.make_sliding_window_fit(
        part,
        GB,
        {"sBin": 1},
        ["dX"],
        ["qpt"],
        boundary={"sBin": "periodic"},
        extent={"sBin": (0, 4)},
    )
    assert_same_values(out, ref)
    assert out.attrs["boundary_mode"] == {"rBin": "full", "zBin": "full", "sBin": "periodic"}
    assert (out.n_neighbors_used_sw == 3).all()  # sBin 4 wraps to 0


def test_fit_intercept_false_has_no_intercept_columns(rows):
    with_rf = rows.assign(rf=rows.rBin * 1.0)
    out = make_sliding_window_fit(
        df=with_rf, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt", "rf"],
        window_spec=WINDOW, fit_intercept=False,
    )  # fmt: skip
    assert [c for c in out.columns if "intercept" in c] == []
    ref = xslide.make_sliding_window_fit(with_rf, GB, WINDOW, ["dX"], [],
                                         fit_formula="target ~ qpt + rf - 1")  # fmt: skip
    assert_same_values(out, ref)
    assert out.attrs["formulas"] == {"dX_pred_sw": "dX_slope_qpt_sw*qpt + dX_slope_rf_sw*rf"}


def test_expression_linear_columns_become_predictors(rows):
    out = make_sliding_window_fit(
        df=rows, gb_columns=GB, fit_columns=["dY"], linear_columns=["qpt", ("qr", "qpt * rBin")],
        window_spec=WINDOW,
    )  # fmt: skip
    assert "dY_slope_qr_sw" in out.columns and "qr" not in rows.columns
    ref = xslide.make_sliding_window_fit(rows.assign(qr=rows.qpt * rows.rBin), GB, WINDOW,
                                         ["dY"], ["qpt", "qr"])  # fmt: skip
    assert_same_values(out, ref)
    assert out.attrs["linear_column_map"] == {"qpt": "qpt", "qr": "qpt * rBin"}
    np.testing.assert_allclose(out.dY_slope_qr_sw.median(), 0.2, atol=0.02)


def test_metadata_keys_match_upstream_and_name_the_frames_columns(rows):
    out, metadata = make_sliding_window_fit(
        df=rows, gb_columns=GB, fit_columns=["dX", "dY"], linear_columns=["qpt"],
        window_spec=WINDOW, weights="w", min_stat=7, return_metadata=True,
        algorithm="incremental", binning_formulas={"rBin": "r / 10"},
    )  # fmt: skip
    assert set(metadata) == METADATA_KEYS | {"xslide_attrs"}
    assert out.attrs == metadata
    assert set(metadata["columns"]) == {
        "gb_columns", "fit_columns", "linear_columns", "coefficients", "errors", "quality"
    }  # fmt: skip
    assert metadata["parameters"] == {
        "suffix": "_sw", "fit_intercept": True, "min_stat": 7, "fit_type": "sliding_window",
        "weights_column": "w",
    }  # fmt: skip
    named = [c for group in ("coefficients", "errors", "quality")
             for t in ("dX", "dY") for c in metadata["columns"][group][t]]  # fmt: skip
    assert set(named) <= set(out.columns) and len(named) == 12
    assert metadata["window_spec"] == WINDOW and metadata["algorithm"] == "incremental"
    assert metadata["n_bins"] == len(out) and metadata["backend_used"].startswith("xslide_")
    assert metadata["xslide_attrs"]["binning_formulas_json"] == '{"rBin": "r / 10"}'
    recompute = make_sliding_window_fit(
        df=rows, gb_columns=GB, fit_columns=["dX", "dY"], linear_columns=["qpt"],
        window_spec=WINDOW, weights="w", min_stat=7,
    )  # fmt: skip
    pd.testing.assert_frame_equal(out, recompute, check_exact=True)  # same fit either way
    assert_same_values(out, reference(rows, WINDOW, ["dX", "dY"], ["qpt"], weights_column="w",
                                      min_entries=7))  # fmt: skip


def test_cast_dtype_applies_to_the_float_columns(rows):
    out = make_sliding_window_fit(
        df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"], window_spec=WINDOW,
        cast_dtype="float32", agg_columns=["cog"],
    )  # fmt: skip
    floats = [c for c in out.columns if out[c].dtype.kind == "f"]
    assert floats and all(out[c].dtype == np.float32 for c in floats)
    assert out.dX_n_fitted_sw.dtype == np.int64 and out.rBin.dtype == np.int64


def test_no_selected_row_gives_every_column_empty_and_one_warning(rows):
    with pytest.warns(UserWarning, match="the result is empty") as caught:
        out = make_sliding_window_fit(
            df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
            window_spec=WINDOW, agg_columns=["cog"], selection=np.zeros(len(rows), dtype=bool),
        )  # fmt: skip
    assert len(caught) == 1 and len(out) == 0
    assert list(out.columns) == [*GB, "cog_mean_sw", "cog_std_sw", *UPSTREAM_COLUMNS[3:9],
                                 *UPSTREAM_COLUMNS[15:]]  # fmt: skip


def test_verbose_shows_xslides_progress_bars_and_changes_no_value(rows, capfd):
    kw = dict(df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
              window_spec=WINDOW, agg_columns=["cog"], agg_median=True)  # fmt: skip
    quiet = make_sliding_window_fit(**kw)
    assert "xslide" not in capfd.readouterr().err
    pd.testing.assert_frame_equal(make_sliding_window_fit(**kw, verbose=True), quiet)
    assert "xslide median" in capfd.readouterr().err


def test_the_call_is_keyword_only_like_upstream(rows):
    with pytest.raises(TypeError):
        make_sliding_window_fit(rows, GB, ["dX"], ["qpt"], WINDOW)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"fitter": "rlm"}, r"unsupported keywords \['fitter'\]"),
        ({"aggregation_functions": {"dX": ["mean"]}}, "aggregation_functions is not supported"),
        ({"algorithm": "v5"}, "algorithm must be one of"),
        ({"boundary": "mirror"}, "boundary for 'rBin' must be one of"),
        ({"boundary": {"phiBin": "periodic"}}, r"boundary names \['phiBin'\]"),
        ({"kernel": "triangle"}, "kernel must be one of"),
        ({"kernel": "gaussian", "kernel_width": 0}, "kernel_width for 'rBin' must be"),
        ({"kernel_width": {"phi": 1.0}}, r"kernel_width names \['phi'\]"),
        ({"cast_dtype": "int32"}, "cast_dtype must be a float dtype"),
        ({"selection": np.ones(5, dtype=bool)}, "selection must be a boolean mask of len"),
        ({"window_spec": {"phi": 1}}, r"window_spec names \['phi'\]"),
        ({"window_spec": {"rBin": "1"}}, "window_spec for 'rBin' must be an integer >= 0"),
        ({"window_spec": {"rBin": -1}}, "window_spec for 'rBin' must be an integer >= 0"),
        ({"gb_columns": "rBin"}, "gb_columns must be a list of column names"),
        ({"agg_columns": ["nope"]}, "agg_columns names 'nope'"),
        ({"partition_strategy": {"split_by": ["sBin"]}}, "split_by is not supported"),
        ({"linear_columns": [("qpt", "qpt * 2")]}, "must be a new identifier"),
        ({"fit_intercept": False, "linear_columns": []}, "needs at least one linear column"),
    ],
)
def test_unsupported_or_bad_options_are_refused_in_one_line(rows, options, match):
    kw = dict(df=rows, gb_columns=GB, fit_columns=["dX"], linear_columns=["qpt"],
              window_spec=WINDOW) | options  # fmt: skip
    with pytest.raises(ValueError, match=match) as info:
        make_sliding_window_fit(**kw)
    assert "\n" not in str(info.value)
