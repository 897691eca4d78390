"""Window specifications and windowed sums over the bin dims of a grid of statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

from .errors import InvalidWindowSpec

BOUNDARY_ALIASES = {"truncate": "truncate", "full": "truncate"}
PLANNED_BOUNDARIES = ("periodic", "mirror", "shrink", "symmetric")


def parse_window(window: Mapping | None, dims: Sequence[str]) -> dict[str, int]:
    """Validate ``{dim: half_width}``; dims left out get 0 (no window along them)."""
    if window is None:
        window = {}
    if not isinstance(window, Mapping):
        raise InvalidWindowSpec(
            f"window_spec must be a dict {{dim: half_width}}, got {type(window).__name__}"
        )
    unknown = [d for d in window if d not in dims]
    if unknown:
        raise InvalidWindowSpec(
            f"window_spec names {unknown}, which are not bin dims; bin dims are {list(dims)}"
        )
    out = {}
    for d in dims:
        w = window.get(d, 0)
        if isinstance(w, bool) or not isinstance(w, int | np.integer):
            raise InvalidWindowSpec(
                f"window_spec[{d!r}] must be a non-negative integer half-width, got {w!r}"
            )
        if w < 0:
            raise InvalidWindowSpec(f"window_spec[{d!r}] must be >= 0, got {w}")
        out[d] = int(w)
    return out


def parse_boundary(boundary: str | Mapping, dims: Sequence[str]) -> dict[str, str]:
    """Validate the boundary mode, global or per dim, and return it per dim."""
    per_dim = boundary if isinstance(boundary, Mapping) else dict.fromkeys(dims, boundary)
    unknown = [d for d in per_dim if d not in dims]
    if unknown:
        raise ValueError(f"boundary names {unknown}, which are not bin dims ({list(dims)})")
    out = {}
    for d in dims:
        mode = per_dim.get(d, "truncate")
        if mode in PLANNED_BOUNDARIES:
            raise NotImplementedError(
                f"boundary {mode!r} (dim {d!r}) is not available yet; "
                "only 'truncate' (alias 'full') is implemented"
            )
        if mode not in BOUNDARY_ALIASES:
            raise ValueError(
                f"boundary for {d!r} must be one of 'truncate', 'full', 'periodic', 'mirror', "
                f"'shrink', 'symmetric', got {mode!r}"
            )
        out[d] = BOUNDARY_ALIASES[mode]
    return out


def window_volume(half_widths: Sequence[int]) -> int:
    """Number of bins in a full (not clipped) window."""
    return int(np.prod([2 * w + 1 for w in half_widths], dtype=np.int64))


def window_sum(grid_values: np.ndarray, half_widths: Sequence[int]) -> np.ndarray:
    """Box sums over the leading ``len(half_widths)`` axes; bins outside the grid count zero.

    Each axis is summed directly over its 2w+1 neighbours (``ndimage.correlate1d``), not by a
    running sum, so no rounding error builds up along an axis and windows larger than the grid
    are exact. A half-width of 0 leaves the axis as it is.
    """
    out = grid_values
    for axis, w in enumerate(half_widths):
        if w > 0:
            ones = np.ones(2 * w + 1)
            out = ndimage.correlate1d(out, ones, axis=axis, mode="constant", cval=0.0)
    return out
