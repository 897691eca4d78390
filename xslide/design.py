"""Row tables, design matrices, targets and weights."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from ._numba import njit, num_threads, numba_available, run_chunks
from .errors import InvalidInputTypeError, MissingColumnError
from .formula import INTERCEPT, design_matrix

if TYPE_CHECKING:
    from .options import ReadSpec

_REFERENCE_SAMPLE = 100_000


class RowTable:
    """Uniform read access to columns of a DataFrame, a Dataset of rows or a dict of arrays."""

    def __init__(self, data) -> None:
        if isinstance(data, pd.DataFrame):
            self.index: pd.Index | None = data.index
            self.names = [str(c) for c in data.columns]
            self._get = lambda name: data[name]
            self.n_rows = len(data)
        elif isinstance(data, xr.Dataset):
            row_dims = {dim for var in data.variables.values() for dim in var.dims}
            if len(row_dims) != 1:
                raise ValueError(
                    "a Dataset of rows must have all its variables and coordinates along one "
                    f"dimension, found dims {sorted(map(str, row_dims))}"
                )
            row_dim = next(iter(row_dims))
            self.index = data.get_index(row_dim)
            # data variables and coordinates alike (bins are often stored as coordinates)
            self.names = [str(v) for v in data.variables if data[v].ndim == 1]
            self._get = lambda name: data[name].to_pandas()
            self.n_rows = data.sizes[row_dim]
        elif isinstance(data, Mapping):
            self.index = None
            self.names = [str(k) for k in data]
            self._get = lambda name: (
                data[name]
                if isinstance(data[name], pd.Series)
                else pd.Series(np.asarray(data[name]))
            )
            lengths = {len(np.asarray(v)) for v in data.values()}
            if len(lengths) > 1:
                raise ValueError(f"columns have different lengths: {sorted(lengths)}")
            self.n_rows = lengths.pop() if lengths else 0
        else:
            raise InvalidInputTypeError(
                "data must be a pandas DataFrame, an xarray Dataset of rows or a dict of arrays, "
                f"got {type(data).__name__}"
            )

    def column(self, name: str, role: str) -> pd.Series:
        """The column ``name``; a KeyError naming the argument ``role`` when it is missing."""
        if not isinstance(name, str) or name not in self.names:
            raise MissingColumnError(
                f"{role}: column {name!r} not found in the data; available columns: {self.names}"
            )
        if self.names.count(name) > 1:
            raise ValueError(
                f"{role}: column {name!r} appears {self.names.count(name)} times in the data; "
                "rename the duplicates"
            )
        return self._get(name)

    def numeric(self, name: str, role: str) -> np.ndarray:
        """The column ``name`` as float64 (NaN for missing values); no copy when it is one."""
        col = self.column(name, role)
        if not (pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)):
            raise InvalidInputTypeError(
                f"{role}: column {name!r} must be numeric, got dtype {col.dtype}"
            )
        if col.dtype == np.float64:
            return col.to_numpy()  # no copy: NaN is already the missing value
        return col.to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass
class Design:
    """Design columns (q of n rows), targets (t of n rows), weights (n,) or None and their
    references.

    The columns are the caller's own float64 arrays where they are float64 and contiguous (no
    copy: the row pass reads them in place), read-only, so that every kernel sees one array
    type. ``columns`` names the constant and the q design columns of ``xs``; ``intercept``
    says whether the constant is a term of the model (it is always summed: Σw, ΣwY need it).
    """

    columns: tuple[str, ...]
    targets: tuple[str, ...]
    xs: tuple[np.ndarray, ...]
    ys: tuple[np.ndarray, ...]
    w: np.ndarray | None
    x_ref: np.ndarray
    y_ref: np.ndarray
    intercept: bool = True
    undetermined: tuple[str, ...] = ()  # columns without a finite value: reference left at 0
    weights_scale: float = 1.0  # w holds the row weights times this (a power of two)

    @property
    def terms(self) -> tuple[str, ...]:
        """Terms of the model, in output order."""
        return self.columns if self.intercept else self.columns[1:]

    @property
    def n_rows(self) -> int:
        return self.ys[0].shape[0] if self.ys else 0

    @cached_property
    def x(self) -> np.ndarray:
        """(q, n) design columns stacked, made on first use (a copy: for the raw-row paths
        that read them as one array; the statistics pass reads ``xs`` in place)."""
        return _stack(self.xs, self.n_rows)

    @cached_property
    def y(self) -> np.ndarray:
        """(t, n) targets stacked, made on first use (a copy, like ``x``)."""
        return _stack(self.ys, self.n_rows)


def _stack(columns: tuple[np.ndarray, ...], n_rows: int) -> np.ndarray:
    out = np.empty((len(columns), n_rows))
    for j, column in enumerate(columns):
        out[j] = column
    return out


def read_only(values: np.ndarray) -> np.ndarray:
    """A read-only contiguous float64 view (a copy only when the column is not one already):
    one numba array type for every column, whatever the caller gives."""
    view = np.ascontiguousarray(values, dtype=np.float64).view()
    view.flags.writeable = False
    return view


def _sample_rows(flat: np.ndarray) -> np.ndarray | slice:
    """About _REFERENCE_SAMPLE in-grid rows (``flat >= 0``) spread evenly over the table: a
    slice when every one of them is in the grid (a strided copy reads faster than a gather)."""
    step = max(1, flat.size // _REFERENCE_SAMPLE)
    inside = flat[::step] >= 0
    if inside.all() and inside.size:
        return slice(None, None, step)
    rows = np.arange(0, flat.size, step)[inside]
    return rows if rows.size else np.flatnonzero(flat >= 0)[:_REFERENCE_SAMPLE]


# Values at least this large are left out of a reference's mean: their squares would not be
# summable, and one of them must not drag the reference of every other value away.
HUGE = 2.0**300  # no value this large is usable (SUMMABLE), nor makes a reference
# how many median absolute deviations from the median a value may lie and still make the mean
_REACH = 1e6
_ROBUST_SAMPLE = 2048


def reference_of(
    values: np.ndarray, rows: np.ndarray | slice, inside, sample: np.ndarray | None = None
) -> float:
    """A shift that keeps the sums' digits: the mean of the sampled values, robustly.

    Only values that could be usable count (finite, below ``HUGE``), and of those only the
    ones within ``_REACH`` median absolute deviations of their median: a few fill values
    (9.97e36, -999 in a column of ~1) never drag the reference, while the mean of ordinary
    data is the plain mean. NaN when no in-grid row has such a value (the reference is then
    undetermined: no row of this column is valid anyway). ``inside``: the in-grid rows' mask,
    or a function that makes it (needed only when the sample missed every usable value);
    ``sample``: ``values[rows]`` when already taken.
    """
    if sample is None:
        sample = np.array(values[rows])  # contiguous: the same sums whatever ``rows`` is
    if not _all_usable(sample):
        sample = _candidates(sample)
    if not sample.size:  # the sample missed the usable values: look at every in-grid row
        sample = _candidates(values[inside() if callable(inside) else inside])
    if not sample.size:
        return np.nan
    # where the bulk lies, from a few values (the window is wide: precision does not matter)
    few = sample[:: max(1, sample.size // _ROBUST_SAMPLE)]
    middle = np.median(few)
    reach = _REACH * np.median(np.abs(few - middle))
    if reach == 0:  # more than half the values are equal: they are the reference
        sample = sample[sample == middle]
    elif not (middle - reach <= sample.min() and sample.max() <= middle + reach):
        sample = sample[np.abs(sample - middle) <= reach]
    return float(sample.mean())


def _all_usable(sample: np.ndarray) -> bool:
    """Every value is finite and below HUGE (two fast reductions; NaN fails both tests)."""
    return bool(sample.size) and -HUGE < sample.min() and sample.max() < HUGE


def _candidates(values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return values[np.abs(values) < HUGE]


def _references(xs, ys, names, targets, given, flat) -> tuple[np.ndarray, np.ndarray, list]:
    """The reference of every design column and target: the user's, else ``reference_of``;
    and the columns left at 0 for want of a finite value."""
    reference = dict(given or {})
    unknown = set(reference) - set(names) - set(targets)
    if unknown:
        raise ValueError(f"reference names columns that are not fitted: {sorted(unknown)}")
    x_ref = np.array([reference.get(n, np.nan) for n in names] or np.empty(0), dtype=np.float64)
    y_ref = np.array([reference.get(n, np.nan) for n in targets], dtype=np.float64)
    rows = _sample_rows(flat)
    pairs = zip((*xs, *ys), (*x_ref, *y_ref), strict=True)
    samples = iter(_samples([values for values, ref in pairs if np.isnan(ref)], rows))
    undetermined = []
    for arrays, ref, columns in ((xs, x_ref, names), (ys, y_ref, targets)):
        for j, values in enumerate(arrays):
            if np.isnan(ref[j]):
                ref[j] = reference_of(values, rows, lambda: flat >= 0, next(samples))
            if np.isnan(ref[j]):  # no finite value: every row is invalid whatever the shift
                ref[j] = 0.0
                undetermined.append(columns[j])
    return x_ref, y_ref, undetermined


def _samples(columns: list[np.ndarray], rows: np.ndarray | slice) -> list[np.ndarray]:
    """``column[rows]`` of every column, contiguous. A strided sample of a long table is
    taken by one compiled pass over all the columns, in parallel parts: each value waits on
    its own cache line (numpy's strided copy is slower still)."""
    if not (columns and isinstance(rows, slice) and numba_available()):
        return [np.array(column[rows]) for column in columns]
    n = len(range(*rows.indices(columns[0].size)))
    if n < _COMPILED_SAMPLE:
        return [np.array(column[rows]) for column in columns]
    out = np.empty((len(columns), n))
    run_chunks(_take_every, 2 * num_threads(), tuple(columns), rows.step, out)
    return list(out)


_COMPILED_SAMPLE = 10_000  # values per column from which the sample is taken compiled


@njit(cache=True, nogil=True)
def _take_every(k, n_chunks, columns, step, out):
    """Part k of ``out[d] = columns[d][::step]`` for every column d."""
    n = out.shape[1]
    lo, hi = k * n // n_chunks, (k + 1) * n // n_chunks
    for d in range(len(columns)):
        values = columns[d]
        dest = out[d]
        for i in range(lo, hi):
            dest[i] = values[i * step]


def build_design(table: RowTable, spec: ReadSpec, flat: np.ndarray) -> Design:
    """Read targets, design columns and weights as float64 and fix the references.

    The design columns are the predictors, or the right-hand side of the formula evaluated
    over all rows. Negative weights are refused; NaN/inf values are kept here and excluded per
    target by the statistics pass. References not given are means of a sample of the rows
    inside the grid (``flat >= 0``).
    """
    targets, predictors, weights, formula = (
        spec.targets,
        spec.predictors,
        spec.weights,
        spec.formula,
    )
    ys = tuple(read_only(table.numeric(name, "fit_columns")) for name in targets)
    if formula is None:
        names, intercept = list(predictors), True
        xs = tuple(read_only(table.numeric(name, "predictor_columns")) for name in predictors)
    else:
        names, matrix = design_matrix(
            formula, lambda name: table.numeric(name, "fit_formula"), table.names
        )
        intercept = bool(names) and names[0] == INTERCEPT
        if intercept:
            names, matrix = names[1:], matrix[:, 1:]
        if not names and not intercept:
            raise ValueError(f"fit_formula {formula.formula!r} leaves no term to fit")
        xs = tuple(read_only(column) for column in matrix.T)
    w, scale = _weights(table, weights, flat, spec.weights_scale)
    x_ref, y_ref, undetermined = _references(xs, ys, names, targets, spec.reference, flat)
    return Design(
        (INTERCEPT, *names), tuple(targets), xs, ys, w, x_ref, y_ref, intercept,
        tuple(undetermined), scale,
    )  # fmt: skip


def _weights(table: RowTable, name: str | None, flat: np.ndarray, scale: float | None):
    """The row weights (>= 0), brought near 1 by a power of two when they are extreme.

    Weighted fits do not depend on the weights' scale, but Σw² over- or underflows for
    weights near 1e±160: such weights are multiplied by ``scale`` (given, or a power of two
    that brings the largest near 1; exact, so ordinary weights are left as they are).
    """
    if name is None:
        return None, 1.0
    w = table.numeric(name, "weights_column")
    inside = flat >= 0
    if w.size and np.fmin.reduce(w) < 0:  # one pass (NaN ignored) before looking closer
        negative = inside & (w < 0) & np.isfinite(w)  # -inf is invalid, like NaN
    else:
        negative = np.zeros(0, dtype=bool)
    if negative.any():
        raise ValueError(
            f"weights_column {name!r} has {int(negative.sum())} negative weights "
            f"(first at row {int(np.flatnonzero(negative)[0])}); weights must be >= 0"
        )
    if scale is None:
        scale = weights_scale(w, inside)
    return read_only(w if scale == 1.0 else w * scale), scale


def weights_scale(w: np.ndarray, inside: np.ndarray) -> float:
    """1 for ordinary weights; else a power of two that brings the largest finite in-grid
    weight to 2^100 (near 1 when all are tiny), or up to 2^400 where that keeps the smallest a
    normal number. Weighted sums stay finite: w·z² < 2^400 · SUMMABLE² = 2^1000."""
    largest = float(np.max(w, where=inside, initial=0.0))  # one pass; NaN if any is NaN
    if largest == 0.0 or 2.0**-100 <= largest <= 2.0**100:
        return 1.0
    with np.errstate(invalid="ignore"):
        positive = w[inside & np.isfinite(w) & (w > 0)]
    if not positive.size:
        return 1.0
    largest, smallest = float(positive.max()), float(positive.min())
    if 2.0**-100 <= largest <= 2.0**100:
        return 1.0
    top, bottom = math.frexp(largest)[1], math.frexp(smallest)[1]
    shift = 100 - top if top > 100 else -top
    if bottom + shift < -1000:  # the smallest would lose its digits: raise the largest, up
        shift = min(-1000 - bottom, _MAX_WEIGHT_EXPONENT - top)  # to 2^400, to keep them
    return math.ldexp(1.0, shift)


# A value shifted by its reference is usable below this magnitude: its square (< 2^600) sums
# over any window, weighted by up to 2^400 (weights_scale keeps weights there), without
# overflowing. Larger values are sentinels (DBL_MAX, 1e300): invalid rows, counted.
SUMMABLE = 2.0**300
_MAX_WEIGHT_EXPONENT = 400


def usable(shifted: np.ndarray) -> np.ndarray:
    """The validity rule of values: a value, shifted by its reference, is usable when its
    magnitude is below ``SUMMABLE`` (NaN and inf are not). A row counts for a target when its
    target and every design column are usable and its weight is finite; every pass applies
    this rule (the numba row pass spells it ``abs(z) < SUMMABLE`` per value)."""
    with np.errstate(invalid="ignore"):
        return np.abs(shifted) < SUMMABLE
