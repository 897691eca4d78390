"""Shared pytest configuration: hypothesis profiles and the import path of the test oracle."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# Make ``import reference`` work whatever pytest import mode is configured.
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
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)
