"""xslide: sliding-window group-by regression on integer-binned grids, xarray-native.

Rows are reduced once to sufficient statistics per bin; windows are filters over the grid;
fits are closed-form solves per center.
"""

from importlib import metadata as _metadata

from . import accessor as _accessor  # noqa: F401  (registers Dataset.slidewin)
from .api import bin_stats, combine_stats, fit
from .binning import digitize
from .compat import make_sliding_window_fit
from .errors import InvalidWindowSpec, PerformanceWarning
from .predict import predict

try:
    __version__ = _metadata.version("xslide")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "InvalidWindowSpec",
    "PerformanceWarning",
    "__version__",
    "bin_stats",
    "combine_stats",
    "digitize",
    "fit",
    "make_sliding_window_fit",
    "predict",
]
