"""The ``dials`` marker's rule (tests/conftest.py): skipped with the reason without DIALS, a failure in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run_dials_tests_without_dials(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The real ``dials`` tests of one module, with a PATH on which ``dials.import`` cannot be found."""
    bare_path = os.pathsep.join([str(Path(sys.executable).parent), str(tmp_path)])
    inherited = {k: v for k, v in os.environ.items() if k != "PTYFLOWS_REQUIRE_DIALS"}
    environment = {**inherited, "PATH": bare_path, "PYTHONPATH": str(REPO), **env}
    return subprocess.run([sys.executable, "-m", "pytest", "tests/ptylib/test_ici_dials.py", "-m", "dials", "-q",
                           "-rs", "-p", "no:cacheprovider"], cwd=REPO, env=environment, capture_output=True,
                          text=True, timeout=300, check=False)


def test_missing_dials_skips_with_the_reason_under_plain_pytest(tmp_path: Path) -> None:
    done = _run_dials_tests_without_dials(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DIALS is not installed ('dials.import' is not on PATH)" in done.stdout
    assert "skipped" in done.stdout and "failed" not in done.stdout and "error" not in done.stdout


def test_missing_dials_fails_when_ci_requires_it(tmp_path: Path) -> None:
    done = _run_dials_tests_without_dials(tmp_path, PTYFLOWS_REQUIRE_DIALS="1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PTYFLOWS_REQUIRE_DIALS=1, as in CI, makes a missing DIALS a failure" in done.stdout
    assert "skipped" not in done.stdout
    assert "export PTYFLOWS_REQUIRE_DIALS=1" in (REPO / ".ci" / "run").read_text()


def test_ci_installs_dials_without_recommended_packages() -> None:
    script = (REPO / ".ci" / "in-venv").read_text()
    installs = [line for line in script.splitlines() if "apt-get install" in line]
    assert installs and all("--no-install-recommends" in line for line in installs), installs
