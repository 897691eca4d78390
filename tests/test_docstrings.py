"""Every public function's Examples section runs as written (doctest)."""

from __future__ import annotations

import doctest
import importlib

import pytest

PUBLIC = [
    ("api", "fit"),
    ("api", "bin_stats"),
    ("api", "combine_stats"),
    ("compat", "make_sliding_window_fit"),
    ("o2dpg", "make_sliding_window_fit"),
    ("o2dpg", "kernel_array"),
    ("predict", "predict"),
    ("rolling", "rolling_ols_view"),
    ("predict", "position_column"),
    ("fit_tables", "layout"),
    ("fit_tables", "fit_from_table"),
    ("binning", "digitize"),
    ("io", "read_rows"),
    ("plots", "plot_map"),
    ("plots", "plot_pulls"),
    ("accessor", "SlideWinAccessor.stats"),
    ("accessor", "SlideWinAccessor.fit"),
    ("accessor", "SlideWinAccessor.predict"),
    ("accessor", "SlideWinAccessor.plot_map"),
    ("accessor", "SlideWinAccessor.plot_pulls"),
]


@pytest.mark.parametrize(("module", "name"), PUBLIC)
def test_public_function_examples_run_as_written(module, name):
    func = importlib.import_module(f"xslide.{module}")
    for part in name.split("."):
        func = getattr(func, part)
    assert "Examples" in func.__doc__ and "--------" in func.__doc__
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(func, name, globs={}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted >= 3
    assert result.failed == 0
