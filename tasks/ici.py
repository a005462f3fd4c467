"""Prefect tasks of the ICI loop: thin wrappers that pass paths and small records, never images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from ptylib.ici.backends.base import IndexerBackend
from ptylib.ici.loop import (
    IndexerFailedError,
    RunPlan,
    dead_indexer_message,
    plan_next_run,
)
from ptylib.ici.model import EventKey
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.propose import propose_run_root
from ptylib.ici.report.final import build_report, known_true_centres_mm, refined_centres
from ptylib.ici.report.study import (
    StrategyFigures,
    strategy_figures,
    write_study_report,
)
from ptylib.ici.report.summary import summarize_run_root
from ptylib.ici.runner import collect_run, concatenate_streams, run_event_batch
from ptylib.ici.runroot.ingest import ingest_run
from ptylib.ici.runroot.layout import LEDGER_NAME, STATE_NAME, event_dir, run_directory
from ptylib.ici.runroot.ledger import read_ledger
from ptylib.ici.runroot.sidecar import read_state
from tasks.artifacts import publish_markdown, publish_table
from tasks.retry import transient_os_error


@task(name="ici-start-run", cache_policy=NO_CACHE)
def start_run_task(run_root: str, events: Sequence[EventKey], initial_shift_mm: tuple[float, float],
                   max_iterations: int, backend: IndexerBackend) -> tuple[RunPlan, list[str]]:
    """Plan the next run from the ledger and write its job scripts; returns the plan and the scripts.

    The plan has a job for every event not yet DONE. No script is written (an empty list: the loop
    ends) when every event is DONE or the run root already holds ``max_iterations`` runs. The runner
    skips scripts that already completed (a resumed, half-finished iteration).
    """
    root = Path(run_root)
    plan = plan_next_run(read_ledger(root / LEDGER_NAME), events, read_state(root / STATE_NAME).last_global_run,
                         initial_shift_mm)
    if not plan.jobs or plan.run_n >= max_iterations:
        return plan, []
    run_dir = run_directory(root, plan.run_n)
    run_dir.mkdir(parents=True, exist_ok=True)
    backend.prepare_run(run_dir, plan.jobs)
    return plan, [str(backend.write_event_script(job, event_dir(root, plan.run_n, job.event_index)))
                  for job in plan.jobs]


@task(name="ici-run-events", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5, retry_condition_fn=transient_os_error)
def run_events_task(scripts: Sequence[str], timeout_s: float) -> list[int]:
    """Run a batch of event scripts one after another; returns their exit codes."""
    return run_event_batch([Path(s) for s in scripts], timeout_s=timeout_s, workers=1)


@task(name="ici-finish-run", cache_policy=NO_CACHE)
def finish_run_task(run_root: str, plan: RunPlan, backend: IndexerBackend, options: ProposerOptions) -> dict[str, object]:
    """Close run ``plan.run_n``: collect its events, ingest them, propose the next shifts, publish the summary.

    Collecting concatenates the stream parts, parses every event and writes ``chunk_metrics_###.csv``;
    ingest (idempotent) adds the run's rows to the ledger; propose patches the ledger. Returns the
    counts of each step. Raises :class:`~ptylib.ici.loop.IndexerFailedError`, before anything is
    ingested, when the indexer failed on every event.
    """
    root = Path(run_root)
    run_dir = run_directory(root, plan.run_n)
    missing = concatenate_streams(run_dir, plan.run_n, [job.event_index for job in plan.jobs])
    results = collect_run(run_dir, plan.run_n, plan.jobs, backend)
    indexed = sum(r.metric.indexed for r in results)
    if not indexed and (failure := dead_indexer_message(root, plan)):
        raise IndexerFailedError(failure)
    rows = ingest_run(root, plan.run_n)
    proposals = _propose(root, options)
    _publish_summary(root, plan.run_n)
    return {"events": len(results), "indexed": indexed, "missing_parts": len(missing), "rows_added": rows,
            "proposals": proposals}


@task(name="ici-propose", cache_policy=NO_CACHE)
def propose_task(run_root: str, options: ProposerOptions) -> dict[str, int]:
    """Propose the next shift of every event and patch the ledger; returns counts by reason."""
    return _propose(Path(run_root), options)


def _propose(root: Path, options: ProposerOptions) -> dict[str, int]:
    return dict(propose_run_root(root, options).counts_by_reason)


def batches(scripts: Sequence[str], batch_size: int) -> list[list[str]]:
    """Split scripts into batches of at most ``batch_size`` (one task run per batch, not per event)."""
    size = max(1, batch_size)
    return [list(scripts[i : i + size]) for i in range(0, len(scripts), size)]


@task(name="ici-summary", cache_policy=NO_CACHE)
def summary_task(run_root: str, run_n: int) -> str:
    """Publish the ledger summary after run ``run_n`` as a Markdown artifact; returns the text."""
    return _publish_summary(Path(run_root), run_n)


def _publish_summary(root: Path, run_n: int) -> str:
    summary = summarize_run_root(root)
    publish_markdown(f"ici-summary-run-{run_n:03d}", f"# ICI summary after run {run_n:03d}\n\n{summary.to_markdown()}")
    return summary.to_text()


@task(name="ici-report", cache_policy=NO_CACHE)
def report_task(run_root: str, events: Sequence[EventKey], options: ProposerOptions,
                image_template: str | None = None) -> dict[str, object]:
    """Write the final report files and ``centres.csv``; return the Markdown, figures and centres table.

    With a known truth the figures and the table give the errors to the true centres.
    """
    report = build_report(Path(run_root), known_true_centres_mm(events), options, image_template)
    publish_table("ici-centres", report["centres"], "ICI: each event's centre (centres.csv)")
    publish_table("ici-final-figures", [{"figure": k, "value": v} for k, v in report["figures"].items()])
    return report


@task(name="ici-study-figures", cache_policy=NO_CACHE)
def study_figures_task(run_root: str, mode: str, options: ProposerOptions) -> StrategyFigures:
    """The study's figures of the strategy ``options.policy`` from its finished run root."""
    root = Path(run_root)
    histories = read_ledger(root / LEDGER_NAME)
    truth = known_true_centres_mm(list(histories))
    refined = refined_centres(root, histories, options) if mode == "refine" else None
    return strategy_figures(mode, options.policy, histories, truth, refined)


@task(name="ici-study-report", cache_policy=NO_CACHE)
def study_report_task(run_root: str, figures: Sequence[StrategyFigures]) -> str:
    """Write the study's files and publish its table and Markdown (with the plot); returns the Markdown."""
    markdown = write_study_report(Path(run_root), figures)
    publish_table("ici-study-table", [f.row() for f in figures], "ICI convergence study: strategies compared")
    publish_markdown("ici-study", markdown, "ICI convergence study: median error vs runs")
    return markdown
