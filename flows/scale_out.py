"""Where a flow's fan-out runs: a thread pool in the flow's process (default) or a Dask cluster.

A flow takes a :class:`ScaleOut` parameter; with threads its fan-out runs on the flow's own thread
pool, with Dask as a subflow on the task runner that :func:`task_runners` gives (:func:`run_jobs` for
a list of independent task calls). A local Dask cluster is started once per flow run (not per fan-out;
a parent flow shares it with its subflows through :func:`dask_cluster`) and shut down at its end;
with ``dask_address`` the tasks go to an existing scheduler (``dask scheduler`` plus ``dask worker``
processes on other machines, which must see the same file system and code).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum, auto
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from prefect import Task


class RunnerKind(StrEnum):
    """The task runners a fan-out can use."""

    THREADS = auto()
    DASK = auto()


class ScaleOut(BaseModel):
    """Task runner of a flow's fan-out."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    runner: RunnerKind = RunnerKind.THREADS
    """threads (a pool in the flow's process) or dask (prefect-dask's DaskTaskRunner)."""
    dask_address: str | None = None
    """Address of a running Dask scheduler (tcp://host:8786); empty starts a local cluster for the run."""
    dask_workers: int = Field(2, ge=1, le=256)
    """Worker processes of the local Dask cluster (one thread each)."""


@contextmanager
def dask_cluster(options: ScaleOut) -> Iterator[ScaleOut]:
    """Yield ``options`` with a scheduler address: a local Dask cluster's for the block when Dask is chosen
    without one (threads, or a given address, are yielded unchanged).

    A parent flow hands the result to its subflows, so that they share one cluster instead of each starting its own.
    """
    if options.runner == RunnerKind.THREADS or options.dask_address:
        yield options
        return
    from distributed import LocalCluster

    with LocalCluster(n_workers=options.dask_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        yield options.model_copy(update={"dask_address": cluster.scheduler_address})


@contextmanager
def task_runners(options: ScaleOut) -> Iterator[Callable[[], Any] | None]:
    """Yield a factory of Dask task runners for ``options``, or None for threads (the flow's own runner).

    A local Dask cluster lives as long as the block.
    """
    with dask_cluster(options) as resolved:
        if resolved.runner == RunnerKind.THREADS:
            yield None
            return
        from prefect_dask import DaskTaskRunner

        yield lambda: DaskTaskRunner(address=resolved.dask_address)


def run_jobs(job: Task, calls: Sequence[tuple], make_runner: Callable[[], Any] | None, name: str) -> list[Any]:
    """Run the task ``job`` once per argument tuple of ``calls``; return the results in the same order.

    Threads (``make_runner`` None): one call after another in the calling flow run, for jobs that each use
    every core or process-wide state (TensorFlow training, pty-chi). Dask: all submitted at once in the
    subflow ``name`` on the runner; each Dask worker process runs one job at a time (local cluster: one
    thread per worker), so such jobs never share a process concurrently.
    """
    if make_runner is None:
        return [job(*args) for args in calls]
    from prefect import flow

    def submit_all() -> list[Any]:
        futures = [job.submit(*args) for args in calls]
        return [future.result() for future in futures]

    return flow(name=name, task_runner=make_runner())(submit_all)()


def add_scale_out_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`ScaleOut` field (``--runner``, ``--dask-address``, ``--dask-workers``)."""
    group = parser.add_argument_group("scale-out")
    for name, field in ScaleOut.model_fields.items():
        flag = f"--{name.replace('_', '-')}"
        text = f"{field.description} (default {field.default})"
        if name == "runner":
            group.add_argument(flag, choices=[k.value for k in RunnerKind], default=field.default.value, help=text)
        else:
            group.add_argument(flag, type=int if field.annotation is int else str, default=field.default, help=text)


def scale_out_from_args(args: argparse.Namespace) -> ScaleOut:
    """The :class:`ScaleOut` given by the flags of :func:`add_scale_out_arguments`."""
    return ScaleOut(**{name: getattr(args, name) for name in ScaleOut.model_fields})
