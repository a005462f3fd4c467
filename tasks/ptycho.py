"""Prefect tasks of the dose/overlap study: thin wrappers around ``ptylib.ptycho.study`` that pass paths and
small records (never arrays) and publish tables, plots and progress as artifacts."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ptylib.io.atomic import atomic_write_json
from ptylib.io.report import markdown_table
from ptylib.ptycho import study
from ptylib.ptycho.layout import (
    DESIGN,
    INPUTS,
    LSQML_MANIFEST,
    RUN_MANIFEST,
    VIEWS_MANIFEST,
)
from ptylib.ptycho.lsqml import Device
from ptylib.ptycho.options import StudyDesign
from tasks.artifacts import (
    ProgressArtifact,
    publish_markdown,
    publish_pngs,
    publish_table,
)


def read_json(run_dir: str, relative: Path, phase: str) -> dict[str, Any]:
    """A phase's JSON output, or an error saying which phase must run first."""
    path = Path(run_dir) / relative
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing; run phase {phase} of the study in {run_dir} first") from None


@task(name="study-design", cache_policy=NO_CACHE)
def design_task(run_dir: str, design: StudyDesign) -> str:
    """Phase A: write ``phase_a/design.json``; a run directory never silently changes its design."""
    path = Path(run_dir) / DESIGN
    if (reason := study.design_change(path, design)) is not None:
        raise ValueError(reason)
    if not path.exists():
        study.save_design(design, path)
    rows = [{"constant": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else v}
            for k, v in design.model_dump(mode="json").items()]
    rows += [{"constant": f"S ({view})", "value": f"{design.spacing_px(view):.1f} px"} for view in design.overlap_views]
    publish_markdown("study-design", "# Study design (phase A)\n\n" + markdown_table(rows), "dose/overlap study design")
    return DESIGN.as_posix()


@task(name="study-inputs", cache_policy=NO_CACHE)
def inputs_task(run_dir: str, design_json: str, object_npz: str | None, force: bool = False) -> dict[str, Any]:
    """Phase B: object, probe and scan checked against the design; returns the validation record."""
    record = study.prepare_inputs(study.load_design(design_json), INPUTS.parent, object_npz, root=run_dir,
                                  force=force)
    publish_table("study-validation", record["checks"], "phase B: inputs and feasibility")
    return record


@task(name="study-generate-dose", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def generate_dose_task(run_dir: str, design_json: str, base_npz: str, dose: float) -> dict[str, Any]:
    """Phase C for one dose; returns the dataset record (paths, counts, hashes)."""
    out = RUN_MANIFEST.parent / study.dose_label(dose)
    return study.generate_dose(study.load_design(design_json), base_npz, dose, out, root=run_dir)


@task(name="study-run-manifest", cache_policy=NO_CACHE)
def run_manifest_task(run_dir: str, records: Sequence[Mapping[str, Any]]) -> str:
    """Write ``phase_c/run_manifest.json`` and publish the per-dose table."""
    atomic_write_json(Path(run_dir) / RUN_MANIFEST, {"phase": "C", "doses": list(records)})
    publish_table("study-datasets", [{
        "dose": r["dose"], "train patterns": r["train"]["n_patterns"], "test patterns": r["test"]["n_patterns"],
        "mean counts / pattern": r["mean_counts_per_pattern"], "split row (px)": r["y_cut_px"],
        "guard band dropped": r["guard_band_dropped"], "reused": bool(r.get("reused"))} for r in records],
        "phase C: datasets per dose")
    return RUN_MANIFEST.as_posix()


@task(name="study-view", cache_policy=NO_CACHE)
def view_task(run_dir: str, design_json: str, dose: float, split_npz: Mapping[str, str], view: str) -> dict[str, Any]:
    """Phase D for one dose and view; returns its metrics bundle (status ``ok`` or ``skipped`` + reason)."""
    out = VIEWS_MANIFEST.parent / study.dose_label(dose) / view
    return study.make_view(study.load_design(design_json), dose, split_npz, view, out, root=run_dir)


@task(name="study-views-manifest", cache_policy=NO_CACHE)
def views_manifest_task(run_dir: str, bundles: Sequence[Mapping[str, Any]]) -> str:
    """Write ``phase_d/views_manifest.json``; publish the spacing table and plots."""
    atomic_write_json(Path(run_dir) / VIEWS_MANIFEST, {"phase": "D", "views": list(bundles),
                             "skipped": [{"dose": b["dose"], "view": b["view"], "reason": b["reason"]}
                                         for b in bundles if b["status"] != "ok"]})
    publish_table("study-views", [{
        "dose": b["dose"], "view": b["view"], "S (px)": b["min_spacing_px"], "status": b["status"],
        "train kept": b["train"]["n_kept"], "test kept": b["test"]["n_kept"],
        "test min spacing (px)": b["test"]["kept_min_nn_px"], "reason": b["reason"] or ""} for b in bundles],
        "phase D: overlap views")
    publish_pngs("study-spacing", {f"{study.dose_label(b['dose'])} {b['view']}": Path(run_dir) / b["spacing_plot"]
                                   for b in bundles}, "# Group-centre spacing of the overlap views (phase D)\n")
    return VIEWS_MANIFEST.as_posix()


@task(name="study-lsqml", cache_policy=NO_CACHE)
def lsqml_task(run_dir: str, design_json: str, dataset_npz: str, dose: float, target: str,
               threads: int | None, device: Device = Device.AUTO) -> dict[str, Any]:
    """Phase F for one test split: pty-chi LSQML with per-epoch progress; returns the reconstruction record."""
    design = study.load_design(design_json)
    out = LSQML_MANIFEST.parent / study.dose_label(dose) / target
    progress = ProgressArtifact(design.lsqml_epochs, f"LSQML {study.dose_label(dose)} {target}: epochs")
    stride = max(1, design.lsqml_epochs // 10)  # each update is an API call: about ten per reconstruction

    def on_epoch(epoch: int, loss: float) -> None:
        if (epoch + 1) % stride == 0:
            progress.advance(stride)

    record = study.reconstruct(design, dataset_npz, out, f"{study.dose_label(dose)} {target}", root=run_dir,
                               threads=threads, device=device, on_epoch=on_epoch)
    progress.advance(progress.total)  # the remainder, or all of it when the reconstruction was reused
    return record | {"dose": dose, "target": target}


@task(name="study-lsqml-manifest", cache_policy=NO_CACHE)
def lsqml_manifest_task(run_dir: str, records: Sequence[Mapping[str, Any]],
                        skipped: Sequence[Mapping[str, Any]]) -> str:
    """Write ``phase_f/lsqml_manifest.json``; publish the quality table, loss curves and images."""
    atomic_write_json(Path(run_dir) / LSQML_MANIFEST,
                      {"phase": "F", "reconstructions": list(records), "skipped": list(skipped)})
    publish_table("study-lsqml", [{
        "dose": r["dose"], "target": r["target"], "patterns": r["n_patterns"], "s/epoch": r["seconds_per_epoch"],
        "final loss": r["final_loss"], "phase MS-SSIM": r["phase_ms_ssim"], "phase r": r["phase_pearson"],
        "amplitude MS-SSIM": r["amplitude_ms_ssim"], "FRC 0.5 (px)": r["frc_resolution_px"]} for r in records],
        "phase F: pty-chi LSQML reconstructions of the test splits")
    pngs = {}
    for r in records:
        pngs[f"{study.dose_label(r['dose'])} {r['target']}: loss"] = Path(run_dir) / r["loss_png"]
        pngs[f"{study.dose_label(r['dose'])} {r['target']}: amplitude and phase"] = Path(run_dir) / r["image_png"]
    publish_pngs("study-lsqml-figures", pngs, "# LSQML reconstructions (phase F)\n")
    return LSQML_MANIFEST.as_posix()
