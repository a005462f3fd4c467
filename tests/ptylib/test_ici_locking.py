"""Every writer of an ICI run root takes its lock: ``ici propose``, ingest, the demo's and study's data."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ptylib.ici.cli import main
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.io.lock import LOCK_NAME, RunRootLock, RunRootLockedError
from test_ici_cli import seed_run_root

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def hold_lock() -> Iterator[Callable[[Path], None]]:
    """Hold a run root's lock in another process until the test ends."""
    holders: list[subprocess.Popen[str]] = []

    def hold(root: Path) -> None:
        code = textwrap.dedent(f"""
            import time
            from ptylib.io.lock import RunRootLock
            with RunRootLock({str(root)!r}, owner="test holder"):
                print("locked", flush=True)
                time.sleep(60)
        """)
        holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


def test_propose_is_refused_while_another_process_holds_the_run_root(
        tmp_path: Path, hold_lock: Callable[[Path], None], capsys: pytest.CaptureFixture[str]) -> None:
    root = seed_run_root(tmp_path / "root")
    before = (root / LEDGER_NAME).read_bytes()
    hold_lock(root)
    assert main(["propose", "--run-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is in use by another run (pid" in err and err.count("\n") == 1
    assert (root / LEDGER_NAME).read_bytes() == before


def test_ingest_is_refused_while_another_process_holds_the_run_root(
        tmp_path: Path, hold_lock: Callable[[Path], None]) -> None:
    from ptylib.ici.runroot.ingest import ingest_run

    root = tmp_path / "root"
    root.mkdir()
    hold_lock(root)
    with pytest.raises(RunRootLockedError):
        ingest_run(root, 0)


def test_lock_is_shared_within_a_process_and_refused_across() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        probe = [sys.executable, "-c", f"from ptylib.io.lock import RunRootLock; RunRootLock({folder!r}).acquire()"]
        with RunRootLock(root, owner="flow"):
            with RunRootLock(root, owner="kernel"):  # the kernels a flow calls take it too
                pass
            # The inner release must not free the outer holding.
            assert subprocess.run(probe, cwd=REPO, capture_output=True, check=False).returncode != 0
        assert subprocess.run(probe, cwd=REPO, capture_output=True, check=False).returncode == 0
        assert "pid" in (root / LOCK_NAME).read_text()


def test_missing_run_root_is_not_created_by_propose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["propose", "--run-root", str(tmp_path / "nowhere")]) == 2
    assert "no ledger here" in capsys.readouterr().err and not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_demo_writes_no_data_into_a_locked_run_root(tmp_path: Path, hold_lock: Callable[[Path], None]) -> None:
    from flows.ici_demo import ici_demo

    root = tmp_path / "demo"
    hold_lock(root)
    with pytest.raises(RunRootLockedError):
        ici_demo.fn(run_root=str(root), n_events=2, indexer="standin", max_iterations=1)
    assert sorted(p.name for p in root.iterdir()) == [LOCK_NAME]
