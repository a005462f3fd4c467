"""The ICI loop as a Prefect flow: index every event at its proposed shift, ingest, propose, repeat."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.utilities.annotations import quote

from flows.scale_out import ScaleOut, task_runners
from ptylib.ici.backends import (
    BackendName,
    CommandOptions,
    CrystfelOptions,
    DialsOptions,
    make_backend,
)
from ptylib.ici.backends.checks import check_backend_inputs, image_template
from ptylib.ici.events import resolve_events
from ptylib.ici.images import is_hdf5
from ptylib.ici.jobs import end_stale_jobs
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.io.lock import RunRootLock
from ptylib.io.manifest import write_manifest
from ptylib.io.paths import reject_control_characters
from tasks.artifacts import ProgressArtifact, publish_markdown
from tasks.ici import (
    batches,
    finish_run_task,
    propose_task,
    report_task,
    run_events_task,
    start_run_task,
)


def fan_out_events(scripts: list[str], run_n: int, workers: int, batch_size: int, event_timeout_s: float) -> int:
    """Run one iteration's event scripts in batches (one task run per batch), at most ``workers`` at once.

    Called inside the loop's flow run (threads), or as the subflow :data:`index_events` on a Dask task
    runner. Returns the number of scripts run.
    """
    size = batch_size or max(1, math.ceil(len(scripts) / (4 * max(workers, 1))))
    progress = ProgressArtifact(len(scripts), f"run {run_n:03d}: events indexed")
    pending: list = []
    for batch in batches(scripts, size):
        if len(pending) >= max(workers, 1):  # bounded fan-out, whatever the task runner
            finished = next(as_completed(pending))
            pending.remove(finished)
            progress.advance(len(finished.result()))
        pending.append(run_events_task.submit(batch, event_timeout_s))
    for future in as_completed(pending):
        progress.advance(len(future.result()))
    return len(scripts)


index_events = flow(name="ici-index-events", flow_run_name="ici-index-run-{run_n}")(fan_out_events)
"""The fan-out as a subflow, so that it can run on another task runner than the loop's (Dask)."""


@flow(name="ici-loop", log_prints=True)
def ici_loop(
    run_root: str,
    inputs: list[str] | None = None,
    events: str = "all",
    event_list: str | None = None,
    images: str | list[str] | None = None,
    backend: BackendName = BackendName.CRYSTFEL,
    crystfel: CrystfelOptions | None = None,
    command: CommandOptions | None = None,
    dials: DialsOptions | None = None,
    proposer: ProposerOptions | None = None,
    max_iterations: int = 10,
    initial_shift_mm: tuple[float, float] = (0.0, 0.0),
    workers: int = 2,
    batch_size: int = 0,
    event_timeout_s: float = 600.0,
    scale_out: ScaleOut | None = None,
) -> dict[str, object]:
    """Iterate indexing runs ``run_000, run_001, ...`` until every event is DONE or ``max_iterations`` runs exist.

    Parameters
    ----------
    run_root : folder of the run: ``run_###/event_######/``, ``image_run_log.csv``, ``image_run_state.json``.
    inputs, events, event_list : CrystFEL-style HDF5 files with an event selection (``all``, ``0-9,12``),
        and/or a list file of ``file.h5 //N`` lines.
    images : still images, one event each: a glob (``stills/*.cbf``), a list file of image paths, or a
        list of image paths (relative paths: to the working directory); the ``dials`` backend indexes
        them directly.
    backend, crystfel, command, dials : the indexer and its options.
    proposer : the proposer's knobs (the seed's defaults).
    max_iterations : total number of runs of the run root (a resumed loop continues up to it).
    initial_shift_mm : detector shift (x, y) of every event's first run (mm).
    workers : event batches indexed at the same time; batch_size : events per task run (0 = automatic).
    event_timeout_s : wall-clock limit of one event's indexing job (s).
    scale_out : where the event batches run: threads in this process (default) or a Dask cluster
        (a local one started for the run, or a scheduler address).

    Every loop ends with ``centres.csv`` in the run root (each event's answer, also the table artifact
    ``ici-centres``). When an input has a hidden truth beside it (``<file>.truth.json``, synthetic
    data), the report also gives each event's distance from its centres to the true centre. Raises
    :class:`~ptylib.ici.loop.IndexerFailedError` when the indexer fails on every event of a run.
    """
    logger = get_run_logger()
    root = Path(reject_control_characters(Path(run_root).resolve(), "run_root"))
    options = proposer or ProposerOptions()
    backend_options = {BackendName.CRYSTFEL: crystfel, BackendName.COMMAND: command,
                       BackendName.DIALS: dials}[BackendName(backend)]
    indexer = make_backend(backend, backend_options)
    keys = resolve_events(inputs or [], events, event_list, images=images)
    check_backend_inputs(keys, indexer)
    with task_runners(scale_out or ScaleOut()) as make_runner, RunRootLock(root, owner="ici-loop flow"):
        for job in end_stale_jobs(root):  # left by an earlier run that died without ending them
            logger.warning("ended stale indexing job %s (pid %d) of an earlier run", job.script, job.pid)
        write_manifest(root, pipeline="ici_loop", inputs=inputs or [], parameters={
            "inputs": inputs, "events": events, "event_list": event_list,
            "images": [key.h5_path for key in keys if not is_hdf5(key.h5_path)], "backend": str(backend),
            "backend_options": dataclasses.asdict(backend_options) if backend_options else {},
            "proposer": options.to_dict(), "max_iterations": max_iterations,
            "initial_shift_mm": initial_shift_mm, "workers": workers, "event_timeout_s": event_timeout_s,
            "scale_out": (scale_out or ScaleOut()).model_dump(mode="json"),
        })
        if (root / LEDGER_NAME).exists():
            propose_task(str(root), options)  # a killed run may have ingested without proposing
        # Two task runs per iteration around the event batches; the event keys and the plan go in quoted,
        # because Prefect otherwise walks every element of them looking for futures (~0.1 s per task
        # at 2,000 events).
        while True:
            plan, scripts = start_run_task(str(root), quote(keys), initial_shift_mm, max_iterations, indexer)
            if not scripts:
                break
            logger.info("run %03d: %d events to index, %d done", plan.run_n, len(plan.jobs), plan.n_done)
            fan_out = fan_out_events if make_runner is None else index_events.with_options(task_runner=make_runner())
            fan_out(scripts, plan.run_n, workers, batch_size, event_timeout_s)
            finish_run_task(str(root), quote(plan), indexer, options)
        report = report_task(str(root), quote(keys), options, image_template(backend_options))
    publish_markdown("ici-loop-final", report["markdown"], "ICI loop: final report")
    return report
