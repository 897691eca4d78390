"""Optional numba: kernels compile with numba when it imports, else the numpy paths are used."""

from __future__ import annotations

try:  # numba is a runtime dependency, but a broken or missing install must not break import
    import numba

    HAVE_NUMBA = True
    njit = numba.njit
    prange = numba.prange
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
