"""Plots: maps of fit variables and pull histograms (matplotlib, the ``plot`` extra)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xslide
from xslide.result import FLAG_MEANINGS

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import BoundaryNorm  # noqa: E402

UNITS = {"y": "cm", "r": "cm", "x": "1/GeV"}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _with_units(fit, center_attr: bool = True):
    """The fit with the units the cf writer records (units_json, coordinate units)."""
    fit = fit.assign_attrs(units_json=json.dumps(UNITS))
    if center_attr:
        fit["r_center"].attrs.update(units="cm", long_name="r")
    return fit


def _saved(ax, tmp_path, name: str) -> None:
    """Render the figure to a PNG, as a user would (catches errors only drawing shows)."""
    path = tmp_path / f"{name}.png"
    ax.figure.savefig(path, dpi=60, bbox_inches="tight")
    assert path.stat().st_size > 5_000


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 30_000
    df = pd.DataFrame({"r": rng.uniform(0, 10, n), "b": rng.integers(0, 6, n)})
    df["c"] = rng.integers(0, 3, n)
    df["x"] = rng.normal(size=n)
    df["y"] = 0.5 * df.r + df.x + rng.normal(0, 0.1, n)
    return xslide.digitize(df, {"r": (0, 10, 10)})


def test_plot_map_draws_a_two_dim_slice_on_physical_axes(rows):
    fit = xslide.fit(rows, ["rBin", "b", "c"], ["y"], ["x"], {"rBin": 1}, trend=1)
    ax = fit.slidewin.plot_map("coef", "y", "Intercept", c=1)
    assert ax.get_xlabel() == "r" and ax.get_ylabel() == "b (bin number)"
    mesh = ax.collections[0]
    assert mesh.get_array().size == 10 * 6
    np.testing.assert_allclose(np.sort(mesh.get_array().ravel())[[0, -1]], [0.25, 4.75], atol=0.02)
    ax = fit.slidewin.plot_map("entries", "y", c=0)
    assert ax.collections[0].get_array().min() > 0
    with pytest.raises(ValueError, match="two dims"):
        fit.slidewin.plot_map("coef", "y")
    with pytest.raises(KeyError, match="nope"):
        fit.slidewin.plot_map("nope")


def test_pulls_of_a_good_model_are_unit_normal():
    rng = np.random.default_rng(1)
    n = 30_000
    rows = pd.DataFrame({"a": rng.integers(0, 10, n), "x": rng.normal(size=n)})
    rows["y"] = 0.5 * rows.a + rows.x + rng.normal(0, 0.1, n)  # the local model is exact
    fit = xslide.fit(rows, ["a"], ["y"], ["x"], {"a": 1}, trend=1)
    ax = fit.slidewin.plot_pulls(rows)
    pulls = ax.pulls["y"]
    assert pulls.size == len(rows)
    assert abs(pulls.mean()) < 0.05 and 0.9 < pulls.std() < 1.1
    assert len(ax.patches) >= 1


@pytest.fixture(scope="module")
def holed(rows) -> xr.Dataset:
    """A fit whose intercept straddles 0, with one unfitted bin (rBin 4, b 2, c 1)."""
    kept = rows[~((rows.rBin == 4) & (rows.b == 2) & (rows.c == 1))].copy()
    kept["y"] -= 2.5
    return xslide.fit(kept, ["rBin", "b", "c"], ["y"], ["x"], trend=0)


def _pixel(ax, x: float, y: float) -> np.ndarray:
    """The mean RGB (0-255) of a 7x7-pixel patch around the data point (x, y)."""
    ax.figure.canvas.draw()
    image = np.asarray(ax.figure.canvas.buffer_rgba())[..., :3].astype(float)
    column, row = np.rint(ax.transData.transform((x, y))).astype(int)
    row = image.shape[0] - row  # display y runs up, image rows down
    return image[row - 3 : row + 4, column - 3 : column + 4].mean(axis=(0, 1))


def test_unfitted_bins_are_hatched_grey_with_a_legend_entry_never_the_color_of_zero(
    holed, tmp_path
):
    ax = holed.slidewin.plot_map("coef", "y", "Intercept", c=1)
    assert np.isnan(holed.coef.sel(target="y", term="Intercept", rBin=4, b=2, c=1))
    mesh = ax.collections[0]
    assert mesh.cmap.name == "RdBu_r" and mesh.norm.vmin == -mesh.norm.vmax  # straddles 0
    zero = np.asarray(mesh.cmap(mesh.norm(0.0))[:3]) * 255
    hole = _pixel(ax, float(holed.r_center[4]), 2.0)
    assert np.abs(hole - zero).max() > 40  # grey hatching, not the near-white of 0
    assert np.abs(hole - 255).max() > 40  # nor the white figure background
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["not fitted"]
    _saved(ax, tmp_path, "holed")
    full = holed.slidewin.plot_map("coef", "y", "Intercept", c=0)  # no hole: no legend entry
    assert full.get_legend() is None


def test_diverging_scale_only_when_the_values_straddle_zero(holed):
    mean = holed.slidewin.plot_map("mean", "y", c=1).collections[0]
    assert mean.cmap.name == "RdBu_r"  # any signed variable, not only coef
    low, high = float(holed["mean"].sel(c=1).min()), float(holed["mean"].sel(c=1).max())
    assert mean.norm.vmax == pytest.approx(max(-low, high)) == -mean.norm.vmin
    entries = holed.slidewin.plot_map("entries", "y", c=1).collections[0]
    assert entries.cmap.name == "viridis" and entries.norm.vmin == 0 < entries.norm.vmax


def test_quality_flag_is_drawn_in_categorical_colors_named_by_flag_meanings(holed, tmp_path):
    ax = holed.slidewin.plot_map("quality_flag", "y", c=1)
    mesh = ax.collections[0]
    assert isinstance(mesh.norm, BoundaryNorm) and mesh.cmap.N == len(FLAG_MEANINGS)
    names = [t.get_text() for t in mesh.colorbar.ax.get_yticklabels()]
    assert names == list(FLAG_MEANINGS)
    colors = {tuple(mesh.cmap(mesh.norm(code))) for code in range(len(FLAG_MEANINGS))}
    assert len(colors) == len(FLAG_MEANINGS)  # one distinct color per flag
    assert mesh.norm(0) != mesh.norm(1)
    _saved(ax, tmp_path, "flags")


def test_one_dim_slice_is_a_profile_with_a_stderr_band_and_unfitted_bins(holed, tmp_path):
    ax = holed.slidewin.plot_map("coef", "y", "Intercept", b=2, c=1)
    coef = holed.coef.sel(target="y", term="Intercept", b=2, c=1).values
    stderr = holed.stderr.sel(target="y", term="Intercept", b=2, c=1).values
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_xdata(), holed.r_center.values)
    np.testing.assert_allclose(line.get_ydata(), coef)
    band = np.concatenate([p.vertices[:, 1] for p in ax.collections[0].get_paths()])
    fitted = np.isfinite(coef)
    assert band.min() == pytest.approx(np.min((coef - stderr)[fitted]))
    assert band.max() == pytest.approx(np.max((coef + stderr)[fitted]))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["value", "± stderr", "not fitted"]
    assert ax.get_ylabel() == "coef y: Intercept"
    _saved(ax, tmp_path, "profile")


def test_readme_plot_snippet_draws_a_profile():
    rng = np.random.default_rng(0)
    n = 4_000
    df = pd.DataFrame(
        {"rBin": rng.integers(0, 20, n), "zBin": rng.integers(0, 10, n), "qpt": rng.normal(size=n)}
    )
    df["dX"] = 0.1 * df.rBin + 0.05 * df.qpt + rng.normal(0, 0.02, n)
    fit = xslide.fit(df, ["rBin", "zBin"], ["dX"], ["qpt"], {"rBin": 1, "zBin": 1})
    ax = fit.slidewin.plot_map("coef", "dX", "Intercept", zBin=3)
    assert ax.get_xlabel() == "rBin (bin number)" and len(ax.lines[0].get_xdata()) == 20


def test_too_many_dims_left_names_the_dims_to_select(holed):
    with pytest.raises(ValueError) as info:
        holed.slidewin.plot_map("coef", "y", "Intercept")
    message = str(info.value)
    assert "['rBin', 'b', 'c'] remain" in message and "select one of them too, e.g. c=0" in message
    with pytest.raises(ValueError, match=r"'sector'.* not dims of coef"):
        holed.slidewin.plot_map("coef", "y", sector=0)


def test_axes_and_colorbar_carry_units_when_the_fit_has_them(holed, tmp_path):
    fit = _with_units(holed)
    ax = fit.slidewin.plot_map("coef", "y", "Intercept", c=1)
    assert ax.get_xlabel() == "r [cm]"
    assert ax.collections[0].colorbar.ax.get_ylabel() == "coef y: Intercept [cm]"
    slope = fit.slidewin.plot_map("coef", "y", "x", c=1).collections[0].colorbar
    assert slope.ax.get_ylabel() == "coef y: x [cm GeV]"  # as coef_units spells it
    counts = fit.slidewin.plot_map("entries", "y", c=1).collections[0].colorbar
    assert counts.ax.get_ylabel() == "entries y"
    _saved(ax, tmp_path, "units")
    only_json = _with_units(holed, center_attr=False)  # the column's unit from units_json
    assert only_json.slidewin.plot_map("rmse", "y", c=1).get_xlabel() == "r [cm]"
    plain = holed.slidewin.plot_map("coef", "y", "Intercept", c=1)  # no units: no brackets
    assert plain.get_xlabel() == "r"
    assert plain.collections[0].colorbar.ax.get_ylabel() == "coef y: Intercept"


def test_bin_axes_have_integer_ticks(holed):
    ax = holed.slidewin.plot_map("coef", "y", "Intercept", b=1)  # rBin (physical) vs c (3 bins)
    ax.figure.canvas.draw()
    low, high = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if low <= t <= high]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    profile = holed.slidewin.plot_map("coef", "y", "Intercept", rBin=2, b=1)
    profile.figure.canvas.draw()
    low, high = profile.get_xlim()
    assert all(float(t).is_integer() for t in profile.get_xticks() if low <= t <= high)


def test_title_gives_physical_values_of_the_selected_dims(holed):
    ax = _with_units(holed).slidewin.plot_map("coef", "y", "Intercept", rBin=3)
    assert ax.get_title(loc="left") == "coef y: Intercept\nr = 3.5 cm (rBin=3)"
    ax = holed.slidewin.plot_map("stderr", "y", "x", c=2)
    assert ax.get_title(loc="left") == "stderr y: x\nc=2"


def test_pulls_note_says_why_pulls_are_narrow_without_a_trend(tmp_path):
    rng = np.random.default_rng(2)
    n = 20_000
    rows = pd.DataFrame({"a": rng.integers(0, 10, n), "x": rng.normal(size=n)})
    rows["y"] = 0.5 * rows.a + rows.x + rng.normal(0, 0.1, n)  # a gradient along a
    flat = xslide.fit(rows, ["a"], ["y"], ["x"], {"a": 1}, trend=0)
    ax = flat.slidewin.plot_pulls(rows)
    assert np.std(ax.pulls["y"]) < 0.5  # the rmse holds the gradient across the window
    assert "trend=1" in ax.pulls_note and ax.get_title(loc="left") == ax.pulls_note
    _saved(ax, tmp_path, "pulls")
    sloped = xslide.fit(rows, ["a"], ["y"], ["x"], {"a": 1}, trend=1)
    ax = sloped.slidewin.plot_pulls(rows)
    assert 0.9 < np.std(ax.pulls["y"]) < 1.1
    assert ax.pulls_note == "" and ax.get_title(loc="left") == ""


def test_demo_maps_show_the_fit_next_to_fit_minus_truth(tmp_path, capsys):
    from matplotlib.image import imread

    from xslide import demo

    rows = demo.synthetic_distortions(20_000, seed=1)
    binned = xslide.digitize(rows, {name: demo.EDGES[name] for name in ("r", "y2x", "z2x")})
    dims = ["rBin", "y2xBin", "z2xBin", "sector"]
    window = {"rBin": 1, "y2xBin": 1, "z2xBin": 1}
    fit = xslide.fit(binned, dims, list(demo.TARGETS), ["qpt"], window, min_entries=4)
    demo._write_maps(fit, str(tmp_path / "demo"))
    assert "fit - truth" in capsys.readouterr().out
    image = imread(tmp_path / "demo-dX.png")
    assert image.shape[1] > 2 * image.shape[0]  # two panels side by side
