"""Robust window aggregates: the LTM, the MAD sigma and the trimmed mean of each window's rows.

Each is a function of the window's valid target values sorted, with their kernel weights
(row weights are ignored, as for the median; a bin read twice under the mirror boundary gives
its values twice). The definitions (docs/contract.md, "Robust aggregates"), with W the total
weight and C_i the cumulative weight of the sorted values up to and including value i:

- ``ltm`` / ``ltm_std``: of the maximal contiguous blocks of the sorted values whose weight is
  at most f x W (f = ``ltm_fraction``; a block of one value always qualifies), the one with the
  smallest weighted variance (ties within 1e-9 of the squared range of the values, or of
  1e-16 x the largest squared value: the lowest block); its weighted mean, and its standard
  deviation with the ``std`` aggregate's degrees of freedom (reliability weights: sum w -
  sum w^2 / sum w; n - 1 for equal weights; NaN for a block of one value). Equal weights keep
  k = max(1, floor(f x n)) values, as ALICE's ``TStatToolkit::LTM`` (``Int_t(f * n)``);
- ``mad``: 1.4826 x the median of |y - median(y)|: ``np.median`` for a uniform kernel, the lower
  weighted median (that of the ``median`` aggregate) for a non-uniform one;
- ``trimmed_mean``: the weighted mean of the values left when each value whose whole weight lies
  in the lowest (or highest) t x W is dropped (t = ``trim_fraction``); equal weights drop
  floor(t x n) values from each end, as ``scipy.stats.trim_mean``.

Weight comparisons allow a relative 1e-12 of rounding (f x n = 7.000000000000001 keeps 7). The
numba kernel, under a uniform kernel, puts each window's values in partial order: the LTM and
the trimmed mean need only the window's two tails sorted (held by thresholds that follow the
neighbouring window's, copied in one pass and sorted by 16-bit keys), the median and the MAD
selections. Under a non-uniform kernel it merges per-bin sorted runs into each window's sorted
values. The numpy fallback sorts each window with ``np.lexsort``. All give the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ._numba import njit, num_threads, run_chunks
from .parallel import Parallel, bar_blocks, progress_bar, split
from .rows import TargetRuns, WindowIndex, _list_runs, _runs_median, check_no_overflow
from .window import entry_buffers, window_entries

#: the robust aggregates and their long names, in the order of the seed API's columns
ROBUST_AGGREGATES: Mapping[str, str] = {
    "ltm": "least trimmed mean of the target in the window",
    "ltm_std": "standard deviation of the least trimmed block of the target in the window",
    "mad": "MAD sigma (1.4826 median |y - median|) of the target in the window",
    "trimmed_mean": "symmetric trimmed mean of the target in the window",
}
#: the kernel's output fields: the robust aggregates, then the window median (for clipping)
FIELDS = (*ROBUST_AGGREGATES, "median")
MAD_SCALE = 1.4826
_MARGIN = 1e-12  # relative rounding allowed in weight comparisons
_TIE = 1e-9  # LTM spreads this close (relative to the squared range) are ties
_ROUNDING = 1e-16  # ... or to the squared largest magnitude times this (rounding)
# Fewest centers per call of the kernel when it runs in blocks for a progress bar.
BLOCK = 2048


class Fractions(NamedTuple):
    """The options of the robust aggregates."""

    ltm: float = 0.8  # fraction of the weight the LTM block holds at most
    trim: float = 0.1  # fraction of the weight cut from each end by the trimmed mean
    need: tuple[str, ...] = FIELDS  # the fields wanted (the others may be left NaN)


DEFAULT_FRACTIONS = Fractions()


# ---- the statistics of one window's sorted values (numba) ----


@njit(cache=True)
def _tie(least, greatest):
    """How close two LTM spreads (variances) of values in [least, greatest] are ties: 1e-9 of
    the squared range, or of the rounding of the squared values where they are all nearly
    equal (their spreads are then rounding)."""
    scale = max(least * least, greatest * greatest)
    return _TIE * max((greatest - least) ** 2, _ROUNDING * scale)


@njit(cache=True)
def _prefix(v, w, n, shift, p0, p1, p2):
    """Cumulative weight, weighted sum and weighted square of ``v - shift``: p[i] of the first i."""
    p0[0] = 0.0
    p1[0] = 0.0
    p2[0] = 0.0
    for i in range(n):
        x = v[i] - shift
        p0[i + 1] = p0[i] + w[i]
        p1[i + 1] = p1[i] + w[i] * x
        p2[i + 1] = p2[i] + w[i] * x * x


@njit(cache=True)
def _ltm_block(n, p0, p1, p2, cap, tol, best):
    """First block [i, j] of smallest spread (``best``: the smallest spread to reach, less tol;
    -inf on the first pass) among the maximal blocks of weight <= cap; returns (i, j, spread)."""
    j = -1
    low = np.inf
    found_i, found_j = 0, 0
    for i in range(n):
        previous = j
        if j < i:
            j = i
        while j + 1 < n and p0[j + 2] - p0[i] <= cap:
            j += 1
        if j > previous:
            sw = p0[j + 1] - p0[i]
            s1 = p1[j + 1] - p1[i]
            spread = (p2[j + 1] - p2[i] - s1 * s1 / sw) / sw
            if spread < low:
                low = spread
                found_i, found_j = i, j
                if spread <= best + tol:
                    return found_i, found_j, low
        if j == n - 1:
            break
    return found_i, found_j, low


@njit(cache=True)
def _block_moments(v, w, lo, hi):
    """Weighted mean of v[lo:hi] and its std with reliability-weight degrees of freedom."""
    sw = 0.0
    swv = 0.0
    sw2 = 0.0
    for i in range(lo, hi):
        sw += w[i]
        swv += w[i] * v[i]
        sw2 += w[i] * w[i]
    mean = swv / sw
    if hi - lo < 2:
        return mean, np.nan
    ss = 0.0
    for i in range(lo, hi):
        d = v[i] - mean
        ss += w[i] * d * d
    return mean, np.sqrt(ss / (sw - sw2 / sw))


@njit(cache=True)
def _median_and_mad(v, w, n, p0, weighted):
    """The window median and the raw MAD (median absolute deviation) of sorted values.

    The deviations of sorted values from their median grow outward from it, so a walk from
    the median taking the smaller deviation on either side lists them in ascending order.
    """
    if weighted:
        half = 0.5 * p0[n] * (1.0 - _MARGIN)
        m = 0
        while p0[m + 1] < half:
            m += 1
        median = v[m]
        left, right = m, m + 1
        reached = 0.0
        while True:
            dl = median - v[left] if left >= 0 else np.inf
            dr = v[right] - median if right < n else np.inf
            if dl <= dr:
                reached += w[left]
                left -= 1
                d = dl
            else:
                reached += w[right]
                right += 1
                d = dr
            if reached >= half:
                return median, d
    k0, k1 = (n - 1) // 2, n // 2
    median = 0.5 * (v[k0] + v[k1])
    left, right = k0, k0 + 1
    d0 = 0.0
    for k in range(k1 + 1):
        dl = median - v[left] if left >= 0 else np.inf
        dr = v[right] - median if right < n else np.inf
        if dl <= dr:
            left -= 1
            d = dl
        else:
            right += 1
            d = dr
        if k == k0:
            d0 = d
    return median, 0.5 * (d0 + d)


@njit(cache=True)
def _trimmed_mean(v, w, n, p0, cut):
    """Weighted mean of the values whose weight is not wholly within ``cut`` of either end."""
    total = p0[n]
    sw = 0.0
    swv = 0.0
    for i in range(n):
        if p0[i + 1] > cut and total - p0[i] > cut:
            sw += w[i]
            swv += w[i] * v[i]
    return swv / sw


@njit(cache=True)
def robust_stats(v, w, n, weighted, fractions, prefix, out):
    """The robust aggregates and the median of the sorted values v[:n] (weights w) into out
    (``FIELDS`` order); ``prefix``: three work arrays of at least n + 1 values."""
    if n == 0:
        out[:] = np.nan
        return
    p0, p1, p2 = prefix
    shift = v[n // 2]
    _prefix(v, w, n, shift, p0, p1, p2)
    total = p0[n]
    cap = fractions[0] * total * (1.0 + _MARGIN)
    tol = _tie(v[0], v[n - 1])
    best = _ltm_block(n, p0, p1, p2, cap, tol, -np.inf)[2]
    lo, hi, _ = _ltm_block(n, p0, p1, p2, cap, tol, best)
    out[0], out[1] = _block_moments(v, w, lo, hi + 1)
    median, mad = _median_and_mad(v, w, n, p0, weighted)
    out[2] = MAD_SCALE * mad
    out[3] = _trimmed_mean(v, w, n, p0, fractions[1] * total * (1.0 + _MARGIN))
    out[4] = median


@njit(cache=True)
def _select(a, lo, hi, k):
    """Reorder a[lo:hi] so that a[k] is its (k - lo)-th smallest value, with no larger value
    before it and no smaller one after it (quickselect, median-of-three pivots: the values
    arrive as sorted runs, on which a fixed pivot would be quadratic)."""
    hi -= 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < a[lo]:
            a[mid], a[lo] = a[lo], a[mid]
        if a[hi] < a[lo]:
            a[hi], a[lo] = a[lo], a[hi]
        if a[hi] < a[mid]:
            a[hi], a[mid] = a[mid], a[hi]
        pivot = a[mid]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return


@njit(cache=True)
def _middle_pair(a, lo, hi, k0, k1):
    """a[k0] and a[k1] (k1 = k0 or k0 + 1) as order statistics of a[lo:hi]: one selection,
    and the smallest of what lies above k0 for the second."""
    _select(a, lo, hi, k0)
    if k1 == k0:
        return a[k0], a[k0]
    second = a[k1]
    for j in range(k1 + 1, hi):
        second = min(second, a[j])
    return a[k0], second


@njit(cache=True)
def _sum_shifted(a, shift):
    """Sum of a - shift and of its square."""
    s1 = 0.0
    s2 = 0.0
    for i in range(a.shape[0]):
        x = a[i] - shift
        s1 += x
        s2 += x * x
    return s1, s2


@njit(cache=True)
def _tails_ltm(low, high, mid1, mid2, k, shift, tol):
    """The start (0..m) of the LTM block of k values from the sorted lowest and highest m
    values and the sums of the rest (the block of start i: low[i:], the rest, high[:i])."""
    m = low.shape[0]
    s1, s2 = mid1, mid2
    for v in low:
        s1 += v - shift
        s2 += (v - shift) ** 2
    best = np.inf
    spreads = np.empty(m + 1)
    for i in range(m + 1):
        spreads[i] = s2 - s1 * s1 / k
        best = min(best, spreads[i])
        if i < m:  # slide: low[i] leaves, high[i] enters
            a, b = low[i] - shift, high[i] - shift
            s1 += b - a
            s2 += b * b - a * a
    for i in range(m + 1):
        if spreads[i] <= best + tol * k:
            return i
    return 0


@njit(cache=True)
def robust_stats_equal_weights(values, n, fractions, work, out):
    """``robust_stats`` of n equally weighted values in any order (reordered in place):
    partial order, not a sort. The LTM block of k = floor(f n) values lies between the lowest
    and the highest m = n - k values, so only those two tails are sorted; the trimmed mean
    needs the sums of its tails, the MAD two selections. Returns False (nothing written)
    where the tails would be too long for this to pay (f < 2/3, or t > 1 - f)."""
    k = max(1, int(fractions[0] * n * (1.0 + _MARGIN)))
    m = n - k
    cut = int(fractions[1] * n * (1.0 + _MARGIN))
    if n < 8 or 3 * m > n or cut > m:
        return False
    lo_mid, hi_mid = (n - 1) // 2, n // 2
    v = values[:n]
    if m > 0:  # the tails, then the middle ranks within what lies between them
        _select(v, 0, n, m - 1)
        _select(v, m, n, n - m)
    a, b = _middle_pair(v, m, n - m, lo_mid, hi_mid)
    median = 0.5 * (a + b)
    shift = b
    low, high = v[:m], v[n - m :]
    low.sort()
    high.sort()
    tol = _tie(low[0], high[-1]) if m else 0.0
    mid1, mid2 = _sum_shifted(v[m : n - m], shift)
    i = _tails_ltm(low, high, mid1, mid2, k, shift, tol)
    # the block's own mean and std, from its values (two passes)
    middle = v[m : n - m]
    mean = _sum_shifted(low[i:], 0.0)[0] + _sum_shifted(middle, 0.0)[0]
    mean = (mean + _sum_shifted(high[:i], 0.0)[0]) / k
    ss = _sum_shifted(low[i:], mean)[1] + _sum_shifted(middle, mean)[1]
    ss += _sum_shifted(high[:i], mean)[1]
    out[0] = mean
    out[1] = np.sqrt(ss / (k - 1)) if k > 1 else np.nan
    d = work[:n]
    for j in range(n):
        d[j] = abs(v[j] - median)
    a, b = _middle_pair(d, 0, n, lo_mid, hi_mid)
    out[2] = MAD_SCALE * 0.5 * (a + b)
    kept = _sum_shifted(low[cut:], 0.0)[0] + _sum_shifted(middle, 0.0)[0]
    out[3] = (kept + _sum_shifted(high[: m - cut], 0.0)[0]) / (n - 2 * cut)
    out[4] = median
    return True


_SIGN = np.uint64(1 << 63)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_RADIX_MIN = 64  # fewer values are sorted by comparisons


@njit(cache=True)
def _radix_sort(a):
    """Sort the float64 values a (no NaN) in place by an LSD radix sort, 8 bits a pass, of
    keys that order as the values (the sign bit flipped for positives, every bit for
    negatives; -0.0 before 0.0). No comparisons: a comparison sort of a window's values
    mispredicts half its branches, which costs more than these passes; a pass whose digit
    is the same for every key is skipped."""
    n = a.shape[0]
    if n < _RADIX_MIN:
        a.sort()
        return
    bits = a.view(np.uint64)
    keys = np.empty(n, dtype=np.uint64)
    spare = np.empty(n, dtype=np.uint64)
    counts = np.zeros((8, 256), dtype=np.int64)
    for j in range(n):
        u = bits[j]
        u = u ^ (_ALL if u & _SIGN else _SIGN)
        keys[j] = u
        for d in range(8):
            counts[d, (u >> np.uint64(8 * d)) & np.uint64(255)] += 1
    src, dst = keys, spare
    pos = np.empty(256, dtype=np.int64)
    for d in range(8):
        shift = np.uint64(8 * d)
        if counts[d, (src[0] >> shift) & np.uint64(255)] == n:
            continue
        total = 0
        for b in range(256):
            pos[b] = total
            total += counts[d, b]
        for j in range(n):
            u = src[j]
            b = (u >> shift) & np.uint64(255)
            dst[pos[b]] = u
            pos[b] += 1
        src, dst = dst, src
    for j in range(n):
        u = src[j]
        bits[j] = u ^ (_SIGN if u & _SIGN else _ALL)


_SAMPLE = 256  # sample of a window's values that brackets the ranks it needs
_MARGIN_RANKS = 24  # the bracket's half-width in sample ranks
_BRACKET_MIN = 64  # fewest values for the bracketed path
# A tail threshold guided by the last window's should hold about _TAIL_EXCESS * sqrt(n) values
# past the rank it brackets (the ranks of a neighbouring window's values move by about the root
# of the values that change).
_TAIL_EXCESS = 1.0
# The LTM block is summed alone (``_block_pass``) where the window's sum of squares exceeds its
# own this many times (rounding: relative 1e-16 of the window's sums, 1e-12 of the block's).
_CANCEL = 1e4
_KEY_LEVELS = 65536  # the order-preserving keys of ``_key_sort``: 16 bits, two radix passes


@njit(cache=True)
def _key_sort(a, dest, keys, spare, counts):
    """a (no NaN) sorted into dest[:len(a)] (``keys``, ``spare``: room for len(a); ``counts``:
    1024). Each value gets a 16-bit key linear in it between the least and the greatest (so
    monotone: a <= b gives key(a) <= key(b)); two 8-bit radix passes order the (key,
    position) pairs, and an insertion pass puts the values in that order, fixing it where keys
    are equal. Linear for smooth distributions; where many values share keys (a few far
    outliers squeeze the rest into few), the insertion pass gives up after 4 n moves and
    ``_radix_sort`` sorts them (its cost)."""
    n = a.shape[0]
    out = dest[:n]
    lo, hi = np.inf, -np.inf
    for v in a:
        lo = min(lo, v)
        hi = max(hi, v)
    width = hi - lo
    if n < _RADIX_MIN or n > _KEY_LEVELS or not (width > 0.0 and width < np.inf):
        out[:] = a
        if width != 0.0:  # not all equal
            _radix_sort(out)
        return
    scale = (_KEY_LEVELS - 1) / width
    counts[:512] = 0  # of the low and the high byte of the keys
    for j in range(n):
        key = min(int((a[j] - lo) * scale), _KEY_LEVELS - 1)
        keys[j] = (key << 16) | j
        counts[key & 255] += 1
        counts[256 + (key >> 8)] += 1
    # the first place of each byte value, apart from the counts: a loop that rewrites the
    # values it reads ran three times slower as code loaded from numba's disk cache
    place = counts[512:]
    low_total, high_total = 0, 0
    for b in range(256):
        place[b] = low_total
        low_total += counts[b]
        place[256 + b] = high_total
        high_total += counts[256 + b]
    for j in range(n):
        pair = keys[j]
        b = (pair >> 16) & 255
        spare[place[b]] = pair
        place[b] += 1
    for j in range(n):
        pair = spare[j]
        b = 256 + (pair >> 24)
        keys[place[b]] = pair
        place[b] += 1
    budget = 4 * n
    greatest = -np.inf  # of out[:j], kept out of memory: the load of what the last step
    for j in range(n):  # stored would wait on that store
        x = a[keys[j] & 65535]
        if x >= greatest:
            out[j] = x
            greatest = x
            continue
        i = j
        while i > 0 and out[i - 1] > x:
            out[i] = out[i - 1]
            i -= 1
        out[i] = x
        budget -= j - i
        if budget < 0:  # keys too often equal
            out[:] = a
            _radix_sort(out)
            return


@njit(cache=True)
def _sample_sorted(values, starts, lengths, n, sample):
    """A stratified sample of the window's n values (the runs end to end), sorted."""
    run, first = 0, 0  # the run holding position p, and that run's first position
    for j in range(_SAMPLE):
        p = (j * n) // _SAMPLE
        while p >= first + lengths[run]:
            first += lengths[run]
            run += 1
        sample[j] = values[starts[run] + p - first]
    _radix_sort(sample)


@njit(cache=True)
def _sample_at(sample, rank):
    return sample[min(max(rank, 0), _SAMPLE - 1)]


@njit(cache=True)
def _copy_tails(values, runs, t_low, t_high, shift, tails):
    """The window's values at or below ``t_low`` to the start of ``tails`` (the low tail),
    those at or above ``t_high`` from its middle on (the high one), in the runs' order, and
    the sums of all its values less ``shift``: (n_low, n_high, s1, s2). ``tails`` holds 2 h + 1
    values (h: room for every value in each half, the last for the others): one store a
    value, at an index chosen without a branch (t_low < t_high)."""
    starts, lengths, n_runs = runs
    half = (tails.shape[0] - 1) // 2
    other = tails.shape[0] - 1
    n_low, n_high, s1, s2 = 0, 0, 0.0, 0.0
    for r in range(n_runs):
        for v in values[starts[r] : starts[r] + lengths[r]]:
            x = v - shift
            s1 += x
            s2 += x * x
            in_low, in_high = v <= t_low, v >= t_high
            tails[n_low if in_low else (half + n_high if in_high else other)] = v
            n_low += in_low
            n_high += in_high
    return n_low, n_high, s1, s2


@njit(cache=True)
def _tails(values, runs, n, r, guides, tails):
    """Candidates for the r lowest and the r highest of the window's values into ``tails``
    (``_copy_tails``): the values past thresholds that hold them, first those of the last
    window (its r-th lowest and highest values and a margin: ``guides[2]`` and
    ``guides[3]``), where they miss those of a stratified sample. Returns (n_low, n_high, s1,
    s2, t_low, t_high, shift); n_low = -1 where both miss. ``shift`` (the median of the first
    run's first, middle and last value) depends on the window alone, so the sums do too."""
    starts, lengths, _ = runs
    s0, n0 = starts[0], lengths[0]
    a, b, c = values[s0], values[s0 + n0 // 2], values[s0 + n0 - 1]
    shift = max(min(a, b), min(max(a, b), c))
    g_low, g_high = guides[2], guides[3]
    if g_low[2] == 1.0 and g_high[2] == 1.0:
        t_low, t_high = g_low[0] + g_low[1], g_high[0] - g_high[1]
        if t_low < t_high:
            n_low, n_high, s1, s2 = _copy_tails(values, runs, t_low, t_high, shift, tails)
            if n_low >= r and n_high >= r:
                return n_low, n_high, s1, s2, t_low, t_high, shift
    sample = np.empty(_SAMPLE)
    _sample_sorted(values, starts, lengths, n, sample)
    t_low = _sample_at(sample, (r * _SAMPLE) // n + _MARGIN_RANKS)
    t_high = _sample_at(sample, ((n - r) * _SAMPLE) // n - _MARGIN_RANKS)
    n_low, n_high, s1, s2 = -1, 0, 0.0, 0.0
    if t_low < t_high:  # else ties fill the middle: the caller sorts all the values
        n_low, n_high, s1, s2 = _copy_tails(values, runs, t_low, t_high, shift, tails)
    if n_low < r or n_high < r:
        n_low = -1
    return n_low, n_high, s1, s2, t_low, t_high, shift


@njit(cache=True)
def _guide_tail(guide, rank_value, threshold, excess, n):
    """Guide the next window's tail threshold: this window's r-th value and a margin that
    should hold ``_TAIL_EXCESS * sqrt(n)`` values past it, from the ``excess`` candidates that
    lay between it and the threshold used (none: unguided, the sample decides)."""
    span = abs(threshold - rank_value)
    guide[0] = rank_value
    guide[1] = span * _TAIL_EXCESS * np.sqrt(n) / max(excess, 1)
    guide[2] = 1.0 if excess > 0 and span < np.inf else 0.0


@njit(cache=True)
def _ltm_from_tails(low, high, k, sums, spreads, out):
    """The LTM and its std into out[0:2] from the sorted m lowest and m highest values and
    ``sums``: (s1, s2, shift), the sums of all n values less shift (``spreads``: room for
    m + 1 values). The block of start i
    (0..m) holds all but the i lowest and the m - i highest values: its sums slide from all
    but the highest, low[i] leaving and high[i] entering; the winner's are summed afresh.
    Returns its start and k x its variance."""
    s1, s2, shift = sums
    m = low.shape[0]
    top1, top2 = _sum_shifted(high, shift)
    b1, b2 = s1 - top1, s2 - top2
    tol = _tie(low[0], high[-1]) * k
    spreads = spreads[: m + 1]  # k x the block's variance
    best = np.inf
    for i in range(m + 1):
        spreads[i] = b2 - b1 * b1 / k
        best = min(best, spreads[i])
        if i < m:
            a, b = low[i] - shift, high[i] - shift
            b1 += b - a
            b2 += b * b - a * a
    i = 0
    while spreads[i] > best + tol:  # the lowest block within tol of the least spread
        i += 1
    l1, l2 = _sum_shifted(low[:i], shift)
    h1, h2 = _sum_shifted(high[i:], shift)
    b1, b2 = s1 - l1 - h1, s2 - l2 - h2
    out[0] = shift + b1 / k
    out[1] = np.sqrt(max(b2 - b1 * b1 / k, 0.0) / (k - 1)) if k > 1 else np.nan
    return i, b2 - b1 * b1 / k


@njit(cache=True)
def _block_pass(values, runs, bounds, ranks, out):
    """The LTM block's mean and std into out[0:2] from a pass over the window's values: those
    strictly between ``bounds[0]`` (the last value below the block, or -inf) and
    ``bounds[1]`` (the first above it, or inf), less ``bounds[2]`` (a value of the block), and
    as many of those two as the block holds (``ranks``: its first rank i and its size k).
    Summed alone, the block keeps its precision where values far outside it (sentinels such
    as -999) dominate the window's sums."""
    below, above, shift = bounds
    i, k = ranks
    starts, lengths, n_runs = runs[:3]
    s1, s2, at_or_below, under = 0.0, 0.0, 0, 0
    for r in range(n_runs):
        for v in values[starts[r] : starts[r] + lengths[r]]:
            at_or_below += v <= below
            under += v < above
            if below < v < above:
                s1 += v - shift
                s2 += (v - shift) ** 2
    for edge, count in ((below, at_or_below - i), (above, i + k - under)):
        if count > 0:  # ties of the block's neighbours inside it
            s1 += count * (edge - shift)
            s2 += count * (edge - shift) ** 2
    out[0] = shift + s1 / k
    out[1] = np.sqrt(max(s2 - s1 * s1 / k, 0.0) / (k - 1)) if k > 1 else np.nan


@njit(cache=True)
def _tail_aggregates(values, runs, n, ranks, want, buffers, guides, out):
    """The LTM (``want[0]``) and the trimmed mean (``want[1]``) into ``out`` from the window's
    two tails, sorted; ``ranks``: (k, m, cut). False where no threshold held the tails
    (nothing written)."""
    k, m, cut = ranks
    tails, _, work, sorted_low, sorted_high, keys, spare, counts = buffers[1:]
    r = m if want[0] else max(cut, 1)
    n_low, n_high, s1, s2, t_low, t_high, shift = _tails(values, runs, n, r, guides, tails)
    if n_low < 0:
        return False
    half = (tails.shape[0] - 1) // 2
    _key_sort(tails[:n_low], sorted_low, keys, spare, counts)
    _key_sort(tails[half : half + n_high], sorted_high, keys, spare, counts)
    low, high = sorted_low[:r], sorted_high[n_high - r : n_high]  # the r lowest and highest
    if want[0]:
        i, spread = _ltm_from_tails(low, high, k, (s1, s2, shift), work, out)
        if s2 > _CANCEL * spread:  # far values outside the block (sentinels): sum it alone
            below = low[i - 1] if i > 0 else -np.inf
            above = high[i] if i < m else np.inf
            _block_pass(values, runs, (below, above, low[i] if i < m else high[0]), (i, k), out)
    if want[1]:
        cut_sum = _sum_shifted(low[:cut], shift)[0] + _sum_shifted(high[r - cut :], shift)[0]
        out[3] = shift + (s1 - cut_sum) / (n - 2 * cut)
    _guide_tail(guides[2], low[r - 1], t_low, n_low - r, n)
    _guide_tail(guides[3], high[0], t_high, n_high - r, n)
    return True


@njit(cache=True)
def robust_stats_bracketed(values, runs, n, fractions, need, buffers, guides, out):
    """``robust_stats_equal_weights`` of the window's n values (the runs ``runs``: starts,
    lengths, count) reading each a few times: thresholds guided by the last window's, or
    taken from a sample, hold the two tails (copied and sorted, nothing else is); the median
    and the MAD are the guided selections of the window median (``rows._runs_median``,
    ``guides[0]`` and ``guides[1]``). ``need``: which ``FIELDS`` to compute (the others are
    left NaN). False where the tails' thresholds miss (rarely; then nothing is written)."""
    k = max(1, int(fractions[0] * n * (1.0 + _MARGIN)))
    m = n - k
    cut = int(fractions[1] * n * (1.0 + _MARGIN))
    if n < _BRACKET_MIN or 3 * m > n or cut > m or m == 0:
        return False
    want_ltm, want_mad, want_trim = need[0] or need[1], need[2], need[3]
    out[:] = np.nan
    if (want_ltm or want_trim) and not _tail_aggregates(
        values, runs, n, (k, m, cut), (want_ltm, want_trim), buffers, guides, out
    ):
        return False
    if want_mad or need[4]:
        _window_median_and_mad(values, runs, n, want_mad, buffers, guides, out)
    return True


@njit(cache=True)
def _window_median_and_mad(values, runs, n, want_mad, buffers, guides, out):
    """The window median into out[4] and (``want_mad``) the MAD sigma into out[2]: guided
    selections (``rows._runs_median``) of the values gathered, then of their deviations."""
    v, work = buffers[0], buffers[3]
    starts, lengths, n_runs = runs
    _gather(values, starts, lengths, n_runs, v)
    one = np.zeros(2, dtype=np.int64)  # one run: v[0:n]
    one[1] = n
    median = _runs_median(v, one[:1], one[1:], 1, n, guides[0], work, work)
    if want_mad:
        for j in range(n):
            v[j] = abs(v[j] - median)
        out[2] = MAD_SCALE * _runs_median(v, one[:1], one[1:], 1, n, guides[1], work, work)
    out[4] = median


# ---- the sorted values of one window: a merge of per-bin sorted runs ----


@njit(cache=True)
def _merge(src, srcw, lo, mid, hi, dst, dstw):
    """Stable merge of the sorted src[lo:mid] and src[mid:hi] (with weights) into dst."""
    a, b = lo, mid
    for k in range(lo, hi):
        if b >= hi or (a < mid and src[a] <= src[b]):
            dst[k] = src[a]
            dstw[k] = srcw[a]
            a += 1
        else:
            dst[k] = src[b]
            dstw[k] = srcw[b]
            b += 1


@njit(cache=True)
def _order_ties(v, w, n):
    """Sort the weights within each run of equal values, so the order depends on the values
    and weights alone (not on the order the bins were read in)."""
    i = 0
    while i < n:
        j = i + 1
        while j < n and v[j] == v[i]:
            j += 1
        if j - i > 1:
            w[i:j].sort()
        i = j


@njit(cache=True)
def _gather(values, starts, lengths, n_runs, buf):
    """The runs' values one after the other into buf."""
    n = 0
    for j in range(n_runs):
        length = lengths[j]
        buf[n : n + length] = values[starts[j] : starts[j] + length]
        n += length


@njit(cache=True)
def _sorted_window(values, runs, buffers, bounds):
    """The runs' values (``runs``: starts, lengths, weights, count) merged in ascending order
    with their weights; returns (v, w, n)."""
    starts, lengths, run_w, n_runs = runs
    a, aw, b, bw = buffers
    n = 0
    bounds[0] = 0
    for j in range(n_runs):
        s = starts[j]
        for r in range(lengths[j]):
            a[n + r] = values[s + r]
            aw[n + r] = run_w[j]
        n += lengths[j]
        bounds[j + 1] = n
    runs = n_runs
    while runs > 1:
        merged = 0
        for p in range(0, runs, 2):
            lo = bounds[p]
            if p + 1 < runs:
                hi = bounds[p + 2]
                _merge(a, aw, lo, bounds[p + 1], hi, b, bw)
            else:
                hi = bounds[p + 1]
                b[lo:hi] = a[lo:hi]
                bw[lo:hi] = aw[lo:hi]
            bounds[merged + 1] = hi  # never a bound still to be read: merged + 1 <= p + 1
            merged += 1
        runs = merged
        a, aw, b, bw = b, bw, a, aw
    return a, aw, n


@njit(cache=True, nogil=True)
def _robust_chunk(  # noqa: PLR0913  (numba kernel: its outputs are arguments)
    c, n_chunks, centers, tables, offsets, runs, weighted, fractions, need, max_count, out, overflow
):
    """The robust aggregates of the windows of chunk c of the centers into ``out`` (m, t, 5);
    ``overflow[c]`` True where a window held more values than the buffers (left NaN).
    ``need``: the ``FIELDS`` asked for (the bracketed path computes only those)."""
    values, counts = runs
    m = centers.shape[0]
    ints = np.empty(2 * max_count + 1024, dtype=np.int64)
    buffers = (  # the second: the two tails of ``_copy_tails``
        np.empty(max_count), np.empty(2 * max_count + 1), np.empty(max_count),
        np.empty(max_count + 1),
        np.empty(max_count), np.empty(max_count),
        ints[:max_count], ints[max_count : 2 * max_count], ints[2 * max_count :],
    )  # fmt: skip
    # per target: the guides of the median, the MAD, the low and the high tail
    guides = np.zeros((values.shape[0], 4, 3))
    prefix = (np.empty(max_count + 1), np.empty(max_count + 1), np.empty(max_count + 1))
    entries = entry_buffers(tables)
    bins = entries[2]
    starts = np.empty(bins.shape[0], dtype=np.int64)
    lengths = np.empty(bins.shape[0], dtype=np.int64)
    run_w = np.empty(bins.shape[0])
    bounds = np.empty(bins.shape[0] + 1, dtype=np.int64)
    overflow_c = False
    for i in range(c * m // n_chunks, (c + 1) * m // n_chunks):
        n_entries = window_entries(centers[i], tables, entries)
        for t in range(values.shape[0]):
            n_runs = _list_runs(t, n_entries, entries, offsets, counts, starts, lengths, run_w)
            n = 0
            for j in range(n_runs):
                n += lengths[j]
            if n > max_count:  # never past the buffers
                overflow_c = True
                out[i, t, :] = np.nan
                continue
            if weighted:  # sorted runs: merged
                runs_t = (starts, lengths, run_w, n_runs)
                v, w, n = _sorted_window(values[t], runs_t, buffers[:4], bounds)
                _order_ties(v, w, n)
                robust_stats(v, w, n, True, fractions, prefix, out[i, t])
                continue
            runs_t = (starts, lengths, n_runs)  # in any order: bracketed, selected, else sorted
            if robust_stats_bracketed(
                values[t], runs_t, n, fractions, need, buffers, guides[t], out[i, t]
            ):
                continue
            v = buffers[0]
            _gather(values[t], starts, lengths, n_runs, v)
            if not robust_stats_equal_weights(v, n, fractions, buffers[1], out[i, t]):
                v[:n].sort()
                buffers[1][:n] = 1.0
                robust_stats(v, buffers[1], n, False, fractions, prefix, out[i, t])
    overflow[c] = overflow_c


# ---- the per-bin sorted runs the kernel merges ----


class SortedRuns(NamedTuple):
    """Target values in bin order, each bin's valid values first (sorted where the kernel
    merges them: a non-uniform kernel), then NaN."""

    values: np.ndarray  # (t, n)
    counts: np.ndarray  # (t, n_bins) valid values per bin


@njit(cache=True, nogil=True)
def _sort_bins(c, n_chunks, values, offsets, counts, sort):
    """Move the valid values of chunk c's bins first (sorted with ``sort``: ``_key_sort``), NaN
    last, and count them."""
    n_bins = offsets.shape[0] - 1
    first, stop = c * n_bins // n_chunks, (c + 1) * n_bins // n_chunks
    longest = 1
    for b in range(first, stop):
        longest = max(longest, offsets[b + 1] - offsets[b])
    dest = np.empty(longest)
    ints = np.empty(2 * longest + 1024, dtype=np.int64)
    for b in range(first, stop):
        for t in range(values.shape[0]):
            run = values[t, offsets[b] : offsets[b + 1]]
            n = 0
            for r in range(run.shape[0]):
                if run[r] == run[r]:
                    run[n] = run[r]
                    n += 1
            run[n:] = np.nan
            if sort:
                _key_sort(run[:n], dest, ints[:longest], ints[longest:-1024], ints[-1024:])
                run[:n] = dest[:n]
            counts[t, b] = n


def sorted_runs(
    ys: np.ndarray | TargetRuns, offsets: np.ndarray, backend: str, sort: bool = True
) -> SortedRuns:
    """``SortedRuns`` of targets in bin order with NaN for invalid rows (each bin sorted with
    ``sort``, which the numpy backend always does), or of the median's ``TargetRuns`` (their
    layout as it is where nothing is sorted)."""
    if isinstance(ys, TargetRuns):
        if not sort and backend == "numba":
            return SortedRuns(ys.values, ys.counts)
        ys = ys.values
    counts = np.empty((ys.shape[0], offsets.size - 1), dtype=np.int64)
    if backend == "numba":
        values = np.array(ys, dtype=np.float64, copy=True, order="C")
        n_chunks = max(1, min(num_threads() * 4, offsets.size - 1))
        run_chunks(_sort_bins, n_chunks, values, offsets, counts, sort)
        return SortedRuns(values, counts)
    bins = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    values = np.empty_like(ys, dtype=np.float64)
    for t, row in enumerate(ys):
        values[t] = row[np.lexsort((row, bins))]  # NaN sort last
        counts[t] = np.bincount(bins[~np.isnan(row)], minlength=offsets.size - 1)
    return SortedRuns(values, counts)


# ---- the numpy fallback ----


def _robust_numpy(v: np.ndarray, w: np.ndarray, weighted: bool, fractions: Fractions) -> list:
    """``robust_stats`` of one window's valid values (any order) in numpy."""
    n = v.size
    if n == 0:
        return [np.nan] * len(FIELDS)
    order = np.lexsort((w, v))
    v, w = v[order], w[order]
    shift = v[n // 2]
    x = v - shift
    p0 = np.concatenate([[0.0], np.cumsum(w)])
    p1 = np.concatenate([[0.0], np.cumsum(w * x)])
    p2 = np.concatenate([[0.0], np.cumsum(w * x * x)])
    total = p0[n]
    cap = fractions.ltm * total * (1.0 + _MARGIN)
    # the maximal blocks of weight <= cap: each start's last value, kept where it moves on
    ends = np.arange(n)
    for i in range(n):  # the last j with p0[j + 1] - p0[i] <= cap (at least i)
        ends[i] = max(i, int(np.searchsorted(p0[i + 1 :] - p0[i], cap, side="right")) + i - 1)
    firsts = np.concatenate([[True], ends[1:] > ends[:-1]])
    starts, ends = np.flatnonzero(firsts), ends[firsts]
    sw = p0[ends + 1] - p0[starts]
    s1 = p1[ends + 1] - p1[starts]
    spread = (p2[ends + 1] - p2[starts] - s1 * s1 / sw) / sw
    tol = _tie(v[0], v[-1])
    pick = int(np.flatnonzero(spread <= spread.min() + tol)[0])
    block = slice(starts[pick], ends[pick] + 1)
    bv, bw = v[block], w[block]
    ltm = np.sum(bw * bv) / np.sum(bw)
    if bv.size < 2:
        ltm_std = np.nan
    else:
        dof = bw.sum() - np.sum(bw * bw) / bw.sum()
        ltm_std = np.sqrt(np.sum(bw * (bv - ltm) ** 2) / dof)
    if weighted:
        half = 0.5 * total * (1.0 - _MARGIN)
        median = v[np.searchsorted(p0[1:], half)]
        deviation = np.abs(v - median)
        by = np.argsort(deviation, kind="stable")
        mad = deviation[by][np.searchsorted(np.cumsum(w[by]), half)]
    else:
        median = np.median(v)
        mad = np.median(np.abs(v - median))
    cut = fractions.trim * total * (1.0 + _MARGIN)
    kept = (p0[1:] > cut) & (total - p0[:-1] > cut)
    trimmed = np.sum(w[kept] * v[kept]) / np.sum(w[kept])
    return [ltm, ltm_std, MAD_SCALE * mad, trimmed, median]


# ---- every window ----


def window_robust(
    centers: np.ndarray,
    index: WindowIndex,
    ys: np.ndarray | SortedRuns | TargetRuns,
    max_count: int,
    backend: str,
    fractions: Fractions = DEFAULT_FRACTIONS,
) -> np.ndarray:
    """The robust aggregates and the median of each window's valid target values, (m, t, 5).

    Parameters
    ----------
    centers : (m,) flat ids of the window centers.
    index : where each window's rows lie (``WindowIndex``).
    ys : (t, n) targets in bin order, NaN for invalid rows, or their ``SortedRuns``.
    max_count : an upper bound of the valid values in any window (sizes the buffers).
    backend : 'numba' or 'numpy' (equal results).
    fractions : ``ltm_fraction``, ``trim_fraction`` and the ``FIELDS`` wanted (the others
        may be left NaN, the median never is: the MAD or the trimmed mean alone does not pay
        for the LTM's sorted tails).

    Returns
    -------
    (m, t, 5) float array: ``FIELDS`` (ltm, ltm_std, mad, trimmed_mean, median) per window
    and target; NaN for an empty window.

    Examples
    --------
    >>> import numpy as np
    >>> from xslide.aggregates import window_robust
    >>> from xslide.rows import WindowIndex
    >>> from xslide.window import Window
    >>> window = Window((1,), (0,), ("truncate",), np.ones(1))
    >>> ys = np.array([[1.0, 2.0, 3.0, 4.0, 100.0]])  # one bin holding five rows
    >>> out = window_robust(np.array([0]), WindowIndex(window, np.array([0, 5])), ys, 5, "numpy")
    >>> out[0, 0].round(3).tolist()  # ltm of 4 values, ltm_std, mad, trimmed mean, median
    [2.5, 1.291, 1.483, 3.0, 3.0]
    """
    n_targets = (ys if isinstance(ys, np.ndarray) else ys.values).shape[0]
    out = np.empty((centers.size, n_targets, len(FIELDS)))
    if centers.size == 0:
        return out
    params = np.array([fractions.ltm, fractions.trim])
    if backend == "numba":
        if not isinstance(ys, SortedRuns):
            ys = sorted_runs(ys, index.offsets, backend, sort=index.weighted)
        runs = ys
        n_chunks = max(1, min(num_threads() * 4, centers.size))
        overflow = np.zeros(n_chunks, dtype=np.bool_)
        wanted = np.array([name in fractions.need for name in FIELDS])
        run_chunks(
            _robust_chunk, n_chunks, centers.astype(np.int64), index.tables, index.offsets,
            runs, index.weighted, params, wanted, max(int(max_count), 1), out, overflow,
        )  # fmt: skip
        check_no_overflow(overflow)
        return out
    if not isinstance(ys, np.ndarray):
        ys = ys.values  # NaN marks the invalid rows in this layout too
    for i, center in enumerate(centers):
        positions, weights, _ = index.positions(int(center))
        for t in range(n_targets):
            values = ys[t, positions]
            valid = ~np.isnan(values)
            out[i, t] = _robust_numpy(values[valid], weights[valid], index.weighted, fractions)
    return out


def _block(work: tuple, block: np.ndarray) -> np.ndarray:
    index, ys, max_count, backend, fractions = work
    return window_robust(block, index, ys, max_count, backend, fractions)


def _halo(work: tuple, block: np.ndarray) -> tuple:
    """The rows the windows of ``block`` read, for a cluster worker."""
    index, runs, max_count, backend, fractions = work
    local, positions = index.halo(block)
    shipped = np.diff(local.offsets) > 0  # bins outside the halo are empty there
    counts = np.where(shipped, runs.counts, 0)
    return local, SortedRuns(runs.values[:, positions], counts), max_count, backend, fractions


def window_robust_blocks(
    centers: np.ndarray,
    index: WindowIndex,
    ys: np.ndarray | SortedRuns | TargetRuns,
    max_count: int,
    backend: str,
    fractions: Fractions,
    parallel: Parallel,
    progress: bool | None = None,
) -> np.ndarray:
    """``window_robust`` here (in blocks of centers when a progress bar may show), or in
    blocks with their halo rows on a cluster (like the median)."""
    if backend == "numba" or parallel.client is not None:  # a cluster ships halos of runs
        ys = sorted_runs(ys, index.offsets, backend, sort=index.weighted)
    work = (index, ys, max_count, backend, fractions)
    with progress_bar(centers.size, progress, "xslide robust", " windows", scale=True) as bar:
        if parallel.client is None:
            blocks, ship = bar_blocks(centers, bar, BLOCK), None
        else:
            blocks, ship = split(centers, 4 * parallel.workers), _halo
        local = Parallel() if parallel.client is None else parallel  # numba threads here
        parts = list(local.map(_block, work, blocks, ship=ship, bar=bar))
    n_targets = (ys if isinstance(ys, np.ndarray) else ys.values).shape[0]
    return np.concatenate(parts) if parts else np.empty((0, n_targets, len(FIELDS)))
