"""Shared pytest configuration: hypothesis profiles, the import path of the test helpers, the
``slow`` and ``needs_numba`` markers and the ``--without-numba`` pass.

``--without-numba`` hides numba (``sys.modules['numba'] = None``) before xslide is first
imported, so the whole library runs its pure-Python/numpy paths; the tests that cannot run
without numba by nature (marked ``needs_numba``: other processes or kernels that import numba
themselves, direct comparisons of the numba backend with numpy) are skipped in that pass.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Make ``import reference`` and ``import data`` work whatever pytest import mode is configured.
sys.path.insert(0, str(Path(__file__).parent))

_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=_SUPPRESSED)
# the pass without numba in CI: few examples (the kernels run as plain Python), the same ones
# every run
settings.register_profile(
    "ci-light",
    max_examples=30,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=_SUPPRESSED,
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--without-numba",
        action="store_true",
        default=False,
        help="hide numba (import numba fails) and skip the tests marked needs_numba",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs_numba: needs numba itself (other processes or kernels, numba vs numpy "
        "comparisons); skipped by --without-numba",
    )
    config.addinivalue_line("markers", "without_numba_only: runs only in the --without-numba pass")
    if config.getoption("--without-numba"):
        if "xslide" in sys.modules:
            raise pytest.UsageError("--without-numba: xslide was imported before numba was hidden")
        sys.modules["numba"] = None  # ``import numba`` now raises ImportError


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    without = config.getoption("--without-numba")
    for item in items:
        if without and item.get_closest_marker("needs_numba"):
            item.add_marker(
                pytest.mark.skip(reason="needs numba; this is the --without-numba pass")
            )
        if not without and item.get_closest_marker("without_numba_only"):
            item.add_marker(pytest.mark.skip(reason="checks the --without-numba pass only"))


@pytest.fixture
def without_numba(request: pytest.FixtureRequest) -> bool:
    """True in the ``--without-numba`` pass."""
    return bool(request.config.getoption("--without-numba"))


@pytest.fixture(scope="session")
def track_table():
    """The track-residual rows the command-line tests read (``data.track_rows``)."""
    from data import track_rows  # imported here: xslide must not load before configure

    return track_rows()


@pytest.fixture(scope="session")
def files(track_table, tmp_path_factory) -> dict[str, str]:
    """Those rows written once as parquet, CSV and ROOT inputs."""
    from data import write_track_files

    return write_track_files(track_table, tmp_path_factory.mktemp("inputs"))
