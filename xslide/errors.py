"""Exceptions and warnings raised by xslide."""


class InvalidWindowSpec(ValueError):
    """A window specification is malformed: unknown dim, negative or non-integer half-width."""


class MissingColumnError(KeyError, ValueError):
    """A column named by an argument is not in the data (a KeyError and, for the seed API's
    callers, a ValueError)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidInputTypeError(TypeError, ValueError):
    """An argument or a column has a type xslide cannot use (a TypeError and a ValueError)."""


class EmptyGridError(ValueError):
    """No row is left on the grid (after selection and extent): no grid can be built."""


class TooLargeError(ValueError):
    """An array would exceed ``max_memory`` (or the grid ``max_bins``): refused before it is
    allocated, naming its shape, its bytes and the remedies."""


class PerformanceWarning(UserWarning):
    """A slower code path was taken than the one asked for (e.g. numba is missing)."""


class FitFailedWarning(UserWarning):
    """Some windows' raw-row fits (glm, rlm, a callable) raised: flagged ``fit_failed``."""
