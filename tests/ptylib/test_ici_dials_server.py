"""The DIALS server: a private socket folder, a client that checks who answers, and a server that ends on time."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptylib.ici import jobs
from ptylib.ici.backends import dials_worker
from ptylib.ici.backends.dials_worker import (
    FLOW_FD_VARIABLE,
    ForeignServerError,
    _connect,
    delegate,
    server_dir,
    server_socket_path,
)

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(dials_worker.__file__).resolve()


@pytest.fixture
def temp_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short temporary folder standing in for the temp dir (socket paths hold at most 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="ptf-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_job_variables_are_the_servers() -> None:
    assert jobs.FLOW_FD_VARIABLE == FLOW_FD_VARIABLE
    assert jobs.JOB_TOKEN_VARIABLE.startswith(dials_worker.JOB_VARIABLE_PREFIX)


def test_socket_lies_in_a_private_folder(temp_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = server_dir()
    assert folder == temp_dir / f"ptyflows-{os.getuid()}"
    info = folder.lstat()
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    path = server_socket_path()
    assert path.parent == folder and path.name.startswith("dials-") and len(str(path)) < 108
    # A runtime folder private to the user is preferred; one open to others is not used.
    runtime = temp_dir / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert server_dir() == runtime / "ptyflows"
    runtime.chmod(0o755)
    assert server_dir() == folder
    # Unset or relative: never a folder relative to the working directory (which may well be private).
    monkeypatch.chdir(runtime)
    runtime.chmod(0o700)
    for value in ("", "."):
        monkeypatch.setenv("XDG_RUNTIME_DIR", value)
        assert server_dir() == folder


@pytest.mark.parametrize("make", ["open", "link"])
def test_a_folder_others_can_use_is_refused(temp_dir: Path, make: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder = temp_dir / f"ptyflows-{os.getuid()}"
    if make == "open":
        folder.mkdir(mode=0o700)
        folder.chmod(0o777)  # e.g. made first by someone else
    else:
        (temp_dir / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(temp_dir / "elsewhere")
    with pytest.raises(PermissionError, match="is not a folder private to uid"):
        server_dir()
    # The worker then indexes in its own process, and says why.
    assert delegate(["--help"]) is None
    assert "dials_server_refused" in capsys.readouterr().err


def test_client_checks_the_servers_uid_before_sending(temp_dir: Path) -> None:
    path = temp_dir / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    received: list[bytes] = []

    def accept() -> None:
        connection, _ = listener.accept()
        with connection:
            received.append(b"".join(iter(lambda: connection.recv(4096), b"")))

    thread = threading.Thread(target=accept)
    thread.start()
    try:
        with pytest.raises(ForeignServerError, match=f"served by pid {os.getpid()} of uid {os.getuid()}"):
            _connect(path, expected_uid=os.getuid() + 1)
        thread.join(timeout=5)
        assert received == [b""]  # nothing was sent before the check
    finally:
        listener.close()
    assert _connect(temp_dir / "nobody.sock") is None


def _dials_python() -> str:
    from ptylib.ici.backends.dials import dials_interpreter

    return dials_interpreter()[0]


def _start_server(env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([_dials_python(), "-I", str(WORKER), "--serve", *extra], env=env, cwd="/",
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = Path(env["TMPDIR"]) / f"ptyflows-{os.getuid()}"
    deadline = time.monotonic() + 60
    while not list(folder.glob("dials-*.sock")):
        assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
        assert time.monotonic() < deadline, "the server did not start listening"
        time.sleep(0.05)
    return server


@pytest.mark.dials
@pytest.mark.slow
def test_server_ends_with_the_last_flow_when_idle_and_on_stop(temp_dir: Path) -> None:
    env = {**os.environ, "TMPDIR": str(temp_dir)}
    sockets = temp_dir / f"ptyflows-{os.getuid()}"
    # 1. A flow (here: this test holding the pipe's write end) sends one still; the server outlives
    #    the still while the flow lives and ends once the flow's pipe closes.
    server = _start_server(env)
    read_end, write_end = os.pipe()
    try:
        client = subprocess.run(
            [_dials_python(), "-I", str(WORKER), "--image", str(temp_dir / "missing_00001.cbf"),
             "--det-shift-mm=0,0", "--unit-cell", "79,79,38,90,90,90", "--space-group", "P43212",
             "--stream", "stream_000000.stream", "--filename", "x.h5", "--event", "//0"],
            cwd=temp_dir, env={**env, FLOW_FD_VARIABLE: str(read_end)}, pass_fds=(read_end,),
            capture_output=True, text=True, timeout=120, check=False)
        assert client.returncode == dials_worker.EXIT_ERROR and "dials_unreadable_image" in client.stderr
        time.sleep(1.5)
        assert server.poll() is None, "the server ended while its flow was alive"
    finally:
        os.close(read_end)
        os.close(write_end)
    assert server.wait(timeout=15) == 0
    assert not list(sockets.glob("*.sock"))
    # 2. ptyflows ici dials-server stop.
    server = _start_server(env)
    stop = [sys.executable, "-m", "ptylib.ici.cli", "dials-server", "stop"]
    done = subprocess.run(stop, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and f"stopped the DIALS server pid {server.pid}" in done.stdout, done
    assert server.wait(timeout=15) == 0
    done = subprocess.run(stop, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "no DIALS server is running"
    # 3. Idle: no still at all.
    server = _start_server(env, "--idle-exit-s", "1")
    assert server.wait(timeout=60) == 0
    assert not list(sockets.glob("*.sock"))
