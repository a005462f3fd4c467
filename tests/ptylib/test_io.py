"""Atomic writes, run-root locks, manifests and report helpers."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ptylib.io.atomic import atomic_open, atomic_write_json, atomic_write_text
from ptylib.io.lock import RunRootLock, RunRootLockedError
from ptylib.io.manifest import read_manifest, sha256_file, write_manifest
from ptylib.io.report import markdown_table, png_markdown, save_figure


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one\r\ntwo\n")
    atomic_write_text(target, "three\n")
    assert target.read_bytes() == b"three\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_gives_readable_files_and_keeps_modes(tmp_path: Path) -> None:
    new = tmp_path / "new.txt"
    atomic_write_text(new, "x")
    assert new.stat().st_mode & 0o777 == 0o644
    script = tmp_path / "run.sh"
    script.write_text("old")
    script.chmod(0o755)
    atomic_write_text(script, "new")
    assert script.stat().st_mode & 0o777 == 0o755


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "ledger.csv"
    target.write_text("precious\n")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_open(target, "w") as handle:
            handle.write("half a file")
            raise RuntimeError("boom")
    assert target.read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir()] == ["ledger.csv"]


def test_atomic_write_survives_kill_mid_write(tmp_path: Path) -> None:
    """A process killed while writing leaves the previous content intact."""
    target = tmp_path / "state.json"
    atomic_write_json(target, {"v": 1})
    script = textwrap.dedent(f"""
        import os, signal
        from ptylib.io.atomic import atomic_open
        with atomic_open({str(target)!r}, "w") as h:
            h.write('{{"v": 2, "partial": ')
            h.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    assert proc.returncode == -9
    assert json.loads(target.read_text()) == {"v": 1}


def test_lock_refuses_second_holder_with_clear_message(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from ptylib.io.lock import RunRootLock
            with RunRootLock({str(tmp_path)!r}, owner="test-holder"):
                print("locked", flush=True)
                time.sleep(30)
        """)],
        cwd=Path(__file__).parents[2], stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunRootLockedError, match=r"in use by another run \(pid \d+ test-holder\)"):
            RunRootLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunRootLock(tmp_path):  # the dead holder's lock is gone
        pass


def test_manifest_records_parameters_versions_and_input_hashes(tmp_path: Path) -> None:
    data = tmp_path / "input.bin"
    data.write_bytes(b"\x00\x01abc")
    write_manifest(tmp_path / "run", pipeline="unit", parameters={"seed": 7, "path": tmp_path}, inputs=[data])
    manifest = read_manifest(tmp_path / "run")
    assert manifest["pipeline"] == "unit"
    assert manifest["parameters"] == {"seed": 7, "path": str(tmp_path)}
    assert manifest["inputs"] == {str(data): sha256_file(data)}
    assert sha256_file(data) == hashlib.sha256(b"\x00\x01abc").hexdigest()
    assert "numpy" in manifest["versions"]


def test_corrupt_manifest_is_named(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest.json: corrupt manifest JSON at line 1"):
        read_manifest(tmp_path)


def test_markdown_table_and_png_embedding(tmp_path: Path) -> None:
    table = markdown_table([{"metric": "rate", "value": 0.123456}, {"metric": "a|b", "value": None}])
    assert table.splitlines() == ["| metric | value |", "|---|---|", "| rate | 0.1235 |", "| a\\|b | — |"]
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = save_figure(fig, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_markdown(png, "plot").startswith("![plot](data:image/png;base64,iVBORw0KGgo")


def test_ptylib_never_imports_prefect() -> None:
    """Kernels stay Prefect-free: no module under ptylib/ imports prefect (checked on the source)."""
    import ast

    root = Path(__file__).parents[2] / "ptylib"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(root.parent)}: {n}" for n in names if n.split(".")[0] in ("prefect", "tasks", "flows")]
    assert offenders == []
