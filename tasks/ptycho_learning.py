"""Prefect tasks of the dose/overlap study's learning phases: E (train), G (compare) and H (summary).

Thin wrappers around ``ptylib.ptycho.training_jobs``, ``comparison`` and ``summary``: they pass paths and
small records, and publish tables, plots and progress as artifacts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ptylib.io.atomic import atomic_write_json
from ptylib.ptycho import comparison, summary, training_jobs
from ptylib.ptycho.layout import (
    COMPARISON_MANIFEST,
    GUARDRAIL,
    SKIP_SUMMARY,
    SUMMARY_DIR,
    TRAINING_MANIFEST,
    TRAINING_PLAN,
)
from ptylib.ptycho.pinn.options import ModelKind
from ptylib.ptycho.study import dose_label, load_design, run_relative
from tasks.artifacts import (
    ProgressArtifact,
    publish_markdown,
    publish_pngs,
    publish_table,
)


def job_from_dict(job: Mapping[str, Any]) -> training_jobs.TrainingJob:
    """A job back from its JSON form."""
    return training_jobs.TrainingJob(float(job["dose"]), job["view"], int(job["gridsize"]), ModelKind(job["kind"]),
                                     job["dataset"])


def job_dict(job: training_jobs.TrainingJob) -> dict[str, Any]:
    """A job's JSON form (with its id)."""
    return {**asdict(job), "kind": job.kind.value, "job": job.job_id}


@task(name="study-training-plan", cache_policy=NO_CACHE)
def training_plan_task(design_json: str, datasets: Sequence[Mapping[str, Any]], views: Sequence[Mapping[str, Any]],
                       doses: Sequence[float], view_names: Sequence[str], gridsizes: Sequence[int]) -> dict[str, Any]:
    """The filtered job matrix and the skipped views (as JSON-ready dicts); publishes the plan table."""
    jobs, skipped = training_jobs.build_jobs(load_design(design_json), datasets, views)
    chosen = training_jobs.select_jobs(jobs, doses=doses, views=view_names, gridsizes=gridsizes)
    skipped = [s for s in skipped if (not doses or s["dose"] in doses) and (not view_names or s["view"] in view_names)
               and (not gridsizes or s["gridsize"] in gridsizes)]
    publish_table("study-training-plan", [{"job": j.job_id, "kind": j.kind.value, "gridsize": j.gridsize,
                                           "view": j.view} for j in chosen], "phase E: jobs to train")
    return {"jobs": [job_dict(j) for j in chosen], "skipped": skipped}


@task(name="study-train-job", cache_policy=NO_CACHE)
def train_job_task(run_dir: str, design_json: str, job: Mapping[str, Any]) -> dict[str, Any]:
    """Train one job (reused when unchanged) with per-epoch progress; returns its record."""
    design = load_design(design_json)
    spec = job_from_dict(job)
    progress = ProgressArtifact(design.training.epochs, f"training {spec.job_id}: epochs")
    out = TRAINING_MANIFEST.parent / dose_label(spec.dose) / spec.name
    record = training_jobs.train_job(design, spec, out, root=run_dir, on_epoch=lambda epoch, loss: progress.advance())
    progress.advance(progress.total)
    return record


@task(name="study-training-manifest", cache_policy=NO_CACHE)
def training_manifest_task(run_dir: str, records: Sequence[Mapping[str, Any]],
                           skipped: Sequence[Mapping[str, Any]]) -> str:
    """Merge the jobs into ``phase_e/training_manifest.json``, write ``skip_summary.json``, publish table and plots."""
    path = Path(run_dir) / TRAINING_MANIFEST
    previous = training_jobs.load_manifest(path, "existing")["jobs"] if path.exists() else []
    entries = {e["job"]: e for e in previous} | {r["job"]: training_jobs.manifest_entry(r) for r in records}
    skip_path = Path(run_dir) / SKIP_SUMMARY
    atomic_write_json(skip_path, {"skipped_views": list(skipped), "skipped_count": len(skipped)})
    atomic_write_json(path, {"phase": "E", "jobs": sorted(entries.values(), key=lambda e: (e["dose"], e["job"])),
                             "skip_summary": run_relative(skip_path, run_dir)})
    publish_table("study-training", [{
        "job": r["job"], "groups": r["n_groups"], "epochs": r["epochs"], "final loss": r["final_loss"],
        "s/epoch": r["seconds_per_epoch"], "reused": bool(r.get("reused"))} for r in records],
        "phase E: trained networks")
    publish_pngs("study-training-loss", {r["job"]: Path(run_dir) / r["loss_png"] for r in records},
                 "# Training loss per epoch (phase E)\n")
    return TRAINING_MANIFEST.as_posix()


@task(name="study-training-dry-run", cache_policy=NO_CACHE)
def training_plan_file_task(run_dir: str, plan: Mapping[str, Any]) -> str:
    """``--dry-run``: write the planned jobs to ``phase_e/training_plan.json``; nothing is trained."""
    path = Path(run_dir) / TRAINING_PLAN
    atomic_write_json(path, {"dry_run": True, "jobs": list(plan["jobs"]), "skipped": plan["skipped"]})
    return TRAINING_PLAN.as_posix()


@task(name="study-loss-guardrail", cache_policy=NO_CACHE)
def guardrail_task(run_dir: str, reference: str, tolerance: float, doses: Sequence[float],
                   views: Sequence[str], gridsizes: Sequence[int]) -> str:
    """Check the training manifest against a reference manifest; writes ``phase_e/guardrail.json`` either way."""
    path = Path(run_dir) / GUARDRAIL
    candidate = Path(run_dir) / TRAINING_MANIFEST
    try:
        rows = training_jobs.check_training_loss(reference, candidate, tolerance=tolerance, doses=doses,
                                                 views=views, gridsizes=gridsizes)
    except training_jobs.GuardrailError as exc:
        atomic_write_json(path, {"reference": reference, "tolerance": tolerance, "passed": False, "error": str(exc)})
        raise
    atomic_write_json(path, {"reference": reference, "tolerance": tolerance, "passed": True, "jobs": rows})
    publish_table("study-loss-guardrail", rows, f"phase E: loss guardrail (tolerance {tolerance:.0%})")
    return GUARDRAIL.as_posix()


def comparison_conditions(run_dir: str, training: Sequence[Mapping[str, Any]],
                          lsqml: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every dose × view with a PINN, a baseline and an LSQML reconstruction; the rest as skips with reasons."""
    models = {(float(t["dose"]), t["name"]): t["model_dir"] for t in training}
    conditions, skipped = [], []
    for rec in lsqml:
        dose, view = float(rec["dose"]), rec["target"]
        pinn_names = ["pinn_gs1"] if view == training_jobs.FULL_VIEW else sorted(
            n for (d, n) in models if d == dose and n.startswith("pinn_gs") and n.endswith(f"_{view}"))
        pinn = models.get((dose, pinn_names[-1])) if pinn_names else None
        baseline = models.get((dose, "baseline"))
        if pinn is None or baseline is None:
            missing = "PINN" if pinn is None else "baseline"
            skipped.append({"dose": dose, "view": view, "reason": f"no trained {missing} model in phase E"})
            continue
        conditions.append({"dose": dose, "view": view, "test": rec["dataset"], "lsqml_npz": rec["lsqml_npz"],
                           "models": {"pinn": pinn, "baseline": baseline}})
    return conditions, skipped


@task(name="study-compare", cache_policy=NO_CACHE)
def compare_task(run_dir: str, design_json: str, condition: Mapping[str, Any]) -> dict[str, Any]:
    """Phase G for one dose × view; returns the comparison record."""
    label = f"{dose_label(condition['dose'])} {condition['view']}"
    out = COMPARISON_MANIFEST.parent / dose_label(condition["dose"]) / condition["view"]
    return comparison.compare_condition(load_design(design_json), condition["dose"], condition["view"],
                                        condition["test"], condition["models"], condition["lsqml_npz"], out,
                                        f"{label}: PINN vs baseline vs LSQML", root=run_dir)


@task(name="study-comparison-manifest", cache_policy=NO_CACHE)
def comparison_manifest_task(run_dir: str, records: Sequence[Mapping[str, Any]],
                             skipped: Sequence[Mapping[str, Any]]) -> str:
    """Write ``phase_g/comparison_manifest.json``; publish the three-way table and the figures."""
    path = Path(run_dir) / COMPARISON_MANIFEST
    atomic_write_json(path, {"phase": "G", "comparisons": list(records), "skipped": list(skipped)})
    publish_table("study-comparison", [{"dose": r["dose"], "view": r["view"], **row} for r in records
                                       for row in r["rows"]], "phase G: PINN vs baseline vs LSQML")
    publish_pngs("study-comparison-figures", {f"{dose_label(r['dose'])} {r['view']}": Path(run_dir) / r["figure"]
                                              for r in records},
                 "# Three-way comparisons (phase G)\n")
    return COMPARISON_MANIFEST.as_posix()


@task(name="study-summary", cache_policy=NO_CACHE)
def summary_task(run_dir: str, design_json: str, comparisons: Sequence[Mapping[str, Any]],
                 skipped: Sequence[Mapping[str, Any]], training: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Phase H: ``phase_h/summary.{md,json}``, plots, and the summary as a Markdown artifact."""
    result = summary.write_summary(load_design(design_json), comparisons, skipped, training,
                                   Path(run_dir) / SUMMARY_DIR)
    text = Path(result["summary_md"]).read_text(encoding="utf-8").split("## Plots")[0]
    publish_markdown("study-summary", text, "dose/overlap study summary (phase H)")
    publish_pngs("study-summary-plots", {"phase MS-SSIM vs dose": result["plots"]["phase_ms_ssim"],
                                         "FRC50 vs dose": result["plots"]["frc50_px"]}, "# Summary plots (phase H)\n")
    return result
