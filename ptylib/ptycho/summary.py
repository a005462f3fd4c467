"""Phase H of the dose/overlap study: one row per dose × view × method, the Markdown summary and its plots."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ptylib.io.atomic import atomic_write_json, atomic_write_text
from ptylib.io.manifest import package_versions
from ptylib.io.report import markdown_table, save_figure
from ptylib.ptycho import plots
from ptylib.ptycho.options import StudyDesign

ROW_FIELDS: tuple[str, ...] = ("dose", "view", "method", "phase_ms_ssim", "amplitude_ms_ssim", "phase_mae",
                               "amplitude_mae", "psnr", "frc50_px")
EXTRA_FIELDS: tuple[str, ...] = ("amplitude_psnr", "phase_pearson", "ms_ssim_scales")


def summary_rows(comparisons: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of every comparison record: the required fields, then the helpful extras."""
    return [{"dose": float(c["dose"]), "view": c["view"], **{k: r[k] for k in ROW_FIELDS[2:] + EXTRA_FIELDS}}
            for c in comparisons for r in c["rows"]]


def target_checks(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The study's targets (issue 13) against the rows: value, goal, margin, met."""
    index = {(r["dose"], r["view"], r["method"]): r for r in rows}
    checks = []
    dense = index.get((1e4, "dense", "pinn"))
    if dense:
        checks.append({"target": "PINN gs2 (dense) amplitude MS-SSIM ≥ 0.95 at dose 1e4",
                       "value": dense["amplitude_ms_ssim"], "goal": 0.95})
    for (dose, view, method), row in sorted(index.items()):
        if method != "pinn":
            continue
        lsqml, baseline = index.get((dose, view, "lsqml")), index.get((dose, view, "baseline"))
        if dose == 1e3 and lsqml:
            checks.append({"target": f"PINN phase MS-SSIM ≥ LSQML's at dose 1e3 ({view})",
                           "value": row["phase_ms_ssim"], "goal": lsqml["phase_ms_ssim"]})
        if view == "full" and baseline:
            checks.append({"target": f"PINN ≥ supervised baseline, phase MS-SSIM, equal data (dose {dose:g})",
                           "value": row["phase_ms_ssim"], "goal": baseline["phase_ms_ssim"]})
    for check in checks:
        check["margin"] = check["value"] - check["goal"]
        check["met"] = bool(check["margin"] >= 0)
    return checks


def _dose_view_table(rows: Sequence[Mapping[str, Any]]) -> str:
    shown = []
    for row in rows:
        best = max(r["phase_ms_ssim"] for r in rows if r["dose"] == row["dose"] and r["view"] == row["view"])
        mark = "**" if row["phase_ms_ssim"] == best else ""
        shown.append({"dose": f"{row['dose']:g}", "view": row["view"], "method": row["method"],
                      "phase MS-SSIM": f"{mark}{row['phase_ms_ssim']:.4f}{mark}",
                      "amplitude MS-SSIM": row["amplitude_ms_ssim"], "phase MAE (rad)": row["phase_mae"],
                      "amplitude MAE": row["amplitude_mae"], "PSNR phase (dB)": row["psnr"],
                      "FRC50 (px)": row["frc50_px"]})
    return markdown_table(shown)


def write_summary(design: StudyDesign, comparisons: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, Any]],
                  training: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``summary.json`` (the rows), ``summary.md``, ``run_info.json`` and the two plots; returns the paths."""
    out = Path(out_dir)
    rows = summary_rows(comparisons)
    checks = target_checks(rows)
    plot_paths = {}
    for metric, label in (("phase_ms_ssim", "phase MS-SSIM"), ("frc50_px", "FRC50 (px, lower is better)")):
        figure = plots.metric_vs_dose_figure(rows, metric, label, f"{label} vs dose")
        plot_paths[metric] = str(save_figure(figure, out / f"{metric}_vs_dose.png"))
    seeds = {"simulation": design.seed_simulation, "grouping": design.seed_grouping,
             "subsampling": design.seed_subsampling, "training": design.training.seed}
    info = {"design": design.model_dump(mode="json"), "seeds": seeds, "versions": package_versions(),
            "skipped": list(skipped), "targets": checks,
            "training": [{k: t[k] for k in ("job", "final_loss", "epochs", "seconds_per_epoch")} for t in training]}
    atomic_write_json(out / "summary.json", rows)
    atomic_write_json(out / "run_info.json", info)
    skipped_rows = [{"dose": s.get("dose"), "view": s.get("view"), "job": s.get("job", ""), "reason": s["reason"]}
                    for s in skipped]
    text = "\n".join([
        f"# Dose/overlap study summary (profile {design.profile})", "",
        ("Every method reconstructs the same test split, is cut from the same object region and registered the "
         "same way; **bold** marks the best phase MS-SSIM (the emphasised metric) of each dose and view."), "",
        _dose_view_table(rows), "",
        "## Targets", "", markdown_table([{**c, "met": "yes" if c["met"] else "no"} for c in checks])
        if checks else "No target applies to this design.", "",
        "## Plots", "", "![phase MS-SSIM vs dose](phase_ms_ssim_vs_dose.png)", "",
        "![FRC50 vs dose](frc50_px_vs_dose.png)", "",
        "## Skipped", "", markdown_table(skipped_rows) if skipped_rows else "Nothing was skipped.", "",
        "## Training", "", markdown_table(info["training"]) if training else "No training record.", "",
        "## Seeds", "", markdown_table([{"seed": k, "value": v} for k, v in seeds.items()]), "",
        "## Versions", "", markdown_table([{"package": k, "version": v} for k, v in info["versions"].items()]), "",
        "## Design", "", "```json", json.dumps(info["design"], indent=2), "```", ""])
    atomic_write_text(out / "summary.md", text)
    return {"summary_json": str(out / "summary.json"), "summary_md": str(out / "summary.md"),
            "run_info_json": str(out / "run_info.json"), "plots": plot_paths, "rows": len(rows),
            "targets_met": sum(c["met"] for c in checks), "targets": len(checks),
            "finite": all(math.isfinite(r["phase_ms_ssim"]) for r in rows)}
