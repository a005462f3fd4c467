"""Per-iteration figures of an ICI run: index rate, median wRMSD, shift trajectories."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptylib.ici.model import EventHistory, EventKey
from ptylib.io.report import save_figure


@dataclass(frozen=True)
class IterationStats:
    """Figures of one run over the events that ran in it (wRMSD in px)."""

    run_n: int
    n_events_run: int
    n_indexed: int
    index_rate: float
    median_wrmsd: float
    best_index_rate: float


def iteration_stats(histories: Mapping[EventKey, EventHistory]) -> list[IterationStats]:
    """Index rate and median wRMSD of each run, plus the cumulative ever-indexed fraction of all events."""
    runs = sorted({row.run_n for h in histories.values() for row in h.rows})
    n_events = max(len(histories), 1)
    stats = []
    for run_n in runs:
        rows = [row for h in histories.values() for row in h.rows if row.run_n == run_n]
        wrmsds = [row.wrmsd for row in rows if row.succeeded]
        ever = sum(any(r.succeeded for r in h.rows if r.run_n <= run_n) for h in histories.values())
        stats.append(IterationStats(
            run_n=run_n,
            n_events_run=len(rows),
            n_indexed=len(wrmsds),
            index_rate=len(wrmsds) / len(rows) if rows else math.nan,
            median_wrmsd=float(np.median(wrmsds)) if wrmsds else math.nan,
            best_index_rate=ever / n_events,
        ))
    return stats


def plot_iterations(stats: Sequence[IterationStats], path: str | os.PathLike[str]) -> Path:
    """Two panels: index rate (per run and cumulative best) and median wRMSD per run."""
    import matplotlib.pyplot as plt

    runs = [s.run_n for s in stats]
    fig, (ax_rate, ax_rmsd) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    ax_rate.plot(runs, [s.index_rate for s in stats], "o-", label="this run")
    ax_rate.plot(runs, [s.best_index_rate for s in stats], "s--", label="ever indexed (all events)")
    ax_rate.set(xlabel="run", ylabel="index rate", ylim=(-0.02, 1.02), title="Indexing rate")
    ax_rate.legend(fontsize=8)
    ax_rmsd.plot(runs, [s.median_wrmsd for s in stats], "o-", color="C2")
    ax_rmsd.set(xlabel="run", ylabel="median wRMSD (px)", title="Median wRMSD of indexed events")
    for ax in (ax_rate, ax_rmsd):
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_trajectories(
    histories: Mapping[EventKey, EventHistory],
    path: str | os.PathLike[str],
    *,
    max_events: int = 6,
    truth_mm: Mapping[EventKey, tuple[float, float]] | None = None,
) -> Path:
    """Tried shifts (mm) of a few events in run order; filled = indexed, ring = failed, star = true centre."""
    import matplotlib.pyplot as plt

    keys = list(histories)[:max_events]
    cols = min(3, max(len(keys), 1))
    rows = max(1, math.ceil(len(keys) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False, layout="constrained")
    for ax, key in zip(axes.flat, keys):
        trials = histories[key].rows
        xy = np.array([(r.det_shift_x_mm, r.det_shift_y_mm) for r in trials])
        ok = np.array([r.succeeded for r in trials])
        ax.plot(xy[:, 0], xy[:, 1], "-", color="0.6", lw=0.8)
        ax.scatter(xy[ok, 0], xy[ok, 1], c=[r.wrmsd for r in trials if r.succeeded], cmap="viridis_r", s=28,
                   zorder=3, label="indexed (colour = wRMSD)")
        ax.scatter(xy[~ok, 0], xy[~ok, 1], facecolors="none", edgecolors="C3", s=28, zorder=3, label="not indexed")
        if truth_mm and key in truth_mm:
            ax.plot(*truth_mm[key], "*", color="k", ms=11, zorder=4, label="true centre")
        ax.set_title(f"{Path(key.h5_path).name} //{key.event}", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
        ax.set_xlabel("det_shift_x (mm)", fontsize=8)
        ax.set_ylabel("det_shift_y (mm)", fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    if keys:
        axes.flat[0].legend(fontsize=6, loc="best")
    return save_figure(fig, path)
