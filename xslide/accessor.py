"""The ``Dataset.slidewin`` accessor: the xarray face of ``xslide.fit`` and ``bin_stats``."""

from __future__ import annotations

import xarray as xr

from . import api
from .result import is_stats_dataset


@xr.register_dataset_accessor("slidewin")
class SlideWinAccessor:
    """``ds.slidewin.stats(...)`` and ``ds.slidewin.fit(...)`` on rows or on statistics.

    Holds no state but the Dataset: xarray creates a new accessor for every new object.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def stats(self, dims, targets, predictors=(), **kwargs) -> xr.Dataset:
        """Per-bin sufficient statistics of the rows; see ``xslide.bin_stats``."""
        if is_stats_dataset(self._ds):
            raise TypeError("this Dataset already holds statistics; call .slidewin.fit(window=...)")
        return api.bin_stats(self._ds, dims, targets, predictors, **kwargs)

    def fit(self, dims=None, targets=None, predictors=(), window=None, **kwargs) -> xr.Dataset:
        """Sliding-window fit of the rows, or a refit of statistics; see ``xslide.fit``."""
        return api.fit(self._ds, dims, targets, predictors, window, **kwargs)

    def predict(self, rows, **kwargs):
        """Evaluate this fit's local models at ``rows``; see ``xslide.predict``."""
        from .predict import predict

        return predict(self._ds, rows, **kwargs)

    def plot_map(self, var: str = "coef", target=None, term=None, ax=None, **sel):
        """2-D map of a fit variable; see ``xslide.plots.plot_map``."""
        from .plots import plot_map

        return plot_map(self._ds, var, target, term, ax, **sel)

    def plot_pulls(self, rows, targets=None, method: str = "nearest", bins: int = 60, ax=None):
        """Pull histogram of ``rows`` against this fit; see ``xslide.plots.plot_pulls``."""
        from .plots import plot_pulls

        return plot_pulls(self._ds, rows, targets, method, bins, ax)
