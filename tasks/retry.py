"""Retry conditions shared by the pipelines' tasks."""

from __future__ import annotations

from typing import Any


def transient_os_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only on OS-level trouble (fork, file system, timeouts).

    Bad input, an unindexed still or a failed fit are results of the task, not worth a retry.
    """
    try:
        state.result()
    except OSError:
        return True
    except Exception:  # noqa: BLE001 - anything else is a real failure
        return False
    return False
