"""The ``xslide`` command line: ``demo``, ``fit`` (rows -> fit file) and ``predict``.

Exit codes: 0 success; 2 bad arguments (argparse errors, malformed or unknown option values,
options that exclude each other, unsupported file suffixes, selections or formulas refused by
the restricted-expression checker or not boolean, an ``--out`` that cannot be written safely);
1 data errors (missing or unreadable file, unknown column or target, a float ``--dims``
column, xslide refusing the data, a failed write); 130 interrupted (Ctrl-C).

``--digitize`` bins physical columns with ``xslide.digitize`` on the rows in memory or on every
streamed batch (the same edges for all), so the fit carries ``{column}_center`` coordinates;
``predict`` reads every fit format ``fit`` writes (the tables through ``xslide.fit_tables``).
Errors are one line on stderr, ``xslide: error: ...``; ``--debug`` adds the traceback.

``--out`` is checked before any row is read (a known suffix, an existing writable directory,
not one of the inputs, nothing of another kind in its place) and written atomically: an error
or Ctrl-C leaves a previous file as it was (``xslide.io``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

import numpy as np
import pandas as pd

from .demo import demo
from .errors import InvalidInputTypeError, InvalidWindowSpec
from .expressions import ExpressionError, check, check_formula, evaluate
from .io import (
    CHUNK_ROWS,
    FIT_SUFFIXES,
    NETCDF_FORMATS,
    ROWS_OUT_SUFFIXES,
    OutputPathError,
    Source,
    check_netcdf,
    check_output,
    parse_source,
)
from .options import (
    BACKENDS,
    BOUNDARIES,
    CENTERS,
    CLIP_CENTERS,
    CLIP_SCALES,
    FITTERS,
    KERNELS,
    ROBUST_AGGREGATES,
    Input,
    build_options,
)
from .parallel import may_show, progress_bar
from .solve import NOT_A_CENTER

FAMILIES = {
    "gaussian": "Gaussian",
    "poisson": "Poisson",
    "binomial": "Binomial",
    "gamma": "Gamma",
    "inverse_gaussian": "InverseGaussian",
    "negative_binomial": "NegativeBinomial",
    "tweedie": "Tweedie",
}
NORMS = {
    "huber": "HuberT",
    "tukey": "TukeyBiweight",
    "hampel": "Hampel",
    "andrew": "AndrewWave",
    "ramsay": "RamsayE",
    "trimmed_mean": "TrimmedMean",
    "least_squares": "LeastSquares",
}
#: the boolean column a streamed --selection adds to every batch
SELECTION_COLUMN = "__xslide_selection__"

FIT_EPILOG = """\
inputs:
  rows.parquet (streamed by row group), rows.csv (read in chunks), file.root:tree (ROOT TTree,
  via uproot, read in chunks); several inputs are one stream, chained in order. The median
  (--aggregations ...,median), --n-sigma-cut, --fitter glm/rlm/curve_fit and --in-memory read
  all inputs into memory instead.

outputs (by suffix of --out):
  .nc, .zarr  the fit Dataset (coef/stderr on (target, term, *dims), attrs included)
  .parquet    one row per center bin: bin columns, {t}_coef_{term}, {t}_stderr_{term},
              {t}_mean, {t}_entries, ..., {t}_quality_flag (int codes); attrs in metadata
  .root       the same table as TTree 'xslide' (+ TObjString 'xslide_attrs' with the attrs)

examples:
  xslide fit rows.parquet --dims rBin,y2xBin,z2xBin --window rBin=1,y2xBin=2 \\
      --targets dX,dY --predictors qpt --out fit.nc
  xslide fit part1.parquet part2.parquet --dims rBin,zBin --window rBin=2,zBin=1 \\
      --targets dX --formula 'target ~ qpt + np.log(r) + I(qpt**2)' \\
      --selection 'abs(qpt) < 2 & isfinite(dX)' --boundary rBin=shrink --out fit.zarr
  xslide fit tracks.root:residuals --dims rBin,phiBin --window rBin=1,phiBin=1 \\
      --boundary phiBin=periodic --kernel gaussian --kernel-width 1.0 --targets dY \\
      --predictors qpt --weights w --min-entries 20 --out fit.root
  xslide fit rows.csv --dims rBin --targets dX --aggregations mean,median,entries \\
      --n-sigma-cut 3 --out fit.parquet
  xslide fit rows.parquet --dims rBin,zBin --window rBin=1 --targets dX --predictors qpt \\
      --fitter curve_fit --model models.py:decay --p0 1,1,0 --bounds rate=0:inf --out fit.nc
  xslide fit tracks.root:residuals --digitize r=85:245:32,z2x=0/0.1/0.3/0.6/1 \\
      --dims rBin,z2xBin,sector --window rBin=1,z2xBin=1 --targets dX --predictors qpt \\
      --out fit.nc

physical (float) columns: --digitize r=85:245:32 (32 equal bins of [85, 245]) or
  z2x=0/0.1/0.3/0.6/1 (explicit edges) adds the bin columns rBin, z2xBin to every row (or
  streamed batch, with the same edges; a column of that name in the inputs is not read); list
  them in --dims. Bins are [e_i, e_i+1), the last one closed; rows outside the edges (or NaN)
  get no bin, are left out and counted in the summary. The fit carries r_center, z2x_center
  (with the edges) and the binning in attrs['binning_formulas_json'], so 'xslide predict'
  places rows by r and z2x.

exit codes: 0 success; 2 bad arguments (a malformed value, options that exclude each other,
  a refused expression, an --out that cannot be written); 1 data errors (missing or unreadable
  file, unknown column, a float --dims column, xslide refusing the data); 130 interrupted
"""

PREDICT_EPILOG = """\
Evaluates each input row's local model and writes the input columns plus {t}_pred (and
{t}_pred_err with --errors) per target. Prints which column placed the rows along each bin dim
and how many rows fell outside the grid or on unfitted bins. FIT is any file 'xslide fit'
writes: .nc, .zarr, or the .parquet / .root tables (rebuilt from their metadata).

positions: along each bin dim a row sits at its bin column, in bin units (bin b is centered on
  b and spans [b - 0.5, b + 0.5)), or, for a dim made by --digitize when the rows have the
  physical column (r for rBin), at its physical value through the fit's bin edges.
  --method nearest takes the model of the bin holding the row; --method linear blends the
  models of the surrounding bin centers, weighted by the distance to each center (linear in
  the physical value for digitized dims; exact for a linear field, extrapolated in the half
  bin beyond the outermost centers). A row with whole bin labels sits on a center, where
  linear equals nearest: give fractional positions (rBin = 2.3) or the physical column.

examples:
  xslide predict fit.nc rows.parquet --out predicted.parquet
  xslide predict fit.parquet tracks.root:residuals --method linear --bounds clamp \\
      --invalid nearest_valid --errors --out predicted.csv

exit codes: 0 success; 2 bad arguments (a malformed value, an --out that cannot be written);
  1 data errors (missing or unreadable file, a fit that is not one, unknown column or target)
"""

DEMO_EPILOG = """\
examples:
  xslide demo                                    # 1e6 rows: xslide-demo.nc, xslide-demo-*.png
  xslide demo --rows 2e5 --seed 3 --out d3.nc    # writes d3.nc, d3-dX.png, ...

exit codes: 0 success, 2 bad arguments, 1 errors (e.g. the output cannot be written)
"""

MAIN_EPILOG = """\
commands:
  xslide fit INPUT... --dims ... --targets ... --out FIT    fit rows from parquet/CSV/ROOT
  xslide predict FIT INPUT... --out ROWS                     evaluate a fit at rows
  xslide demo                                                a synthetic TPC example
'xslide COMMAND --help' shows each command's options and examples.

exit codes: 0 success, 2 bad arguments, 1 data errors, 130 interrupted
"""


class UsageError(ValueError):
    """An option value is malformed or inconsistent with the others: exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``xslide: error: ...`` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"xslide: error: {message} (see '{self.prog} --help')\n")


# ---- option parsers (argparse ``type=``): a bad value is an argparse error, exit 2 ----


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated column names, got {text!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(
            f"{', '.join(map(repr, repeated))} given twice in {text!r}"
        )
    return names


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for item in text.split(","):
        dim, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not dim or not value:
            raise argparse.ArgumentTypeError(f"expected {what}, got {item.strip()!r} in {text!r}")
        pairs.append((dim, value))
    dims = [dim for dim, _ in pairs]
    if len(set(dims)) != len(dims):
        raise argparse.ArgumentTypeError(f"a dim is given twice in {text!r}")
    return pairs


def _window(text: str) -> dict[str, int | tuple[int, int]]:
    """``dim=w`` (±w bins) or ``dim=before:after`` (e.g. t=100:0, the trailing 101 bins)."""
    window: dict[str, int | tuple[int, int]] = {}
    for dim, value in _pairs(text, "dim=half_width or dim=before:after (e.g. rBin=1,t=100:0)"):
        parts = value.split(":")
        try:
            numbers = [int(part) for part in parts]
        except ValueError:
            numbers = []
        if len(numbers) not in (1, 2):
            raise argparse.ArgumentTypeError(
                f"half-width of {dim!r} must be an integer >= 0 or before:after, got {value!r}"
            )
        window[dim] = numbers[0] if len(numbers) == 1 else (numbers[0], numbers[1])
    return window


def _units(text: str) -> dict[str, str]:
    return dict(_pairs(text, "column=unit (e.g. dX=cm,r=cm,qpt=1/GeV)"))


def _boundary(text: str) -> str | dict[str, str]:
    if "=" not in text:
        return text.strip()
    return dict(_pairs(text, "dim=mode (e.g. rBin=shrink)"))


def _number(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be a number, got {value!r}") from None


def _kernel_width(text: str) -> float | dict[str, float]:
    if "=" not in text:
        return _number(text.strip(), "kernel width")
    pairs = _pairs(text, "dim=width (e.g. rBin=1.5)")
    return {dim: _number(value, f"kernel width of {dim!r}") for dim, value in pairs}


def _trend(text: str) -> int | dict[str, int]:
    """``0``, ``1`` or ``2`` for every windowed dim, or ``dim=order,...``."""
    if "=" not in text:
        text = text.strip()
        if text not in ("0", "1", "2"):
            raise argparse.ArgumentTypeError(
                f"trend must be 0, 1, 2 or dim=order,..., got {text!r}"
            )
        return int(text)
    orders = {}
    for dim, value in _pairs(text, "dim=order (e.g. rBin=2,zBin=1)"):
        if value.strip() not in ("0", "1", "2"):
            raise argparse.ArgumentTypeError(f"trend of {dim!r} must be 0, 1 or 2, got {value!r}")
        orders[dim] = int(value)
    return orders


def _extent(text: str) -> dict[str, tuple[int, int]]:
    extent = {}
    for dim, value in _pairs(text, "dim=lo:hi (e.g. phiBin=0:17)"):
        lo, sep, hi = value.partition(":")
        try:
            extent[dim] = (int(lo), int(hi))
        except ValueError:
            sep = ""
        if not sep:
            raise argparse.ArgumentTypeError(
                f"extent of {dim!r} must be lo:hi with integers lo <= hi, got {value!r}"
            )
    return extent


def _bin_spec(column: str, value: str) -> tuple[float, float, int] | list[float]:
    """``lo:hi:n`` (n equal bins) or ``e0/e1/.../en`` (increasing edges) of one column."""
    where = f"--digitize {column}={value}"
    if ":" in value:
        parts = value.split(":")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"{where}: expected lo:hi:n, e.g. r=85:250:33")
        lo, hi = (_number(v, f"{where}: lo and hi") for v in parts[:2])
        n = _positive_int(parts[2])
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise argparse.ArgumentTypeError(f"{where}: need finite lo < hi")
        return (lo, hi, n)
    edges = [_number(v, f"{where}: every edge") for v in value.split("/")]
    steps = np.diff(edges)
    if len(edges) < 2 or not np.isfinite(edges).all() or (steps <= 0).any():
        raise argparse.ArgumentTypeError(
            f"{where}: expected lo:hi:n or at least 2 finite, increasing edges e0/e1/.../en"
        )
    return edges


def _digitize(text: str) -> dict[str, tuple[float, float, int] | list[float]]:
    """``r=85:250:33,z=-250/-100/0/100/250``: the bins of each physical column."""
    pairs = _pairs(text, "column=lo:hi:n or column=e0/e1/.../en (e.g. r=85:250:33)")
    return {column: _bin_spec(column, value) for column, value in pairs}


def _model(text: str) -> Callable:
    """``--model FILE.py:FUNCTION`` or ``MODULE:FUNCTION``: the curve_fit model, imported (the
    user's own code, as ``python FILE.py`` would run it)."""
    import importlib
    import importlib.util
    from pathlib import Path

    where, sep, name = text.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise argparse.ArgumentTypeError(
            f"--model must be FILE.py:FUNCTION or MODULE:FUNCTION, got {text!r}"
        )
    try:
        if where.endswith(".py"):
            path = Path(where)
            spec = importlib.util.spec_from_file_location(f"xslide_model_{path.stem}", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise ImportError(f"no such file {where!r}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except Exception as err:  # the user's module failing to import is a bad --model
        raise argparse.ArgumentTypeError(
            f"--model {text}: cannot import {where!r} ({type(err).__name__}: {err})"
        ) from None
    func = getattr(module, name, None)
    if not callable(func):
        raise argparse.ArgumentTypeError(f"--model {text}: {where!r} has no function {name!r}")
    return func


def _p0(text: str) -> list[float]:
    return [_number(v.strip(), "every --p0 value") for v in text.split(",")]


def _bounds(text: str) -> dict[str, tuple[float, float]]:
    bounds = {}
    for name, value in _pairs(text, "parameter=lo:hi (e.g. rate=0:5, amp=0:inf)"):
        lo, sep, hi = value.partition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"bounds of {name!r} must be lo:hi, got {value!r}")
        bounds[name] = (
            _number(lo, f"lower bound of {name!r}"),
            _number(hi, f"upper bound of {name!r}"),
        )
    return bounds


def _positive_int(text: str, most: float = 2.0**62) -> int:
    """A whole number >= 1, written as 100000 or as 1e5."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not (1 <= value <= most and value == int(value)):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text) if text.strip().lstrip("+").isdigit() else int(value)


def _row_count(text: str) -> int:
    """A number of rows for the demo (at most 1e10)."""
    return _positive_int(text, most=1e10)


def _float(text: str) -> float:
    return _number(text, "value")


def _output(suffixes: Sequence[str]):
    def parse(text: str) -> str:
        if not text.lower().rstrip("/").endswith(tuple(suffixes)):
            raise argparse.ArgumentTypeError(
                f"unknown output format {text!r}; expected a suffix among {', '.join(suffixes)}"
            )
        return text

    return parse


def _fit_input(text: str) -> str:
    if not text.lower().rstrip("/").endswith(FIT_SUFFIXES):
        raise argparse.ArgumentTypeError(
            f"a fit is read from {', '.join(FIT_SUFFIXES)} (as 'xslide fit' writes it), "
            f"got {text!r}"
        )
    return text


def _source(text: str) -> Source:
    try:
        return parse_source(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# ---- the parser ----


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xslide",
        description="Sliding-window group-by regression on integer-binned grids.",
        epilog=MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xslide {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser(
        "demo",
        help="fit a synthetic TPC-distortion dataset and summarise",
        description="Fit a synthetic TPC-distortion dataset (the model is documented in "
        "xslide/demo.py), write the map as OUT.nc and PNG maps, and print how close the fit "
        "comes to the truth, next to the noise.",
        epilog=DEMO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_demo.add_argument(
        "--rows", type=_row_count, default=1_000_000, help="number of rows (1e6, 2.5e5, ...)"
    )
    p_demo.add_argument("--seed", type=int, default=0, help="random seed")
    p_demo.add_argument("--min-entries", type=_positive_int, default=10, help="min rows per window")
    p_demo.add_argument(
        "--out", default="xslide-demo", help="output name (.nc and .png added, or kept if given)"
    )
    p_demo.add_argument(
        "--write-rows",
        action="append",
        default=[],
        metavar="PATH",
        type=_output(ROWS_OUT_SUFFIXES),
        help="also write the demo's rows, with their bin columns, to PATH (.parquet, .csv or "
        ".root with TTree 'rows'; repeatable), e.g. to try 'xslide fit' on them",
    )
    p_demo.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars of the fit (default: when stderr is a terminal)",
    )
    _add_netcdf_options(p_demo)
    p_demo.set_defaults(func=run_demo_command)
    _add_fit(sub)
    _add_predict(sub)
    return parser


def _add_inputs_and_out(p, several: str, suffixes, out_help: str) -> None:
    """The INPUT... files and the --out file of a subcommand."""
    p.add_argument(
        "inputs",
        nargs="+",
        type=_source,
        metavar="INPUT",
        help=f"rows.parquet, rows.csv or file.root:tree ({several})",
    )
    p.add_argument("--out", required=True, type=_output(suffixes), help=out_help)


def _add_fit(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit rows from parquet/CSV/ROOT files and write the fit",
        description="Fit target ~ predictors in a sliding window over integer bin columns "
        "(physical columns binned by --digitize) and write the fit by the suffix of --out.",
        epilog=FIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_inputs_and_out(
        p, "several: one stream", FIT_SUFFIXES, "output file: .nc, .zarr, .parquet or .root"
    )
    _add_model_options(p)
    _add_window_options(p)
    _add_run_options(p)
    _add_output_options(p)
    p.add_argument(
        "--significant-digits",
        type=_positive_int,
        help=".nc NETCDF4 output: keep N significant digits of the floats (lossy, smaller)",
    )
    _add_common(p)
    p.set_defaults(func=run_fit_command)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """What is fitted: bins, targets, the model, the fitter, weights and selection."""
    p.add_argument(
        "--dims",
        required=True,
        type=_names,
        help="integer bin columns, e.g. rBin,zBin (or ones --digitize makes)",
    )
    p.add_argument(
        "--digitize",
        type=_digitize,
        default={},
        metavar="COLUMN=BINS",
        help="bin physical columns: r=85:250:33 (33 equal bins) or z=-250/-100/0/100/250 "
        "(edges); adds rBin, zBin (list them in --dims), the fit gets r_center, z_center",
    )
    p.add_argument("--targets", required=True, type=_names, help="fit columns, e.g. dX,dY")
    model = p.add_mutually_exclusive_group()
    model.add_argument(
        "--predictors",
        type=_names,
        default=[],
        help="predictor columns (target ~ predictors with an intercept)",
    )
    model.add_argument(
        "--formula", help="model formula, 'target ~ x + np.log(r) + x:r + I(x**2) - 1'"
    )
    p.add_argument(
        "--window",
        type=_window,
        default={},
        help="half-widths, e.g. rBin=1,zBin=2, or before:after, e.g. t=100:0 for the trailing "
        "101 bins (dims left out: 0)",
    )
    p.add_argument(
        "--fitter",
        choices=FITTERS,
        default="ols",
        help="ols/wls: closed form; glm/rlm: statsmodels on the rows; curve_fit: a non-linear "
        "--model on the rows (default ols)",
    )
    p.add_argument("--family", choices=sorted(FAMILIES), help="GLM family (--fitter glm)")
    p.add_argument("--norm", choices=sorted(NORMS), help="RLM norm (--fitter rlm)")
    p.add_argument(
        "--model",
        type=_model,
        metavar="FILE.py:FUNCTION",
        help="the model f(x1, ..., a, b, ...) of --fitter curve_fit: the --predictors, then "
        "its parameters (FILE.py:FUNCTION or MODULE:FUNCTION)",
    )
    p.add_argument("--p0", type=_p0, help="start values of the parameters, e.g. 1,1,0")
    p.add_argument("--bounds", type=_bounds, help="bounds of parameters, e.g. rate=0:5,base=-inf:1")
    p.add_argument("--weights", help="row weights column (WLS, weighted mean/std)")
    p.add_argument(
        "--selection", help="boolean expression over columns, e.g. 'qpt > 0.5 & abs(tgl) < 1'"
    )
    p.add_argument(
        "--min-entries",
        type=_positive_int,
        default=10,
        help="fit a center only with >= this many rows in its window (10)",
    )


def _add_window_options(p: argparse.ArgumentParser) -> None:
    """The window: boundaries, kernel, trend, centers and the grid's extent."""
    p.add_argument(
        "--boundary",
        type=_boundary,
        default="truncate",
        help=f"{'|'.join(BOUNDARIES)}, global or per dim (rBin=shrink,phiBin=periodic)",
    )
    p.add_argument("--kernel", choices=KERNELS, default="uniform", help="bin weights in a window")
    p.add_argument(
        "--kernel-width",
        type=_kernel_width,
        help="kernel width in bins, global or per dim (default max(half-width, 1), or "
        "max(before, after, 1))",
    )
    p.add_argument(
        "--trend",
        type=_trend,
        default=0,
        help="local polynomial order in the bin offsets: 1 adds d_{dim} (edge-bias-free "
        "intercept), 2 also d2_{dim}; global or per dim, e.g. rBin=2,zBin=1",
    )
    p.add_argument(
        "--trend-interactions",
        action="store_true",
        help="also the cross terms d_{a}:d_{b} of every pair of trend dims",
    )
    p.add_argument(
        "--centers",
        choices=CENTERS,
        default="observed",
        help="fit bins with rows (observed) or every bin of the grid (grid)",
    )
    p.add_argument("--extent", type=_extent, help="fix the grid range per dim, e.g. phiBin=0:17")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Aggregates, clipping, and how the rows are read (memory, stream or dask)."""
    p.add_argument(
        "--aggregations",
        type=_names,
        help="per-target aggregates among mean,std,median,entries and the robust "
        "ltm,ltm_std,mad,trimmed_mean (default: mean,std,median,entries in memory, "
        "mean,std,entries when streaming)",
    )
    p.add_argument(
        "--ltm-fraction", type=_float, default=0.8,
        help="fraction of each window the ltm block holds at most (0.8)",
    )  # fmt: skip
    p.add_argument(
        "--trim-fraction", type=_float, default=0.1,
        help="fraction trimmed_mean cuts from each end (0.1)",
    )  # fmt: skip
    p.add_argument(
        "--n-sigma-cut", type=_float, help="refit without rows whose |residual| > N x rmse"
    )
    p.add_argument("--max-iter", type=_positive_int, help="most refits of --n-sigma-cut (3)")
    p.add_argument(
        "--clip-center", choices=CLIP_CENTERS, default="fit",
        help="--n-sigma-cut around the previous fit (fit) or the window median (median)",
    )  # fmt: skip
    p.add_argument(
        "--clip-scale", choices=CLIP_SCALES, default="rmse",
        help="--n-sigma-cut in units of the fit's rmse (rmse) or the window's MAD sigma (mad)",
    )  # fmt: skip
    p.add_argument("--backend", choices=BACKENDS, default="auto")
    p.add_argument(
        "--in-memory", action="store_true", help="read all inputs into memory instead of streaming"
    )
    p.add_argument(
        "--chunk-rows",
        type=_positive_int,
        default=CHUNK_ROWS,
        help=f"rows per streamed batch ({CHUNK_ROWS})",
    )
    p.add_argument(
        "--scheduler", help="dask scheduler address (tcp://...): statistics on that cluster"
    )
    p.add_argument(
        "--dask-workers",
        type=_positive_int,
        help="start a local dask cluster of N worker processes for the statistics",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """Units recorded in the fit, and how a .nc output is written."""
    p.add_argument(
        "--units",
        type=_units,
        help="units of columns, recorded in the fit (CF units attrs), e.g. dX=cm,r=cm,qpt=1/GeV",
    )
    _add_netcdf_options(p)


def _add_netcdf_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--netcdf-format",
        choices=NETCDF_FORMATS,
        default="NETCDF4",
        help=".nc output: compressed NETCDF4 (needs netCDF4), or NETCDF3_64BIT "
        "(uncompressed, 64-bit counts stored as int32)",
    )


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="evaluate a fit's local models at the rows of a file",
        description="Predict each target at new rows from a fit written by 'xslide fit' "
        "(.nc, .zarr, .parquet or .root).",
        epilog=PREDICT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "fit", metavar="FIT", type=_fit_input, help="the fit: .nc, .zarr, .parquet or .root"
    )
    _add_inputs_and_out(
        p, "several are concatenated", ROWS_OUT_SUFFIXES, "output rows: .parquet, .csv or .root"
    )
    p.add_argument("--targets", type=_names, help="targets to predict (default: all)")
    p.add_argument(
        "--method",
        choices=("nearest", "linear"),
        default="nearest",
        help="nearest: the model of the row's bin; linear: models blended between bin "
        "centers (needs fractional or physical positions, see below)",
    )
    p.add_argument(
        "--bounds",
        choices=("nan", "clamp"),
        default="nan",
        help="rows outside the grid: NaN, or moved to its edge",
    )
    p.add_argument(
        "--invalid",
        choices=("nan", "nearest_valid"),
        default="nan",
        help="unfitted bins: NaN, or the nearest fitted bin's model",
    )
    p.add_argument("--errors", action="store_true", help="also write {t}_pred_err")
    _add_common(p)
    p.set_defaults(func=run_predict_command)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: when stderr is a terminal)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


# ---- demo ----


def run_demo_command(args: argparse.Namespace) -> int:
    """``xslide demo``: ``--out d3.nc`` writes d3.nc (not d3.nc.nc), its directory checked first."""
    if args.out.lower().endswith(".nc"):
        args.out = args.out[: -len(".nc")]
    check_output(f"{args.out}.nc", (".nc",))
    for path in args.write_rows:
        check_output(path, ROWS_OUT_SUFFIXES)
    check_netcdf(args.netcdf_format)  # netCDF4 missing: said before the fit
    return demo(args)


# ---- fit ----


def _fit_keywords(args: argparse.Namespace) -> dict:
    """The ``xslide.fit`` keywords of the options (the selection and data come later)."""
    return {
        "dims": args.dims,
        "targets": args.targets,
        "predictors": args.predictors,
        "window": args.window,
        "formula": args.formula,
        "fitter": args.fitter,
        "weights": args.weights,
        "min_entries": args.min_entries,
        "aggregation": args.aggregations,
        "ltm_fraction": args.ltm_fraction,
        "trim_fraction": args.trim_fraction,
        "boundary": args.boundary,
        "kernel": args.kernel,
        "kernel_width": args.kernel_width,
        "trend": args.trend,
        "trend_interactions": args.trend_interactions,
        "centers": args.centers,
        "extent": args.extent,
        "backend": args.backend,
        "n_sigma_cut": args.n_sigma_cut,
        "max_iter": args.max_iter,
        "clip_center": args.clip_center,
        "clip_scale": args.clip_scale,
        "progress": args.progress,
        "units": args.units,
        **_curve_options(args),
    }


def _curve_options(args: argparse.Namespace) -> dict:
    """The model, start values and bounds of --fitter curve_fit."""
    options = {"model": args.model, "p0": args.p0, "bounds": args.bounds}
    return {k: v for k, v in options.items() if v is not None}


# the keyword names of xslide's messages, as the command line spells them
_FLAGS = {
    "group_columns": "--dims",
    "fit_columns": "--targets",
    "predictor_columns": "--predictors",
    "fit_formula": "--formula",
    "weights_column": "--weights",
    "window_spec": "--window",
    "aggregation_functions": "--aggregations",
    "kernel_width": "--kernel-width",
    "min_entries": "--min-entries",
    "n_sigma_cut": "--n-sigma-cut",
    "max_iter": "--max-iter",
    "ltm_fraction": "--ltm-fraction",
    "trim_fraction": "--trim-fraction",
    "clip_center": "--clip-center",
    "clip_scale": "--clip-scale",
}
_KEYWORD = re.compile(r"\b(" + "|".join(_FLAGS) + r")\b")


def _in_flags(message: str) -> str:
    """An options message with the keyword names replaced by the command line's flags."""
    return _KEYWORD.sub(lambda match: _FLAGS[match.group(1)], message)


def _memory_reasons(args: argparse.Namespace) -> list[str]:
    """The options that need every row in memory at once."""
    aggregation = args.aggregations or []
    reasons = ["--in-memory"] if args.in_memory else []
    rows_needed = [a for a in aggregation if a in ("median", *ROBUST_AGGREGATES)]
    reasons += [f"--aggregations {','.join(rows_needed)}"] if rows_needed else []
    reasons += ["--n-sigma-cut"] if args.n_sigma_cut is not None else []
    reasons += [f"--fitter {args.fitter}"] if args.fitter in ("glm", "rlm", "curve_fit") else []
    return reasons


def _check_combinations(args: argparse.Namespace) -> None:
    """Options that exclude each other, refused before anything is read (exit 2)."""
    dask = "--scheduler" if args.scheduler else "--dask-workers" if args.dask_workers else None
    if args.scheduler and args.dask_workers:
        raise UsageError(
            "--scheduler (a running cluster) and --dask-workers (a local one) exclude each "
            "other: give one"
        )
    if dask and _memory_reasons(args):
        raise UsageError(
            f"{dask} computes the statistics on dask, but {', '.join(_memory_reasons(args))} "
            "reads the rows into memory: drop one"
        )
    if dask and args.digitize:
        raise UsageError(f"--digitize is not available with {dask}: add the bin columns first")
    made = {f"{column}Bin": column for column in args.digitize}
    binned = [c for c in made.values() if c in args.dims]
    if binned:
        raise UsageError(
            f"--dims names {binned}, which --digitize bins: name the bin columns "
            f"{[f'{c}Bin' for c in binned]} instead"
        )
    missing = [b for b in made if b not in args.dims]
    if missing:
        spec = ",".join(f"{made[b]}=..." for b in missing)
        raise UsageError(
            f"--digitize {spec} makes {', '.join(missing)}, which --dims does not list: "
            f"add it, e.g. --dims {','.join([*args.dims, *missing])}"
        )


def _check_usage(args: argparse.Namespace, kind: str) -> tuple[list[str], list[str]]:
    """Check the options before reading data (exit 2); return the selection and formula
    columns."""
    _check_combinations(args)
    if args.family and args.fitter != "glm":
        raise UsageError("--family is an option of --fitter glm")
    if args.norm and args.fitter != "rlm":
        raise UsageError("--norm is an option of --fitter rlm")
    curve = [flag for flag in ("model", "p0", "bounds") if getattr(args, flag) is not None]
    if curve and args.fitter != "curve_fit":
        raise UsageError(f"--{', --'.join(curve)}: options of --fitter curve_fit")
    if args.fitter == "curve_fit" and args.model is None:
        raise UsageError("--fitter curve_fit needs --model FILE.py:FUNCTION")
    selection_columns = check(args.selection) if args.selection is not None else []
    formula_columns = check_formula(args.formula) if args.formula is not None else []
    try:
        with warnings.catch_warnings():  # xslide.fit warns again when it runs
            warnings.simplefilter("ignore")
            build_options(_fit_keywords(args), Input(kind))
    except (ValueError, TypeError) as err:
        raise UsageError(_in_flags(str(err))) from None
    return selection_columns, formula_columns


def _fitter_options(args: argparse.Namespace) -> dict:
    if args.family is None and args.norm is None:
        return {}
    from ._optional import require

    sm = require("statsmodels.api", "--family/--norm")
    if args.family is not None:
        return {"family": getattr(sm.families, FAMILIES[args.family])()}
    return {"M": getattr(sm.robust.norms, NORMS[args.norm])()}


def _array(column) -> np.ndarray:
    """A batch column as a numpy array, missing values as NaN (numbers) or False (booleans)."""
    if isinstance(column, pd.Series):
        if pd.api.types.is_bool_dtype(column.dtype):
            return column.to_numpy(dtype=bool, na_value=False)
        if pd.api.types.is_numeric_dtype(column.dtype):
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        return column.to_numpy()
    return column.to_numpy(zero_copy_only=False)


def _selection_mask(expression: str, batch, names: Sequence[str]) -> np.ndarray:
    """Evaluate the selection over a DataFrame or pyarrow batch: one boolean per row."""
    n_rows = batch.num_rows if hasattr(batch, "num_rows") else len(batch)
    if hasattr(batch, "num_rows"):
        columns = {n: _array(batch.column(n)) for n in names}
    else:
        columns = {n: _array(batch[n]) for n in names}
    mask = evaluate(expression, columns)
    if mask.dtype != np.bool_:
        raise UsageError(
            f"--selection {expression!r} gives {mask.dtype} values, not booleans; "
            "use a comparison such as 'qpt > 0.5'"
        )
    return np.broadcast_to(mask, (n_rows,)).copy()


class _Batches:
    """The batches of all inputs, chained, each digitized (--digitize) and with the selection
    column added when asked;
    ``total_rows`` (when the files' metadata tell) sizes xslide's progress bar."""

    def __init__(
        self,
        sources: Sequence[Source],
        columns: Sequence[str],
        chunk_rows: int,
        selection: str | None,
        selection_columns: Sequence[str],
        digitizer: Callable,
    ) -> None:
        from .io import count_rows

        self.sources, self.columns, self.chunk_rows = sources, columns, chunk_rows
        self.selection, self.selection_columns = selection, selection_columns
        self.digitizer = digitizer
        self.total_rows = count_rows(sources)

    def __iter__(self) -> Iterator:
        from .io import iter_batches

        batches = iter_batches(_texts(self.sources), self.columns, self.chunk_rows, arrow=True)
        n_rows = 0
        for batch in batches:
            batch = self.digitizer(batch)
            if self.selection is not None:
                mask = _selection_mask(self.selection, batch, self.selection_columns)
                if hasattr(batch, "num_rows"):
                    import pyarrow as pa

                    batch = batch.append_column(SELECTION_COLUMN, pa.array(mask))
                else:
                    batch = batch.assign(**{SELECTION_COLUMN: mask})
            n_rows += len(batch)
            yield batch
        if not n_rows:
            raise ValueError(f"no rows in {', '.join(_texts(self.sources))}")


def _read_all(sources: Sequence[Source], columns, progress: bool | None) -> pd.DataFrame:
    """The rows of all inputs as one table, with one progress bar over them."""
    from .io import count_rows, read_source

    total = count_rows(sources) if may_show(progress) else None
    with progress_bar(total, progress, "xslide reading", " rows", scale=True) as bar:
        data = _concat([read_source(s, columns, bar) for s in sources])
    if not len(data):
        raise ValueError(f"no rows in {', '.join(_texts(sources))}")
    return data


def _texts(sources: Sequence[Source]) -> list[str]:
    """Inputs as the text specs the io readers take."""
    return [str(s) for s in sources]


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The rows of all inputs as one table; inputs without rows are left out (a CSV with a
    header only has object columns, which would turn the other inputs' numbers into objects)."""
    kept = [frame for frame in frames if len(frame)] or list(frames[:1])
    return kept[0] if len(kept) == 1 else pd.concat(kept, ignore_index=True)


def _dask_client(args: argparse.Namespace):
    """A client on ``--scheduler`` or on a local cluster of ``--dask-workers`` processes."""
    if not (args.scheduler or args.dask_workers):
        return contextlib.nullcontext()
    from ._optional import require

    feature = "--scheduler / --dask-workers"
    distributed = require("distributed", feature)
    if args.scheduler:
        return distributed.Client(args.scheduler)
    cluster = distributed.LocalCluster(
        n_workers=args.dask_workers, threads_per_worker=1, dashboard_address=None
    )
    client = distributed.Client(cluster)

    class _Both(contextlib.AbstractContextManager):
        def __exit__(self, *exc):
            client.close()
            cluster.close()

    return _Both()


def _dask_frame(args: argparse.Namespace, columns, selection_columns):
    """The inputs as one dask DataFrame (parquet/CSV), with the selection as a column."""
    from ._optional import require

    dd = require("dask.dataframe", "--scheduler / --dask-workers")
    kinds = {s.kind for s in args.inputs}
    if not kinds <= {"parquet", "csv"} or len(kinds) > 1:
        raise UsageError("--scheduler/--dask-workers read parquet or CSV inputs of one format")
    paths = [str(s.path) for s in args.inputs]
    if kinds == {"parquet"}:
        frame = dd.read_parquet(paths, columns=columns)
    else:
        frame = dd.read_csv(paths, usecols=columns)
    if args.selection is None:
        return frame, None
    expression = args.selection

    def select(part):
        values = evaluate(expression, {c: part[c].to_numpy() for c in selection_columns})
        return pd.Series(np.asarray(values, dtype=bool), index=part.index)

    selected = frame.map_partitions(select, meta=(SELECTION_COLUMN, bool))
    return frame.assign(**{SELECTION_COLUMN: selected}), SELECTION_COLUMN


def _read_mode(args: argparse.Namespace) -> str:
    """'memory' where a path needs every row at once, else 'dask' or 'stream'."""
    if _memory_reasons(args):
        return "memory"
    return "dask" if args.scheduler or args.dask_workers else "stream"


def _needed_columns(args: argparse.Namespace, extra: Sequence[str]) -> list[str]:
    """The columns the fit reads, checked in every input before any row is read (the bin
    columns --digitize makes are not read: their physical columns are)."""
    from .io import available_columns

    made = {f"{column}Bin" for column in args.digitize}
    columns = [*args.dims, *args.targets, *args.predictors]
    columns += [args.weights] if args.weights else []
    columns = [c for c in dict.fromkeys([*columns, *extra]) if c not in made]
    columns += [c for c in args.digitize if c not in columns]
    for source in args.inputs:
        known = available_columns(source)
        missing = [c for c in columns if c not in known]
        if missing:
            raise KeyError(f"{source}: column(s) {missing} not found; available columns: {known}")
    return columns


def _input_data(args: argparse.Namespace, mode: str, columns, selection_columns, digitizer):
    """The rows as xslide.fit takes them (a table, a dask frame, a path or batches) and the
    selection; --digitize adds its bin columns to the table or to every batch."""
    if mode == "memory":
        data = digitizer(_read_all(args.inputs, columns, args.progress))
        if args.selection is None:
            return data, None
        return data, _selection_mask(args.selection, data, selection_columns)
    if mode == "dask":
        return _dask_frame(args, columns, selection_columns)
    single = len(args.inputs) == 1 and args.inputs[0].kind == "parquet"
    if single and args.selection is None and not args.digitize:
        return str(args.inputs[0].path), None  # xslide streams it by row group itself
    data = _Batches(
        args.inputs, columns, args.chunk_rows, args.selection, selection_columns, digitizer
    )
    return data, None if args.selection is None else SELECTION_COLUMN


def run_fit_command(args: argparse.Namespace) -> int:
    """``xslide fit``: read (or stream) the inputs, fit, write the result by suffix."""
    import xslide

    from .io import write_fit

    mode = _read_mode(args)
    selection_columns, formula_columns = _check_usage(args, mode)
    check_output(args.out, FIT_SUFFIXES, args.inputs)  # before any row is read
    if args.out.lower().endswith(".nc"):  # netCDF4 missing or a bad option: said before too
        try:
            check_netcdf(args.netcdf_format, args.significant_digits)
        except ValueError as err:
            raise UsageError(str(err).replace("netcdf_format='", "--netcdf-format '")) from None
    elif args.significant_digits is not None:
        raise UsageError(f"--significant-digits applies to .nc outputs only, not to {args.out}")
    columns = _needed_columns(args, [*selection_columns, *formula_columns])
    _refuse_float_bins(args)
    digitizer = _Digitizer(args.digitize)
    data, selection = _input_data(args, mode, columns, selection_columns, digitizer)
    keywords = {**_fit_keywords(args), **_fitter_options(args)}
    with _dask_client(args) if mode == "dask" else contextlib.nullcontext():
        try:
            ds = xslide.fit(data, selection=selection, **keywords)
        except InvalidInputTypeError as err:  # a float bin column the schema did not show
            raise InvalidInputTypeError(_digitize_hint(str(err))) from err
    ds.attrs["input_files_json"] = json.dumps(_texts(args.inputs))
    ds.attrs["selection_expression"] = args.selection or ""
    ds.attrs["read_mode"] = mode
    if args.digitize:
        ds.attrs["n_rows_outside_digitize_json"] = json.dumps(digitizer.outside)
    writer = functools.partial(
        write_fit, netcdf_format=args.netcdf_format, significant_digits=args.significant_digits
    )
    out = _write(writer, ds, args.out)
    print(
        f"xslide fit: {int(ds.attrs.get('n_rows_input', 0)):,} rows "
        f"({int(ds.attrs.get('n_rows_not_selected', 0)):,} not selected{digitizer.summary()}); "
        f"fitted {_fitted_summary(ds)}; wrote {out}"
    )
    return 0


class _Digitizer:
    """--digitize applied to the rows in memory or to every batch of a stream, with the same
    edges; counts the rows outside the edges (or NaN) per column."""

    def __init__(self, bins: dict) -> None:
        self.bins = bins
        self.outside = dict.fromkeys(bins, 0)

    def __call__(self, batch):
        if not self.bins:
            return batch
        from .binning import digitize

        if hasattr(batch, "num_rows"):  # a pyarrow batch: digitize keeps its record in attrs
            batch = batch.to_pandas()
        binned = digitize(batch, self.bins)
        for column in self.bins:
            self.outside[column] += int(binned[f"{column}Bin"].isna().sum())
        return binned

    def summary(self) -> str:
        """', r 12 / z 0 outside the --digitize edges (or NaN)' (nothing without --digitize)."""
        if not self.bins:
            return ""
        counts = " / ".join(f"{c} {n:,}" for c, n in self.outside.items())
        return f"; {counts} outside the --digitize edges (or NaN), left out"


_DIGITIZE_HINT = (
    "bin it with --digitize {c}=lo:hi:n (n equal bins) or {c}=e0/e1/.../en (edges) "
    "and list {c}Bin in --dims"
)


def _digitize_hint(message: str) -> str:
    """xslide's refusal of a float bin column, with the command line's remedy."""
    match = re.search(r"bin column '([^']+)' must have an integer dtype, got (\S+?);", message)
    if match is None:
        return message
    head = message[: match.start()]
    column, dtype = match.groups()
    return f"{head}--dims column {column!r} holds {dtype} values, not integer bins; " + (
        _DIGITIZE_HINT.format(c=column)
    )


def _column_kinds(source: Source, names: Sequence[str]) -> dict[str, str]:
    """The dtype of some columns of an input, from its schema (CSV: its first rows)."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(source.path).schema_arrow
        kinds = {}
        for name in names:
            with contextlib.suppress(NotImplementedError, TypeError):
                kinds[name] = str(np.dtype(schema.field(name).type.to_pandas_dtype()))
        return kinds
    if source.kind == "root":
        import uproot

        from .io import root_tree

        with uproot.open(source.path) as file:
            tree = root_tree(source, file)
            kinds = {n: getattr(tree[n].interpretation, "numpy_dtype", None) for n in names}
        return {n: str(k) for n, k in kinds.items() if k is not None}
    return {
        n: str(k) for n, k in pd.read_csv(source.path, usecols=names, nrows=1000).dtypes.items()
    }


def _refuse_float_bins(args: argparse.Namespace) -> None:
    """A --dims column of floating-point values in an input is refused before reading, with the
    --digitize remedy (exit 1: the data do not fit the flags)."""
    made = {f"{column}Bin" for column in args.digitize}
    dims = [d for d in args.dims if d not in made]
    for source in args.inputs:
        for column, dtype in _column_kinds(source, dims).items():
            if np.dtype(dtype).kind == "f":
                raise InvalidInputTypeError(
                    f"{source}: --dims column {column!r} holds {dtype} values, not integer "
                    f"bins; {_DIGITIZE_HINT.format(c=column)}"
                )


def _fitted_summary(ds) -> str:
    """'dX 586 of 46,872 bins (1.3 %), ...': the fitted centers of every target."""
    flags = ds["quality_flag"]
    bins = [d for d in flags.dims if d != "target"]
    fitted, centers = (flags == 0).sum(dim=bins), (flags != NOT_A_CENTER).sum(dim=bins)
    parts = []
    for target, n, m in zip(ds.target.values, fitted.values, centers.values, strict=True):
        share = f" ({100 * n / m:.1f} %)" if m else ""
        parts.append(f"{target} {int(n):,} of {int(m):,} bins{share}")
    return ", ".join(parts)


def _write(writer, data, path: str):
    """Write the output; a failure names it (a previous file is left as it was)."""
    try:
        return writer(data, path)
    except OutputPathError:
        raise
    except Exception as err:
        raise OSError(
            f"{path}: not written ({_message(err)}); a previous file is left as it was"
        ) from err


# ---- predict ----


def run_predict_command(args: argparse.Namespace) -> int:
    """``xslide predict``: open a fit, read the rows, write them with the predictions."""
    import xslide

    from .io import open_fit, read_rows, write_rows

    check_output(args.out, ROWS_OUT_SUFFIXES, [args.fit, *args.inputs])  # before any reading
    fit = open_fit(args.fit)
    formula = str(fit.attrs.get("formula", ""))
    if formula and formula != "callable":
        try:  # the formula comes from a file and patsy evaluates it: check it like user input
            check_formula(formula)
        except ExpressionError as err:
            raise ValueError(f"{args.fit}: refusing the stored formula: {err}") from None
    if args.targets is not None and "target" in fit.coords:
        fitted = [str(t) for t in fit["target"].values]
        unknown = [t for t in args.targets if t not in fitted]
        if unknown:
            raise KeyError(f"--targets {unknown} were not fitted in {args.fit}; fitted: {fitted}")
    rows = _concat([read_rows(str(s), progress=args.progress) for s in args.inputs])
    placement = _placement(fit, rows, args)
    try:
        predicted = xslide.predict(
            fit,
            rows,
            targets=args.targets,
            method=args.method,
            bounds=args.bounds,
            invalid=args.invalid,
            return_error=args.errors,
        )
    except (ValueError, KeyError) as err:  # name the file instead of 'fit:' / 'rows:'
        text = _message(err)
        for prefix, name in (("fit: ", str(args.fit)), ("rows: ", ", ".join(_texts(args.inputs)))):
            if text.startswith(prefix):
                raise type(err)(f"{name}: {text[len(prefix) :]}") from err
        raise
    out = rows.copy()
    for name in predicted.columns:
        out[name] = predicted[name].to_numpy()
    path = _write(write_rows, out, args.out)
    outside = int(predicted.attrs.get("n_outside_grid", 0))
    invalid = int(predicted.attrs.get("n_invalid", 0))
    print(
        f"xslide predict: {len(out):,} rows placed by {placement}; {outside:,} outside the "
        f"grid, {invalid:,} on unfitted bins; wrote {path}"
    )
    return 0


def _placement(fit, rows: pd.DataFrame, args: argparse.Namespace) -> str:
    """Which column places the rows along each bin dim ('r (physical), zBin (bin)'); warns
    when --method linear cannot blend (every row on a bin center)."""
    from .predict import position_column

    if "coef" not in fit:
        return "their bins"  # predict refuses such a fit, naming what is missing
    dims = [str(d) for d in fit["coef"].dims if d not in ("target", "term")]
    names = [str(c) for c in rows.columns]
    found = {d: position_column(fit, d, names) for d in dims}
    on_centers = all(
        column is not None and not physical and _whole(rows[column])
        for column, physical in (f for f in found.values() if f is not None)
    )
    if args.method == "linear" and on_centers and all(found.values()):
        warnings.warn(
            f"--method linear: every row of {', '.join(_texts(args.inputs))} sits on a bin "
            f"center (whole bin labels in {[f[0] for f in found.values()]}), where it equals "
            "--method nearest; give fractional bin positions, or the physical column of a "
            "--digitize dim",
            UserWarning,
            stacklevel=2,
        )
    return ", ".join(
        f"{f[0]} ({'physical' if f[1] else 'bin'})" for f in found.values() if f is not None
    )


def _whole(column: pd.Series) -> bool:
    """Whole numbers only (integer bins, or floats holding integers)."""
    if pd.api.types.is_integer_dtype(column.dtype):
        return True
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = values[np.isfinite(values)]
    return bool((finite == np.round(finite)).all())


# ---- entry point ----


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]  # str(KeyError) would quote it
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def _warn_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"xslide: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 data error, 2 bad arguments)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or an argparse error (already printed)
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    debug = getattr(args, "debug", False)
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _warn_one_line
            return args.func(args)
    except KeyboardInterrupt:
        print("xslide: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # every error is reported in one line
        usage = isinstance(err, UsageError | ExpressionError | InvalidWindowSpec | OutputPathError)
        if debug:
            traceback.print_exc()
        print(f"xslide: error: {_message(err)}", file=sys.stderr)
        return 2 if usage else 1


if __name__ == "__main__":
    sys.exit(main())
