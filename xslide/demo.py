"""``xslide demo``: a synthetic TPC-distortion dataset, fitted and checked against its truth.

The model (documented so the numbers can be checked): track residuals dX, dY, dZ (cm) in 18
sectors over the radius r (85-245 cm), y/x (±0.17) and z/x (0-1), binned 32 x 10 x 10 x 18.
A space-charge-like field grows towards the inner radius and the central electrode (small
z/x): ``dX = 0.8 e^{-(r-85)/60} (1 - z2x) (1 + 0.1 sin(2π sector / 18))``,
``dY = 0.5 e^{-(r-85)/80} y2x / 0.17 (1 - z2x)`` and ``dZ = 0.3 (1 - z2x)² - 0.001 (r - 165)``;
each residual also depends on the track's charge over pT, ``+ 0.05 qpt`` (dX, dY), Gaussian
noise of 0.1 cm, and 3% outliers with a 2 cm spread. The fit: ``target ~ qpt`` per bin with a
±1-bin window in r, y/x and z/x, ``trend=1`` (no edge bias), 3-sigma outlier rejection.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import xarray as xr

from .io import write_fit, write_rows
from .parallel import may_show

NOISE = 0.1
EDGES = {"r": (85.0, 245.0, 32), "y2x": (-0.17, 0.17, 10), "z2x": (0.0, 1.0, 10)}
TARGETS = ("dX", "dY", "dZ")
UNITS = {"r": "cm", "y2x": "1", "z2x": "1", "qpt": "1/GeV", **dict.fromkeys(TARGETS, "cm")}
#: significant digits of the floats in the demo's netCDF: far below the fit's precision
# (stderr/value ~ 1e-2), and 3x smaller than exact doubles
DIGITS = 6


def true_field(r, y2x, z2x, sector) -> dict[str, np.ndarray]:
    """The distortion field of the module docstring, at any point."""
    radial = np.exp(-(r - 85.0) / 60.0)
    return {
        "dX": 0.8 * radial * (1 - z2x) * (1 + 0.1 * np.sin(2 * np.pi * sector / 18)),
        "dY": 0.5 * np.exp(-(r - 85.0) / 80.0) * (y2x / 0.17) * (1 - z2x),
        "dZ": 0.3 * (1 - z2x) ** 2 - 0.001 * (r - 165.0),
    }


def synthetic_distortions(n_rows: int = 1_000_000, seed: int = 0) -> pd.DataFrame:
    """Rows of residuals with their physical coordinates, charge over pT and sector."""
    rng = np.random.default_rng(seed)
    data = {
        "r": rng.uniform(*EDGES["r"][:2], n_rows),
        "y2x": rng.uniform(*EDGES["y2x"][:2], n_rows),
        "z2x": rng.uniform(*EDGES["z2x"][:2], n_rows),
        "sector": rng.integers(0, 18, n_rows),
        "qpt": rng.normal(0.0, 1.0, n_rows),
    }
    field = true_field(data["r"], data["y2x"], data["z2x"], data["sector"])
    for target in TARGETS:
        slope = 0.05 if target != "dZ" else 0.0
        values = field[target] + slope * data["qpt"] + rng.normal(0.0, NOISE, n_rows)
        outlier = rng.random(n_rows) < 0.03
        values[outlier] += rng.normal(0.0, 2.0, outlier.sum())
        data[target] = values
    return pd.DataFrame(data)


def rows_table(binned: pd.DataFrame) -> pd.DataFrame:
    """The demo's rows as ``--write-rows`` writes them: plain int64 bin columns (every demo
    row lies inside the edges) and no attrs, so every format (ROOT included) stores them."""
    bins = [c for c in binned.columns if c.endswith("Bin")]
    table = binned.astype(dict.fromkeys(bins, np.int64))
    table.attrs = {}
    return table


def demo(args: argparse.Namespace) -> int:
    """Fit the synthetic distortions, write the map and its plots, compare with the truth."""
    import xslide

    progress = getattr(args, "progress", None)
    window = {"rBin": 1, "y2xBin": 1, "z2xBin": 1}
    print(
        f"xslide {xslide.__version__} demo: {args.rows:,} rows, window {window}, trend=1, "
        "n_sigma_cut=3",
        flush=True,
    )
    with _step(f"generating {args.rows:,} rows"):
        rows = synthetic_distortions(args.rows, args.seed)
    with _step("binning r, y/x, z/x"):
        edges = {name: EDGES[name] for name in ("r", "y2x", "z2x")}
        binned = xslide.digitize(rows, edges, units=UNITS)
    for path in getattr(args, "write_rows", None) or ():
        with _step(f"writing the rows to {path}"):
            write_rows(rows_table(binned), path)
    dims = ["rBin", "y2xBin", "z2xBin", "sector"]
    started = time.perf_counter()
    with _step("fitting (the first run also compiles its kernels, about 20 s)", progress):
        fit = xslide.fit(
            binned,
            dims,
            list(TARGETS),
            ["qpt"],
            window,
            trend=1,
            n_sigma_cut=3.0,
            min_entries=args.min_entries,
            progress=progress,
        )
    elapsed = time.perf_counter() - started
    out = args.out
    netcdf_format = getattr(args, "netcdf_format", "NETCDF4")
    digits = DIGITS if netcdf_format == "NETCDF4" else None
    with _step(f"writing {out}.nc"):  # atomic: a previous file survives a failure or Ctrl-C
        write_fit(fit, f"{out}.nc", netcdf_format=netcdf_format, significant_digits=digits)
    truth = true_field(
        fit.r_center, fit.y2x_center, fit.z2x_center, fit.sector.astype(float)
    )  # at every bin center
    n_fitted = int((fit.quality_flag == 0).all("target").sum())
    print(
        f"fitted {n_fitted:,} of {fit.quality_flag.isel(target=0).size:,} bins in "
        f"{elapsed:.2f} s (first call includes the numba compile); wrote {out}.nc"
        + (f" ({digits} significant digits, compressed)" if digits else "")
    )
    lines = [_summary(fit, truth, target) for target in TARGETS]
    print(pd.DataFrame(lines).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    _write_maps(fit, out)
    return 0


@contextlib.contextmanager
def _step(text: str, progress: bool | None = False) -> Iterator[None]:
    """Say what the demo does now and, once done, how long it took: a slow step (the first
    run compiles for a minute) never leaves the terminal silent. A step whose progress bars
    may show (``progress`` True, or None on a terminal) ends its line first for them."""
    bars = may_show(progress)
    print(f"{text}...", end="\n" if bars else " ", flush=True)
    started = time.perf_counter()
    yield
    elapsed = time.perf_counter() - started
    print(f"done in {elapsed:.1f} s" if bars else f"{elapsed:.1f} s", flush=True)


def _summary(fit, truth, target: str) -> dict:
    """One line of the demo's table: how close the local values come to the truth."""
    local = fit.coef.sel(target=target, term="Intercept")
    diff = (local - truth[target]).values
    rejected = fit.n_rejected.sel(target=target).sum() / fit.entries.sel(target=target).sum()
    return {
        "target": target,
        "rms(fit - truth) [cm]": float(np.sqrt(np.nanmean(diff**2))),
        "noise per row [cm]": NOISE,
        "median stderr [cm]": float(fit.stderr.sel(target=target, term="Intercept").median()),
        "outliers rejected [%]": float(100 * rejected),
    }


def _write_maps(fit, out: str) -> None:
    """Per target a PNG of the local values next to fit - truth (when matplotlib is installed).

    Both panels show r vs y/x at z2xBin=2 (z/x = 0.25) in sector 0; the residual map is on a
    symmetric diverging scale, so a bias shows as color and unfitted bins as grey hatching.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("maps skipped: pip install 'xslide[plot]' for the PNG maps")
        return
    if not fit.attrs.get("units_json"):  # the demo's own units, for the axes and colorbars
        fit = fit.assign_attrs(units_json=json.dumps(UNITS))
    truth = true_field(fit.r_center, fit.y2x_center, fit.z2x_center, fit.sector.astype(float))
    local = fit.coef.sel(term="Intercept", drop=True)
    residual = local - xr.concat([truth[t] for t in TARGETS], "target").assign_coords(
        target=list(TARGETS)
    )
    residual.attrs.update(long_name="coef - truth", units="cm")
    fit = fit.assign(fit_minus_truth=residual.transpose(*local.dims))
    where = {"z2xBin": 2, "sector": 0}
    for target in TARGETS:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
        fit.slidewin.plot_map("coef", target, "Intercept", ax=axes[0], **where)
        fit.slidewin.plot_map("fit_minus_truth", target, ax=axes[1], **where)
        fig.savefig(f"{out}-{target}.png", dpi=100)
        plt.close(fig)
    print(
        f"wrote {out}-dX.png, {out}-dY.png, {out}-dZ.png (fit and fit - truth, r vs y/x at "
        "z/x = 0.25 (z2xBin=2), sector 0)"
    )
