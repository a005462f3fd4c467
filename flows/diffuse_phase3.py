"""The seed's Phase 3 end-to-end visual check as a flow: stills -> Phases 1-3 -> diagnostics.

Phases 1-2 fan out per still (threads, or a Dask cluster: ``scale_out``); a still that fails (DIALS could not index it, say) is reported and
left out, the rest go on. Every step is resumable: rerunning with the same inputs and run folder
skips what is already done.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows.scale_out import ScaleOut, task_runners
from ptylib.diffuse.layout import RunLayout
from ptylib.diffuse.options import DiffuseOptions
from ptylib.io.manifest import write_manifest
from tasks.artifacts import ProgressArtifact, publish_table
from tasks.diffuse import (
    bin_task,
    grid_task,
    phase1_task,
    phase2_task,
    scale_merge_task,
)


def run_folder(output_base_dir: str, cbf_image_paths: list[str], run_name: str | None) -> Path:
    """``<output_base_dir>/<run_name>``, by default named after the first still and the count (so reruns resume)."""
    name = run_name or f"{Path(cbf_image_paths[0]).stem}_{len(cbf_image_paths)}stills"
    return Path(output_base_dir) / name


#: Stills processed at once on threads: Prefect's thread pool is unbounded by default, and each DIALS
#: process holds a few hundred MB, so one per core.
MAX_PARALLEL_STILLS = max(1, len(os.sched_getaffinity(0)))


def process_stills(cbfs: list[str], experiments: list[str | None], run_dir: str,
                   options: DiffuseOptions) -> list[dict[str, Any]]:
    """Phases 1-2 of every still on the current task runner; one row per still, ``status`` ok or failed (with why).

    Called inside the diffuse flow run (threads), or as the subflow :data:`diffuse_stills` on a Dask task runner.
    """
    logger = get_run_logger()
    progress = ProgressArtifact(len(cbfs), "Phases 1-2 per still")
    # All Phase-1 runs are queued before any Phase-2 run, so no pool thread waits on an unstarted upstream.
    phase1 = [phase1_task.submit(cbf, expt, run_dir, still, options)
              for still, (cbf, expt) in enumerate(zip(cbfs, experiments, strict=True), start=1)]
    futures = [(still, p1, phase2_task.submit(cbf, run_dir, still, options.extraction, wait_for=[p1]))
               for still, (cbf, p1) in enumerate(zip(cbfs, phase1, strict=True), start=1)]
    rows = []
    for still, p1, p2 in futures:
        p2.wait()
        progress.advance()
        if p2.state.is_completed():
            rows.append({**p1.result(), **p2.result(), "status": "ok"})
        else:
            reason = p1.state.message if not p1.state.is_completed() else p2.state.message
            rows.append({"still": still, "status": "failed", "reason": str(reason)[:200]})
            logger.warning("still %d left out: %s", still, reason)
    return rows


diffuse_stills = flow(name="diffuse-stills", flow_run_name="diffuse-stills-{run_dir}")(process_stills)
"""The per-still fan-out as a subflow, so that it can run on another task runner than the flow's (Dask)."""


@flow(name="diffuse-phase3", flow_run_name="diffuse-phase3-{output_base_dir}", log_prints=True,
      task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_STILLS))
def diffuse_phase3(cbf_image_paths: list[str], output_base_dir: str, experiment_paths: list[str] | None = None,
                   options: DiffuseOptions = DiffuseOptions(), run_name: str | None = None,
                   visual_check: bool = True, max_plot_points: int = 20000,
                   scale_out: ScaleOut | None = None) -> dict[str, Any]:
    """Phases 1-3 over the stills, then the visual check.

    Parameters
    ----------
    cbf_image_paths : miniCBF stills (relative paths are relative to the working directory).
    output_base_dir : base folder; the run goes to ``<output_base_dir>/<run_name>``.
    experiment_paths : one DIALS ``.expt`` per still for the known-geometry path; empty: DIALS indexes each still
        (set ``options.dials.unit_cell`` and ``space_group``).
    options : masks, extraction, grid, scaling and DIALS options (JSON in the UI form).
    run_name : run sub-folder; default ``<first CBF stem>_<N>stills``.
    visual_check : run the diagnostics flow on the outputs.
    max_plot_points : most q-points in the coverage plot.
    scale_out : where the per-still Phases 1-2 run: threads in this process (default, one still per core) or a
        Dask cluster (a local one started for the run, or a scheduler address).
    """
    from flows.diffuse_visual_check import diffuse_visual_check
    from ptylib.diffuse.inputs import validate_run_inputs

    logger = get_run_logger()
    scale_out = scale_out or ScaleOut()
    cbfs = [str(p) for p in validate_run_inputs(cbf_image_paths, experiment_paths, options)]
    root = run_folder(output_base_dir, cbf_image_paths, run_name)
    root.mkdir(parents=True, exist_ok=True)
    layout = RunLayout(root)
    parameters = {"cbf_image_paths": cbfs, "experiment_paths": experiment_paths, "options": options,
                  "run_dir": str(root), "scale_out": scale_out.model_dump(mode="json")}
    write_manifest(root, pipeline="diffuse_phase3", parameters=parameters, inputs=cbfs)
    experiments = [str(Path(p).absolute()) for p in experiment_paths] if experiment_paths else [None] * len(cbfs)
    with task_runners(scale_out) as make_runner:
        fan_out = process_stills if make_runner is None else diffuse_stills.with_options(task_runner=make_runner())
        rows = fan_out(cbfs, experiments, str(root), options)
    done = [row["still"] for row in rows if row["status"] == "ok"]
    publish_table("diffuse-phases-1-2", rows, description="Per-still masks and extracted observations")
    if not done:
        raise RuntimeError(f"no still passed Phases 1-2 (see the table artifact and {root / 'phase1'})")
    grid = grid_task(str(root), done, options.grid)
    binned = bin_task(str(root), done)
    merged = scale_merge_task(str(root), options.scaling)
    outputs = {"grid": str(layout.grid), "accumulator": binned["accumulator"], **merged, "stills_used": done,
               "stills_failed": [r["still"] for r in rows if r["status"] != "ok"]}
    if visual_check:
        check = diffuse_visual_check(str(layout.grid), str(layout.scaling), str(layout.voxel_data),
                                     str(layout.diagnostics), str(root / "phase2"), max_plot_points)
        outputs["diagnostics"] = check["texts"]
    write_manifest(root, pipeline="diffuse_phase3", parameters=parameters, inputs=cbfs, outputs=outputs)
    logger.info("diffuse run %s: %d of %d stills, %d observations, grid %s", root, len(done), len(cbfs),
                binned["observations"], grid["shape"])
    return {"run_dir": str(root), **outputs}
