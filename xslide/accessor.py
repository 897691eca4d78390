"""The ``Dataset.slidewin`` accessor: the xarray face of ``xslide.fit`` and ``bin_stats``."""

from __future__ import annotations

import xarray as xr

from . import api
from .errors import InvalidInputTypeError
from .result import is_stats_dataset


@xr.register_dataset_accessor("slidewin")
class SlideWinAccessor:
    """``ds.slidewin.stats(...)`` and ``ds.slidewin.fit(...)`` on rows or on statistics.

    Holds no state but the Dataset: xarray creates a new accessor for every new object.
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def stats(self, dims, targets, predictors=(), **kwargs) -> xr.Dataset:
        """Per-bin sufficient statistics of the rows; see ``xslide.bin_stats``.

        Examples
        --------
        >>> import numpy as np, pandas as pd, xslide
        >>> rng = np.random.default_rng(0)
        >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 500), "y": rng.normal(size=500)})
        >>> ds = df.to_xarray()  # a Dataset of rows along 'index'
        >>> stats = ds.slidewin.stats(["rBin"], ["y"])
        >>> int(stats["count"].sum())
        500
        """
        if is_stats_dataset(self._ds):
            raise InvalidInputTypeError(
                "this Dataset already holds statistics; call .slidewin.fit(window=...)"
            )
        return api.bin_stats(self._ds, dims, targets, predictors, **kwargs)

    def fit(self, dims=None, targets=None, predictors=(), window=None, **kwargs) -> xr.Dataset:
        """Sliding-window fit of the rows, or a refit of statistics; see ``xslide.fit``.

        Examples
        --------
        >>> import numpy as np, pandas as pd, xslide
        >>> rng = np.random.default_rng(0)
        >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 500), "y": rng.normal(size=500)})
        >>> ds = df.to_xarray()  # a Dataset of rows along 'index'
        >>> fit = ds.slidewin.fit(["rBin"], ["y"], window={"rBin": 1})
        >>> stats_fit = ds.slidewin.stats(["rBin"], ["y"]).slidewin.fit(window={"rBin": 1})
        >>> bool(np.allclose(fit.coef, stats_fit.coef))
        True
        """
        return api.fit(self._ds, dims, targets, predictors, window, **kwargs)

    def predict(self, rows, **kwargs):
        """Evaluate this fit's local models at ``rows``; see ``xslide.predict``.

        Examples
        --------
        >>> import numpy as np, pandas as pd, xslide
        >>> df = pd.DataFrame({"rBin": np.repeat(np.arange(3), 20),
        ...                    "y": np.repeat([1.0, 2.0, 3.0], 20)})
        >>> fit = df.to_xarray().slidewin.fit(["rBin"], ["y"])
        >>> fit.slidewin.predict(df.iloc[[0, 20, 40]])["y_pred"].tolist()
        [1.0, 2.0, 3.0]
        """
        from .predict import predict

        return predict(self._ds, rows, **kwargs)

    def plot_map(self, var: str = "coef", target=None, term=None, ax=None, **sel):
        """Map (two dims left) or profile (one dim left) of a fit variable, on physical axes
        with units, unfitted bins hatched; see ``xslide.plots.plot_map``.

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np, pandas as pd, xslide
        >>> df = pd.DataFrame({"a": np.repeat(np.arange(3), 8), "b": np.tile(np.arange(2), 12),
        ...                    "y": np.arange(24.0)})
        >>> fit = df.to_xarray().slidewin.fit(["a", "b"], ["y"])
        >>> ax = fit.slidewin.plot_map("mean")
        >>> type(ax).__name__
        'Axes'
        >>> fit.slidewin.plot_map("mean", b=1).get_xlabel()  # one dim left: a profile
        'a (bin number)'
        """
        from .plots import plot_map

        return plot_map(self._ds, var, target, term, ax, **sel)

    def plot_pulls(self, rows, targets=None, method: str = "nearest", bins: int = 60, ax=None):
        """Pull histogram of ``rows`` against this fit; see ``xslide.plots.plot_pulls``
        (without a trend, pulls of a window wider than one bin are narrower than 1: the local
        rmse includes the window's gradient, and the plot says so).

        Examples
        --------
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np, pandas as pd, xslide
        >>> rng = np.random.default_rng(1)
        >>> df = pd.DataFrame({"a": rng.integers(0, 4, 400), "y": rng.normal(size=400)})
        >>> ax = df.to_xarray().slidewin.fit(["a"], ["y"]).slidewin.plot_pulls(df)
        >>> sorted(ax.pulls)
        ['y']
        """
        from .plots import plot_pulls

        return plot_pulls(self._ds, rows, targets, method, bins, ax)
