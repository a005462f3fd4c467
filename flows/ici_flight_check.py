"""The scheduled ICI flight check: the demo loop end to end on a fresh run root, failing on bad figures.

Every check makes ``<parent>/<UTC timestamp>/`` (so the loop really indexes, instead of finding a
finished run root), keeps the newest ``keep_runs`` of them, writes ``flight_check.json`` and a table
artifact, and ends Failed (``FlightCheckFailed``) when the index rate or the centre error misses its
threshold (``ptylib.ici.report.flight_check``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.ici_demo import ici_demo
from ptylib.ici.report.flight_check import (
    FlightCheckFailed,
    FlightCheckOptions,
    failure_message,
    threshold_rows,
)
from ptylib.io.atomic import atomic_write_json
from ptylib.io.run_roots import new_run_root, prune_run_roots
from tasks.artifacts import publish_table


@flow(name="ici-flight-check", log_prints=True)
def ici_flight_check(parent: str = "runs/flight-check/ici", check: FlightCheckOptions | None = None) -> dict[str, Any]:
    """Run the ICI demo in a new run root under ``parent`` and check its figures against ``check``'s thresholds.

    Returns the run root, the threshold rows and the older run roots deleted; raises ``FlightCheckFailed``
    (after writing everything) when a threshold is missed.

    Parameters
    ----------
    parent : folder of the flight checks' run roots (one new timestamped run root per check).
    check : size of the check (events, iterations, indexer) and its pass thresholds.
    """
    options = check or FlightCheckOptions()
    root = new_run_root(parent)
    report = ici_demo(run_root=str(root), n_events=options.n_events, max_iterations=options.max_iterations,
                      indexer=options.indexer)
    rows = threshold_rows(report["figures"], options)
    message = failure_message(rows, str(root))
    atomic_write_json(root / "flight_check.json", {"options": options.model_dump(), "checks": rows,
                                                   "passed": message is None, "figures": report["figures"]})
    publish_table("ici-flight-check", [{**r, "passed": "PASS" if r["passed"] else "FAIL"} for r in rows],
                  f"ICI flight check in {root.name}")
    removed = [str(p) for p in prune_run_roots(parent, options.keep_runs)]
    get_run_logger().info("flight check %s in %s; removed %d older run roots", "failed" if message else "passed",
                          root, len(removed))
    if message:
        raise FlightCheckFailed(message)
    return {"run_root": str(root), "checks": rows, "removed": removed}
