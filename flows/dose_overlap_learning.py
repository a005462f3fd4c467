"""The dose/overlap study, part 2: phases E (train the PINNs and the supervised baseline), G (three-way
comparison with LSQML) and H (summary), each a subflow reading the earlier phases' files in ``run_dir``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import flow, get_run_logger

from flows.scale_out import ScaleOut, run_jobs, task_runners
from ptylib.ptycho.layout import (
    COMPARISON_MANIFEST,
    DESIGN,
    LSQML_MANIFEST,
    RUN_MANIFEST,
    SKIP_SUMMARY,
    TRAINING_MANIFEST,
    VIEWS_MANIFEST,
)
from ptylib.ptycho.study import run_relative
from tasks.ptycho import read_json
from tasks.ptycho_learning import (
    compare_task,
    comparison_conditions,
    comparison_manifest_task,
    guardrail_task,
    summary_task,
    train_job_task,
    training_manifest_task,
    training_plan_file_task,
    training_plan_task,
)


@flow(name="study-phase-e-train", flow_run_name="train")
def train_phase(run_dir: str, doses: Sequence[float] = (), views: Sequence[str] = (), gridsizes: Sequence[int] = (),
                dry_run: bool = False, guardrail_reference: str | None = None,
                guardrail_tolerance: float = 0.25, scale_out: ScaleOut | None = None) -> str:
    """Phase E: PINN gs1, PINN gs2 per overlap view and the supervised baseline for every dose.

    ``doses``/``views``/``gridsizes`` filter the job matrix (``full`` is the whole train split);
    ``dry_run`` only writes ``phase_e/training_plan.json``; ``guardrail_reference`` checks every trained
    job's final loss against that manifest (within ``guardrail_tolerance``, a fraction).

    Parameters
    ----------
    run_dir : folder of the study (phases A to D must have run in it).
    doses : doses to train (photons; empty: all).
    views : overlap views to train (dense, sparse, full; empty: all).
    gridsizes : PINN group sizes to train (1, 2; empty: all).
    dry_run : only write the training plan.
    guardrail_reference : a training manifest whose final losses every job must match.
    guardrail_tolerance : allowed relative difference from the reference's final loss (fraction).
    scale_out : where the training jobs run: one after another in this process (threads, the default:
        TensorFlow uses every core) or all at once on a Dask cluster, one job per worker process.
    """
    design_json = str(Path(run_dir) / DESIGN)
    read_json(run_dir, DESIGN, "A")
    datasets = read_json(run_dir, RUN_MANIFEST, "C")["doses"]
    plan = training_plan_task(design_json, datasets, read_json(run_dir, VIEWS_MANIFEST, "D")["views"],
                              list(doses), list(views), list(gridsizes))
    if dry_run:
        return training_plan_file_task(run_dir, plan)
    with task_runners(scale_out or ScaleOut()) as make_runner:
        records = run_jobs(train_job_task, [(run_dir, design_json, job) for job in plan["jobs"]], make_runner,
                           "study-train-jobs")
    for skip in plan["skipped"]:
        get_run_logger().warning("%s skipped: %s", skip["job"], skip["reason"])
    manifest = training_manifest_task(run_dir, records, plan["skipped"])
    if guardrail_reference is not None:
        guardrail_task(run_dir, guardrail_reference, guardrail_tolerance, list(doses), list(views), list(gridsizes))
    return manifest


@flow(name="study-phase-g-compare", flow_run_name="compare")
def compare_phase(run_dir: str, scale_out: ScaleOut | None = None) -> str:
    """Phase G: for every dose × view, PINN vs supervised baseline vs LSQML on the same test split.

    Parameters
    ----------
    run_dir : folder of the study (phases E and F must have run in it).
    scale_out : where the comparisons run: one after another in this process (threads, the default) or all
        at once on a Dask cluster, one per worker process.
    """
    design_json = str(Path(run_dir) / DESIGN)
    training = read_json(run_dir, TRAINING_MANIFEST, "E")["jobs"]
    conditions, skipped = comparison_conditions(run_dir, training,
                                                read_json(run_dir, LSQML_MANIFEST, "F")["reconstructions"])
    with task_runners(scale_out or ScaleOut()) as make_runner:
        records = run_jobs(compare_task, [(run_dir, design_json, condition) for condition in conditions], make_runner,
                           "study-compare-jobs")
    return comparison_manifest_task(run_dir, records, skipped)


@flow(name="study-phase-h-summary", flow_run_name="summary")
def summary_phase(run_dir: str) -> str:
    """Phase H: ``phase_h/summary.md`` and ``summary.json`` with plots, skips, design, versions and seeds.

    Parameters
    ----------
    run_dir : folder of the study (phase G must have run in it).
    """
    compared = read_json(run_dir, COMPARISON_MANIFEST, "G")
    skipped = (read_json(run_dir, VIEWS_MANIFEST, "D")["skipped"] + read_json(run_dir, SKIP_SUMMARY, "E")["skipped_views"]
               + [s | {"job": "comparison"} for s in compared["skipped"]])
    result = summary_task(run_dir, str(Path(run_dir) / DESIGN), compared["comparisons"], skipped,
                          read_json(run_dir, TRAINING_MANIFEST, "E")["jobs"])
    return run_relative(result["summary_md"], run_dir)
