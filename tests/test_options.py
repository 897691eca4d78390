"""The options layer: one builder, one validator per option, the only home of the choices."""

from __future__ import annotations

import argparse
import inspect

import numpy as np
import pandas as pd
import pytest

import xslide
from xslide import cli, options
from xslide.errors import InvalidWindowSpec
from xslide.options import DEFAULTS, Input, build_options, per_dim


def test_the_public_signature_defaults_are_the_options_defaults():
    signature = inspect.signature(xslide.fit).parameters
    for name, default in DEFAULTS.items():
        assert signature[name].default == default, name
    seed = inspect.signature(xslide.make_sliding_window_fit).parameters
    renamed = {"fit_formula": "formula", "weights_column": "weights", "min_entries": "min_entries",
               "backend": "backend", "fitter": "fitter", "selection": "selection",
               "binning_formulas": "binning_formulas", "partition_strategy": "partition_strategy",
               "aggregation_functions": "aggregation"}  # fmt: skip
    for seed_name, name in renamed.items():
        assert seed[seed_name].default == DEFAULTS[name], seed_name


def test_every_keyword_of_fit_reaches_the_builder():
    fit_keywords = [p for p in inspect.signature(xslide.fit).parameters if p != "data"]
    assert set(fit_keywords) - {"fitter_options"} == set(DEFAULTS)


def test_unknown_keywords_are_refused_by_name():
    df = pd.DataFrame({"a": [0, 1], "y": [1.0, 2.0]})
    with pytest.raises(TypeError, match="windoww"):
        xslide.fit(df, ["a"], ["y"], windoww={"a": 1})
    with pytest.raises(TypeError, match="windoww"):
        xslide.make_sliding_window_fit(df, ["a"], {}, ["y"], [], windoww=1)
    with pytest.raises(TypeError, match="seed names"):
        xslide.make_sliding_window_fit(df, ["a"], {}, ["y"], [], dims=["a"])


def test_the_command_line_offers_exactly_the_options_choices():
    parser = cli.build_parser()
    fit_parser = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ).choices["fit"]
    choices = {a.dest: tuple(a.choices) for a in fit_parser._actions if a.choices}
    assert choices["fitter"] == options.FITTERS
    assert choices["kernel"] == options.KERNELS
    assert choices["backend"] == options.BACKENDS
    assert choices["centers"] == options.CENTERS


def test_per_dim_takes_one_value_for_all_dims_or_a_dict_with_defaults():
    def check(value, label):
        return value

    assert per_dim(2, ["a", "b"], "w", check) == {"a": 2, "b": 2}
    assert per_dim({"b": 1}, ["a", "b"], "w", check, default=lambda d: 0) == {"a": 0, "b": 1}
    assert per_dim({"b": 1}, ["a", "b"], "w", check) == {"b": 1}
    with pytest.raises(ValueError, match=r"w names \['c'\], which are not bin dims"):
        per_dim({"c": 1}, ["a", "b"], "w", check)
    with pytest.raises(InvalidWindowSpec, match="must be a dict"):
        per_dim(3, ["a"], "w", check, scalar=False, error=InvalidWindowSpec)


def test_options_are_built_once_frozen_and_canonical():
    built = build_options(
        {"dims": ["a", "b"], "targets": ["y"], "window": {"a": 1}, "boundary": {"b": "symmetric"},
         "kernel": "gaussian"},
        Input("memory", ("a", "b", "y")),
    )  # fmt: skip
    assert dict(built.window) == {"a": 1, "b": 0}
    assert dict(built.boundary) == {"a": "truncate", "b": "shrink"}
    assert built.kernel.name == "gaussian" and built.kernel.widths == (1.0, 1.0)
    assert built.read.dims == ("a", "b") and built.fitter == "ols"
    with pytest.raises(AttributeError):
        built.min_entries = 3  # frozen


def test_streams_and_statistics_default_to_the_aggregates_that_need_no_rows():
    keywords = {"dims": ["a"], "targets": ["y"]}
    for kind in ("stream", "dask"):
        assert build_options(keywords, Input(kind)).aggregation == {"y": options.REDUCED_AGGREGATES}
    memory = build_options(keywords, Input("memory", ("a", "y")))
    assert memory.aggregation == {"y": options.DEFAULT_AGGREGATES}
    stats = build_options({}, Input("stats", None, ("a",), ("y",), "w"))
    assert stats.fitter == "wls" and stats.aggregation == {"y": options.REDUCED_AGGREGATES}


@pytest.mark.parametrize(
    ("keywords", "error", "match"),
    [
        ({"window": {"a": -1}}, InvalidWindowSpec, ">= 0"),
        ({"boundary": "bouncy"}, ValueError, "unknown boundary 'bouncy'"),
        ({"kernel": "gaussian", "kernel_width": 0}, ValueError, "kernel_width"),
        ({"kernel_width": 1.0}, ValueError, "kernel_width applies"),
        ({"extent": {"a": (5, 1)}}, ValueError, "hi < lo"),
        ({"chunks": {"a": 0}}, ValueError, "chunks"),
        ({"max_iter": 2}, TypeError, "n_sigma_cut"),
        ({"n_sigma_cut": float("nan")}, ValueError, "n_sigma_cut"),
        ({"min_entries": 0}, ValueError, "min_entries"),
        ({"trend": 3}, ValueError, "trend"),
        ({"centers": "all"}, ValueError, "centers"),
        ({"fitter": "wls"}, ValueError, "needs weights"),
        ({"partition_strategy": {"n_jobs": 0}}, ValueError, "n_jobs"),
        ({"aggregation": ["mode"]}, ValueError, "'mode'"),
    ],
)
def test_each_bad_option_is_refused_before_any_row_is_read(keywords, error, match):
    with pytest.raises(error, match=match):
        build_options({"dims": ["a"], "targets": ["y"], **keywords}, Input("stream"))


def test_a_kernel_array_of_the_wrong_shape_is_refused():
    df = pd.DataFrame({"a": [0, 1, 2], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="kernel array must have shape"):
        xslide.fit(df, ["a"], ["y"], window={"a": 1}, kernel=np.ones(5))
