"""Names of the files and folders of an ICI run root, in one place.

::

    <run root>/image_run_log.csv          the ledger (:mod:`ptylib.ici.runroot.ledger`)
    <run root>/image_run_state.json       the state sidecar (:mod:`ptylib.ici.runroot.sidecar`)
    <run root>/centres.csv                each event's answer (:mod:`ptylib.ici.report.centres`)
    <run root>/run_###/chunk_metrics_###.csv
    <run root>/run_###/event_######/      one event's job folder (per_frame_dx_dy.csv, ...)
"""

from __future__ import annotations

from pathlib import Path

LEDGER_NAME = "image_run_log.csv"
STATE_NAME = "image_run_state.json"
DXDY_NAME = "per_frame_dx_dy.csv"
CENTRES_NAME = "centres.csv"


def run_dir_name(run_n: int) -> str:
    """``run_###``: the folder name of run ``run_n``."""
    return f"run_{run_n:03d}"


def event_dir_name(event_index: int) -> str:
    """``event_######``: the folder name of event number ``event_index`` within a run folder."""
    return f"event_{event_index:06d}"


def run_directory(run_root: Path, run_n: int) -> Path:
    """The folder of run ``run_n``: ``run_root/run_###``."""
    return Path(run_root, run_dir_name(run_n))


def event_dir(run_root: Path, run_n: int, event_index: int) -> Path:
    """Directory of event number ``event_index`` (its position in the run's event list) in run ``run_n``."""
    return Path(run_root, run_dir_name(run_n), event_dir_name(event_index))


def chunk_metrics_path(run_dir: Path, run_n: int) -> Path:
    """``run_dir/chunk_metrics_###.csv``."""
    return Path(run_dir) / f"chunk_metrics_{run_n:03d}.csv"
