"""Dask input: per-partition statistics on the workers equal the in-memory fit; chunked grids and
raw-row paths on a cluster equal the in-memory runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xslide
from xslide.bench import DIMS, SCENARIOS, make_rows

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

# The workers are other processes, which import numba themselves.
pytestmark = pytest.mark.needs_numba

ARGS = (list(DIMS[:3]), ["y1", "y2"], ["x1", "x2"])
REFERENCE = {"x1": 0.0, "x2": 0.0, "y1": 0.1, "y2": -0.1}
WINDOW = {"xBin": 1, "yBin": 1}


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    df = make_rows(SCENARIOS["small"], seed=5)
    df.loc[[3, 300], "y2"] = np.nan
    df["good"] = df.x1 > -2.0
    return df


@pytest.mark.slow
def test_dask_dataframe_statistics_equal_pandas(client, rows):
    ddf = dd.from_pandas(rows, npartitions=5)
    from_dask = xslide.bin_stats(ddf, *ARGS, weights="w", reference=REFERENCE)
    from_pandas = xslide.bin_stats(rows, *ARGS, weights="w", reference=REFERENCE)
    for name in from_pandas.data_vars:
        np.testing.assert_allclose(
            from_dask[name].values, from_pandas[name].values, rtol=1e-12, atol=1e-9, err_msg=name
        )
    assert from_dask.attrs["n_rows_input"] == len(rows)
    assert from_dask.attrs["n_rows_invalid_y2"] == 2


@pytest.mark.slow
def test_dask_fit_equals_the_pandas_fit(client, rows):
    ddf = dd.from_pandas(rows, npartitions=4)
    options = {"selection": "good", "boundary": "mirror", "kernel": "gaussian", "trend": 1}
    from_dask = xslide.fit(ddf, *ARGS, WINDOW, reference=REFERENCE, **options)
    options["selection"] = rows.good.to_numpy()
    from_pandas = xslide.fit(
        rows, *ARGS, WINDOW, reference=REFERENCE, aggregation=["mean", "std", "entries"], **options
    )
    for name in ("coef", "stderr", "mean", "std", "entries", "r_squared", "quality_flag"):
        np.testing.assert_allclose(
            from_dask[name].values, from_pandas[name].values, rtol=1e-12, atol=1e-12,
            err_msg=name,
        )  # fmt: skip
    assert from_dask.attrs["n_rows_not_selected"] == int((~rows.good).sum())


@pytest.mark.slow
def test_seed_api_takes_a_dask_dataframe(client, rows):
    ddf = dd.from_pandas(rows, npartitions=3)
    table = xslide.make_sliding_window_fit(ddf, *ARGS[:1], WINDOW, *ARGS[1:], reference=REFERENCE)
    expected = xslide.make_sliding_window_fit(
        rows, *ARGS[:1], WINDOW, *ARGS[1:], reference=REFERENCE,
        aggregation_functions={"y1": ["mean", "std", "entries"], "y2": ["mean", "std", "entries"]},
    )  # fmt: skip
    pd.testing.assert_frame_equal(table, expected, check_exact=False, rtol=1e-11, atol=1e-12)


@pytest.mark.slow
def test_rows_paths_are_refused_on_dask_input(client, rows):
    ddf = dd.from_pandas(rows, npartitions=2)
    with pytest.raises(ValueError, match="rows in memory"):
        xslide.fit(ddf, *ARGS, WINDOW, aggregation=["median"])
    with pytest.raises(ValueError, match="rows in memory"):
        xslide.fit(ddf, *ARGS, WINDOW, n_sigma_cut=3.0)
    with pytest.raises(TypeError, match="selection"):
        xslide.fit(ddf, *ARGS, WINDOW, selection=rows.good.to_numpy())


@pytest.mark.slow
def test_cli_fit_on_a_dask_cluster_equals_the_local_run(client, rows, tmp_path):
    from xslide import cli

    path = tmp_path / "rows.parquet"
    rows.to_parquet(path)
    common = [
        "fit", str(path), "--dims", "xBin,yBin,zBin", "--window", "xBin=1,yBin=1",
        "--targets", "y1,y2", "--predictors", "x1,x2", "--selection", "x1 > -2",
    ]  # fmt: skip
    address = client.scheduler.address
    assert cli.main([*common, "--scheduler", address, "--out", str(tmp_path / "d.nc")]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "s.nc")]) == 0
    import xarray as xr

    on_cluster = xr.open_dataset(tmp_path / "d.nc")
    local = xr.open_dataset(tmp_path / "s.nc")
    assert on_cluster.attrs["read_mode"] == "dask"
    np.testing.assert_allclose(on_cluster.coef.values, local.coef.values, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(on_cluster.entries.values, local.entries.values)


@pytest.mark.slow
def test_raw_row_paths_on_the_cluster_equal_the_serial_run(client, rows):
    pytest.importorskip("statsmodels")
    kwargs = {"min_entries": 5, "aggregation": ["median", "entries"]}
    serial = xslide.fit(rows, *ARGS, WINDOW, **kwargs)
    on_cluster = xslide.fit(rows, *ARGS, WINDOW, partition_strategy=client, **kwargs)
    np.testing.assert_array_equal(on_cluster["median"].values, serial["median"].values)
    small = rows[rows.xBin < 4]
    rlm_serial = xslide.fit(small, *ARGS, WINDOW, fitter="rlm", aggregation=["entries"])
    rlm_cluster = xslide.fit(
        small, *ARGS, WINDOW, fitter="rlm", aggregation=["entries"], partition_strategy=client
    )
    np.testing.assert_array_equal(rlm_cluster.coef.values, rlm_serial.coef.values)
    np.testing.assert_array_equal(rlm_cluster.stderr.values, rlm_serial.stderr.values)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"boundary": "periodic"},
        {"boundary": "mirror"},
        {"boundary": "shrink"},
        {"boundary": {"xBin": "mirror", "yBin": "periodic", "zBin": "shrink"}, "trend": 1},
        {"boundary": "mirror", "kernel": "gaussian"},
    ],
    ids=str,
)
def test_chunked_grid_windowing_equals_the_in_memory_path(client, rows, options):
    window = {"xBin": 2, "yBin": 2, "zBin": 1}  # chunks of 4 and 2: smaller than the windows
    kwargs = {"aggregation": ["mean", "std", "entries"], **options}
    memory = xslide.fit(rows, *ARGS, window, **kwargs)
    chunked = xslide.fit(rows, *ARGS, window, chunks={"xBin": 4, "yBin": 4, "zBin": 2}, **kwargs)
    for name in ("coef", "stderr", "mean", "std", "entries", "n_neighbors_used", "quality_flag"):
        np.testing.assert_allclose(
            chunked[name].values, memory[name].values, rtol=1e-12, atol=1e-12, err_msg=name
        )


@pytest.mark.slow
def test_a_dask_backed_dataset_of_rows_is_reduced_on_the_workers(client, rows):
    ds = rows.drop(columns="good").to_xarray().chunk({"index": 5000})
    from_dask = xslide.fit(ds, *ARGS, WINDOW, reference=REFERENCE)
    memory = xslide.fit(rows, *ARGS, WINDOW, reference=REFERENCE, aggregation=["mean", "entries"])
    np.testing.assert_allclose(from_dask.coef.values, memory.coef.values, rtol=1e-12, atol=1e-15)
    assert "median" not in from_dask


def test_without_dask_the_dask_features_say_what_to_install(monkeypatch, rows):
    import sys

    for name in ("dask", "dask.array", "dask.dataframe", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"xslide\[dask\]"):
        xslide.fit(rows, *ARGS, WINDOW, chunks={"xBin": 4}, aggregation=["mean"])
    plain = xslide.fit(rows, *ARGS, WINDOW, aggregation=["mean"])  # everything else works
    assert np.isfinite(plain.coef.values).any()


@pytest.mark.slow
def test_dask_formula_with_a_partial_reference_equals_pandas(client):
    rng = np.random.default_rng(6)
    parts = []
    for center in (0.0, 50.0):
        part = pd.DataFrame({"b": rng.integers(0, 4, 3000), "x": center + rng.normal(size=3000)})
        part["y"] = 1.0 + 2.0 * part.x + rng.normal(0, 0.1, 3000)
        parts.append(part)
    rows = pd.concat(parts, ignore_index=True)
    ddf = dd.from_pandas(rows, npartitions=2, sort=False)
    formula = "target ~ x + I(x**2)"
    on_dask = xslide.fit(ddf, ["b"], ["y"], formula=formula, window={}, reference={"y": 0.0})
    memory = xslide.fit(rows, ["b"], ["y"], formula=formula, window={}, aggregation=["mean"])
    np.testing.assert_allclose(on_dask.coef.values, memory.coef.values, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("boundary", ["truncate", "periodic", "mirror", "shrink"])
@pytest.mark.parametrize(
    ("window", "chunks"),
    [
        ({"a": 3, "b": 1}, {"a": 5, "b": 2}),  # the last chunk of a (2 bins) is thinner than 3
        ({"a": 6, "b": 4}, {"a": 2, "b": 1}),  # windows as wide as the grid
        ({"a": 1, "b": 2}, {"a": 1, "b": 1}),
    ],
    ids=["thin-last-chunk", "window-spans-grid", "tiny-chunks"],
)
def test_chunked_windows_equal_memory_whatever_the_chunk_layout(boundary, window, chunks):
    pytest.importorskip("dask.array")
    if boundary == "periodic" and (2 * window["a"] + 1 > 7 or 2 * window["b"] + 1 > 5):
        pytest.skip("a periodic window may not be wider than its dim")
    rng = np.random.default_rng(4)
    n = 3000
    df = pd.DataFrame({"a": rng.integers(0, 7, n), "b": rng.integers(0, 5, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = 0.3 * df.a - 0.1 * df.b + df.x + rng.normal(0, 0.1, n)
    kwargs = {"aggregation": ["mean", "entries"], "boundary": boundary}
    kwargs["extent"] = {"a": (0, 6), "b": (0, 4)}  # the period of a periodic dim
    memory = xslide.fit(df, ["a", "b"], ["y"], ["x"], window, **kwargs)
    chunked = xslide.fit(df, ["a", "b"], ["y"], ["x"], window, chunks=chunks, **kwargs)
    for name in ("coef", "stderr", "entries", "n_rows_aggregated", "n_neighbors_used"):
        np.testing.assert_allclose(
            chunked[name].values, memory[name].values, rtol=1e-12, atol=1e-12, err_msg=name
        )
