"""The memory budget: sizes are checked in bytes, with Python integers, before allocating.

Every large array xslide makes (the per-bin statistics, the window's kernel and neighbor
tables, the windowed sums and the fit on the grid, the raw-row buffers) is sized first and
refused when it would exceed ``max_memory``, with the shape, the bytes and the remedies named,
instead of failing halfway with a MemoryError (or worse) after minutes of work.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from .errors import TooLargeError

FLOAT = 8  # bytes of a float64 or an int64
# the share of the machine's memory xslide plans to use by default
DEFAULT_SHARE = 0.5


def default_max_memory() -> int:
    """Half the machine's physical memory (8 GiB where it cannot be read)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 16 * 2**30
    return int(total * DEFAULT_SHARE)


def size(*factors: int | Iterable[int]) -> int:
    """The product of the factors (and of the items of iterable ones), a Python integer."""
    total = 1
    for factor in factors:
        total *= math.prod(factor) if isinstance(factor, Iterable) else int(factor)
    return total


def human(n_bytes: int) -> str:
    """Bytes in the largest binary unit that keeps a number >= 1."""
    value, unit = float(n_bytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024 or unit == "EiB":
            break
        value /= 1024
    return f"{value:,.1f} {unit}" if unit != "B" else f"{n_bytes:,} B"


def check(n_bytes: int, what: str, max_memory: float, remedies: str) -> None:
    """Refuse ``what`` when it needs more than ``max_memory`` bytes."""
    if n_bytes > max_memory:
        raise TooLargeError(
            f"{what} would need {human(n_bytes)}, more than max_memory={human(int(max_memory))}; "
            f"{remedies} (or raise max_memory if the machine has it)"
        )
