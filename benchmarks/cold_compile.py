"""Which numba kernels the demo's fit compiles on a cold cache, and for how long each.

``python benchmarks/cold_compile.py [ROWS]`` runs the demo's fit in this process on empty
temporary numba and xslide caches and lists every compilation (numba's ``numba:compile``
events): seconds exclusive of the kernels it compiled on the way, inclusive, and the argument
types of the specialisation.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time

_CACHE = tempfile.mkdtemp()
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["NUMBA_CACHE_DIR"] = os.path.join(_CACHE, "numba")  # before numba is imported
os.environ["XSLIDE_CACHE_DIR"] = os.path.join(_CACHE, "xslide")

from numba.core import event  # noqa: E402

import xslide  # noqa: E402
from xslide.demo import EDGES, TARGETS, UNITS, synthetic_distortions  # noqa: E402


class Compilations(event.Listener):
    """Every compilation with its inclusive and exclusive seconds."""

    def __init__(self) -> None:
        self.stack: list[list] = []
        self.done: list[tuple[str, str, float, float]] = []

    def on_start(self, ev) -> None:
        self.stack.append([ev.data["dispatcher"], ev.data["args"], time.perf_counter(), 0.0])

    def on_end(self, ev) -> None:
        dispatcher, args, start, inner = self.stack.pop()
        seconds = time.perf_counter() - start
        if self.stack:
            self.stack[-1][3] += seconds
        func = dispatcher.py_func
        name = f"{func.__module__}.{func.__qualname__}"
        self.done.append((name, str(args), seconds, seconds - inner))


def main(rows: int) -> None:
    data = synthetic_distortions(rows, 0)
    binned = xslide.digitize(data, {n: EDGES[n] for n in ("r", "y2x", "z2x")}, units=UNITS)
    listener = Compilations()
    event.register("numba:compile", listener)
    t0 = time.perf_counter()
    dims = ["rBin", "y2xBin", "z2xBin", "sector"]
    window = {"rBin": 1, "y2xBin": 1, "z2xBin": 1}
    xslide.fit(binned, dims, list(TARGETS), ["qpt"], window, trend=1, n_sigma_cut=3.0)
    total = time.perf_counter() - t0
    event.unregister("numba:compile", listener)
    own = [c for c in listener.done if not c[0].startswith("numba.")]
    print(f"fit {total:.2f} s; {len(listener.done)} compilations ({len(own)} of xslide kernels), "
          f"{sum(c[3] for c in listener.done):.2f} s compiling")  # fmt: skip
    print("exclusive inclusive  kernel  argument types")
    for name, args, inclusive, exclusive in sorted(listener.done, key=lambda c: -c[3]):
        print(f"{exclusive:8.2f} {inclusive:8.2f}  {name}  {args[:120]}")


if __name__ == "__main__":
    main(int(float(sys.argv[1])) if len(sys.argv) > 1 else 1_000_000)
