"""Serve every pipeline's deployments from one long-running process: ``python -m deployments.serve_all``.

Each deployment can then be run from the Prefect UI (with its parameter form), on its schedule, from
its event trigger, or with ``prefect deployment run '<flow>/<deployment>'``. ``deployments/prefect.yaml``
declares the same set for ``prefect deploy --all`` onto a process work pool; a test checks that the
two agree. A new flow adds one entry to :func:`build_deployments` and the same entry to prefect.yaml.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployments.inbox_watcher import EVENT as INBOX_EVENT

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.events import DeploymentEventTrigger
    from prefect.flows import Flow

FLIGHT_CHECK_EVERY = timedelta(hours=12)
ICI_WATCH_EVERY = timedelta(minutes=10)
NIGHTLY_CRON = "0 2 * * *"
"""The nightly regression's schedule (server time zone, UTC by default)."""
WORK_POOL = "ptyflows-process"
"""The process work pool of prefect.yaml's deployments (``ptyflows ui up`` creates it)."""


INBOX_PATH = "{{ event.resource['ptyflows.path'] }}"
"""Trigger parameter template: the path of the file the inbox watcher reported."""
INBOX_RUN_ROOT = "{{ event.resource['ptyflows.run-root'] }}"
"""Trigger parameter template: the run folder the watcher proposed for that file (``<runs-dir>/<stem>-<hash>``)."""


def inbox_trigger(kind: str, parameters: Mapping[str, Any]) -> DeploymentEventTrigger:
    """Start the deployment for each complete ``kind`` file the inbox watcher reports (one run per file), with
    ``parameters`` (templates of the event's labels) over the deployment's own."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name=f"inbox-{kind}", expect={INBOX_EVENT},
        match={"prefect.resource.id": "ptyflows.inbox.file.*", "ptyflows.kind": kind}, parameters=dict(parameters))


def ici_completed_trigger() -> DeploymentEventTrigger:
    """Start the ICI report of a run root when an ``ici-loop`` flow run on it completes."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="ici-loop-completed", expect={"prefect.flow-run.Completed"},
        match={"prefect.resource.id": "prefect.flow-run.*"},
        match_related={"prefect.resource.role": "flow", "prefect.resource.name": "ici-loop"},
        parameters={"run_root": "{{ flow_run.parameters.run_root }}"})


def build_deployments(ici_inbox_parameters: Mapping[str, Any] | None = None, schedules_paused: bool = False,
                      diffuse_inbox_parameters: Mapping[str, Any] | None = None) -> list:
    """The deployments served by this module (Prefect ``RunnerDeployment`` objects).

    ``ici_inbox_parameters`` are the ICI loop's parameters for HDF5 files from the inbox (indexer, geometry,
    proposer); the trigger adds each file's ``inputs`` and ``run_root``. ``diffuse_inbox_parameters`` are
    the diffuse pipeline's for CBF stills (``options.dials.unit_cell`` and ``space_group`` of the sample);
    the trigger adds ``cbf_image_paths`` and ``output_base_dir``. ``schedules_paused`` registers the
    schedules paused (they can be resumed in the UI).
    """
    from deployments.forms import describe_parameters

    def _deploy(flow: Flow, **options: Any) -> RunnerDeployment:
        if "interval" in options or "cron" in options:
            options["paused"] = schedules_paused
        return describe_parameters(flow.to_deployment(**options), flow.fn)

    from flows.all_pipelines import all_pipelines
    from flows.diffuse_demo import diffuse_demo
    from flows.diffuse_phase3 import diffuse_phase3
    from flows.diffuse_visual_check import diffuse_visual_check
    from flows.dose_overlap_learning import compare_phase, summary_phase, train_phase
    from flows.dose_overlap_study import (
        design_phase,
        dose_overlap_study,
        generation_phase,
        inputs_phase,
        lsqml_phase,
        views_phase,
    )
    from flows.ici_demo import ici_demo
    from flows.ici_flight_check import ici_flight_check
    from flows.ici_loop import ici_loop
    from flows.ici_report import ici_report
    from flows.ici_study import ici_study
    from flows.ici_watch import ici_watch
    from flows.refinement_demo import refinement_demo
    from flows.sim_lines_debug import sim_lines_ab, sim_lines_debug

    study_phases = [(design_phase, "a-design", "Phase A: the typed, validated study design."),
                    (inputs_phase, "b-inputs", "Phase B: object, probe, scan and the design's feasibility."),
                    (generation_phase, "c-generation", "Phase C: datasets per dose (simulate, split, group)."),
                    (views_phase, "d-views", "Phase D: dense and sparse overlap views of every dose."),
                    (train_phase, "e-train", "Phase E: PINN (gs1, gs2) and supervised baseline training."),
                    (lsqml_phase, "f-lsqml", "Phase F: pty-chi LSQML of every test split."),
                    (compare_phase, "g-compare", "Phase G: three-way comparison of PINN, baseline and LSQML."),
                    (summary_phase, "h-summary", "Phase H: the study's summary.md with tables and plots.")]
    return [
        _deploy(ici_loop,
            name="ici-loop", tags=["ici"],
            description="ICI loop on your data: set run_root, inputs and crystfel.geometry in the form.",
        ),
        _deploy(ici_loop,
            name="ici-inbox", tags=["ici", "inbox"], parameters=dict(ici_inbox_parameters or {}),
            triggers=[inbox_trigger("hdf5", {"run_root": INBOX_RUN_ROOT, "inputs": [INBOX_PATH]})],
            description="ICI loop on each complete HDF5 file the inbox watcher reports (one run root per file).",
        ),
        _deploy(ici_demo,
            name="ici-demo", tags=["ici", "demo"],
            description="The ICI loop on a built-in synthetic run (DIALS when installed, else the stand-in indexer).",
        ),
        _deploy(ici_study,
            name="ici-study", tags=["ici", "study"],
            description="ICI convergence study: the proposer vs the seed's hillmap, spiral and random search.",
        ),
        # A scheduled flight check on tiny synthetic data, on a fresh run root each time: a broken install
        # or a loop that no longer finds the centres shows up as a failed run.
        _deploy(ici_flight_check,
            name="ici-flight-check", tags=["ici", "flight-check"], interval=FLIGHT_CHECK_EVERY,
            parameters={"parent": "runs/flight-check/ici"},
            description="Every 12 h: the ICI loop end to end on 4 synthetic events in a new run root (the newest "
                        "10 kept); fails when the index rate or the centre error misses its threshold.",
        ),
        _deploy(ici_report,
            name="ici-report", tags=["ici", "report"], triggers=[ici_completed_trigger()],
            description="Summary report of an ICI run root; started whenever an ici-loop run completes.",
        ),
        _deploy(ici_watch,
            name="ici-watch", tags=["ici", "watch"], interval=ICI_WATCH_EVERY,
            parameters={"runs_dir": "runs/inbox"},
            description="Every 10 min: continue the unfinished ICI loops under runs_dir.",
        ),
        _deploy(refinement_demo,
            name="refinement-demo", tags=["refinement", "demo"],
            description="Recover mosaic spread and misset through the differentiable simulator (seed criteria).",
        ),
        _deploy(dose_overlap_study,
            name="dose-overlap-study", tags=["ptycho", "study"],
            description="Dose/overlap ptychography study A-H: datasets, views, PINN/baseline training (TensorFlow), "
                        "pty-chi LSQML, three-way comparison, summary. Set run_dir and profile in the form.",
        ),
        *[_deploy(phase, name=f"study-phase-{suffix}", tags=["study", "phase"], description=text)
          for phase, suffix, text in study_phases],
        _deploy(all_pipelines,
            name="nightly-regression", tags=["regression"], cron=NIGHTLY_CRON,
            parameters={"profile": "smoke", "fail_if_any": True},
            description="Nightly: every pipeline's smoke profile in a fresh run folder; fails when any fails.",
        ),
        _deploy(all_pipelines,
            name="demo", tags=["demo"], parameters={"profile": "small", "fail_if_any": True},
            description="The demo: every pipeline's small profile as subflows, one report with links.",
        ),
        _deploy(diffuse_phase3,
            name="diffuse-phase3", tags=["diffuse"],
            description="Diffuse Phases 1-3 + visual check: set cbf_image_paths, output_base_dir and "
                        "experiment_paths (known geometry) or options.dials.unit_cell/space_group (DIALS).",
        ),
        _deploy(diffuse_phase3,
            name="diffuse-inbox", tags=["diffuse", "inbox"], parameters=dict(diffuse_inbox_parameters or {}),
            triggers=[inbox_trigger("cbf", {"cbf_image_paths": [INBOX_PATH], "output_base_dir": INBOX_RUN_ROOT})],
            description="Diffuse Phases 1-3 on each complete CBF still the inbox watcher reports (one run per file, "
                        "DIALS indexing): set options.dials.unit_cell and space_group of the sample.",
        ),
        _deploy(diffuse_visual_check,
            name="diffuse-visual-check", tags=["diffuse"],
            description="The Phase 3 visual check on existing grid, scaling and voxel-data files.",
        ),
        _deploy(diffuse_demo,
            name="diffuse-demo", tags=["diffuse", "demo"],
            description="Render the synthetic still set with known truth, process it, write accuracy.json.",
        ),
        _deploy(sim_lines_debug,
            name="sim-lines-debug", tags=["ptycho", "debug"],
            description="Sim-lines debug scenario (lines object, PINN, stitch) with diagnostics and a pass/fail report.",
        ),
        _deploy(sim_lines_ab,
            name="sim-lines-ab", tags=["ptycho", "debug"],
            description="Sim-lines A/B diagnostic: grid vs non-grid, probe normalisation, grouping or reassembly limits.",
        ),
    ]


def _parameters_file(parser: argparse.ArgumentParser, path: Path | None, flag: str) -> dict[str, Any] | None:
    """The JSON object in ``path`` (None when not given); a parser error naming the file otherwise."""
    if path is None:
        return None
    try:
        parameters = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"{flag} {path}: {exc}")
    if not isinstance(parameters, dict):
        parser.error(f"{flag} {path}: expected a JSON object of flow parameters")
    return parameters


def main(argv: Sequence[str] | None = None) -> None:
    """Serve all deployments until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m deployments.serve_all", description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="maximum concurrent flow runs")
    parser.add_argument("--schedules-paused", action="store_true", help="register the schedules paused")
    parser.add_argument("--ici-inbox-parameters", type=Path, default=None,
                        help="JSON file of ici_loop parameters (backend, crystfel, dials, proposer ...) for inbox files")
    parser.add_argument("--diffuse-inbox-parameters", type=Path, default=None,
                        help="JSON file of diffuse_phase3 parameters (options.dials.unit_cell, space_group ...) "
                             "for inbox CBF stills")
    args = parser.parse_args(argv)
    ici = _parameters_file(parser, args.ici_inbox_parameters, "--ici-inbox-parameters")
    diffuse = _parameters_file(parser, args.diffuse_inbox_parameters, "--diffuse-inbox-parameters")
    from prefect import serve

    serve(*build_deployments(ici, args.schedules_paused, diffuse), limit=args.limit)


if __name__ == "__main__":
    main()
