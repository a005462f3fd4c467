"""``ptyflows ui up|status|down``: the local Prefect server with the UI, a worker, the inbox watcher and every deployment.

``up`` returns once the server answers; the worker, the served deployments and the watcher keep
starting in the background (their logs are under the state folder). The project's other commands
find a running stack through its record and talk to its server without any change to Prefect's
global configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def add_ui_arguments(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ui`` command group to a subparsers object."""
    from deployments.local_stack import default_state_dir

    ui = subparsers.add_parser("ui", help="local Prefect server + UI, worker, inbox watcher, deployments",
                               description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = ui.add_subparsers(dest="ui_command", required=True, metavar="COMMAND")
    state = {"default": default_state_dir(), "type": Path,
             "help": "folder of the stack's record, logs and database (default %(default)s; env PTYFLOWS_UI_STATE)"}
    up = commands.add_parser("up", help="start everything in the background and print the UI's address")
    up.add_argument("--state-dir", **state)
    up.add_argument("--host", default="127.0.0.1",
                    help="address the server binds to (default 127.0.0.1; others expose an API without login)")
    up.add_argument("--port", type=int, default=4200, help="server port (default 4200)")
    up.add_argument("--inbox", type=Path, default=Path("inbox"),
                    help="folder the watcher watches for complete HDF5/CBF files (default ./inbox)")
    up.add_argument("--no-inbox", action="store_true", help="start no inbox watcher")
    up.add_argument("--inbox-runs-dir", type=Path, default=Path("runs/inbox"),
                    help="folder of the inbox files' run roots (default runs/inbox)")
    up.add_argument("--ici-inbox-parameters", type=Path,
                    help="JSON file of ici_loop parameters for inbox HDF5 files (backend, crystfel, dials, proposer)")
    up.add_argument("--diffuse-inbox-parameters", type=Path,
                    help="JSON file of diffuse_phase3 parameters for inbox CBF stills, e.g. "
                         '{"options": {"dials": {"unit_cell": "36,42,48,90,90,90", "space_group": "P222"}}}')
    up.add_argument("--schedules-paused", action="store_true",
                    help="register the schedules (nightly regression, ICI watch, flight check) paused")
    up.set_defaults(handler=run_up)
    for name, text, handler in (("status", "say what runs and where", run_status),
                                ("down", "stop exactly what 'up' started", run_down)):
        command = commands.add_parser(name, help=text)
        command.add_argument("--state-dir", **state)
        command.set_defaults(handler=handler)


def _parameters_problem(flag: str, path: Path | None) -> str | None:
    """Why the inbox parameters file ``path`` cannot be used (one line), or None; the diffuse file's ``options``
    are checked against the pipeline's options model, so a typo fails here rather than in every triggered run."""
    if path is None:
        return None
    try:
        parameters = json.loads(path.read_text())
        if not isinstance(parameters, dict):
            raise TypeError("expected a JSON object of flow parameters")
        if flag == "--diffuse-inbox-parameters" and "options" in parameters:
            from pydantic import ValidationError

            from ptylib.diffuse.options import DiffuseOptions

            try:
                DiffuseOptions.model_validate(parameters["options"])
            except ValidationError as exc:
                first = exc.errors()[0]
                raise ValueError(f"options.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    except (OSError, ValueError, TypeError) as exc:
        return f"{flag} {path}: {exc}"
    return None


def run_up(args: argparse.Namespace) -> int:
    """Start the stack; print the UI's address and where the logs are. Exit code 2 when it cannot start."""
    from deployments.local_stack import LocalStack, StackOptions

    for flag, path in (("--ici-inbox-parameters", args.ici_inbox_parameters),
                       ("--diffuse-inbox-parameters", args.diffuse_inbox_parameters)):
        problem = _parameters_problem(flag, path)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    options = StackOptions(state_dir=args.state_dir, host=args.host, port=args.port,
                           inbox=None if args.no_inbox else args.inbox, inbox_runs_dir=args.inbox_runs_dir,
                           ici_inbox_parameters=args.ici_inbox_parameters,
                           diffuse_inbox_parameters=args.diffuse_inbox_parameters,
                           schedules_paused=args.schedules_paused)
    try:
        stack = LocalStack(args.state_dir).up(options)
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: the server listens on {args.host}: anyone who reaches this port can run flows", file=sys.stderr)
    print(f"Prefect UI: {stack['ui_url']}")
    print(f"logs: {Path(stack['state_dir']) / 'logs'}; 'ptyflows ui status' shows the parts, 'ptyflows ui down' stops them")
    if not args.no_inbox:
        print(f"inbox: drop complete HDF5 files into {args.inbox.resolve()} to start the ICI loop, CBF stills "
              "to start the diffuse pipeline")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Print each recorded part, its pid, whether it runs and its log; exit code 1 when nothing runs."""
    from deployments.local_stack import LocalStack, read_stack

    stack = read_stack(args.state_dir.resolve())
    if not stack:
        print(f"no stack recorded in {args.state_dir} ('ptyflows ui up' starts one)")
        return 1
    rows = LocalStack(args.state_dir).status()
    print(f"Prefect UI: {stack['ui_url']} (server bound to {stack['host']}:{stack['port']})")
    for row in rows:
        state = "running" if row["alive"] else "stopped"
        if "healthy" in row:
            state += ", answering" if row["healthy"] else ", not answering"
        print(f"  {row['name']:<14} pid {row['pid']:<8} {state:<22} log {row['log']}")
    return 0 if any(row["alive"] for row in rows) else 1


def run_down(args: argparse.Namespace) -> int:
    """Stop the recorded parts (and the flow runs they started)."""
    from deployments.local_stack import LocalStack

    stopped = LocalStack(args.state_dir).down()
    print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing running from {args.state_dir}")
    return 0


def use_running_server() -> None:
    """Point this process's Prefect client at a running ``ptyflows ui`` server, unless PREFECT_API_URL is set."""
    if os.environ.get("PREFECT_API_URL"):
        return
    from deployments.local_stack import default_state_dir, read_stack, server_healthy

    try:
        stack = read_stack(default_state_dir())
    except (OSError, ValueError):
        return
    if stack and server_healthy(stack["api_url"], timeout_s=0.5):
        os.environ["PREFECT_API_URL"] = stack["api_url"]
