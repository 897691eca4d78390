"""xslide: sliding-window group-by regression on integer-binned grids, xarray-native.

Rows are reduced once to sufficient statistics per bin; windows are filters over the grid;
fits are closed-form solves per center.

Public API: the names in ``__all__`` below, the ``Dataset.slidewin`` accessor, and three
documented submodules: ``xslide.io`` (reading rows and writing fits in the command line's
formats), ``xslide.expressions`` (the restricted expression language of ``--selection``) and
``xslide.plots``. Every other submodule is internal and may change without notice; in the
order the data flows through them:

- ``options``: every keyword checked once into a frozen ``FitOptions``;
- ``sources``: rows in memory, streamed or on dask -> ``stats.BinStats`` (per-bin sums on a
  ``grid.Grid``, the design columns from ``design``/``formula``);
- ``pipeline``: ``window`` (windowed sums; ``chunked`` with dask) -> ``solve`` -> ``robust``
  (n_sigma_cut) -> ``fitters`` (glm/rlm/callables) -> ``rows`` (median), raw rows reached
  through the bin index only, in parallel via ``parallel``;
- ``result``: the Dataset and the seed DataFrame; ``api``/``compat``/``accessor``/``cli``
  are the faces; ``rolling`` shows a trailing-window fit as statsmodels' RollingOLS results.
"""

from importlib import metadata as _metadata

from . import accessor as _accessor  # noqa: F401  (registers Dataset.slidewin)
from .api import bin_stats, combine_stats, fit
from .binning import digitize
from .compat import make_sliding_window_fit
from .errors import (
    EmptyGridError,
    FitFailedWarning,
    InvalidInputTypeError,
    InvalidWindowSpec,
    MissingColumnError,
    PerformanceWarning,
    TooLargeError,
)
from .predict import predict
from .rolling import rolling_ols_view

try:
    __version__ = _metadata.version("xslide")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "EmptyGridError",
    "FitFailedWarning",
    "InvalidInputTypeError",
    "InvalidWindowSpec",
    "MissingColumnError",
    "PerformanceWarning",
    "TooLargeError",
    "__version__",
    "bin_stats",
    "combine_stats",
    "digitize",
    "fit",
    "make_sliding_window_fit",
    "predict",
    "rolling_ols_view",
]
