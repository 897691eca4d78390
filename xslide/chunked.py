"""Windowed sums of a grid chunked along its bin dims (dask), for grids that outgrow memory.

The per-bin statistics become a dask array chunked along the bin dims; ``map_overlap`` gives
every chunk a halo of depth = half-width per dim (wrapped around for periodic dims, none at the
other outer edges) and each padded chunk runs the same numba neighbour loop as the in-memory
path, with neighbour tables that know the chunk's place in the whole grid (mirror reflects and
shrink narrows at the grid's edges, not the chunk's). The halo is then trimmed, so every bin
gets exactly the windowed sums of the in-memory path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._optional import require
from .solve import Solution, solve_in_blocks
from .stats import FIRST_MOMENT
from .window import Window, _run_neighbour_sums, trend_layout


def _block_table(n_local: int, w: int, mode: str, origin: int, n_global: int):
    """Neighbour bins (local indices) and offsets of every cell of a padded chunk."""
    width = 2 * w + 1
    j = np.zeros((n_local, width), dtype=np.int64)
    o = np.zeros_like(j)
    length = np.zeros(n_local, dtype=np.int64)
    for c in range(n_local):
        g = origin + c  # global index (periodic halos may sit outside [0, n_global))
        reach = min(w, g, n_global - 1 - g) if mode == "shrink" else w
        k = 0
        for off in range(-reach, reach + 1):
            if mode == "mirror":
                jg = g + off
                while not 0 <= jg < n_global:
                    jg = -jg - 1 if jg < 0 else 2 * n_global - 1 - jg
                local = jg - origin
            else:  # truncate, shrink and periodic (its halo holds the wrapped bins)
                local = c + off
            if 0 <= local < n_local:
                j[c, k], o[c, k] = local, off
                k += 1
        length[c] = k
    return j, o, length


@dataclass(frozen=True, eq=False)
class BlockWindow(Window):
    """The window on one padded chunk: the neighbour tables use the chunk's global place."""

    origin: tuple[int, ...] = ()
    global_shape: tuple[int, ...] = ()

    def dim_table(self, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _block_table(
            self.shape[d], self.half[d], self.modes[d], self.origin[d], self.global_shape[d]
        )


_SCALARS = ("entries", "mean", "std", "r_squared", "rmse", "status")


def _pack(solution: Solution) -> np.ndarray:
    """A Solution as one float array (m, t, fields): scalars, coef, stderr, cov."""
    m, t, p = solution.coef.shape
    scalars = [getattr(solution, name).astype(np.float64)[..., None] for name in _SCALARS]
    return np.concatenate(
        [*scalars, solution.coef, solution.stderr, solution.cov.reshape(m, t, p * p)], axis=-1
    )


def _unpack(packed: np.ndarray, p: int) -> Solution:
    k = len(_SCALARS)
    fields = {name: packed[..., i] for i, name in enumerate(_SCALARS)}
    fields["entries"] = np.rint(fields["entries"]).astype(np.int64)
    fields["status"] = np.rint(fields["status"]).astype(np.int8)
    return Solution(
        **fields,
        coef=packed[..., k : k + p],
        stderr=packed[..., k + p : k + 2 * p],
        cov=packed[..., k + 2 * p :].reshape(*packed.shape[:2], p, p),
    )


def chunked_window_sums(
    stats: np.ndarray,
    rows: np.ndarray,
    window: Window,
    chunks: tuple[int, ...],
    n_columns: int,
    trend: bool,
    solve_options: dict,
) -> tuple[Solution, np.ndarray, np.ndarray]:
    """Windowed statistics and their solutions for every bin, chunk by chunk with dask.

    Parameters
    ----------
    stats, rows : per-bin packed statistics (n_bins, t, n_stats) and rows per bin.
    window : the window on the whole grid.
    chunks : chunk size per bin dim (raised to the half-width where smaller: a halo cannot
        be deeper than a chunk).
    n_columns, trend : the design size, and whether to add the offset terms (trend=1).
    solve_options : the arguments of ``solve`` after the statistics and the design size.

    Returns
    -------
    The solution of every bin's window, solved where its chunk was windowed (the windowed
    statistics of the whole grid never exist at once), and the rows and distinct bins with
    rows of every window, as the in-memory path gives them.
    """
    da = require("dask.array", "chunked grids (pip install 'xslide[dask]')")
    _ = window.tables  # checks the whole window: a periodic window wider than its dim fails
    shape, half, modes = window.shape, window.half, window.modes
    n_dims, n_targets = len(shape), stats.shape[1]
    sizes = tuple(max(int(c), w, 1) for c, w in zip(chunks, half, strict=True))
    x = da.from_array(stats.reshape(*shape, *stats.shape[1:]), chunks=(*sizes, -1, -1))
    # rows carry two trailing unit axes so that map_blocks pairs the blocks dim by dim
    r = da.from_array(rows.reshape(*shape, 1, 1).astype(np.int64), chunks=(*sizes, 1, 1))
    depth = {d: half[d] for d in range(n_dims)}
    boundary = {d: "periodic" if modes[d] == "periodic" else "none" for d in range(n_dims)}
    xo = da.overlap.overlap(
        x, depth={**depth, n_dims: 0, n_dims + 1: 0},
        boundary={**boundary, n_dims: "none", n_dims + 1: "none"},
    )  # fmt: skip
    ro = da.overlap.overlap(
        r, depth={**depth, n_dims: 0, n_dims + 1: 0},
        boundary={**boundary, n_dims: "none", n_dims + 1: "none"},
    )  # fmt: skip
    starts = [np.cumsum((0, *c[:-1])) for c in x.chunks[:n_dims]]
    trend_dims = np.flatnonzero(np.asarray(half) > 0) if trend else np.empty(0, np.int64)
    if trend_dims.size:
        layout = trend_layout(n_columns, trend_dims.size)
    else:
        moments = np.arange(FIRST_MOMENT, stats.shape[2])
        layout = np.column_stack([moments, np.full((moments.size, 2), -1)])
    layout = layout.astype(np.int64)
    n_terms = n_columns + trend_dims.size - (0 if solve_options["intercept"] else 1)
    width = len(_SCALARS) + n_terms * (2 + n_terms) + 2  # the solution, rows, distinct bins
    x_ref = np.concatenate([solve_options["x_ref"], np.zeros(trend_dims.size)])

    def block(xb, rb, block_id=None):
        local_shape = rb.shape[:n_dims]
        origin = tuple(
            int(starts[d][block_id[d]])
            - (half[d] if modes[d] == "periodic" or block_id[d] > 0 else 0)
            for d in range(n_dims)
        )
        local = BlockWindow(local_shape, half, modes, window.weights, origin, shape)
        centers = np.arange(rb.size)  # every cell of the padded block (the halo is trimmed)
        sums, counts, distinct = _run_neighbour_sums(
            local, centers, np.ascontiguousarray(xb.reshape(rb.size, n_targets, -1)),
            rb.reshape(-1), trend_dims.astype(np.int64), layout,
        )  # fmt: skip
        solution = solve_in_blocks(
            sums, n_columns + trend_dims.size, x_ref, solve_options["y_ref"],
            solve_options["min_entries"], solve_options["intercept"],
        )  # fmt: skip
        out = np.empty((rb.size, n_targets, width))
        out[..., :-2] = _pack(solution)
        out[..., -2] = counts[:, None]
        out[..., -1] = distinct[:, None]
        return out.reshape((*local_shape, n_targets, width))

    y = da.map_blocks(
        block, xo, ro, dtype=np.float64,
        chunks=(*xo.chunks[:n_dims], (n_targets,), (width,)),
    )  # fmt: skip
    y = da.overlap.trim_internal(
        y, {**depth, n_dims: 0, n_dims + 1: 0},
        boundary={**boundary, n_dims: "none", n_dims + 1: "none"},
    )  # fmt: skip
    dense = y.compute().reshape(int(np.prod(shape)), n_targets, width)
    return (
        _unpack(np.ascontiguousarray(dense[..., :-2]), n_terms),
        np.rint(dense[:, 0, -2]).astype(np.int64),
        np.rint(dense[:, 0, -1]).astype(np.int64),
    )
