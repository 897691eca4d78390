"""Per-bin sufficient statistics, accumulated in one pass over the rows.

For every bin and target the pass sums, over the rows valid for that target, the count, the
count of rows with a positive weight, Σw²
and the upper triangle of Σ w z zᵀ with z = (1, x₁ - r₁, …, x_q - r_q, y - r_y): that is Σw,
ΣwX, ΣwY, ΣwXXᵀ, ΣwXY and ΣwY² at once. Every column is shifted by a global reference r so
that sums of squares keep their digits when a column's mean is large against its spread.
The layout is bin-major, ``(n_bins, n_targets, n_stats)``, and the sums are additive over
row subsets that share the references.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _numba
from ._numba import njit, num_threads, run_chunks
from .design import SUMMABLE, Design, usable
from .grid import Grid

COUNT, COUNT_POSITIVE, SUM_W2, FIRST_MOMENT = 0, 1, 2, 3


def n_stats(n_terms: int) -> int:
    """Number of packed statistics per bin and target for ``n_terms`` design terms."""
    size = n_terms + 1  # design terms and the target
    return FIRST_MOMENT + size * (size + 1) // 2


def moment_index(n_terms: int) -> np.ndarray:
    """``idx[a, b]``: packed position of Σ w z_a z_b (symmetric), z = (terms..., target)."""
    size = n_terms + 1
    idx = np.empty((size, size), dtype=np.intp)
    k = FIRST_MOMENT
    for a in range(size):
        for b in range(a, size):
            idx[a, b] = idx[b, a] = k
            k += 1
    return idx


@njit(cache=True)
def add_row(s, z, w):
    """Add one row, z = (1, shifted design columns, shifted target) of weight w, to stats s."""
    s[COUNT] += 1.0
    s[COUNT_POSITIVE] += 1.0 if w > 0.0 else 0.0
    s[SUM_W2] += w * w
    k = FIRST_MOMENT
    size = z.shape[0]
    for a in range(size):
        wa = w * z[a]
        for b in range(a, size):
            s[k] += wa * z[b]
            k += 1


# rows scanned at a time by each chunk's thread, compacting its own rows into a small buffer
_SCAN = 2048


@njit(cache=True, nogil=True)
def _accumulate_numba(  # noqa: PLR0913  (a numba kernel: its arrays are its arguments)
    c, n_chunks, flat, n_bins, x, y, w, has_w, x_ref, y_ref, out, invalid, rows_per_bin
):
    n_rows = flat.shape[0]
    q = x.shape[0]
    n_targets = y.shape[0]
    size = q + 2
    # Each chunk owns a range of bins and reads its rows in row order: every bin is summed in
    # row order by exactly one thread, so the result is bit-identical to a serial pass for any
    # thread count. Its rows are picked from every _SCAN rows without a branch (a branch on
    # the bin would mispredict on every other row), then summed.
    b_lo = c * n_bins // n_chunks
    b_hi = (c + 1) * n_bins // n_chunks
    mine = np.empty(_SCAN, dtype=np.int64)
    bins = np.empty(_SCAN, dtype=flat.dtype)
    z = np.empty(size)
    z[0] = 1.0
    for start in range(0, n_rows, _SCAN):
        m = 0
        for i in range(start, min(start + _SCAN, n_rows)):
            b = flat[i]
            mine[m] = i
            bins[m] = b
            m += (b >= b_lo) & (b < b_hi)
        for r in range(m):
            i = mine[r]
            b = bins[r]
            rows_per_bin[b] += 1
            wi = w[i] if has_w else 1.0
            ok = np.isfinite(wi)  # the validity rule of design.usable
            for j in range(q):
                z[1 + j] = x[j, i] - x_ref[j]
                ok = ok and abs(z[1 + j]) < SUMMABLE
            if not ok:
                for t in range(n_targets):
                    invalid[c, t] += 1
                continue
            for t in range(n_targets):
                zy = y[t, i] - y_ref[t]
                if not abs(zy) < SUMMABLE:
                    invalid[c, t] += 1
                    continue
                z[size - 1] = zy
                add_row(out[b, t], z, wi)


def _accumulate_numpy(flat, design: Design, out, invalid, rows_per_bin):
    x, y, w, x_ref, y_ref = design.xs, design.ys, design.w, design.x_ref, design.y_ref
    n_bins = out.shape[0]
    inside = flat >= 0
    rows_per_bin += np.bincount(flat[inside], minlength=n_bins)
    ok = inside.copy()
    if w is not None:
        ok &= np.isfinite(w)
    for row, ref in zip(x, x_ref, strict=True):
        ok &= usable(row - ref)
    for t in range(len(y)):
        valid = ok & usable(y[t] - y_ref[t])
        invalid[0, t] = int(inside.sum() - valid.sum())
        ids = flat[valid]
        wv = np.ones(ids.size) if w is None else w[valid]
        z = [np.ones(ids.size)]
        z += [row[valid] - r for row, r in zip(x, x_ref, strict=True)]
        z.append(y[t][valid] - y_ref[t])
        out[:, t, COUNT] += np.bincount(ids, minlength=n_bins)
        out[:, t, COUNT_POSITIVE] += np.bincount(ids, weights=wv > 0, minlength=n_bins)
        out[:, t, SUM_W2] += np.bincount(ids, weights=wv * wv, minlength=n_bins)
        k = FIRST_MOMENT
        for a in range(len(z)):
            wa = wv * z[a]
            for b in range(a, len(z)):
                out[:, t, k] += np.bincount(ids, weights=wa * z[b], minlength=n_bins)
                k += 1


# Design sizes whose row pass is generated with every loop unrolled (5x faster than the
# generic kernel: the sums stay in registers); larger designs use the generic kernel.
_UNROLLED_MAX_COLUMNS = 6
_UNROLLED_MAX_TARGETS = 8


def _row_lines(q: int, n_targets: int) -> list[str]:
    """The generated kernels' work on one row i of bin b (indented as the loop's body): its
    validity and, per target, the packed sums with the loops over z written out."""
    size = q + 2
    z = ["1.0", *[f"z{j}" for j in range(1, q + 1)], "zy"]
    row = [  # one row i of bin b, at the indentation of the loop over the chunk's rows
        "wi = w[i] if has_w else 1.0",
        *[f"z{j} = x{j - 1}[i] - rx{j - 1}" for j in range(1, q + 1)],
        "if not (np.isfinite(wi)"
        + "".join(f" and abs(z{j}) < {SUMMABLE!r}" for j in range(1, q + 1))
        + "):",
        "    counts[b] += 1",  # the rows target 0 does not count (see _bin_lines)
        *[f"    invalid[c, {t}] += 1" for t in range(n_targets)],
        "    continue",
        *[f"w{a} = wi * {z[a]}" for a in range(size - 1)],  # shared by the targets
    ]
    for t in range(n_targets):
        row += [
            f"zy = y{t}[i] - ry{t}",
            f"if not abs(zy) < {SUMMABLE!r}:",
            *(["    counts[b] += 1"] if t == 0 else []),
            f"    invalid[c, {t}] += 1",
            "else:",
            f"    s = out[b, {t}]",
            f"    s[{COUNT}] += 1.0",
            "    if has_w:",
            f"        s[{COUNT_POSITIVE}] += 1.0 if wi > 0.0 else 0.0",
            f"        s[{SUM_W2}] += wi * wi",
            f"        s[{FIRST_MOMENT}] += w0 * 1.0",
            f"    w{size - 1} = wi * zy",
        ]
        k = FIRST_MOMENT
        for a in range(size):
            for b in range(a, size):
                if k > FIRST_MOMENT:  # Σw (k = FIRST_MOMENT) is summed above with the weights
                    row.append(f"    s[{k}] += w{a} * {z[b]}")
                k += 1
    return row


def _bin_lines(n_targets: int, before: bool) -> list[str]:
    """The generated kernels' work on their bins b_lo..b_hi before and after the rows.

    The rows of a bin are counted as target 0's count of valid rows plus the rows it leaves
    out (counted row by row): ``before`` takes the count off, after the rows it is added
    back, so ``counts`` gains every row of the pass, exactly. Without weights, the count of
    rows of positive weight, Σw² and Σw all equal the count (sums of 1.0, exact): after the
    rows they are copied from it instead of summed row by row.
    """
    if before:
        return [
            "for b in range(b_lo, b_hi):",
            f"    counts[b] -= np.int64(out[b, 0, {COUNT}])",
        ]
    slots = (COUNT_POSITIVE, SUM_W2, FIRST_MOMENT)
    return [
        "for b in range(b_lo, b_hi):",
        f"    counts[b] += np.int64(out[b, 0, {COUNT}])",
        "    if not has_w:",
        *[
            f"        out[b, {t}, {k}] = out[b, {t}, {COUNT}]"
            for t in range(n_targets)
            for k in slots
        ],
    ]


# The parallel generated kernel reads the sums of the bin _AHEAD rows on while it sums a row:
# the bins are random, and the read brings the later row's sums into cache in time (the row
# pass of a grid larger than the L2 cache waits on them; ~15% faster). The values read are
# returned, unused, so that the compiler keeps the reads.
_AHEAD = 12


def _unrolled_source(q: int, n_targets: int) -> str:
    """Source of the row pass for q design columns and n_targets targets, loops written out.

    It reads the caller's columns (tuples of 1-D arrays) in place, with the generic kernel's
    scan (each chunk picks its rows) and arithmetic, term for term (w z_a first, then times
    z_b), so the sums are bit-identical to it and to the numpy pass.
    """
    unpack = [
        *[f"    x{j} = xs[{j}]" for j in range(q)],
        *[f"    y{t} = ys[{t}]" for t in range(n_targets)],
        *[f"    rx{j} = x_ref[{j}]" for j in range(q)],
        *[f"    ry{t} = y_ref[{t}]" for t in range(n_targets)],
    ]
    row = _row_lines(q, n_targets)
    lines = [
        "import numpy as np",
        "from numba import njit",
        "",
        "",
        "@njit(cache=True, nogil=True)",
        "def kernel(c, n_chunks, flat, n_bins, xs, ys, w, has_w, x_ref, y_ref, out, invalid,",
        "           counts):",
        '    """The rows of chunk c\'s bins (see ``_accumulate_numba``)."""',
        *unpack,
        "    n_rows = flat.shape[0]",
        "    b_lo = c * n_bins // n_chunks",
        "    b_hi = (c + 1) * n_bins // n_chunks",
        *["    " + line for line in _bin_lines(n_targets, before=True)],
        f"    mine = np.empty({_SCAN}, dtype=np.int64)",
        f"    bins = np.empty({_SCAN}, dtype=flat.dtype)",
        "    touch = 0.0",
        f"    for start in range(0, n_rows, {_SCAN}):",
        "        m = 0",
        f"        for i in range(start, min(start + {_SCAN}, n_rows)):",
        "            b = flat[i]",
        "            mine[m] = i",
        "            bins[m] = b",
        "            m += (b >= b_lo) & (b < b_hi)",
        "        for r in range(m):",
        "            i = mine[r]",
        "            b = bins[r]",
        f"            ahead = bins[r + {_AHEAD}] if r + {_AHEAD} < m else b",
        f"            touch += out[ahead, {n_targets - 1}, {n_stats(q + 1) - 1}]",
        *["            " + line for line in row],
        *["    " + line for line in _bin_lines(n_targets, before=False)],
        "    return touch",
        "",
        "",
        "@njit(cache=True)",
        "def serial(flat, xs, ys, w, has_w, x_ref, y_ref, out, invalid, counts):",
        '    """One thread (few rows): every row in order, no thread launched."""',
        *unpack,
        "    c = 0",
        "    b_lo, b_hi = 0, out.shape[0]",
        *["    " + line for line in _bin_lines(n_targets, before=True)],
        "    for i in range(flat.shape[0]):",
        "        b = flat[i]",
        "        if b < 0:",
        "            continue",
        *["        " + line for line in row],
        *["    " + line for line in _bin_lines(n_targets, before=False)],
    ]
    return "\n".join(lines) + "\n"


@functools.cache
def _unrolled_kernel(q: int, n_targets: int):
    """The generated row passes (``kernel`` in parallel, ``serial``) for q design columns and
    n_targets targets, or None where they cannot be built.

    numba caches compiled code next to a source file, so the source is written once to a
    cache folder (XSLIDE_CACHE_DIR, else ~/.cache/xslide) under a name that changes with it.
    """
    source = _unrolled_source(q, n_targets)
    digest = hashlib.sha1(source.encode()).hexdigest()[:12]
    folder = Path(os.environ.get("XSLIDE_CACHE_DIR", Path.home() / ".cache" / "xslide"))
    path = folder / f"stats_q{q}_t{n_targets}_{digest}.py"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(source)
            partial.replace(path)  # atomic: concurrent processes never read half a file
        name = f"xslide_stats_q{q}_t{n_targets}_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # numba's disk cache finds the module again by name
        spec.loader.exec_module(module)
    except OSError:
        return None
    return module


def accumulate(
    flat: np.ndarray,
    design: Design,
    n_bins: int,
    backend: str,
    out: np.ndarray | None = None,
    rows_per_bin: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum the statistics of every row into its bin.

    Parameters
    ----------
    flat : (n,) int32/int64 flat bin id per row, -1 for rows outside the grid or not selected.
    design : the rows' design columns xs (q of n), targets ys (t of n), weights w (n,) or
        None, and the references subtracted from each column.
    n_bins : bins of the grid.
    backend : 'numba' or 'numpy' (equal results, the numba pass is fused and parallel).
    out, rows_per_bin : statistics and row counts to add to (streaming: batch after batch;
        the numba pass sums every bin's rows one by one in order, so the result is
        bit-identical to one pass over all rows, the numpy pass adds each batch's sums, equal
        to rounding); new when None.

    Returns
    -------
    stats : (n_bins, t, n_stats(q + 1)) float64.
    invalid : (t,) int64 rows inside the grid left out of each target (NaN/inf).
    rows_per_bin : (n_bins,) int64 rows of every bin (valid or not).
    """
    q, n_targets = len(design.xs), len(design.ys)
    if out is None:
        out = np.zeros((n_bins, n_targets, n_stats(q + 1)))
    if rows_per_bin is None:
        rows_per_bin = np.zeros(n_bins, dtype=np.int64)
    if backend != "numba":
        invalid = np.zeros((1, n_targets), dtype=np.int64)
        _accumulate_numpy(flat, design, out, invalid, rows_per_bin)
        return out, invalid.sum(axis=0), rows_per_bin
    n_chunks = _n_chunks(out.nbytes, n_bins) if flat.size >= _PARALLEL_ROWS else 1
    invalid = np.zeros((n_chunks, n_targets), dtype=np.int64)
    w = design.w if design.w is not None else _NO_WEIGHTS
    args = (w, design.w is not None, design.x_ref, design.y_ref, out, invalid, rows_per_bin)
    module = None
    if q + 1 <= _UNROLLED_MAX_COLUMNS and n_targets <= _UNROLLED_MAX_TARGETS and _numba.HAVE_NUMBA:
        module = _unrolled_kernel(q, n_targets)
    if module is None:
        run_chunks(_accumulate_numba, n_chunks, flat, n_bins, design.x, design.y, *args)
    elif n_chunks == 1:
        module.serial(flat, design.xs, design.ys, *args)
    else:
        run_chunks(module.kernel, n_chunks, flat, n_bins, design.xs, design.ys, *args)
    return out, invalid.sum(axis=0), rows_per_bin


# fewer rows are summed by one thread (a parallel launch would cost more than the work)
_PARALLEL_ROWS = 100_000

# statistics one chunk sums at most (a share of the last-level cache): on a large grid the
# random updates of a chunk stay in cache, which pays for every chunk scanning all row bins
_CHUNK_BYTES = 8 << 20


def _n_chunks(stats_bytes: int, n_bins: int) -> int:
    """Bin ranges of the row pass: a multiple of the threads, each of at most _CHUNK_BYTES."""
    threads = num_threads()
    per_thread = -(-stats_bytes // (threads * _CHUNK_BYTES))
    return max(1, min(threads * per_thread, n_bins))


_NO_WEIGHTS = np.ones(1)
_NO_WEIGHTS.flags.writeable = False


def rereference(stats: np.ndarray, n_terms: int, shift: np.ndarray) -> np.ndarray:
    """Express packed stats relative to references moved by ``shift`` (per z column, (t, size)).

    With z' = z - d: Σw z'z'ᵀ = Σw zzᵀ - s dᵀ - d sᵀ + Σw d dᵀ, where s = Σw z.
    """
    idx = moment_index(n_terms)
    size = n_terms + 1
    m = stats[..., idx]  # (..., t, size, size)
    s = m[..., 0, :]
    sw = m[..., 0, 0]
    d = shift
    new = (
        m
        - s[..., :, None] * d[:, None, :]
        - d[:, :, None] * s[..., None, :]
        + sw[..., None, None] * d[:, :, None] * d[:, None, :]
    )
    out = stats.copy()
    for a in range(size):
        for b in range(a, size):
            out[..., idx[a, b]] = new[..., a, b]
    return out


@dataclass(frozen=True, eq=False)
class BinStats:
    """Rows reduced to packed per-bin statistics on a grid, and what they were made of."""

    grid: Grid
    columns: tuple[str, ...]  # the constant and the design columns summed in ``sums``
    targets: tuple[str, ...]
    sums: np.ndarray  # (n_bins, t, n_stats) packed statistics, see the module docstring
    rows_per_bin: np.ndarray  # (n_bins,) selected rows in each bin
    x_ref: np.ndarray  # (q,) references of the design columns
    y_ref: np.ndarray  # (t,) references of the targets
    counts: Mapping  # rows read and left out: n_rows_input, ..., n_rows_invalid {target: n}
    backend: str
    weights: str | None
    intercept: bool = True  # whether the constant is a model term
    binning: Mapping = field(default_factory=dict)  # digitize records of the bin dims
    weights_scale: float = 1.0  # the sums are of the row weights times this (a power of two)

    @property
    def terms(self) -> tuple[str, ...]:
        """Terms of the model, in output order."""
        return self.columns if self.intercept else self.columns[1:]

    def add(self, other: BinStats) -> BinStats:
        """The statistics of both row sets (same grid and references)."""
        counts = {}
        for key, value in self.counts.items():
            if isinstance(value, Mapping):
                counts[key] = {t: n + other.counts[key][t] for t, n in value.items()}
            else:
                counts[key] = value + other.counts[key]
        return dataclasses.replace(
            self,
            sums=self.sums + other.sums,
            rows_per_bin=self.rows_per_bin + other.rows_per_bin,
            counts=counts,
        )

    def rescaled(self, weights_scale: float) -> BinStats:
        """The same statistics of weights scaled by ``weights_scale`` instead (exact for the
        powers of two the design chooses): weighted sums scale once, Σw² twice."""
        ratio = weights_scale / self.weights_scale
        if ratio == 1.0:
            return self
        sums = self.sums * ratio
        sums[..., COUNT] = self.sums[..., COUNT]
        sums[..., COUNT_POSITIVE] = self.sums[..., COUNT_POSITIVE]
        sums[..., SUM_W2] = self.sums[..., SUM_W2] * ratio * ratio
        return dataclasses.replace(self, sums=sums, weights_scale=weights_scale)

    def rereferenced(self, x_ref: np.ndarray, y_ref: np.ndarray) -> BinStats:
        """The same statistics expressed relative to other references."""
        n_terms = len(self.columns)
        shift = np.zeros((len(self.targets), n_terms + 1))
        shift[:, 1:n_terms] = np.asarray(x_ref) - self.x_ref
        shift[:, n_terms] = np.asarray(y_ref) - self.y_ref
        return dataclasses.replace(
            self,
            sums=rereference(self.sums, n_terms, shift),
            x_ref=np.asarray(x_ref, dtype=np.float64),
            y_ref=np.asarray(y_ref, dtype=np.float64),
        )
