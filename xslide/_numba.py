"""Optional numba: kernels compile with numba when it imports, else the numpy paths are used."""

from __future__ import annotations

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
