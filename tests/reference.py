"""Slow, obvious reference implementation (test oracle) of ``xslide.make_sliding_window_fit``.

Everything here is written for clarity, not speed: one Python loop over the centers, an explicit
boolean row mask per window, and plain numpy on the gathered rows.  The only deliberate
sophistication is numerical: least squares is solved on a design whose predictors are centered on
their weighted window mean.  That is the same fit mathematically (the column space is unchanged)
but keeps the oracle accurate for data with a large offset relative to its spread, so that the
oracle, not the engine, is the trusted side of every comparison.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import pandas as pd

AGGREGATIONS: tuple[str, ...] = ("mean", "std", "median", "entries")


def sanitize(name: str) -> str:
    """Column-name fragment for a predictor: every non-alphanumeric character becomes ``_``."""
    return re.sub(r"[^0-9A-Za-z]", "_", name)


def fit_column_names(target: str, predictors: Sequence[str], clipped: bool = False) -> list[str]:
    """Fit-block column names of one target, in output order."""
    slopes = [f"{target}_slope_{sanitize(p)}" for p in predictors]
    return [
        f"{target}_intercept",
        *slopes,
        f"{target}_intercept_err",
        *[f"{s}_err" for s in slopes],
        f"{target}_r_squared",
        f"{target}_rmse",
        f"{target}_n_fitted",
        *([f"{target}_n_rejected"] if clipped else []),
    ]


@dataclass
class FitResult:
    """Outcome of one weighted least-squares fit of one target in one window."""

    code: str  # "empty", "insufficient", "singular" or "ok"
    coef: np.ndarray  # intercept, slopes
    err: np.ndarray  # standard errors of coef
    r_squared: float
    rmse: float
    n_params: int | None = None  # the coefficients estimated, when some are fixed at 0


def weighted_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, min_entries: int) -> FitResult:
    """Fit ``y ~ 1 + x`` by weighted least squares; ``x`` is (n, k), all inputs finite."""
    n, k = x.shape
    p = k + 1
    nan = np.full(p, np.nan)
    if n == 0:
        return FitResult("empty", nan, nan.copy(), np.nan, np.nan)
    if n < min_entries:
        return FitResult("insufficient", nan, nan.copy(), np.nan, np.nan)
    sqrt_w = np.sqrt(w)
    design = np.column_stack([np.ones(n), x])
    if n < p or np.linalg.matrix_rank(sqrt_w[:, None] * design) < p:
        return FitResult("singular", nan, nan.copy(), np.nan, np.nan)

    # Same fit on predictors/target centered by their weighted means (better conditioned).
    sum_w = w.sum()
    x_bar = (w[:, None] * x).sum(axis=0) / sum_w
    y_bar = (w * y).sum() / sum_w
    xc = x - x_bar
    yc = y - y_bar
    centered = sqrt_w[:, None] * np.column_stack([np.ones(n), xc])
    coef_c, *_ = np.linalg.lstsq(centered, sqrt_w * yc, rcond=None)
    resid = yc - coef_c[0] - xc @ coef_c[1:]
    rss = float((w * resid**2).sum())

    # Back to the original parametrisation: intercept = y_bar + c0 - x_bar . slopes.
    to_original = np.eye(p)
    to_original[0, 1:] = -x_bar
    coef = to_original @ coef_c
    coef[0] += y_bar

    if n > p:
        _, s, vt = np.linalg.svd(centered, full_matrices=False)
        cov_c = (vt.T / s**2) @ vt  # (A^T A)^-1 of the centered design
        cov = to_original @ cov_c @ to_original.T
        err = np.sqrt(np.diag(cov) * rss / (n - p))
    else:
        err = nan.copy()

    # The total sum of squares is exactly zero iff all weighted targets are equal.
    positive = w > 0
    if np.all(y[positive] == y[positive][0]):
        r_squared = np.nan
    else:
        tss = float((w * yc**2).sum())
        r_squared = 1.0 - rss / tss if tss > 0 else np.nan
    rmse = float(np.sqrt(rss / sum_w))
    return FitResult("ok", coef, err, r_squared, rmse)


def clipped_fit(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    min_entries: int,
    n_sigma_cut: float,
    max_iter: int,
    n_plain: int | None = None,
) -> tuple[FitResult, int]:
    """Fit, drop rows with |residual| > n_sigma_cut x rmse, refit; repeat until the kept rows
    stop changing or ``max_iter`` refits were made. Returns the last fit and the rows kept.
    Columns from ``n_plain`` on are trend columns (see ``fit_without_flat_trend``)."""
    n_plain = x.shape[1] if n_plain is None else n_plain
    keep = np.ones(len(y), dtype=bool)
    fit = fit_without_flat_trend(x, y, w, min_entries, n_plain)
    for _ in range(max_iter):
        if fit.code != "ok" or not fit.rmse > 0:
            break
        # an exact fit (no more informative rows than coefficients, or residuals at rounding
        # level: rss <= 1e-13 tss, e.g. rows repeated by a mirror) has nothing to clip
        wk, yk = w[keep], y[keep]
        tss = float(np.sum(wk * (yk - np.sum(wk * yk) / np.sum(wk)) ** 2))
        n_params = fit.n_params or len(fit.coef)
        if np.count_nonzero(wk > 0) <= n_params or fit.rmse**2 * np.sum(wk) <= 1e-13 * tss:
            break
        resid = y - (fit.coef[0] + x @ fit.coef[1:])
        new_keep = np.abs(resid) <= n_sigma_cut * fit.rmse
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
        fit = fit_without_flat_trend(x[keep], y[keep], w[keep], min_entries, n_plain)
    return fit, int(keep.sum())


def fit_without_flat_trend(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, min_entries: int, n_plain: int
) -> FitResult:
    """``weighted_fit`` where the trend columns (``x[:, n_plain:]``) that are zero on every
    row of positive weight are left out; they are reported as 0 (coefficient and error)."""
    flat = [k for k in range(n_plain, x.shape[1]) if not np.any(x[w > 0, k] != 0.0)]
    if not flat or not len(y):
        return weighted_fit(x, y, w, min_entries)
    kept = [k for k in range(x.shape[1]) if k not in flat]
    fit = weighted_fit(x[:, kept], y, w, min_entries)
    coef, err = np.zeros(x.shape[1] + 1), np.zeros(x.shape[1] + 1)
    coef[[0, *(1 + np.array(kept, dtype=int))]] = fit.coef
    err[[0, *(1 + np.array(kept, dtype=int))]] = fit.err
    if fit.code != "ok":
        coef[:], err[:] = np.nan, np.nan
    return FitResult(fit.code, coef, err, fit.r_squared, fit.rmse, len(fit.coef))


def trend_design(group_columns, spans, trend, interactions: bool):
    """The trend terms' names and, per term, the function of a bin's offsets giving its
    column: ``d_{dim}`` (the offset) for every windowed dim of order >= 1, then ``d2_{dim}``
    for order 2, then ``d_{a}:d_{b}`` for every pair of dims of order >= 1."""
    if isinstance(trend, Mapping):
        orders = [int(trend.get(d, 0)) for d in group_columns]
    else:
        orders = [int(trend) if before + after > 0 else 0 for before, after in spans]
    linear = [k for k, order in enumerate(orders) if order >= 1]
    names = [f"d_{group_columns[k]}" for k in linear]
    columns = [lambda o, k=k: o[k] for k in linear]
    for k, order in enumerate(orders):
        if order == 2:
            names.append(f"d2_{group_columns[k]}")
            columns.append(lambda o, k=k: o[k] * o[k])
    if interactions:
        for i, a in enumerate(linear):
            for b in linear[i + 1 :]:
                names.append(f"d_{group_columns[a]}:d_{group_columns[b]}")
                columns.append(lambda o, a=a, b=b: o[a] * o[b])
    return names, columns


def weighted_std(y: np.ndarray, w: np.ndarray) -> float:
    """Unbiased weighted standard deviation with reliability weights (ddof=1 for unit weights)."""
    if len(y) < 2:
        return np.nan
    sum_w = w.sum()
    # Denominator sum_w - sum(w^2)/sum_w == 2 * sum_{i<j} w_i w_j / sum_w, summed without
    # cancellation; it is exactly zero iff fewer than two weights are non-zero.
    pair_sum = np.triu(np.outer(w, w), k=1).sum()
    if sum_w <= 0 or pair_sum <= 0:
        return np.nan
    denominator = 2.0 * pair_sum / sum_w
    mean = (w * y).sum() / sum_w
    return float(np.sqrt((w * (y - mean) ** 2).sum() / denominator))


def weighted_mean(y: np.ndarray, w: np.ndarray) -> float:
    """Weighted mean; NaN when there are no rows or the weights sum to zero."""
    sum_w = w.sum()
    if len(y) == 0 or sum_w == 0:
        return np.nan
    return float((w * y).sum() / sum_w)


def selection_mask(df: pd.DataFrame, selection: pd.Series | np.ndarray | None) -> np.ndarray:
    """Boolean numpy mask of selected rows (a Series is aligned on ``df.index``)."""
    if selection is None:
        return np.ones(len(df), dtype=bool)
    if isinstance(selection, pd.Series):
        return selection.reindex(df.index).fillna(False).to_numpy(dtype=bool, copy=True)
    mask = np.array(selection, dtype=bool)
    assert mask.shape == (len(df),)
    return mask


def quality_flag(codes: Sequence[str], targets: Sequence[str]) -> str:
    """Combine per-target fit codes into the row's ``quality_flag`` string."""
    if all(code == "empty" for code in codes):
        return "empty_window"
    parts = []
    if any(code in ("empty", "insufficient") for code in codes):
        parts.append("insufficient_stats")
    parts += [f"singular_{t}" for t, code in zip(targets, codes, strict=True) if code == "singular"]
    return ",".join(parts)


MODES = {
    "truncate": "truncate",
    "full": "truncate",
    "periodic": "periodic",
    "mirror": "mirror",
    "shrink": "shrink",
    "symmetric": "shrink",
}


def window_span(spec) -> tuple[int, int]:
    """(before, after) of a dim's window spec: w -> (w, w), (before, after) as it is."""
    if isinstance(spec, tuple | list):
        return int(spec[0]), int(spec[1])
    return int(spec), int(spec)


def shrunk(c: int, before: int, after: int, n: int) -> tuple[int, int]:
    """The largest window of the same shape around c that fits in 0..n-1: (before, after)
    times the largest r <= 1 with c - r*before >= 0 and c + r*after <= n - 1, rounded down."""
    r = Fraction(1)
    if before:
        r = min(r, Fraction(c, before))
    if after:
        r = min(r, Fraction(n - 1 - c, after))
    return int(r * before), int(r * after)  # int() of a non-negative Fraction rounds down


def dim_neighbors(c: int, span: tuple[int, int], n: int, mode: str) -> list[tuple[int, int]]:
    """(bin index, offset) pairs of one dim's window (offsets -before..after) around index c
    of a dim of n bins."""
    out = []
    before, after = span
    if mode == "shrink":
        before, after = shrunk(c, before, after, n)
    for o in range(-before, after + 1):
        j = c + o
        if mode == "periodic":
            assert sum(span) + 1 <= n, "the engine refuses periodic windows wider than the dim"
            j %= n
        elif mode == "mirror":
            while not 0 <= j < n:  # reflect at the edges: -1 -> 0, n -> n - 1
                j = -j - 1 if j < 0 else 2 * n - 1 - j
        elif not 0 <= j < n:
            continue
        out.append((j, o))
    return out


def window_bins(center, spans, lows, sizes, modes):
    """Every (neighbor bin, offset tuple) of the window around ``center``."""
    per_dim = [
        dim_neighbors(c - lo, window_span(w), n, mode)
        for c, w, lo, n, mode in zip(center, spans, lows, sizes, modes, strict=True)
    ]
    for combo in itertools.product(*per_dim):
        neighbor = tuple(lo + j for lo, (j, _) in zip(lows, combo, strict=True))
        yield neighbor, tuple(o for _, o in combo)


def offset_weight(kernel, offset, spans, dims, kernel_width) -> float:
    """Kernel weight of one offset tuple, from the kernel's definition (API.md §3); ``spans``
    per dim a half-width or (before, after)."""
    spans = [window_span(w) for w in spans]
    if isinstance(kernel, str):
        if kernel == "uniform":
            return 1.0
        weight = 1.0
        for o, (before, after), d in zip(offset, spans, dims, strict=True):
            default = max(before, after, 1)  # the window's farther reach
            if isinstance(kernel_width, Mapping):
                h = float(kernel_width.get(d, default))
            elif kernel_width is not None:
                h = float(kernel_width)
            else:
                h = float(default)
            if kernel == "gaussian":
                weight *= float(np.exp(-0.5 * (o / h) ** 2))
            elif kernel == "epanechnikov":
                weight *= max(0.0, 1.0 - (o / (h + 1.0)) ** 2)
            elif kernel == "linear":
                weight *= max(0.0, 1.0 - abs(o) / (h + 1.0))
            else:
                raise ValueError(kernel)
        return weight
    if callable(kernel):
        return float(kernel(*[np.array(o) for o in offset]))
    array = np.asarray(kernel, dtype=np.float64)
    # the center is at index ``before`` of each dim
    return float(array[tuple(o + b for o, (b, _) in zip(offset, spans, strict=True))])


def weighted_lower_median(y: np.ndarray, w: np.ndarray) -> float:
    """Smallest y whose cumulative weight reaches half the total weight (a cumulative weight
    within 1e-12 relative of half counts as reaching it: exact ties are rounding-sensitive)."""
    order = np.argsort(y, kind="stable")
    cumulative = np.cumsum(w[order])
    return float(y[order][np.searchsorted(cumulative, 0.5 * w.sum() * (1 - 1e-12))])


def reference_fit(
    df: pd.DataFrame,
    group_columns: Sequence[str],
    window_spec: Mapping[str, int | tuple[int, int]],
    fit_columns: Sequence[str],
    predictor_columns: Sequence[str],
    weights_column: str | None = None,
    selection: pd.Series | np.ndarray | None = None,
    min_entries: int = 10,
    centers: str = "observed",
    extent: Mapping[str, tuple[int, int]] | None = None,
    aggregation_functions: Sequence[str] | None = None,
    n_sigma_cut: float | None = None,
    max_iter: int = 3,
    boundary: str | Mapping[str, str] = "truncate",
    kernel="uniform",
    kernel_width: float | Mapping[str, float] | None = None,
    trend: int | Mapping[str, int] = 0,
    trend_interactions: bool = False,
) -> pd.DataFrame:
    """Sliding-window aggregation and WLS fit per center, computed the slow, obvious way.

    With ``n_sigma_cut`` the fit is the outlier-rejecting refit of ``clipped_fit`` and
    ``{t}_n_rejected`` follows ``{t}_n_fitted``. ``boundary`` and ``kernel`` follow API.md §3:
    the window's bins are enumerated per dim (see ``window_bins``) and every row gathered from
    a bin carries its weight times the kernel weight of the bin's offset. ``trend=1`` adds the
    bin offset along each windowed dim as a predictor ``d_{dim}``, ``trend=2`` also its square
    ``d2_{dim}`` (or ``{dim: order}``), ``trend_interactions`` the products ``d_{a}:d_{b}``. A
    trend column that is zero on every row of a window is left out of that window's fit and
    reported as 0 (coefficient and standard error).
    """
    clipped = n_sigma_cut is not None
    group_columns = list(group_columns)
    fit_columns = list(fit_columns)
    predictor_columns = list(predictor_columns)
    aggregations = [
        a for a in AGGREGATIONS if aggregation_functions is None or a in set(aggregation_functions)
    ]
    # (before, after) per dim: a half-width w is (w, w)
    spans = [window_span(window_spec.get(d, 0)) for d in group_columns]

    # Selected rows, with rows outside an explicitly given extent dropped.
    selected = selection_mask(df, selection)
    bins_all = df[group_columns].to_numpy(dtype=np.int64).reshape(len(df), len(group_columns))
    extent = dict(extent or {})
    for k, dim in enumerate(group_columns):
        if dim in extent:
            lo, hi = extent[dim]
            selected &= (bins_all[:, k] >= lo) & (bins_all[:, k] <= hi)
    bins = bins_all[selected]
    rows = df.loc[selected]
    targets = {t: rows[t].to_numpy(dtype=np.float64) for t in fit_columns}
    predictors = rows[predictor_columns].to_numpy(dtype=np.float64)
    predictors = predictors.reshape(len(rows), len(predictor_columns))
    if weights_column is None:
        weights = np.ones(len(rows))
    else:
        weights = rows[weights_column].to_numpy(dtype=np.float64)

    # Centers: observed bins (np.unique sorts rows lexicographically) or the dense grid.
    if centers == "observed":
        center_list = [tuple(int(v) for v in c) for c in np.unique(bins, axis=0)]
    elif centers == "grid":
        ranges = []
        for k, dim in enumerate(group_columns):
            if dim in extent:
                lo, hi = extent[dim]
            elif len(bins):
                lo, hi = int(bins[:, k].min()), int(bins[:, k].max())
            else:
                lo, hi = 0, -1
            ranges.append(range(int(lo), int(hi) + 1))
        center_list = list(itertools.product(*ranges))
    else:
        raise ValueError(f"unknown centers={centers!r}")

    lows, sizes = [], []
    for k, dim in enumerate(group_columns):
        if dim in extent:
            lo, hi = extent[dim]
        else:
            lo, hi = int(bins[:, k].min()), int(bins[:, k].max())
        lows.append(int(lo))
        sizes.append(int(hi) - int(lo) + 1)
    modes = {d: boundary for d in group_columns} if isinstance(boundary, str) else boundary
    modes = [MODES[modes.get(d, "truncate")] for d in group_columns]
    offsets_all = list(itertools.product(*[range(-b, a + 1) for b, a in spans]))
    kernel_of = {
        o: offset_weight(kernel, o, spans, group_columns, kernel_width) for o in offsets_all
    }
    uniform_kernel = all(v == 1.0 for v in kernel_of.values())
    window_size = float(sum(1 for v in kernel_of.values() if v > 0))
    rows_of_bin: dict[tuple, np.ndarray] = {}
    for i, key in enumerate(map(tuple, bins.tolist())):
        rows_of_bin.setdefault(key, []).append(i)
    columns: dict[str, list] = {d: [] for d in group_columns}
    for t in fit_columns:
        for a in aggregations:
            columns[f"{t}_{a}"] = []
    trend_names, trend_columns = trend_design(group_columns, spans, trend, trend_interactions)
    terms = predictor_columns + trend_names
    for t in fit_columns:
        for name in fit_column_names(t, terms, clipped):
            columns[name] = []
    for name in ("quality_flag", "n_neighbors_used", "n_rows_aggregated"):
        columns[name] = []
    columns["effective_window_fraction"] = []

    for center in center_list:
        # Every (bin, kernel weight) of the window; a bin read twice (mirror) appears twice.
        gathered, kernel_w, row_offsets, used_bins = [], [], [], set()
        for neighbor, offset in window_bins(center, spans, lows, sizes, modes):
            k = kernel_of[offset]
            members = rows_of_bin.get(neighbor, [])
            if k == 0 or not members:
                continue
            gathered += members
            kernel_w += [k] * len(members)
            row_offsets += [[column(offset) for column in trend_columns]] * len(members)
            used_bins.add(neighbor)
        in_window = np.array(gathered, dtype=np.int64)
        kernel_w = np.array(kernel_w, dtype=np.float64)
        row_offsets = np.array(row_offsets, dtype=np.float64).reshape(
            len(gathered), len(trend_columns)
        )
        for dim, value in zip(group_columns, center, strict=True):
            columns[dim].append(value)
        codes = []
        for t in fit_columns:
            y = targets[t][in_window]
            x = np.column_stack([predictors[in_window], row_offsets])
            w = weights[in_window] * kernel_w
            valid = np.isfinite(y) & np.all(np.isfinite(x), axis=1) & np.isfinite(w)
            y, x, w, kw = y[valid], x[valid], w[valid], kernel_w[valid]
            if not len(y):
                median = np.nan
            elif uniform_kernel:
                median = float(np.median(y))
            else:
                median = weighted_lower_median(y, kw)
            stats = {
                "mean": weighted_mean(y, w),
                "std": weighted_std(y, w),
                "median": median,
                "entries": len(y),
            }
            for a in aggregations:
                columns[f"{t}_{a}"].append(stats[a])
            n_plain = len(predictor_columns)
            if clipped:
                fit, kept = clipped_fit(x, y, w, min_entries, n_sigma_cut, max_iter, n_plain)
                counts = [kept, len(y) - kept]
            else:
                fit, counts = fit_without_flat_trend(x, y, w, min_entries, n_plain), [len(y)]
            codes.append(fit.code)
            values = [*fit.coef, *fit.err, fit.r_squared, fit.rmse, *counts]
            names = fit_column_names(t, terms, clipped)
            for name, value in zip(names, values, strict=True):
                columns[name].append(value)
        n_bins_used = len(used_bins)
        columns["quality_flag"].append(quality_flag(codes, fit_columns))
        columns["n_neighbors_used"].append(n_bins_used)
        columns["n_rows_aggregated"].append(int(in_window.size))
        columns["effective_window_fraction"].append(n_bins_used / window_size)

    out = {}
    for name, values in columns.items():
        if (
            name in group_columns
            or name.endswith(("_entries", "_n_fitted", "_n_rejected"))
            or name
            in (
                "n_neighbors_used",
                "n_rows_aggregated",
            )
        ):
            out[name] = np.array(values, dtype=np.int64)
        elif name == "quality_flag":
            out[name] = pd.Series(values, dtype=str)
        else:
            out[name] = np.array(values, dtype=np.float64)
    return pd.DataFrame(out)


def assert_frames_close(
    actual: pd.DataFrame,
    expected: pd.DataFrame,
    rtol: float = 1e-9,
    atol_scale: float = 1e-9,
) -> None:
    """Assert ``actual`` matches the oracle's ``expected`` frame.

    Column names and order, the 0..m-1 index, integer and string columns must match exactly.
    Float columns must have NaN/inf in the same places and finite values close within
    ``rtol`` and ``atol = atol_scale * max(1, max |expected column|)``.
    """
    assert list(actual.columns) == list(expected.columns), (
        "column mismatch:\n"
        f"  missing:    {[c for c in expected.columns if c not in actual.columns]}\n"
        f"  unexpected: {[c for c in actual.columns if c not in expected.columns]}\n"
        f"  actual order:   {list(actual.columns)}\n  expected order: {list(expected.columns)}"
    )
    assert len(actual) == len(expected), f"row count {len(actual)} != expected {len(expected)}"
    assert np.array_equal(actual.index.to_numpy(), np.arange(len(actual))), (
        f"index is not 0..m-1: {actual.index[:10].tolist()}..."
    )
    n_keys = 0  # leading integer columns (the group columns) identify a row in messages
    for col in expected.columns:
        if not pd.api.types.is_integer_dtype(expected[col]):
            break
        n_keys += 1

    def where(row: int) -> str:
        key = expected.iloc[row, :n_keys].to_dict() if n_keys else {}
        return f"row {row} {key}"

    for col in expected.columns:
        exp = expected[col]
        act = actual[col]
        if pd.api.types.is_integer_dtype(exp):
            if len(exp):
                assert pd.api.types.is_integer_dtype(act), f"{col!r}: dtype {act.dtype} not integer"
            bad = np.flatnonzero(act.to_numpy() != exp.to_numpy())
            if len(bad):
                r = bad[0]
                raise AssertionError(
                    f"{col!r} differs at {where(r)}: actual {act.iloc[r]!r}, expected "
                    f"{exp.iloc[r]!r} ({len(bad)} rows differ)"
                )
        elif pd.api.types.is_string_dtype(exp) or pd.api.types.is_object_dtype(exp):
            act_list = [str(v) for v in act.tolist()]
            exp_list = [str(v) for v in exp.tolist()]
            bad = [i for i, (a, e) in enumerate(zip(act_list, exp_list, strict=True)) if a != e]
            if bad:
                r = bad[0]
                raise AssertionError(
                    f"{col!r} differs at {where(r)}: actual {act_list[r]!r}, expected "
                    f"{exp_list[r]!r} ({len(bad)} rows differ)"
                )
        else:
            a = act.to_numpy(dtype=np.float64)
            e = exp.to_numpy(dtype=np.float64)
            finite = np.isfinite(e)
            scale = max(1.0, float(np.max(np.abs(e[finite])))) if finite.any() else 1.0
            atol = atol_scale * scale
            same_nonfinite = np.where(
                finite, np.isfinite(a), (np.isnan(a) & np.isnan(e)) | (a == e)
            )
            close = np.where(finite, np.abs(a - e) <= atol + rtol * np.abs(e), True)
            bad = np.flatnonzero(~(same_nonfinite & close))
            if len(bad):
                r = bad[0]
                raise AssertionError(
                    f"{col!r} differs at {where(r)}: actual {a[r]!r}, expected {e[r]!r} "
                    f"(rtol={rtol}, atol={atol:.3g}; {len(bad)} rows differ)"
                )


# ---- robust aggregates: the definitions of docs/contract.md, written out plainly ----

MAD_SCALE = 1.4826


def robust_aggregates(
    y: np.ndarray, w: np.ndarray, weighted: bool, ltm_fraction: float, trim_fraction: float
) -> dict[str, float]:
    """ltm, ltm_std, mad, trimmed_mean of one window's valid values y with kernel weights w
    (a uniform kernel: ``weighted`` False), block by block and value by value."""
    nan = {"ltm": np.nan, "ltm_std": np.nan, "mad": np.nan, "trimmed_mean": np.nan}
    if y.size == 0:
        return nan
    order = np.lexsort((w, y))
    v, w = y[order].astype(float), w[order].astype(float)
    n, total = v.size, float(np.sum(w))
    cap = ltm_fraction * total * (1 + 1e-12)
    blocks, previous_end = [], -1
    for i in range(n):  # the maximal blocks of weight <= cap (one value always qualifies)
        j = i
        while j + 1 < n and np.sum(w[i : j + 2]) <= cap:
            j += 1
        if j > previous_end:
            blocks.append((i, j))
        previous_end = j
    spreads = []
    for i, j in blocks:
        mean = np.average(v[i : j + 1], weights=w[i : j + 1])
        spreads.append(np.average((v[i : j + 1] - mean) ** 2, weights=w[i : j + 1]))
    tie = 1e-9 * max((v[-1] - v[0]) ** 2, 1e-16 * max(v[0] ** 2, v[-1] ** 2))
    i, j = blocks[next(k for k, s in enumerate(spreads) if s <= min(spreads) + tie)]
    bv, bw = v[i : j + 1], w[i : j + 1]
    ltm = float(np.average(bv, weights=bw))
    ltm_std = weighted_std(bv, bw) if bv.size >= 2 else np.nan
    if weighted:
        median = weighted_lower_median(v, w)
        mad = weighted_lower_median(np.abs(v - median), w)
    else:
        mad = float(np.median(np.abs(v - np.median(v))))
    cut = trim_fraction * total * (1 + 1e-12)
    below = np.cumsum(w)  # weight up to and including each value
    above = total - below + w  # weight from each value up
    kept = (below > cut) & (above > cut)
    trimmed = float(np.average(v[kept], weights=w[kept]))
    return {"ltm": ltm, "ltm_std": ltm_std, "mad": MAD_SCALE * mad, "trimmed_mean": trimmed}
