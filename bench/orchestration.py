"""Benchmark of Prefect's orchestration overhead here: per flow run, per task run, and in one ICI iteration.

Run ``python bench/orchestration.py`` (``--events 200 2000``). Everything runs on a temporary local
Prefect API (the test harness: SQLite + ephemeral server, as a local ``ptyflows`` run uses). The ICI
iteration is one run of the ``ici_loop`` flow (``max_iterations=1``, 2 workers) with the command
backend and a near-free indexer command (``: > {stream}``, one bash process per event), against the
same steps called as plain functions (the tasks' ``.fn``, the same batches on a 2-thread pool) in the
same process: the difference is orchestration, and with a near-free indexer its share is an upper
bound (a real indexer's seconds per still only add to the denominator). Both sides run once on a few
events first (imports, first flow run), then alternate, ``--ici-budget`` events per side and size
(median of ``max(1, budget // events)`` repeats), as the machine's load drifts. The flow also runs
with Prefect's flow-run heartbeats off: the heartbeat thread sleeps in 1 s steps and every flow run
waits for it at its end (Prefect 3.9). Besides wall time, the CPU time of this process and of the
API server is measured (not the event jobs': the same work on both sides); the server's is
orchestration alone, and other jobs on a shared machine change CPU time less than wall time.
Prints a Markdown report and puts it in ``bench/RESULTS.md`` under ``## Orchestration overhead``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make the bench package importable

from bench.results import machine_line, measurement_report, store_section

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


def no_heartbeats() -> AbstractContextManager[object]:
    """Prefect settings without flow-run heartbeats (their thread sleeps in 1 s steps; a flow run waits for it)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def flow_and_task_overhead(n_tasks: int, repeats: int) -> dict[str, float]:
    """Median seconds of an empty flow run (with and without heartbeats) and per task run inside a flow.

    Task runs are timed inside the flow body (what the flow waits for): ``NO_CACHE`` tasks (as every
    ICI task) submitted and called, and called with Prefect's default cache policy (inputs and source
    hashed into a cache key, the result persisted to ``$PREFECT_HOME/storage``).
    """
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(cache_policy=NO_CACHE)
    def noop(i: int) -> int:
        return i

    @task
    def cached(i: int) -> int:
        return i

    @flow
    def empty() -> None:
        return None

    @flow
    def submitted(n: int) -> float:
        start = time.perf_counter()
        for future in [noop.submit(i) for i in range(n)]:
            future.result()
        return (time.perf_counter() - start) / n

    @flow
    def called(n: int, default_cache: bool) -> float:
        start = time.perf_counter()
        for i in range(n):
            (cached if default_cache else noop)(i)
        return (time.perf_counter() - start) / n

    empty()  # the first run starts the temporary API
    figures = {"flow": _median_s(empty, repeats)}
    with no_heartbeats():
        figures["flow, no heartbeats"] = _median_s(empty, repeats)
    figures["submit"] = statistics.median(submitted(n_tasks) for _ in range(repeats))
    figures["call"] = statistics.median(called(n_tasks, False) for _ in range(repeats))
    figures["call, cached"] = statistics.median(called(n_tasks, True) for _ in range(repeats))
    return figures


def plan_argument_cost(n_events: int, repeats: int) -> tuple[float, float]:
    """Median seconds of a ``NO_CACHE`` task run given an ICI plan of ``n_events`` jobs: as is, and quoted.

    Prefect walks every element of a task's arguments looking for futures, unless they are quoted.
    """
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.utilities.annotations import quote

    from ptylib.ici.loop import RunPlan, plan_next_run
    from ptylib.ici.model import EventKey

    plan = plan_next_run({}, [EventKey("/data/run.h5", i) for i in range(n_events)], -1)

    @task(cache_policy=NO_CACHE)
    def takes(plan: RunPlan) -> int:
        return len(plan.jobs)

    @flow
    def timed(quoted: bool) -> float:
        start = time.perf_counter()
        for _ in range(repeats):
            takes(quote(plan) if quoted else plan)
        return (time.perf_counter() - start) / repeats

    return timed(False), timed(True)


def plain_iteration(root: Path, inputs: list[str], workers: int) -> None:
    """One ICI iteration through the same task functions (``.fn``), no Prefect runs."""
    from ptylib.ici.backends import BackendName, CommandOptions, make_backend
    from ptylib.ici.events import resolve_events
    from ptylib.ici.proposer.options import ProposerOptions
    from tasks import ici

    options, backend = ProposerOptions(), make_backend(BackendName.COMMAND, CommandOptions(template=INDEXER))
    keys = resolve_events(inputs, "all", None)
    plan, scripts = ici.start_run_task.fn(str(root), keys, (0.0, 0.0), 1, backend)
    size = max(1, -(-len(scripts) // (4 * workers)))
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda batch: ici.run_events_task.fn(batch, 600.0), ici.batches(scripts, size)))
    ici.finish_run_task.fn(str(root), plan, backend, options)
    ici.report_task.fn(str(root), keys, options)


def flow_iteration(root: Path, inputs: list[str], workers: int, heartbeats: bool = True) -> None:
    """One ICI iteration as the ``ici_loop`` flow (optionally without Prefect's flow-run heartbeats)."""
    from flows.ici_loop import ici_loop
    from ptylib.ici.backends import CommandOptions

    with nullcontext() if heartbeats else no_heartbeats():
        ici_loop(run_root=str(root), inputs=inputs, backend="command", command=CommandOptions(template=INDEXER),
                 max_iterations=1, workers=workers)


def _api_server_cpu_s() -> float:
    """CPU seconds so far of the temporary API server (the harness' uvicorn child of this process)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"uvicorn" in command:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def cpu_s() -> tuple[float, float]:
    """CPU seconds so far of this process (all threads; not its event jobs) and of the API server."""
    times = os.times()
    return times.user + times.system, _api_server_cpu_s()


def ici_share(n_events: int, workers: int, scratch: Path, repeats: int) -> dict[str, tuple[float, float, float]]:
    """Median (wall, process CPU, server CPU) seconds of one ICI iteration: plain, as the flow, without heartbeats.

    The three are run in turn ``repeats`` times on ``n_events`` synthetic events, each in a new run root.
    CPU time (:func:`cpu_s`: this process and the API server, not the event jobs) varies less with
    what else runs on the machine than wall time; the server's is orchestration alone.
    """
    from ptylib.ici.synthetic.dataset import make_synthetic_run

    data = make_synthetic_run(scratch / f"data-{n_events}", n_events, seed=1, radius_mm=0.05)
    inputs = [str(data.h5_path)]
    runs: dict[str, Callable[[Path], None]] = {
        "plain": lambda root: plain_iteration(root, inputs, workers),
        "flow": lambda root: flow_iteration(root, inputs, workers),
        "flow, no heartbeats": lambda root: flow_iteration(root, inputs, workers, heartbeats=False),
    }
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, (process, server) = time.perf_counter(), cpu_s()
            run(Path(tempfile.mkdtemp(dir=scratch)))
            process_end, server_end = cpu_s()
            samples[name].append((time.perf_counter() - wall, process_end - process, server_end - server))
    return {name: tuple(statistics.median(column) for column in zip(*values, strict=True))
            for name, values in samples.items()}


def main() -> None:
    """Measure, print the report and store it in RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[200, 2000], help="ICI events per iteration")
    parser.add_argument("--tasks", type=int, default=50, help="no-op tasks per flow for the per-task figure")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the flow/task timings (median)")
    parser.add_argument("--ici-budget", type=int, default=1400,
                        help="events per side and size: max(1, budget // events) repeats of an ICI iteration")
    parser.add_argument("--no-store", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    from prefect.testing.utilities import prefect_test_harness

    header = machine_line()
    with prefect_test_harness(server_startup_timeout=90), tempfile.TemporaryDirectory() as scratch:
        cost = flow_and_task_overhead(args.tasks, args.repeats)
        rows = [("empty flow run", f"{cost['flow'] * 1e3:.0f} ms", f"median of {args.repeats}"),
                ("empty flow run, heartbeats off", f"{cost['flow, no heartbeats'] * 1e3:.0f} ms",
                 f"median of {args.repeats}; `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` None"),
                ("task run, `.submit()` on threads", f"{cost['submit'] * 1e3:.1f} ms",
                 f"per task, {args.tasks} no-op `NO_CACHE` tasks timed inside a flow, median of {args.repeats}"),
                ("task run, called in the flow", f"{cost['call'] * 1e3:.1f} ms", "same, called directly"),
                ("task run, called, default cache policy", f"{cost['call, cached'] * 1e3:.1f} ms",
                 "same, cache key hashed and result persisted (no ICI task does this)")]
        as_is, quoted = plan_argument_cost(max(args.events), args.repeats)
        rows.append((f"task run given a {max(args.events)}-job ICI plan", (f"{as_is * 1e3:.0f} ms as is, "
                     f"{quoted * 1e3:.0f} ms quoted"), "as `ici-finish-run` takes it; the ICI loop quotes it"))
        ici_share(8, 2, Path(scratch), 1)  # warm-up: imports and first runs cost neither side
        for n in args.events:
            repeats = max(1, args.ici_budget // n)
            measured = ici_share(n, 2, Path(scratch), repeats)
            (plain, plain_cpu, plain_server), (flowed, flowed_cpu, flowed_server) = measured["plain"], measured["flow"]
            quiet = measured["flow, no heartbeats"][0]
            rows.append((f"ICI iteration, {n} events",
                         (f"wall: flow {flowed:.2f} s vs plain {plain:.2f} s: orchestration "
                          f"{100 * (flowed - plain) / flowed:.0f} %; flow without heartbeats {quiet:.2f} s: "
                          f"{100 * (quiet - plain) / quiet:.0f} %"),
                         f"median of {repeats}; near-free indexer `{INDEXER}`, 2 workers; target ≤ 10 %"))
            rows.append((f"ICI iteration, {n} events, CPU",
                         (f"API server {flowed_server:.2f} s (plain: {plain_server:.2f} s); this process "
                          f"{flowed_cpu:.2f} s vs plain {plain_cpu:.2f} s"),
                         "CPU seconds, median of each; the event jobs' CPU is not counted"))
    header += f", at end {os.getloadavg()[0]:.1f}"
    report = measurement_report(HEADING, header + "; command: `python bench/orchestration.py`", rows)
    print(report)
    if not args.no_store:
        store_section(HEADING, report)


if __name__ == "__main__":
    main()
