"""Where a flow's fan-out runs: a thread pool in the flow's process (default) or a Dask cluster.

A flow takes a :class:`ScaleOut` parameter and runs its fan-out as a subflow on the task runner that
:func:`task_runners` gives. A local Dask cluster is started once per flow run (not per fan-out) and
shut down at its end; with ``dask_address`` the tasks go to an existing scheduler (``dask scheduler``
plus ``dask worker`` processes on other machines, which must see the same file system and code).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum, auto
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


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
def task_runners(options: ScaleOut) -> Iterator[Callable[[], Any]]:
    """Yield a factory of Prefect task runners for ``options``; a local Dask cluster lives as long as the block."""
    from prefect.task_runners import ThreadPoolTaskRunner

    if options.runner == RunnerKind.THREADS:
        yield ThreadPoolTaskRunner
        return
    from prefect_dask import DaskTaskRunner

    if options.dask_address:
        yield lambda: DaskTaskRunner(address=options.dask_address)
        return
    from distributed import LocalCluster

    with LocalCluster(n_workers=options.dask_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        yield lambda: DaskTaskRunner(address=cluster.scheduler_address)
