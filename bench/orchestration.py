"""Benchmark of Prefect's orchestration overhead here: per flow run, per task run, and in one ICI iteration.

Run ``python bench/orchestration.py`` (``--events 200 2000``). Everything runs on a temporary local
Prefect API (the test harness: SQLite + ephemeral server, as a local ``ptyflows`` run uses). The ICI
iteration is one run of the ``ici_loop`` flow (``max_iterations=1``, 2 workers) with the command
backend and a near-free indexer command (``: > {stream}``, one bash process per event), against the
same steps called as plain functions (the tasks' ``.fn``, the same batches on a 2-thread pool) in the
same process: the difference is orchestration, and with a near-free indexer its share is an upper
bound (a real indexer's seconds per still only add to the denominator). Prints a Markdown report and
puts it in ``bench/RESULTS.md`` under ``## Orchestration overhead``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make the bench package importable

from bench.results import machine_line, measurement_report, store_section  # noqa: E402

HEADING = "## Orchestration overhead"
INDEXER = ": > {stream}"
"""The near-free indexer command: writes an empty stream part (every event then fails to index)."""


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flow_and_task_overhead(n_tasks: int, repeats: int) -> tuple[float, float, float]:
    """Median seconds of an empty flow run, and per task run submitted / called in a flow (minus the empty flow)."""
    from prefect import flow, task

    @task
    def noop(i: int) -> int:
        return i

    @flow
    def empty() -> None:
        return None

    @flow
    def submitted(n: int) -> int:
        return sum(f.result() for f in [noop.submit(i) for i in range(n)])

    @flow
    def called(n: int) -> int:
        return sum(noop(i) for i in range(n))

    empty()  # the first run starts the temporary API
    per_flow = _median_s(empty, repeats)
    per_submit = (_median_s(lambda: submitted(n_tasks), repeats) - per_flow) / n_tasks
    per_call = (_median_s(lambda: called(n_tasks), repeats) - per_flow) / n_tasks
    return per_flow, per_submit, per_call


def plain_iteration(root: Path, inputs: list[str], workers: int) -> None:
    """One ICI iteration through the same task functions (``.fn``), no Prefect runs."""
    from ptylib.ici.backends import BackendName, CommandOptions, make_backend
    from ptylib.ici.events import resolve_events
    from ptylib.ici.proposer.options import ProposerOptions
    from tasks import ici

    options, backend = ProposerOptions(), make_backend(BackendName.COMMAND, CommandOptions(template=INDEXER))
    keys = resolve_events(inputs, "all", None)
    plan = ici.plan_run_task.fn(str(root), keys, (0.0, 0.0))
    scripts = ici.prepare_run_task.fn(str(root), plan, backend)
    size = max(1, -(-len(scripts) // (4 * workers)))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda batch: ici.run_events_task.fn(batch, 600.0), ici.batches(scripts, size)))
    ici.collect_run_task.fn(str(root), plan, backend)
    ici.ingest_task.fn(str(root), plan.run_n)
    ici.propose_task.fn(str(root), options)
    ici.summary_task.fn(str(root), plan.run_n)
    ici.report_task.fn(str(root), keys, options)


def flow_iteration(root: Path, inputs: list[str], workers: int) -> None:
    """One ICI iteration as the ``ici_loop`` flow."""
    from flows.ici_loop import ici_loop
    from ptylib.ici.backends import CommandOptions

    ici_loop(run_root=str(root), inputs=inputs, backend="command", command=CommandOptions(template=INDEXER),
             max_iterations=1, workers=workers)


def ici_share(n_events: int, workers: int, scratch: Path) -> tuple[float, float]:
    """Seconds of one ICI iteration as plain functions and as the flow, on ``n_events`` synthetic events."""
    from ptylib.ici.synthetic.dataset import make_synthetic_run

    data = make_synthetic_run(scratch / f"data-{n_events}", n_events, seed=1, radius_mm=0.05)
    inputs = [str(data.h5_path)]
    plain = _median_s(lambda: plain_iteration(Path(tempfile.mkdtemp(dir=scratch)), inputs, workers), 1)
    flowed = _median_s(lambda: flow_iteration(Path(tempfile.mkdtemp(dir=scratch)), inputs, workers), 1)
    return plain, flowed


def main() -> None:
    """Measure, print the report and store it in RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[200, 2000], help="ICI events per iteration")
    parser.add_argument("--tasks", type=int, default=50, help="no-op tasks per flow for the per-task figure")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the flow/task timings (median)")
    parser.add_argument("--no-store", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    header = machine_line()
    with prefect_test_harness(server_startup_timeout=90), tempfile.TemporaryDirectory() as scratch:
        per_flow, per_submit, per_call = flow_and_task_overhead(args.tasks, args.repeats)
        rows = [("empty flow run", f"{per_flow * 1e3:.0f} ms", f"median of {args.repeats}"),
                ("task run, `.submit()` on threads", f"{per_submit * 1e3:.1f} ms",
                 f"per task, {args.tasks} no-op tasks per flow, minus the empty flow"),
                ("task run, called in the flow", f"{per_call * 1e3:.1f} ms", "same, called directly")]
        for n in args.events:
            plain, flowed = ici_share(n, 2, Path(scratch))
            share = (flowed - plain) / flowed
            rows.append((f"ICI iteration, {n} events",
                         f"flow {flowed:.2f} s vs plain {plain:.2f} s: orchestration {100 * share:.0f} %",
                         f"near-free indexer `{INDEXER}`, 2 workers; target ≤ 10 %"))
    report = measurement_report(HEADING, header + "; command: `python bench/orchestration.py`", rows)
    print(report)
    if not args.no_store:
        store_section(HEADING, report)


if __name__ == "__main__":
    main()
