"""Plots of fitted maps and of residual pulls (matplotlib, the ``plot`` extra).

A map should read at a glance: physical axes with units (the ``{column}_center`` coordinates of
``digitize``d dims, else bin numbers on integer ticks), a colorbar naming the variable, target,
term and unit (from ``attrs['units_json']`` and the coordinates' ``units``), the physical values
of the selected dims in the title, unfitted (NaN) bins hatched grey with a legend entry, a
diverging scale only when the values straddle 0, and flag variables in categorical colors with
their names.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from . import cf
from ._optional import require

# hatched grey for bins without a value: never a color of the scale (white is 0 on RdBu_r)
NOT_FITTED = {"facecolor": "0.85", "edgecolor": "0.55", "hatch": "////", "linewidth": 0.0}
FLAG_COLORS = {
    "ok": "#1a9850",
    "empty_window": "#d9d9d9",
    "insufficient_stats": "#fdae61",
    "singular": "#d73027",
    "fit_failed": "#762a83",
    "not_a_center": "#525252",
}
COUNTS = ("entries", "n_fitted", "n_rejected", "n_neighbors_used", "n_rows_aggregated")
DIMENSIONLESS = ("r_squared", "effective_window_fraction")
TARGET_UNIT = ("mean", "median", "std", "rmse")
KNOWN = ("coef", "stderr", "cov", "quality_flag", *COUNTS, *DIMENSIONLESS, *TARGET_UNIT)


def _pyplot():
    return require("matplotlib.pyplot", "plots (plot_map, plot_pulls)")


def plot_map(fit: xr.Dataset, var: str = "coef", target=None, term=None, ax=None, **sel):
    """Draw a fit variable (coef, stderr, entries, quality_flag, ...) as a map or a profile.

    Two dims left after the selection give a map, one dim a profile (``coef`` with its
    ±stderr band). Axes are physical (``{column}_center`` with its unit) for ``digitize``d
    dims, bin numbers on integer ticks otherwise; unfitted bins are hatched grey ("not
    fitted"); the scale is diverging (RdBu_r, symmetric) only when the values straddle 0;
    variables with CF ``flag_values``/``flag_meanings`` (``quality_flag``) get one color
    per flag, named on the colorbar.

    Parameters
    ----------
    fit : the Dataset of ``xslide.fit``.
    var : the variable to draw.
    target, term : which target / term (default: the first). For ``cov``, ``term_=`` in
        ``sel`` picks the second term (default: ``term``, the variance).
    ax : matplotlib axes to draw into (new figure when None).
    **sel : bin labels of the other dims (``sector=3``); one or two dims must remain.

    Returns
    -------
    The matplotlib axes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, pandas as pd, xslide
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 2000), "zBin": rng.integers(0, 4, 2000),
    ...                    "x": rng.normal(size=2000)})
    >>> df["y"] = 0.5 * df.rBin - 0.2 * df.zBin + 2.0 * df.x + rng.normal(0, 0.05, 2000)
    >>> fit = xslide.fit(df, ["rBin", "zBin"], ["y"], ["x"], {"rBin": 1, "zBin": 1})
    >>> from xslide.plots import plot_map
    >>> ax = plot_map(fit, "coef", term="Intercept")
    >>> len(ax.collections) > 0
    True
    >>> ax = plot_map(fit, "coef", "y", "x", zBin=2)  # one dim left: a profile along rBin
    >>> ax.get_xlabel()
    'rBin (bin number)'
    """
    plt = _pyplot()
    sel = dict(sel)
    data, target, term, term_ = _select(fit, var, target, term, sel)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.8) if data.ndim == 2 else (6.4, 4.0))
    label = _value_label(fit, var, data, target, term, term_)
    if data.ndim == 2:
        _draw_map(ax, fit, data, label)
    else:
        band = None
        if var == "coef" and "stderr" in fit:
            band = _select(fit, "stderr", target, term, dict(sel))[0]
        _draw_profile(ax, fit, data, label, band)
    ax.set_title(_title(fit, var, target, term, term_, sel), loc="left", fontsize=10)
    return ax


def _select(fit: xr.Dataset, var: str, target, term, sel: dict):
    """The variable at one target / term and the selected bins, with the names it took."""
    if var not in fit:
        raise KeyError(f"var {var!r} is not a variable of the fit; choose from {list(fit)}")
    data = fit[var]
    term_ = sel.pop("term_", None)
    target = _pick(data, "target", target)
    term = _pick(data, "term", term)
    term_ = _pick(data, "term_", term if term_ is None else term_)
    data = data.sel({k: v for k, v in (("target", target), ("term", term), ("term_", term_)) if v})
    unknown = [k for k in sel if k not in data.dims]
    if unknown:
        raise ValueError(
            f"plot_map: {unknown} are not dims of {var}; select among {list(data.dims)}"
        )
    try:
        data = data.sel(sel)
    except KeyError as err:
        labels = {d: f"{data[d].values[0]}..{data[d].values[-1]}" for d in sel}
        raise KeyError(f"plot_map: {sel} selects a missing bin; labels run {labels}") from err
    if data.ndim not in (1, 2):
        raise ValueError(_dims_hint(data, var))
    return data, target, term, term_


def _pick(data: xr.DataArray, dim: str, label):
    """The label to take along ``dim`` (the first when None); None when ``data`` lacks it."""
    if dim not in data.dims:
        return None
    labels = [str(v) for v in data[dim].values]
    if label is None:
        return labels[0]
    if str(label) not in labels:
        raise KeyError(f"plot_map: {dim} {label!r} is not in the fit; choose from {labels}")
    return str(label)


def _dims_hint(data: xr.DataArray, var: str) -> str:
    """Which dims to select so that one or two remain, with a valid example."""
    dims = [str(d) for d in data.dims]
    if not dims:
        return f"plot_map draws one or two dims, but the selection leaves none of {var}"
    more = dims[2:]
    example = ", ".join(f"{d}={data[d].values[0]}" for d in more)
    count = "one" if len(more) == 1 else f"{len(more)}"
    return (
        f"plot_map draws one or two dims, but {dims} remain: select {count} of them too, "
        f"e.g. {example}"
    )


def _draw_map(ax, fit: xr.Dataset, data: xr.DataArray, label: str) -> None:
    """A 2-D map: the first remaining dim along x, the second along y."""
    from matplotlib.patches import Rectangle

    xdim, ydim = (str(d) for d in data.dims)
    xedges = _axis(ax.xaxis, fit, data, xdim)
    yedges = _axis(ax.yaxis, fit, data, ydim)
    values = np.asarray(data.transpose(ydim, xdim).values)
    flags = _flag_scale(data)
    if flags is None:
        cmap, norm = _scale(values.astype(float))
    else:
        cmap, norm, ticks, names = flags
    mesh = ax.pcolormesh(xedges, yedges, np.ma.masked_invalid(values), cmap=cmap, norm=norm)
    bar = ax.figure.colorbar(mesh, ax=ax, label=label)
    if flags is not None:
        bar.set_ticks(ticks, labels=names)
        bar.ax.tick_params(length=0)
    missing = ~np.isfinite(values.astype(float))
    if missing.any():  # the hatched background shows through the masked (unfitted) cells
        corner = (xedges[0], yedges[0])
        size = (xedges[-1] - xedges[0], yedges[-1] - yedges[0])
        ax.add_patch(Rectangle(corner, *size, zorder=0.5, **NOT_FITTED))
        _legend(ax, [_not_fitted_patch()])


def _draw_profile(ax, fit: xr.Dataset, data: xr.DataArray, label: str, band) -> None:
    """A 1-D profile: the value along the remaining dim, ±stderr as a band for ``coef``."""
    dim = str(data.dims[0])
    edges = _axis(ax.xaxis, fit, data, dim)
    x = _positions(fit, data, dim)
    y = np.asarray(data.values, dtype=float)
    handles = []
    flags = _flag_scale(data)
    if flags is not None:
        cmap, norm, ticks, names = flags
        ax.scatter(x, y, c=cmap(norm(y)), s=25, zorder=3)
        ax.set_yticks(ticks, labels=names)
        ax.set_ylim(ticks[0] - 0.5, ticks[-1] + 0.5)
    else:
        (line,) = ax.plot(x, y, "o-", ms=3, lw=1.2, zorder=3, label="value")
        handles.append(line)
        if band is not None:
            err = np.asarray(band.values, dtype=float)
            fill = ax.fill_between(x, y - err, y + err, alpha=0.3, lw=0, label="± stderr")
            handles.append(fill)
        if np.nanmin(y, initial=np.inf) < 0 < np.nanmax(y, initial=-np.inf):
            ax.axhline(0.0, color="0.5", lw=0.8, zorder=1)
    ax.set_ylabel(label)
    missing = ~np.isfinite(y)
    for i in np.flatnonzero(missing):
        ax.axvspan(edges[i], edges[i + 1], zorder=0.5, **NOT_FITTED)
    if missing.any():
        handles.append(_not_fitted_patch())
    ax.set_xlim(edges[0], edges[-1])
    if len(handles) > 1:
        _legend(ax, handles)


def _legend(ax, handles) -> None:
    """The legend above the axes' right corner, off the data."""
    ax.legend(
        handles=handles,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
        ncols=len(handles),
        borderaxespad=0.2,
    )


def _not_fitted_patch():
    from matplotlib.patches import Patch

    return Patch(label="not fitted", **NOT_FITTED)


def _scale(values: np.ndarray):
    """A symmetric diverging scale when the values straddle 0, else a sequential one."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if low < 0 < high:  # white at zero only when both signs occur
        bound = max(-low, high)
        return colormaps["RdBu_r"], Normalize(-bound, bound)
    return colormaps["viridis"], Normalize(low, high)


def _flag_scale(data: xr.DataArray):
    """Categorical colors for a CF flag variable: (cmap, norm, tick values, flag names)."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    values = np.atleast_1d(np.asarray(data.attrs.get("flag_values", []), dtype=float))
    names = str(data.attrs.get("flag_meanings", "")).split()
    if values.size == 0 or values.size != len(names):
        return None
    order = np.argsort(values)
    values, names = values[order], [names[i] for i in order]
    spare = colormaps["tab10"].colors
    colors = [FLAG_COLORS.get(n, spare[i % len(spare)]) for i, n in enumerate(names)]
    middles = (values[1:] + values[:-1]) / 2
    bounds = np.concatenate([[values[0] - 0.5], middles, [values[-1] + 0.5]])
    return ListedColormap(colors), BoundaryNorm(bounds, len(colors)), values, names


def _axis(axis, fit: xr.Dataset, data: xr.DataArray, dim: str) -> np.ndarray:
    """Label ``axis`` for ``dim`` (integer ticks on bin numbers); return the cell edges."""
    from matplotlib.ticker import MaxNLocator

    name = _center_name(fit, dim)
    x = _positions(fit, data, dim)
    if name is None:
        axis.set_label_text(f"{dim} (bin number)")
        axis.set_major_locator(MaxNLocator(integer=True))
        return _midpoint_edges(x)
    coord = fit[name]
    # xslide's own long_name says "r at the bin center": the axis needs only "r"
    long_name = str(coord.attrs.get("long_name") or name.removesuffix("_center"))
    text = long_name.removesuffix(" at the bin center")
    unit = _center_unit(fit, name)
    axis.set_label_text(f"{text} [{unit}]" if unit else text)
    edges = np.asarray(coord.attrs.get("edges", []), dtype=float)
    bins = np.asarray(data[dim].values)
    contiguous = bins.size > 0 and np.array_equal(bins, np.arange(bins[0], bins[0] + bins.size))
    if contiguous and edges.size and 0 <= bins[0] and bins[-1] + 1 < edges.size:
        return edges[bins[0] : bins[-1] + 2]
    return _midpoint_edges(x)


def _positions(fit: xr.Dataset, data: xr.DataArray, dim: str) -> np.ndarray:
    """Where the bins of ``dim`` lie: their physical centers, else their bin numbers."""
    name = _center_name(fit, dim)
    if name is None:
        return np.asarray(data[dim].values, dtype=float)
    return np.asarray(fit[name].sel({dim: data[dim].values}).values, dtype=float)


def _midpoint_edges(x: np.ndarray) -> np.ndarray:
    """Cell edges halfway between neighboring positions (half a step beyond the ends)."""
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    middles = (x[1:] + x[:-1]) / 2
    return np.concatenate([[2 * x[0] - middles[0]], middles, [2 * x[-1] - middles[-1]]])


def _center_name(fit: xr.Dataset, dim: str) -> str | None:
    """The ``{column}_center`` coordinate along ``dim`` when every bin has a finite center."""
    for name, coord in fit.coords.items():
        if str(name).endswith("_center") and coord.dims == (dim,):
            if np.isfinite(np.asarray(coord.values, dtype=float)).all():
                return str(name)
    return None


def _units(fit: xr.Dataset) -> dict[str, str]:
    """The user's units per column (``attrs['units_json']``), empty when none were given."""
    raw = fit.attrs.get("units_json") or "{}"
    try:
        units = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (TypeError, ValueError):
        return {}
    return {str(k): str(v) for k, v in units.items() if v} if isinstance(units, dict) else {}


def _center_unit(fit: xr.Dataset, name: str) -> str:
    """The unit of a center coordinate (its ``units``, else the column's in units_json)."""
    unit = fit[name].attrs.get("units") or _units(fit).get(name.removesuffix("_center"), "")
    return "" if str(unit) in ("", "1") else str(unit)


def _value_label(fit: xr.Dataset, var: str, data: xr.DataArray, target, term, term_) -> str:
    """The colorbar label: variable, target, term and unit, e.g. 'coef dX: qpt [cm / GeV]'."""
    text = _name(var, data) + (f" {target}" if target else "") + (f": {term}" if term else "")
    text += f" × {term_}" if var == "cov" else ""
    unit = _value_unit(fit, var, data, target, term)
    return f"{text} [{unit}]" if unit else text


def _name(var: str, data: xr.DataArray) -> str:
    """The variable's name; a long_name for variables that are not xslide's own."""
    return var if var in KNOWN else str(data.attrs.get("long_name") or var)


def _value_unit(fit: xr.Dataset, var: str, data: xr.DataArray, target, term) -> str:
    """The unit of one variable at one target / term, '' when unknown or dimensionless: the
    file's own ``coef_units`` where it has them, else the same rule from ``units_json``."""
    units = _units(fit)
    if var in ("coef", "stderr"):
        if "coef_units" in fit.coords and target is not None and term is not None:
            unit = str(fit["coef_units"].sel(target=target, term=term).values)
        else:
            trend = [str(t)[2:] for t in np.asarray(fit["term"].values) if str(t).startswith("d_")]
            unit = cf.quotient(units.get(str(target), ""), cf.term_unit(str(term), units, trend))
        return "" if unit == cf.DIMENSIONLESS else unit
    if var in TARGET_UNIT:
        return units.get(str(target), "")
    if var in (*COUNTS, *DIMENSIONLESS, "cov", "quality_flag"):
        return ""
    return str(data.attrs.get("units", ""))


def _title(fit: xr.Dataset, var: str, target, term, term_, sel: dict) -> str:
    """What is drawn, and where: physical values of the selected dims ('z2x = 0.25')."""
    head = _name(var, fit[var]) + (f" {target}" if target else "") + (f": {term}" if term else "")
    head += f" × {term_}" if var == "cov" else ""
    where = ", ".join(_selected(fit, dim, value) for dim, value in sel.items())
    return f"{head}\n{where}" if where else head


def _selected(fit: xr.Dataset, dim: str, value) -> str:
    """One selected dim: its physical center with unit and its bin, or just its bin."""
    name = _center_name(fit, dim)
    if name is None or not np.isscalar(value):
        return f"{dim}={value}"
    center = float(fit[name].sel({dim: value}))
    unit = f" {_center_unit(fit, name)}".rstrip()
    return f"{name.removesuffix('_center')} = {center:.4g}{unit} ({dim}={value})"


def plot_pulls(
    fit: xr.Dataset, rows, targets=None, method: str = "nearest", bins: int = 60, ax=None
):
    """Histogram the pulls (y - prediction) / local rmse of ``rows`` against a unit normal.

    Each row's pull is its residual from its bin's local model divided by that bin's
    ``rmse`` (the residual spread of the window's fit). A well-fitted map gives pulls
    centered on 0 with unit width; outliers show in the tails. The legend gives each target's
    bulk width (1.4826 x MAD, robust to the tails).

    Without a trend (``trend=0``) and a window wider than one bin, the window's fit cannot
    follow the field's gradient across the window, so each bin's rmse includes that gradient
    while a row's residual from its own bin's model does not: the pulls come out narrower
    than 1 (e.g. a bulk σ of 0.27 on the README example, 1.00 with ``trend=1``). The plot then
    carries a note saying so; fit with ``trend=1`` for pulls that measure the noise.

    Returns the matplotlib axes; ``ax.pulls`` holds the pull arrays per target and
    ``ax.pulls_note`` the note ('' when none).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, pandas as pd, xslide
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 2000), "zBin": rng.integers(0, 4, 2000),
    ...                    "x": rng.normal(size=2000)})
    >>> df["y"] = 0.5 * df.rBin - 0.2 * df.zBin + 2.0 * df.x + rng.normal(0, 0.05, 2000)
    >>> fit = xslide.fit(df, ["rBin", "zBin"], ["y"], ["x"])
    >>> from xslide.plots import plot_pulls
    >>> ax = plot_pulls(fit, df)
    >>> bool(abs(np.std(ax.pulls["y"]) - 1.0) < 0.1)
    True
    >>> ax.pulls_note  # a window of one bin: no gradient to miss
    ''
    """
    from .design import RowTable
    from .predict import predict

    plt = _pyplot()
    targets = [str(t) for t in fit.target.values] if targets is None else list(targets)
    pred = predict(fit, rows, targets=targets, method=method)
    table = RowTable(rows)
    rmse = predict(_rmse_as_fit(fit, targets), rows, targets=targets, method="nearest")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4))
    pulls = {}
    edges = np.linspace(-6, 6, bins + 1)
    for t in targets:
        y = table.numeric(t, "rows")
        pull = (y - pred[f"{t}_pred"].to_numpy()) / rmse[f"{t}_pred"].to_numpy()
        pull = pull[np.isfinite(pull)]
        pulls[t] = pull
        # the width of the bulk (1.4826 x MAD): the plain std is dominated by outliers
        width = 1.4826 * np.median(np.abs(pull - np.median(pull)))
        ax.hist(
            np.clip(pull, edges[0], edges[-1]),  # overflow in the edge bins: density over all
            bins=edges,
            histtype="step",
            density=True,
            label=f"{t} (bulk σ={width:.2f}, {np.mean(np.abs(pull) > 5):.1%} beyond 5)",
        )
    grid = np.linspace(-6, 6, 400)
    ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), "k--", lw=1, label="N(0, 1)")
    ax.set_xlabel("pull = (y - local model) / local rmse")
    ax.set_yscale("log")
    ax.legend(fontsize=8, loc="upper right")
    count = max((p.size for p in pulls.values()), default=0)
    if count:  # down to one row per histogram bin, not to the normal's far tail
        ax.set_ylim(bottom=0.3 / (count * (edges[1] - edges[0])))
    note = _pulls_note(fit)
    if note:  # a title: part of the layout, never over the histogram or the legend
        ax.set_title(note, loc="left", fontsize=8, color="darkred")
    ax.pulls = pulls
    ax.pulls_note = note
    return ax


def _pulls_note(fit: xr.Dataset) -> str:
    """Why the pulls are narrow when the local model has no trend over a wide window."""
    from .predict import _trend_attr

    try:
        trend = _trend_attr(fit)
        window = json.loads(fit.attrs.get("window_spec_json", "{}"))
        wide = any(v != 0 for v in window.values())  # a half-width or [before, after]
    except (TypeError, ValueError, AttributeError):
        return ""
    if trend or not wide:
        return ""
    return (
        "trend=0: each bin's rmse includes the field's gradient across the window,\n"
        "so the pulls are narrower than N(0, 1); fit with trend=1 for unit-width pulls"
    )


def _rmse_as_fit(fit: xr.Dataset, targets) -> xr.Dataset:
    """A constant-model 'fit' whose prediction is each bin's rmse (to look it up per row)."""
    rmse = fit.rmse.sel(target=targets)
    coef = rmse.expand_dims(term=["Intercept"], axis=1)
    return xr.Dataset({"coef": coef, "stderr": xr.zeros_like(coef)}, attrs={"formula": ""})
