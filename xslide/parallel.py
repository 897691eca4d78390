"""Where raw-row work runs: serially, in a process pool or on a dask cluster; progress bars.

Raw-row work (glm/rlm/callable fits, window medians) is split into blocks of centers that are
independent of each other, so every way of running them gives identical results.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Parallel:
    """Where raw-row work runs: serially, in ``n_jobs`` processes or on a dask ``client``."""

    n_jobs: int = 1
    client: Any | None = None

    @staticmethod
    def is_client(obj) -> bool:
        """A dask.distributed Client, recognised by what it can do (dask need not import)."""
        return hasattr(obj, "submit") and hasattr(obj, "gather")

    @property
    def workers(self) -> int:
        """How many workers share the work (the cluster's threads, or the processes)."""
        if self.client is not None:
            return max(1, len(self.client.nthreads()))
        return self.n_jobs

    def map(
        self,
        func: Callable[[Any, np.ndarray], Any],
        work: Any,
        blocks: Sequence[np.ndarray],
        ship: Callable[[Any, np.ndarray], Any] | None = None,
        bar=None,
    ) -> Iterator:
        """``func(work, block)`` for every block, in order.

        ``work`` travels once to each process of a pool; on a cluster every block travels with
        ``ship(work, block)`` (e.g. just the rows its windows read) instead of all of it.
        """
        bar = bar or NoBar()
        if self.client is not None:
            futures = [
                self.client.submit(func, ship(work, b) if ship else work, b, pure=False)
                for b in blocks
            ]
            for future, block in zip(futures, blocks, strict=True):
                yield future.result()
                bar.update(block.size)
        elif self.n_jobs > 1:
            with ProcessPoolExecutor(
                self.n_jobs,
                mp_context=_mp_context(),
                initializer=_init_worker,
                initargs=(func, work),
            ) as pool:
                for result, block in zip(pool.map(_in_worker, blocks), blocks, strict=True):
                    yield result
                    bar.update(block.size)
        else:
            for block in blocks:
                yield func(work, block)
                bar.update(block.size)


def split(ids: np.ndarray, n_parts: int) -> list[np.ndarray]:
    """``ids`` in at most ``n_parts`` non-empty consecutive blocks."""
    return [part for part in np.array_split(ids, max(1, min(n_parts, ids.size))) if part.size]


_WORKER: tuple[Callable, Any] | None = None


def _init_worker(func: Callable, work: Any) -> None:
    global _WORKER
    _WORKER = (func, work)


def _in_worker(block: np.ndarray):
    assert _WORKER is not None
    func, work = _WORKER
    return func(work, block)


def _mp_context():
    """Worker processes: forked where the platform allows (no re-import, state shared
    copy-on-write; the workers run no numba threads), spawned elsewhere."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


# Automatic bars (progress=None) appear on a terminal once the work has lasted this long, so
# short steps print nothing.
AUTO_DELAY = 2.0
# Blocks per bar: work a compiled kernel does in one call is split into about this many calls
# when a bar may show, so the bar moves; without a bar it runs in one call.
BAR_BLOCKS = 50


class NoBar:
    """A progress bar that shows nothing."""

    total: int | None = None

    def update(self, n: int) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NoBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


def may_show(show: bool | None) -> bool:
    """Whether a bar may appear: forced, or automatic on a terminal."""
    return show is True or (show is None and sys.stderr.isatty())


def progress_bar(total: int | None, show: bool | None, desc: str, unit: str, scale: bool = False):
    """A tqdm bar on stderr: ``show`` True always, False never, None (automatic) on a terminal
    once the work has lasted ``AUTO_DELAY`` seconds."""
    if not may_show(show):
        return NoBar()
    from tqdm.auto import tqdm

    delay = AUTO_DELAY if show is None else 0.0
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=scale, file=sys.stderr, delay=delay)


def bar_blocks(ids: np.ndarray, bar, min_size: int) -> list[np.ndarray]:
    """``ids`` in one block without a bar; with one, in about ``BAR_BLOCKS`` consecutive blocks
    of at least ``min_size`` (large: each block is one call of a parallel kernel)."""
    if isinstance(bar, NoBar) or ids.size <= min_size:
        return [ids]
    return split(ids, min(BAR_BLOCKS, ids.size // min_size))
