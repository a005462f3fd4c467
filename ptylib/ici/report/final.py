"""The final report of an ICI run: per-iteration figures, plots and, when known, the error to the true centres."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.ici.model import EventHistory, EventKey
from ptylib.ici.proposer.centre_model import estimate_refined_centres
from ptylib.ici.proposer.dxdy import run_root_dxdy_lookup
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.report.centres import centres_table, event_centres, write_centres
from ptylib.ici.report.plots import iteration_stats, plot_iterations, plot_trajectories
from ptylib.ici.report.summary import summarize_run_root
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.ici.runroot.ledger import read_ledger
from ptylib.ici.synthetic.dataset import read_truth, truth_path_for
from ptylib.io.atomic import atomic_write_text
from ptylib.io.report import markdown_table, png_markdown


def known_true_centres_mm(events: Sequence[EventKey]) -> dict[EventKey, tuple[float, float]]:
    """True centre offsets (mm) of the events whose HDF5 file has a hidden truth beside it (synthetic data)."""
    truths = {}
    for h5_path in {key.h5_path for key in events}:
        if truth_path_for(h5_path).is_file():
            truths[h5_path] = read_truth(h5_path).true_offset_mm
    return {k: (float(truths[k.h5_path][k.event, 0]), float(truths[k.h5_path][k.event, 1]))
            for k in events if k.h5_path in truths and k.event < len(truths[k.h5_path])}


def best_centres(histories: Mapping[EventKey, EventHistory]) -> dict[EventKey, tuple[float, float]]:
    """Each indexed event's shift (mm) with the lowest wRMSD."""
    best = {}
    for key, history in histories.items():
        good = [row for row in history.rows if row.succeeded]
        if good:
            row = min(good, key=lambda r: r.wrmsd)
            best[key] = (row.det_shift_x_mm, row.det_shift_y_mm)
    return best


def centre_errors_mm(
    histories: Mapping[EventKey, EventHistory], truth_mm: Mapping[EventKey, tuple[float, float]]
) -> dict[EventKey, float]:
    """Distance (mm) between each indexed event's best centre and its true centre."""
    best = best_centres(histories)
    return {k: math.dist(best[k], truth_mm[k]) for k in best if k in truth_mm}


def refined_centres(run_root: str | Path, histories: Mapping[EventKey, EventHistory],
                    options: ProposerOptions) -> dict[EventKey, tuple[float, float]]:
    """Each event's combined refined centre (mm): its successful runs' ``applied - (dx, dy)``, weighted.

    Only events whose runs left a usable ``per_frame_dx_dy.csv`` (an indexer that refines the
    detector) have one; directories are indexed by ledger order, as the proposer does.
    """
    indices = {key: index for index, key in enumerate(histories)}
    lookup = run_root_dxdy_lookup(Path(run_root), indices, options.dxdy_unit_to_mm)
    events = [h for h in histories.values() if h.rows]
    return {h.key: centre for h, (centre, _) in zip(events, estimate_refined_centres(events, options, lookup))
            if centre is not None}


def build_report(run_root: str | Path, truth_mm: Mapping[EventKey, tuple[float, float]] | None = None,
                 options: ProposerOptions | None = None, image_template: str | None = None) -> dict[str, Any]:
    """Write ``centres.csv``, ``report.md``, ``iterations.csv``, ``iterations.png`` and ``trajectories.png``.

    Returns the Markdown (with the PNGs embedded), the figures and the centres table (rows of
    :func:`~ptylib.ici.report.centres.centres_table`), for artifacts and callers. With a known truth,
    the figures give the error of each event's best-wRMSD centre and, when the indexer refined the
    detector, of its combined refined centre (:func:`refined_centres`, with ``options``); the
    centres table gets the error columns. ``image_template`` names HDF5 events' stills (DIALS).
    """
    root = Path(run_root)
    options = options or ProposerOptions()
    histories = read_ledger(root / LEDGER_NAME)
    centres = event_centres(root, histories, options, image_template)
    write_centres(root, centres)
    centres_rows = centres_table(centres, truth_mm)
    stats = iteration_stats(histories)
    summary = summarize_run_root(root)
    iterations_png = plot_iterations(stats, root / "iterations.png")
    trajectories_png = plot_trajectories(histories, root / "trajectories.png", truth_mm=truth_mm)

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(asdict(stats[0])) if stats else ["run_n"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(s) for s in stats)
    atomic_write_text(root / "iterations.csv", buffer.getvalue())

    figures: dict[str, Any] = {
        "events": len(histories),
        "runs": len(stats),
        "first_run_index_rate": stats[0].index_rate if stats else math.nan,
        "final_ever_indexed_rate": stats[-1].best_index_rate if stats else math.nan,
        "done_events": sum(h.is_done for h in histories.values()),
        "mean_runs_per_event": float(np.mean([len(h.rows) for h in histories.values()])) if histories else 0.0,
    }
    if truth_mm:
        errors = np.array(list(centre_errors_mm(histories, truth_mm).values()))
        first = np.array([math.dist((h.rows[0].det_shift_x_mm, h.rows[0].det_shift_y_mm), truth_mm[k])
                          for k, h in histories.items() if h.rows and k in truth_mm])
        figures["median_start_error_mm"] = float(np.median(first)) if first.size else math.nan
        figures["median_centre_error_mm"] = float(np.median(errors)) if errors.size else math.nan
        figures["p90_centre_error_mm"] = float(np.percentile(errors, 90)) if errors.size else math.nan
        refined = refined_centres(root, histories, options)
        refined_errors = np.array([math.dist(c, truth_mm[k]) for k, c in refined.items() if k in truth_mm])
        if refined_errors.size:
            figures["refined_centre_events"] = int(refined_errors.size)
            figures["median_refined_centre_error_mm"] = float(np.median(refined_errors))
            figures["p90_refined_centre_error_mm"] = float(np.percentile(refined_errors, 90))

    markdown = "\n".join([
        f"# ICI loop report: `{root.name}`\n",
        markdown_table([{"figure": k, "value": v} for k, v in figures.items()]),
        "## Centres (centres.csv)\n",
        markdown_table(centres_rows),
        "## Per iteration\n",
        markdown_table([asdict(s) for s in stats]),
        "## Summary\n",
        summary.to_markdown(),
    ])
    atomic_write_text(root / "report.md", markdown + "\n![iterations](iterations.png)\n![trajectories](trajectories.png)\n")
    embedded = markdown + "\n" + png_markdown(iterations_png, "iterations") + png_markdown(trajectories_png, "trajectories")
    return {"markdown": embedded, "figures": figures, "centres": centres_rows, "report": str(root / "report.md")}
