"""Shared test fixtures: a session-scoped Prefect harness and paths to test fixtures."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# Prefect must not read or write the user's ~/.prefect during tests; set before any prefect import.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ptyflows-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A real, temporary Prefect API (SQLite database + ephemeral server) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The directory holding recorded test data and stand-in executables."""
    return FIXTURES
