"""Shared test fixtures: a session-scoped Prefect harness and paths to test fixtures; the ``dials`` marker's rule."""

from __future__ import annotations

import os
import shutil
import tempfile
import asyncio
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# Prefect must not read or write the user's ~/.prefect during tests; set before any prefect import.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="ptyflows-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("MPLBACKEND", "Agg")


REQUIRE_DIALS = "PTYFLOWS_REQUIRE_DIALS"
"""Set to 1 (``.ci/run`` does) to make a ``dials`` test fail, not skip, when DIALS is missing."""


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a ``dials`` test without DIALS, with the reason; fail it instead when ``PTYFLOWS_REQUIRE_DIALS=1``."""
    if item.get_closest_marker("dials") is None or shutil.which("dials.import") is not None:
        return
    reason = "DIALS is not installed ('dials.import' is not on PATH); apt-get install -y dials as root"
    if os.environ.get(REQUIRE_DIALS) == "1":
        pytest.fail(f"{reason} ({REQUIRE_DIALS}=1, as in CI, makes a missing DIALS a failure)", pytrace=False)
    pytest.skip(reason)


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


@pytest.fixture
def artifact_keys(prefect_harness: None) -> Callable[[Iterable[str]], set[str]]:
    """Which of the given artifact keys exist on the harness's API.

    Filtered by the server: a plain listing is one page, and a session's flow tests make more
    artifacts than a page holds.
    """

    def present(keys: Iterable[str]) -> set[str]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        async def read() -> set[str]:
            async with get_client() as client:
                found = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys))))
                return {a.key for a in found if a.key}

        return asyncio.run(read())

    return present
