"""Figures of the ICI convergence study: search strategies compared on the same events (mm).

One *strategy* is one proposer policy run to the end on a run root. For each event with a known
true centre the study takes, from its ledger:

* runs to first index: the 1-based number of the first run that indexed (events that never indexed
  are counted apart);
* runs to DONE: how many runs the event had when it was DONE (or when the loop stopped);
* the error of its answer: the distance from its best-wRMSD centre to the true centre (an event
  that never indexed answers with its first centre, the nominal one); in REFINE mode also the
  error of the combined refined centre (:func:`ptylib.ici.report.final.refined_centres`);
* the error curve: the median over events of that error after the first ``n`` runs of each event
  (an event that stopped earlier keeps its final answer), for ``n = 1 ... longest``.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptylib.ici.model import Centre, EventHistory, EventKey
from ptylib.io.atomic import atomic_write_text
from ptylib.io.report import markdown_table, png_markdown, save_figure


@dataclass(frozen=True)
class StrategyFigures:
    """The study's figures of one strategy in one indexing mode (lengths in mm)."""

    mode: str
    strategy: str
    events: int
    runs_per_event: float
    done_fraction: float
    runs_to_first_index: float
    never_indexed: int
    median_error_mm: float
    p90_error_mm: float
    refined_median_error_mm: float
    refined_p90_error_mm: float
    error_curve_mm: tuple[float, ...]

    def row(self) -> dict[str, object]:
        """The figures as one table row (the curve left out)."""
        return {"mode": self.mode, "strategy": self.strategy, "events": self.events,
                "runs / event": self.runs_per_event, "DONE": self.done_fraction,
                "runs to first index": self.runs_to_first_index, "never indexed": self.never_indexed,
                "median error (mm)": self.median_error_mm, "p90 error (mm)": self.p90_error_mm,
                "refined centre: median (mm)": self.refined_median_error_mm,
                "refined centre: p90 (mm)": self.refined_p90_error_mm}


def answer_after(history: EventHistory, n_runs: int) -> Centre:
    """The event's answer after its first ``n_runs`` runs: best-wRMSD centre, else its first centre (mm)."""
    rows = history.rows[:n_runs]
    good = [row for row in rows if row.succeeded]
    row = min(good, key=lambda r: r.wrmsd) if good else rows[0]
    return row.det_shift_x_mm, row.det_shift_y_mm


def error_curve_mm(histories: Sequence[EventHistory], truth_mm: Sequence[Centre]) -> np.ndarray:
    """Median error (mm) of the answers after ``n = 1 ... longest`` runs per event (see the module docstring)."""
    longest = max((len(h.rows) for h in histories), default=0)
    return np.array([np.median([math.dist(answer_after(h, n), t) for h, t in zip(histories, truth_mm)])
                     for n in range(1, longest + 1)])


def strategy_figures(mode: str, strategy: str, histories: Mapping[EventKey, EventHistory],
                     truth_mm: Mapping[EventKey, Centre],
                     refined_mm: Mapping[EventKey, Centre] | None = None) -> StrategyFigures:
    """The figures of one strategy over the events of ``histories`` with a true centre and at least one run.

    ``refined_mm`` holds the refined centres of the events that have one (REFINE mode); events without
    one answer with their best-wRMSD centre there too.
    """
    events = [h for k, h in histories.items() if k in truth_mm and h.rows]
    if not events:
        raise ValueError(f"{mode}/{strategy}: no event has both runs and a known true centre")
    truth = [truth_mm[h.key] for h in events]
    answers = [answer_after(h, len(h.rows)) for h in events]
    errors = np.array([math.dist(a, t) for a, t in zip(answers, truth)])
    first_index = [next((i + 1 for i, row in enumerate(h.rows) if row.succeeded), None) for h in events]
    indexed = [n for n in first_index if n is not None]
    if refined_mm:
        refined = np.array([math.dist(refined_mm.get(h.key, a), t) for h, a, t in zip(events, answers, truth)])
        refined_median, refined_p90 = float(np.median(refined)), float(np.percentile(refined, 90))
    else:
        refined_median = refined_p90 = math.nan
    return StrategyFigures(
        mode=mode, strategy=strategy, events=len(events),
        runs_per_event=float(np.mean([len(h.rows) for h in events])),
        done_fraction=float(np.mean([h.is_done for h in events])),
        runs_to_first_index=float(np.mean(indexed)) if indexed else math.nan,
        never_indexed=len(events) - len(indexed),
        median_error_mm=float(np.median(errors)), p90_error_mm=float(np.percentile(errors, 90)),
        refined_median_error_mm=refined_median, refined_p90_error_mm=refined_p90,
        error_curve_mm=tuple(error_curve_mm(events, truth).tolist()),
    )


def plot_study(figures: Sequence[StrategyFigures], path: str | os.PathLike[str]) -> Path:
    """One panel per mode: median error vs runs per event of every strategy; a marker at its runs to DONE."""
    import matplotlib.pyplot as plt

    modes = list(dict.fromkeys(f.mode for f in figures))
    fig, axes = plt.subplots(1, max(len(modes), 1), figsize=(4.6 * max(len(modes), 1), 3.6), squeeze=False,
                             layout="constrained")
    for ax, mode in zip(axes.flat, modes):
        for index, f in enumerate(x for x in figures if x.mode == mode):
            runs = np.arange(1, len(f.error_curve_mm) + 1)
            curve = np.asarray(f.error_curve_mm) * 1e3
            ax.plot(runs, curve, "o-", color=f"C{index}", ms=3, label=f.strategy)
            ax.plot([f.runs_per_event], [f.median_error_mm * 1e3], "D", color=f"C{index}", ms=8, mec="k")
        ax.set(xlabel="indexing runs per event", ylabel="median error to true centre (um)",
               title=f"{mode}: diamond = mean runs and final error", ylim=(0, None))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_study_report(out_dir: str | os.PathLike[str], figures: Sequence[StrategyFigures]) -> str:
    """Write ``study.md``, ``study.csv``, ``study_curves.csv`` and ``study.png`` to ``out_dir``.

    Returns the Markdown with the plot embedded (for an artifact).
    """
    out = Path(out_dir)
    rows = [f.row() for f in figures]
    columns = list(rows[0]) if rows else ["mode"]
    atomic_write_text(out / "study.csv", _csv([columns] + [[r[c] for c in columns] for r in rows]))
    curves = [[f.mode, f.strategy, n + 1, e] for f in figures for n, e in enumerate(f.error_curve_mm)]
    atomic_write_text(out / "study_curves.csv", _csv([["mode", "strategy", "runs", "median_error_mm"]] + curves))
    png = plot_study(figures, out / "study.png")
    text = "\n".join([
        "# ICI convergence study\n",
        ("Each strategy searched the same events from the same first centre. *Error*: distance from an "
         "event's best-wRMSD centre to its true centre (its first centre while it never indexed); *refined "
         "centre*: the combined refined centre (REFINE mode). The plot gives the median error after n runs "
         "of each event.\n"),
        markdown_table(rows),
    ])
    atomic_write_text(out / "study.md", text + "\n![study](study.png)\n")
    return text + "\n" + png_markdown(png, "median error vs runs")


def _csv(rows: Sequence[Sequence[object]]) -> str:
    """CSV text with floats in full precision."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()
