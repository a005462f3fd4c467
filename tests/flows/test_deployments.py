"""Deployments: the served set and prefect.yaml point at real flows with valid parameters."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.prefect_test]
REPO = Path(__file__).parents[2]


def test_served_deployments_have_forms_and_valid_parameters() -> None:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    from deployments.serve_all import FLIGHT_CHECK_EVERY, build_deployments
    from flows.ici_loop import ici_loop

    deployments = {d.name: d for d in build_deployments()}
    assert set(deployments) == {"ici-loop", "ici-demo", "ici-flight-check", "ici-study", "dose-overlap-study",
                                "sim-lines-debug", "sim-lines-ab", "diffuse-phase3", "diffuse-visual-check",
                                "diffuse-demo"}
    assert deployments["ici-loop"].entrypoint == "flows/ici_loop.py:ici_loop"
    form = parameter_schema(ici_loop).model_dump()  # what the UI's run form is built from
    assert form["required"] == ["run_root"]
    assert {"radius_mm", "min_spacing_mm", "damping_factor"} <= set(form["definitions"]["ProposerOptions"]["properties"])
    assert {"inputs", "crystfel", "proposer", "max_iterations"} <= set(form["properties"])
    from flows.ici_study import ici_study

    study_form = parameter_schema(ici_study).model_dump()
    assert {"modes", "strategies", "proposer", "indexer"} <= set(study_form["properties"])
    assert "baseline_runs" in study_form["definitions"]["ProposerOptions"]["properties"]
    from flows.dose_overlap_study import dose_overlap_study

    study = parameter_schema(dose_overlap_study).model_dump()
    assert study["required"] == ["run_dir"]
    assert {"profile", "phases", "doses", "views", "gridsizes", "dry_run", "guardrail_reference"} <= set(
        study["properties"])
    from flows.sim_lines_debug import sim_lines_debug

    debug_form = parameter_schema(sim_lines_debug).model_dump()
    assert debug_form["properties"]["scenario"]["enum"][:2] == ["gs1_ideal", "gs2_ideal"]
    assert {"epochs", "rescale", "probe_npz", "canvas_px", "options"} <= set(debug_form["properties"])
    assert "min_pearson" in debug_form["definitions"]["ScenarioOptions"]["properties"]
    from flows.diffuse_phase3 import diffuse_phase3

    diffuse_form = parameter_schema(diffuse_phase3).model_dump()
    assert diffuse_form["required"] == ["cbf_image_paths", "output_base_dir"]
    assert {"d_min_target", "ndiv_h"} <= set(diffuse_form["definitions"]["GridOptions"]["properties"])
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    assert {d["name"] for d in spec["deployments"]} == set(deployments)
    check = deployments["ici-flight-check"]
    assert check.schedules[0].schedule.interval == FLIGHT_CHECK_EVERY
    assert check.parameters == {"parent": "runs/flight-check/ici"}
    assert check.entrypoint == "flows/ici_flight_check.py:ici_flight_check"
    check_form = parameter_schema(load_flow_from_entrypoint(str(REPO / check.entrypoint))).model_dump()
    assert {"min_index_rate", "max_centre_error_mm", "keep_runs"} <= set(
        check_form["definitions"]["FlightCheckOptions"]["properties"])


def test_prefect_yaml_entrypoints_load_and_parameters_validate() -> None:
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    assert spec["prefect-version"] == importlib.metadata.version("prefect")
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
        if "parameters" in deployment:  # the others are filled in the UI's form
            flow.validate_parameters(deployment["parameters"])
        assert deployment["work_pool"]["name"] == "ptyflows-process"
