"""Exceptions and warnings raised by xslide."""


class InvalidWindowSpec(ValueError):
    """A window specification is malformed: unknown dim, negative or non-integer half-width."""


class EmptyGridError(ValueError):
    """No row is left on the grid (after selection and extent): no grid can be built."""


class PerformanceWarning(UserWarning):
    """A slower code path was taken than the one asked for (e.g. numba is missing)."""
