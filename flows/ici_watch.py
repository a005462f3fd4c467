"""Continue the unfinished ICI loops under a folder: what the ``ici-watch`` deployment runs on an interval.

A loop is unfinished when its run root has an ``ici_loop`` manifest, some event is not DONE and fewer
runs than its ``max_iterations`` exist (a killed or crashed loop, or one started with a small cap that
was raised in the manifest). Each one is continued with the parameters recorded in its manifest (a loop
started from image files gets the absolute image paths recorded there, not the glob or list file, so it
continues on the same events); a run root that another loop holds (its lock) is left alone and reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.ici_loop import ici_loop
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.ici.runroot.ledger import read_ledger
from ptylib.io.lock import RunRootLockedError
from ptylib.io.manifest import read_manifest


def unfinished_loop(root: Path) -> dict[str, Any] | None:
    """The ``ici_loop`` parameters recorded in ``root/manifest.json`` when that loop is unfinished, else None."""
    try:
        manifest = read_manifest(root)
    except ValueError:
        return None
    if manifest.get("pipeline") != "ici_loop":
        return None
    recorded = manifest["parameters"]
    if (root / LEDGER_NAME).is_file():
        histories = read_ledger(root / LEDGER_NAME)
        runs = 1 + max((row.run_n for h in histories.values() for row in h.rows), default=-1)
        if (histories and all(h.is_done for h in histories.values())) or runs >= recorded["max_iterations"]:
            return None
    backend = str(recorded["backend"])
    return {"run_root": str(root), "inputs": recorded["inputs"], "events": recorded["events"],
            "event_list": recorded["event_list"], "images": recorded.get("images") or None,
            "backend": backend, backend: recorded["backend_options"] or None,
            "proposer": recorded["proposer"], "max_iterations": recorded["max_iterations"],
            "initial_shift_mm": tuple(recorded["initial_shift_mm"]), "workers": recorded["workers"],
            "event_timeout_s": recorded["event_timeout_s"], "scale_out": recorded.get("scale_out")}


@flow(name="ici-watch", flow_run_name="ici-watch-{runs_dir}", log_prints=True)
def ici_watch(runs_dir: str = "runs/inbox") -> dict[str, list[str]]:
    """Continue every unfinished ICI loop in runs_dir (itself or its direct sub-folders).

    Parameters
    ----------
    runs_dir : a run root, or a folder whose sub-folders are run roots (such as the inbox's runs folder).
    """
    folder = Path(runs_dir).resolve()
    roots = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []
    continued, busy = [], []
    for root in roots:
        parameters = unfinished_loop(root)
        if parameters is None:
            continue
        try:
            ici_loop.with_options(flow_run_name=f"ici-loop-continue-{root.name}")(**parameters)
            continued.append(str(root))
        except RunRootLockedError as exc:
            get_run_logger().info("left alone: %s", exc)
            busy.append(str(root))
    print(f"{len(continued)} loops continued, {len(busy)} busy, in {folder}")
    return {"continued": continued, "busy": busy}
