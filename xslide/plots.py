"""Plots of fitted maps and of residual pulls (matplotlib, the ``plot`` extra)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ._optional import require


def _pyplot():
    return require("matplotlib.pyplot", "plots (plot_map, plot_pulls)")


def plot_map(fit: xr.Dataset, var: str = "coef", target=None, term=None, ax=None, **sel):
    """Draw a 2-D slice of a fit variable (coef, stderr, entries, quality_flag, ...).

    Parameters
    ----------
    fit : the Dataset of ``xslide.fit``.
    var : the variable to draw.
    target, term : which target / term (default: the first).
    ax : matplotlib axes to draw into (new figure when None).
    **sel : values of the other bin dims (``sector=3``); exactly two dims must remain.

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
    """
    plt = _pyplot()
    if var not in fit:
        raise KeyError(f"var {var!r} is not a variable of the fit; choose from {list(fit)}")
    data = fit[var]
    if "target" in data.dims:
        data = data.sel(target=target if target is not None else data.target.values[0])
    if "term" in data.dims:
        data = data.sel(term=term if term is not None else data.term.values[0])
    if "term_" in data.dims:
        data = data.isel(term_=0)
    data = data.sel(sel)
    if data.ndim != 2:
        raise ValueError(
            f"plot_map draws two dims; {list(data.dims)} remain: select the others, "
            f"e.g. {data.dims[-1]}=..."
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    # physical axes (digitize's bin centers) where the fit has them, else the bin numbers
    axes = [_center_coord(data, d) for d in data.dims]
    low, high = float(data.min()), float(data.max())
    diverging = var == "coef" and low < 0 < high  # white at zero only when both signs occur
    data.plot(
        ax=ax,
        x=axes[0],
        y=axes[1],
        cmap="RdBu_r" if diverging else "viridis",
        center=0.0 if diverging else None,
    )
    ax.set_title(
        f"{var} {target or ''} {term or ''}".strip() + "".join(f", {k}={v}" for k, v in sel.items())
    )
    return ax


def _center_coord(data: xr.DataArray, dim: str) -> str:
    for name, coord in data.coords.items():
        if str(name).endswith("_center") and coord.dims == (dim,):
            return str(name)
    return dim


def plot_pulls(
    fit: xr.Dataset, rows, targets=None, method: str = "nearest", bins: int = 60, ax=None
):
    """Histogram the pulls (y - prediction) / local rmse of ``rows`` against a unit normal.

    A well-fitted map gives pulls centered on 0 with unit width; outliers show in the tails.
    Returns the matplotlib axes; ``ax.pulls`` holds the pull arrays per target.

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
    """
    from .design import RowTable
    from .predict import predict

    plt = _pyplot()
    targets = [str(t) for t in fit.target.values] if targets is None else list(targets)
    pred = predict(fit, rows, targets=targets, method=method)
    table = RowTable(rows)
    rmse = predict(_rmse_as_fit(fit, targets), rows, targets=targets, method="nearest")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
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
    ax.legend(fontsize=8)
    ax.pulls = pulls
    return ax


def _rmse_as_fit(fit: xr.Dataset, targets) -> xr.Dataset:
    """A constant-model 'fit' whose prediction is each bin's rmse (to look it up per row)."""
    rmse = fit.rmse.sel(target=targets)
    coef = rmse.expand_dims(term=["Intercept"], axis=1)
    return xr.Dataset({"coef": coef, "stderr": xr.zeros_like(coef)}, attrs={"formula": ""})
