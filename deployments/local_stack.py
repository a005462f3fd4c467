"""The local Prefect stack of ``ptyflows ui``: server, work pool, worker, inbox watcher and served deployments.

``up`` starts each part as a background process in its own session, logs under ``<state>/logs`` and
records ``<state>/stack.json`` (pids, command lines, addresses) as it goes; ``down`` stops exactly the
recorded processes and their descendants (flow runs started by them), checking each pid's command line
first so that a reused pid is never touched. The server binds to 127.0.0.1 unless told otherwise.
No Prefect import here: the stack talks to the server over HTTP and runs Prefect's own commands.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ptylib.io.atomic import atomic_write_json

STATE_NAME = "stack.json"
WORK_POOL = "ptyflows-process"


def default_state_dir() -> Path:
    """``$PTYFLOWS_UI_STATE``, else ``$XDG_STATE_HOME/ptyflows/ui`` (``~/.local/state/ptyflows/ui``)."""
    if os.environ.get("PTYFLOWS_UI_STATE"):
        return Path(os.environ["PTYFLOWS_UI_STATE"])
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "ptyflows" / "ui"


@dataclass(frozen=True)
class StackOptions:
    """What ``ptyflows ui up`` starts."""

    state_dir: Path
    """Folder of the stack's record, logs and the server's database (its PREFECT_HOME)."""
    host: str = "127.0.0.1"
    """Address the server binds to; anything but loopback exposes an unauthenticated API."""
    port: int = 4200
    """TCP port of the server (API and UI)."""
    inbox: Path | None = None
    """Folder the watcher watches (None: no watcher)."""
    inbox_runs_dir: Path = Path("runs/inbox")
    """Folder under which each inbox file's run root goes."""
    ici_inbox_parameters: Path | None = None
    """JSON file of ici_loop parameters for inbox HDF5 files (indexer, geometry, proposer)."""
    diffuse_inbox_parameters: Path | None = None
    """JSON file of diffuse_phase3 parameters for inbox CBF stills (the sample's cell and space group)."""
    schedules_paused: bool = False
    """Register the deployments' schedules paused (resume them in the UI)."""
    startup_timeout_s: float = 180.0
    """Seconds to wait for the server's health check."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    status = Path(f"/proc/{pid}/stat")
    return not (status.is_file() and status.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree (children first), from ``/proc``."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def started_by(prefect_home: Path) -> list[int]:
    """Pids of the processes whose environment carries ``PREFECT_HOME=<prefect_home>``: the stack's parts and
    everything they started, also processes re-parented to init when their parent died (a cancelled flow
    run's helper, say)."""
    marker = f"PREFECT_HOME={prefect_home}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host if host != "0.0.0.0" else "127.0.0.1", port)) != 0


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_stack(state_dir: Path) -> dict | None:
    """The recorded stack, or None when ``up`` never ran (or ``down`` cleared it)."""
    path = state_dir / STATE_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def server_healthy(api_url: str, timeout_s: float = 2.0) -> bool:
    """True when ``<api_url>/health`` answers."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            return response.status == 200
    except OSError:
        return False


def _reap(pid: int) -> None:
    # A part started by this very process (up and down in one process, as in tests) is a zombie until waited for.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class LocalStack:
    """Start and stop the recorded processes of one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.logs = self.state_dir / "logs"
        self.prefect_home = self.state_dir / "prefect-home"

    def _record(self, stack: Mapping) -> None:
        atomic_write_json(self.state_dir / STATE_NAME, stack)

    def child_env(self, api_url: str) -> dict[str, str]:
        """Environment of every part: the stack's own PREFECT_HOME and API, analytics off."""
        return {**os.environ, "PREFECT_HOME": str(self.prefect_home), "PREFECT_API_URL": api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"}

    def _start(self, stack: dict, name: str, argv: Sequence[str], env: Mapping[str, str]) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=dict(env), start_new_session=True)
        stack["processes"].append({"name": name, "pid": process.pid, "cmdline": _cmdline(process.pid) or " ".join(argv),
                                   "log": str(log)})
        self._record(stack)

    def up(self, options: StackOptions) -> dict:
        """Start server, work pool, worker, watcher and served deployments; return the record."""
        existing = read_stack(self.state_dir)
        if existing and any(_alive(p["pid"]) for p in existing["processes"]):
            raise RuntimeError(f"a stack recorded in {self.state_dir / STATE_NAME} is running: "
                               "'ptyflows ui status' shows it, 'ptyflows ui down' stops it")
        if not port_free(options.host, options.port):
            raise RuntimeError(f"port {options.port} on {options.host} is in use: pick another with --port")
        self.logs.mkdir(parents=True, exist_ok=True)
        url = f"http://{options.host if options.host != '0.0.0.0' else '127.0.0.1'}:{options.port}"
        stack = {"ui_url": url, "api_url": f"{url}/api", "host": options.host, "port": options.port,
                 "state_dir": str(self.state_dir), "started": time.time(), "processes": []}
        env = self.child_env(stack["api_url"])
        python = sys.executable
        try:
            self._start(stack, "server", [python, "-m", "prefect", "server", "start", "--host", options.host,
                                          "--port", str(options.port)], env)
            self._wait_healthy(stack, options.startup_timeout_s)
            subprocess.run([python, "-m", "prefect", "work-pool", "create", WORK_POOL, "--type", "process",
                            "--overwrite"], env=env, check=True, capture_output=True, timeout=120)
            self._start(stack, "worker", [python, "-m", "prefect", "worker", "start", "--pool", WORK_POOL], env)
            serve = [python, "-m", "deployments.serve_all"]
            if options.schedules_paused:
                serve.append("--schedules-paused")
            if options.ici_inbox_parameters is not None:
                serve += ["--ici-inbox-parameters", str(options.ici_inbox_parameters.resolve())]
            if options.diffuse_inbox_parameters is not None:
                serve += ["--diffuse-inbox-parameters", str(options.diffuse_inbox_parameters.resolve())]
            self._start(stack, "deployments", serve, env)
            if options.inbox is not None:
                options.inbox.mkdir(parents=True, exist_ok=True)
                self._start(stack, "inbox-watcher", [python, "-m", "deployments.inbox_watcher", "--inbox",
                                                     str(options.inbox.resolve()), "--runs-dir",
                                                     str(options.inbox_runs_dir.resolve())], env)
        except BaseException:
            self.down()
            raise
        return stack

    def _wait_healthy(self, stack: Mapping, timeout_s: float) -> None:
        server = stack["processes"][0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if server_healthy(stack["api_url"]):
                return
            if not _alive(server["pid"]):
                raise RuntimeError(f"the Prefect server exited during start-up; see {server['log']}")
            time.sleep(0.5)
        raise RuntimeError(f"the Prefect server did not answer within {timeout_s:g} s; see {server['log']}")

    def down(self, grace_s: float = 15.0) -> list[str]:
        """Stop every recorded process and its descendants (TERM, then KILL after ``grace_s``); return names."""
        stack = read_stack(self.state_dir)
        if not stack:
            return []
        stopped, targets = [], []
        for record in reversed(stack["processes"]):
            pid = record["pid"]
            if _alive(pid) and _cmdline(pid) == record["cmdline"]:  # the pid still is the process we started
                targets += [pid, *descendants(pid)]
                stopped.append(record["name"])
        targets += [p for p in started_by(self.prefect_home) if p not in targets and p != os.getpid()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in targets:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 5.0)
            while time.monotonic() < deadline and any(_alive(p) for p in targets):
                time.sleep(0.2)
            targets = [p for p in targets if _alive(p)]
            if not targets:
                break
        for record in stack["processes"]:
            _reap(record["pid"])
        (self.state_dir / STATE_NAME).unlink(missing_ok=True)
        return stopped

    def status(self) -> list[dict]:
        """Each recorded process with ``alive`` (and the server's health under ``healthy``)."""
        stack = read_stack(self.state_dir) or {"processes": []}
        rows = [{**p, "alive": _alive(p["pid"]) and _cmdline(p["pid"]) == p["cmdline"]} for p in stack["processes"]]
        for row in rows:
            if row["name"] == "server":
                row["healthy"] = server_healthy(stack["api_url"])
        return rows
