"""Shared setup for the Python tests: import paths and session-wide generated data."""

import os
import sys

import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
for sub in ("Pipelines/models", "Tests/Reference", "Tests/Python"):
    p = os.path.join(ROOT, sub)
    if p not in sys.path:
        sys.path.insert(0, p)

FIXTURE = os.path.join(ROOT, "Tests", "Fixtures", "hcq-small")


@pytest.fixture(scope="session")
def root():
    return ROOT


@pytest.fixture(scope="session")
def small_test_data(tmp_path_factory):
    """make_test_data.py's small configuration (seed 5)."""
    import make_test_data
    out = tmp_path_factory.mktemp("testdata")
    make_test_data.build(str(out), 5, only="small")
    return out / "small"
