"""Windowed sums of a grid chunked along its bin dims (dask), for grids that outgrow memory.

The per-bin statistics become a dask array chunked along the bin dims; ``map_overlap`` gives
every chunk a halo per dim and side, as deep as the window reaches on that side (before on the
left, after on the right; the deeper of the two on both sides of a periodic dim, whose wrap dask
pads symmetrically), wrapped around for periodic dims, none at the other outer edges, and each
padded chunk runs the same numba neighbor loop as the in-memory path, with neighbor tables that
know the chunk's place in the whole grid (mirror reflects and shrink narrows at the grid's
edges, not the chunk's). The halo is then trimmed, so every bin gets exactly the windowed sums
of the in-memory path.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._optional import require
from .solve import Solution
from .stats import FIRST_MOMENT
from .window import MomentLayout, Window, neighbor_sums


def _chunk_sizes(n: int, size: int, w: int) -> tuple[int, ...]:
    """Chunks of about ``size`` bins along a dim of ``n``, none thinner than the halo ``w``
    (dask would re-split them, and the blocks would not know their place): a short remainder
    joins the last chunk. One chunk when it would hold the whole dim."""
    size = max(int(size), w, 1)
    if size >= n:
        return (n,)
    full, rest = divmod(n, size)
    parts = [size] * full
    if rest and rest < w:
        parts[-1] += rest
    elif rest:
        parts.append(rest)
    return tuple(parts)


def chunked_windowed_sums(
    sums: np.ndarray,
    rows: np.ndarray,
    window: Window,
    centers: np.ndarray,
    layout: MomentLayout,
    solve: Callable[[np.ndarray], Solution],
    chunks: tuple[int, ...],
) -> tuple[Solution, np.ndarray, np.ndarray]:
    """Solutions of the windows at ``centers``, windowed and solved chunk by chunk with dask.

    Parameters
    ----------
    sums, rows : per-bin packed statistics (n_bins, t, n_stats) and rows per bin.
    window : the window on the whole grid.
    centers : (m,) flat ids of the window centers.
    layout, solve : the moments to sum, and their solve (see ``window.windowed_sums``).
    chunks : chunk size per bin dim (raised to the window's reach where smaller: a halo
        cannot be deeper than a chunk).

    Returns
    -------
    The solutions (the windowed statistics of the whole grid never exist at once), and the
    rows and distinct bins with rows of every window, as the in-memory path gives them.
    """
    da = require("dask.array", "chunked grids (chunks=)")
    _ = window.tables  # checks the whole window: a periodic window wider than its dim fails
    shape, reach, modes = window.shape, window.spans, window.modes
    n_dims, n_targets = len(shape), sums.shape[1]
    sizes = tuple(_chunk_sizes(n, c, max(r)) for n, c, r in zip(shape, chunks, reach, strict=True))
    x = da.from_array(sums.reshape(*shape, *sums.shape[1:]), chunks=(*sizes, -1, -1))
    # rows carry two trailing unit axes so that map_blocks pairs the blocks dim by dim
    r = da.from_array(rows.reshape(*shape, 1, 1).astype(np.int64), chunks=(*sizes, 1, 1))
    # (left, right) halo per dim; a dim in one chunk needs none: its neighbor tables see the
    # whole dim (wrapped too); dask wraps a periodic dim by the same depth on both sides
    halo = [
        (0, 0) if len(sizes[d]) == 1 else
        (max(reach[d]),) * 2 if modes[d] == "periodic" else reach[d]
        for d in range(n_dims)
    ]  # fmt: skip
    # dask takes a periodic (or symmetric) depth as one number, a (left, right) pair otherwise
    depth = {
        **{d: left if left == right else (left, right) for d, (left, right) in enumerate(halo)},
        n_dims: 0,
        n_dims + 1: 0,
    }
    boundary = {
        d: "periodic" if modes[d] == "periodic" and any(halo[d]) else "none" for d in range(n_dims)
    }
    boundary.update({n_dims: "none", n_dims + 1: "none"})
    xo = da.overlap.overlap(x, depth=depth, boundary=boundary)
    ro = da.overlap.overlap(r, depth=depth, boundary=boundary)
    starts = [np.cumsum((0, *c[:-1])) for c in x.chunks[:n_dims]]
    n_moments = FIRST_MOMENT + layout.table.shape[0]
    width = solve(np.empty((0, n_targets, n_moments))).pack().shape[-1] + 2  # + rows, bins

    def block(xb, rb, block_id=None):
        local_shape = rb.shape[:n_dims]
        origin = tuple(
            int(starts[d][block_id[d]])
            - (halo[d][0] if modes[d] == "periodic" or block_id[d] > 0 else 0)
            for d in range(n_dims)
        )
        local = Window(
            local_shape, reach, modes, window.weights, origin, shape,
            full_extents=window.full_extents,
        )  # fmt: skip
        cells = np.arange(rb.size)  # every cell of the padded block (the halo is trimmed)
        block_sums, n_rows, n_bins = neighbor_sums(
            local,
            cells,
            np.ascontiguousarray(xb.reshape(rb.size, n_targets, -1)),
            rb.reshape(-1),
            layout,
        )
        out = np.empty((rb.size, n_targets, width))
        out[..., :-2] = solve(block_sums).pack()
        out[..., -2] = n_rows[:, None]
        out[..., -1] = n_bins[:, None]
        return out.reshape((*local_shape, n_targets, width))

    y = da.map_blocks(
        block, xo, ro, dtype=np.float64, chunks=(*xo.chunks[:n_dims], (n_targets,), (width,))
    )
    y = da.overlap.trim_internal(y, depth, boundary=boundary)
    dense = y.compute().reshape(int(np.prod(shape)), n_targets, width)[centers]
    return (
        Solution.unpack(np.ascontiguousarray(dense[..., :-2])),
        np.rint(dense[:, 0, -2]).astype(np.int64),
        np.rint(dense[:, 0, -1]).astype(np.int64),
    )
