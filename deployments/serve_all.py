"""Serve every pipeline's deployments from one long-running process: ``python -m deployments.serve_all``.

Each deployment can then be run from the Prefect UI (with its parameter form), on its schedule,
or with ``prefect deployment run '<flow>/<deployment>'``. For work pools and workers instead of a
serving process, see ``deployments/prefect.yaml``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import timedelta

FLIGHT_CHECK_EVERY = timedelta(hours=12)


def build_deployments() -> list:
    """The deployments served by this module (Prefect ``RunnerDeployment`` objects)."""
    from flows.diffuse_demo import diffuse_demo
    from flows.diffuse_phase3 import diffuse_phase3
    from flows.diffuse_visual_check import diffuse_visual_check
    from flows.dose_overlap_study import dose_overlap_study
    from flows.ici_demo import ici_demo
    from flows.ici_flight_check import ici_flight_check
    from flows.ici_loop import ici_loop
    from flows.ici_study import ici_study
    from flows.sim_lines_debug import sim_lines_ab, sim_lines_debug

    return [
        ici_loop.to_deployment(
            name="ici-loop", tags=["ici"],
            description="ICI loop on your data: set run_root, inputs and crystfel.geometry in the form.",
        ),
        ici_demo.to_deployment(
            name="ici-demo", tags=["ici", "demo"],
            description="The ICI loop on a built-in synthetic run (DIALS when installed, else the stand-in indexer).",
        ),
        ici_study.to_deployment(
            name="ici-study", tags=["ici", "study"],
            description="ICI convergence study: the proposer vs the seed's hillmap, spiral and random search.",
        ),
        dose_overlap_study.to_deployment(
            name="dose-overlap-study", tags=["ptycho", "study"],
            description="Dose/overlap ptychography study A-H: datasets, views, PINN/baseline training (TensorFlow), "
                        "pty-chi LSQML, three-way comparison, summary. Set run_dir and profile in the form.",
        ),
        # A scheduled flight check on tiny synthetic data, on a fresh run root each time: a broken install
        # or a loop that no longer finds the centres shows up as a failed run.
        ici_flight_check.to_deployment(
            name="ici-flight-check", tags=["ici", "flight-check"], interval=FLIGHT_CHECK_EVERY,
            parameters={"parent": "runs/flight-check/ici"},
            description="Every 12 h: the ICI loop end to end on 4 synthetic events in a new run root (the newest "
                        "10 kept); fails when the index rate or the centre error misses its threshold.",
        ),
        diffuse_phase3.to_deployment(
            name="diffuse-phase3", tags=["diffuse"],
            description="Diffuse Phases 1-3 + visual check: set cbf_image_paths, output_base_dir and "
                        "experiment_paths (known geometry) or options.dials.unit_cell/space_group (DIALS).",
        ),
        diffuse_visual_check.to_deployment(
            name="diffuse-visual-check", tags=["diffuse"],
            description="The Phase 3 visual check on existing grid, scaling and voxel-data files.",
        ),
        diffuse_demo.to_deployment(
            name="diffuse-demo", tags=["diffuse", "demo"],
            description="Render the synthetic still set with known truth, process it, write accuracy.json.",
        ),
        sim_lines_debug.to_deployment(
            name="sim-lines-debug", tags=["ptycho", "debug"],
            description="Sim-lines debug scenario (lines object, PINN, stitch) with diagnostics and a pass/fail report.",
        ),
        sim_lines_ab.to_deployment(
            name="sim-lines-ab", tags=["ptycho", "debug"],
            description="Sim-lines A/B diagnostic: grid vs non-grid, probe normalisation, grouping or reassembly limits.",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Serve all deployments until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m deployments.serve_all", description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="maximum concurrent flow runs")
    args = parser.parse_args(argv)
    from prefect import serve

    serve(*build_deployments(), limit=args.limit)


if __name__ == "__main__":
    main()
