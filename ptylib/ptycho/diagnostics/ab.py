"""A/B diagnostics that need no training: probe normalisation, grouping and reassembly limits across
scenarios with identical seeds, plus the grid vs non-grid summary of two finished scenario reports."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ptylib.io.atomic import atomic_write_json, atomic_write_text
from ptylib.io.report import markdown_table
from ptylib.ptycho.diagnostics.data import (
    group_part,
    simulate_split,
    simulate_split_group,
)
from ptylib.ptycho.diagnostics.grouping_stats import grouping_failure, grouping_summary
from ptylib.ptycho.diagnostics.probe_stats import probe_normalisation_ab
from ptylib.ptycho.diagnostics.reassembly import reassembly_limits, stitch_frame
from ptylib.ptycho.diagnostics.report import flatten
from ptylib.ptycho.diagnostics.scenario import ScenarioOptions, builtin_scenario
from ptylib.ptycho.pinn.infer import (
    central_crop,  # the part of a patch the PINN's inference stitches
)

PathLike = str | os.PathLike[str]
AB_KINDS = ("grid", "probe", "grouping", "reassembly")
LEGACY_PATTERNS = 2
"""Patterns per split of the seed's legacy gs2 configuration (too few for a group of C = 4)."""


def default_scenarios(kind: str) -> list[ScenarioOptions]:
    """The scenarios an A/B compares by default: grid/nongrid, or the two ideal ones."""
    if kind not in AB_KINDS:
        raise ValueError(f"unknown A/B diagnostic {kind!r}; choose one of {', '.join(AB_KINDS)}")
    names = ("grid", "nongrid") if kind == "grid" else ("gs1_ideal", "gs2_ideal")
    return [builtin_scenario(n) for n in names]


def probe_rows(scenarios: Sequence[ScenarioOptions]) -> list[dict[str, Any]]:
    """Probe normalisation A/B of each scenario (unit power vs dose-scaled)."""
    rows = []
    for options in scenarios:
        data = simulate_split(options)
        record = probe_normalisation_ab(data.probe_raw, data.train["probeGuess"])
        for branch, stats in record["stats"].items():
            rows.append({"scenario": options.name, "probe": branch, **stats})
        rows.append({"scenario": options.name, "probe": "ratio dose_scaled / unit_power",
                     **record["ratio_dose_scaled_over_unit"]})
        rows.append({"scenario": options.name, "probe": "max |normalised delta|",
                     "amplitude_max": record["normalised_max_abs_delta"]})
    return rows


def grouping_rows(scenarios: Sequence[ScenarioOptions]) -> list[dict[str, Any]]:
    """Grouping of each scenario's splits, and of the first scenario with gridsize 2 on only
    ``LEGACY_PATTERNS`` patterns per split (the seed's legacy case): failures are rows, not crashes."""
    configs = [(o.name, o, None) for o in scenarios]
    gs2 = next((o for o in scenarios if o.gridsize == 2), None)
    if gs2 is not None:
        configs.append((f"{gs2.name} on {LEGACY_PATTERNS} patterns/split", gs2, LEGACY_PATTERNS))
    rows = []
    for label, options, limit in configs:
        data = simulate_split(options)
        for part in ("train", "test"):
            arrays = getattr(data, part)
            if limit is not None:
                arrays = {k: (v[:limit] if k in ("diffraction", "xcoords", "ycoords", "Y", "scan_index") else v)
                          for k, v in arrays.items()}
            try:
                summary = grouping_summary(group_part(arrays, options, part), options.n_groups)
            except ValueError as exc:
                summary = grouping_failure(exc, len(arrays["xcoords"]), options.n_groups)
            rows.append({"config": label, "split": part, "gridsize": options.gridsize, "K": options.neighbor_count,
                         **flatten(summary)})
    return rows


def reassembly_rows(scenarios: Sequence[ScenarioOptions], canvas_px: int | None = None) -> list[dict[str, Any]]:
    """Each scenario's test split stitched from its ground-truth patches (known energy) on the required canvas
    and on an undersized one (``canvas_px``, default one patch, N px): fit and lost energy fraction."""
    rows = []
    for options in scenarios:
        test = simulate_split_group(options).test
        members = test["group_indices"]
        crops = central_crop(test["Y"][members].reshape(-1, options.patch_size_px, options.patch_size_px))
        x, y = test["xcoords"][members].ravel(), test["ycoords"][members].ravel()
        for label, side in (("required", None), ("undersized", canvas_px or options.patch_size_px)):
            frame = stitch_frame(x, y, crops.shape[-1], side)
            rows.append({"scenario": options.name, "canvas": label,
                         **reassembly_limits(crops, frame.offsets_xy, frame.side)})
    return rows


def _write(out: PathLike, kind: str, title: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = Path(out)
    record = {"kind": kind, "rows": rows}
    atomic_write_json(out / f"ab_{kind}.json", record)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    atomic_write_text(out / f"ab_{kind}.md", f"# {title}\n\n" + markdown_table(rows, columns))
    return record


def run_ab(kind: str, scenarios: Sequence[ScenarioOptions], out: PathLike,
           canvas_px: int | None = None) -> dict[str, Any]:
    """Run the ``probe``, ``grouping`` or ``reassembly`` A/B; writes ``ab_<kind>.json`` and ``.md`` in ``out``."""
    Path(out).mkdir(parents=True, exist_ok=True)
    if kind == "probe":
        return _write(out, kind, "Probe normalisation A/B (unit power vs dose-scaled)", probe_rows(scenarios))
    if kind == "grouping":
        return _write(out, kind, "Grouping A/B (requested vs achieved, offsets, neighbour indices)",
                      grouping_rows(scenarios))
    if kind == "reassembly":
        return _write(out, kind, "Reassembly limits A/B (required vs undersized canvas)",
                      reassembly_rows(scenarios, canvas_px))
    raise ValueError(f"A/B {kind!r} runs no training-free kernel; choose probe, grouping or reassembly")


def grid_summary(out: PathLike, reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Grid vs non-grid: each scenario's checks side by side (``ab_grid.json`` / ``.md``)."""
    rows = [{"scenario": name, "passed": rep["passed"],
             **{c["name"]: c["value"] for c in rep["checks"]}} for name, rep in reports.items()]
    return _write(out, "grid", "Grid vs non-grid A/B (same seeds and probe)", rows)
