"""Optional numba: kernels compile with numba when it imports, else the numpy paths are used."""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

try:  # numba is a runtime dependency, but a broken or missing install must not break import
    import numba
    from numba.core import types as _types

    HAVE_NUMBA = True
    prange = numba.prange

    def njit(*args, **kwargs):
        """``numba.njit`` whose kernels get one specialisation per plain argument types.

        numba types a constant argument of a call between kernels as a literal
        (``_select(values, 0, k)`` as ``Literal[int](0)``) and compiles the callee again for
        it: a second or third copy of the same machine code, seconds of a cold start. The
        kernels here never dispatch on literal values, so the callee is compiled for the
        plain type (``int64``) and every call site shares it.
        """
        if args and callable(args[0]):
            return _plain_calls(numba.njit(args[0], **kwargs))
        return lambda func: _plain_calls(numba.njit(*args, **kwargs)(func))

    def _plain_calls(dispatcher):
        """Make calls from other kernels compile ``dispatcher`` for unliteral types."""
        resolve = dispatcher.get_call_template

        def get_call_template(args, kws):
            args = tuple(_types.unliteral(a) for a in args)
            return resolve(args, {k: _types.unliteral(v) for k, v in kws.items()})

        dispatcher.get_call_template = get_call_template
        return dispatcher

except ImportError:  # pragma: no cover - exercised by simulating the missing module
    numba = None
    HAVE_NUMBA = False

    def njit(*args, **kwargs):
        """Stand-in decorator: returns the plain Python function."""
        if args and callable(args[0]):
            return args[0]
        return lambda func: func

    prange = range


def python(func):
    """The plain Python function of a numba kernel (itself when numba is missing)."""
    return getattr(func, "py_func", func)


def numba_available() -> bool:
    """True when numba kernels can be used (looked up at call time so tests can patch it)."""
    return HAVE_NUMBA


def num_threads() -> int:
    """Threads numba will use for parallel kernels (1 without numba)."""
    return numba.get_num_threads() if HAVE_NUMBA else 1


# Python threads that run the kernels' chunks (numba releases the GIL in ``nogil`` kernels).
# A plain thread pool instead of numba's ``parallel=True``: a ``prange`` kernel compiles its
# whole body a second time inside numba's generated parallel function (seconds per kernel on
# a cold cache), and the pool serves callers from any thread (dask's threads included).
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = max(1, (os.cpu_count() or 1) - 1)
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="xslide")
        return _POOL


def run_chunks(chunk: Callable, n_chunks: int, *args) -> None:
    """Call the kernel ``chunk(c, n_chunks, *args)`` for every c in ``range(n_chunks)``, on
    ``num_threads()`` threads (the caller's among them).

    Chunks are taken in turn by whichever thread is free; each chunk must write only its own
    part of the outputs, so the result does not depend on the threads or their order. When
    a chunk fails (an error, Ctrl-C in the caller's), no thread takes a further chunk.
    """
    threads = min(num_threads(), n_chunks)
    if threads <= 1:
        for c in range(n_chunks):
            chunk(c, n_chunks, *args)
        return
    turns = itertools.count()  # ``next`` on a count is atomic under the GIL
    stop = threading.Event()

    def work() -> None:
        for c in turns:
            if c >= n_chunks or stop.is_set():
                return
            try:
                chunk(c, n_chunks, *args)
            except BaseException:
                stop.set()
                raise

    helpers = [_pool().submit(work) for _ in range(threads - 1)]
    try:
        work()
    finally:
        for future in helpers:
            future.result()
