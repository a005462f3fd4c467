"""The inbox watcher: emit a Prefect event for every complete HDF5 or CBF file dropped into a folder.

``python -m deployments.inbox_watcher --inbox DIR --runs-dir DIR`` (``ptyflows ui up --inbox DIR``
starts it). Each complete file (:class:`ptylib.io.inbox.InboxScanner`) becomes one
``ptyflows.inbox.file-ready`` event whose resource carries the file's path, kind and the run folder
proposed for it; the deployments' triggers (``deployments/serve_all.py``) pick the pipeline by kind.
Reported files are remembered in ``<runs-dir>/inbox-seen.json``, so a restarted watcher does not start
the same file twice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

from ptylib.io.atomic import atomic_write_json
from ptylib.io.inbox import InboxFile, InboxScanner

EVENT = "ptyflows.inbox.file-ready"
"""Name of the event emitted for a complete file."""
SEEN_NAME = "inbox-seen.json"


def event_resource(found: InboxFile, runs_dir: Path) -> dict[str, str]:
    """The event's resource labels: a stable id per path, the path, its kind and a run folder for it."""
    digest = hashlib.sha1(str(found.path).encode()).hexdigest()[:16]
    return {"prefect.resource.id": f"ptyflows.inbox.file.{digest}", "prefect.resource.name": found.path.name,
            "ptyflows.path": str(found.path), "ptyflows.kind": found.kind,
            "ptyflows.run-root": str(runs_dir / f"{found.path.stem}-{digest[:8]}")}


def watch(inbox: Path, runs_dir: Path, poll_s: float, settle_s: float, max_seconds: float | None = None) -> None:
    """Poll ``inbox`` every ``poll_s`` seconds and emit one event per complete file (until ``max_seconds``)."""
    from prefect.events import emit_event

    runs_dir.mkdir(parents=True, exist_ok=True)
    seen_path = runs_dir / SEEN_NAME
    seen = set(json.loads(seen_path.read_text())) if seen_path.is_file() else set()
    scanner = InboxScanner(inbox, settle_s=settle_s, seen=seen)
    print(f"watching {scanner.inbox} (complete after {settle_s:g} s unchanged); runs in {runs_dir}", flush=True)
    start = time.monotonic()
    while max_seconds is None or time.monotonic() - start < max_seconds:
        found = scanner.poll(time.monotonic())
        for item in found:
            emit_event(event=EVENT, resource=event_resource(item, runs_dir), payload={"size_bytes": item.size})
            print(f"{item.kind} file ready: {item.path} ({item.size} bytes)", flush=True)
        if found:
            atomic_write_json(seen_path, sorted(scanner.seen))
        time.sleep(poll_s)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line of the watcher."""
    parser = argparse.ArgumentParser(prog="python -m deployments.inbox_watcher", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inbox", required=True, type=Path, help="folder to watch (files in sub-folders count)")
    parser.add_argument("--runs-dir", required=True, type=Path, help="folder under which each file's run goes")
    parser.add_argument("--poll-s", type=float, default=1.0, help="seconds between scans (default 1)")
    parser.add_argument("--settle-s", type=float, default=2.0,
                        help="seconds a file's size must stay unchanged to count as complete (default 2)")
    args = parser.parse_args(argv)
    if not args.inbox.is_dir():
        parser.error(f"--inbox {args.inbox}: not a folder")
    watch(args.inbox.resolve(), args.runs_dir.resolve(), args.poll_s, args.settle_s)


if __name__ == "__main__":
    main()
