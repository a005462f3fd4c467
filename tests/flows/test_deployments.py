"""Deployments: the served set and prefect.yaml declare the same deployments, with real flows and full forms.

The comparison is data-driven: a deployment added to ``deployments/serve_all.py`` and not to
``deployments/prefect.yaml`` (or the other way round, or with other parameters, schedules or triggers)
fails here, and so does a flow in ``flows/`` that has no deployment.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.prefect_test]
REPO = Path(__file__).parents[2]
RAW_MARKUP = (":func:", ":class:", ":mod:", ":meth:", "``")
SUBFLOWS_ONLY = {"flows/ici_loop.py:index_events", "flows/diffuse_phase3.py:diffuse_stills"}
"""Flows that only make sense inside their parent (a fan-out on Dask): no deployment of their own."""


def _served() -> dict[str, Any]:
    from deployments.serve_all import build_deployments

    return {d.name: d for d in build_deployments()}


def test_forms_of_the_ici_flows_and_the_flight_check() -> None:
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    from deployments.serve_all import FLIGHT_CHECK_EVERY
    from flows.ici_loop import ici_loop
    from flows.ici_study import ici_study

    deployments = _served()
    assert deployments["ici-loop"].entrypoint == "flows/ici_loop.py:ici_loop"
    form = parameter_schema(ici_loop).model_dump()  # what the UI's run form is built from
    assert form["required"] == ["run_root"]
    assert {"radius_mm", "min_spacing_mm", "damping_factor"} <= set(form["definitions"]["ProposerOptions"]["properties"])
    assert {"inputs", "crystfel", "proposer", "max_iterations", "scale_out"} <= set(form["properties"])
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


def _yaml() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())


def _schedule(schedule: Any) -> dict[str, Any]:
    if getattr(schedule, "interval", None) is not None:
        return {"interval": schedule.interval.total_seconds()}
    return {"cron": schedule.cron}


def _spec(trigger: Any) -> dict[str, Any]:
    related = trigger.match_related if isinstance(trigger.match_related, list) else [trigger.match_related]
    return {"name": trigger.name, "expect": sorted(trigger.expect), "match": dict(trigger.match.root),
            "match_related": [dict(r.root) for r in related if r.root], "parameters": trigger.parameters}


def _served_view(d: Any) -> dict[str, Any]:
    return {"entrypoint": d.entrypoint, "tags": sorted(d.tags), "description": d.description,
            "parameters": d.parameters or {}, "schedules": [_schedule(s.schedule) for s in d.schedules or []],
            "triggers": [_spec(t) for t in d.triggers or []]}


def _yaml_view(entry: dict[str, Any]) -> dict[str, Any]:
    def trigger(t: dict[str, Any]) -> dict[str, Any]:
        related = t.get("match_related") or []
        return {"name": t["name"], "expect": sorted(t["expect"]), "match": t.get("match", {}),
                "match_related": related if isinstance(related, list) else [related], "parameters": t["parameters"]}

    return {"entrypoint": entry["entrypoint"], "tags": sorted(entry["tags"]), "description": entry["description"],
            "parameters": entry.get("parameters") or {},
            "schedules": [{"interval": float(s["interval"])} if "interval" in s else {"cron": s["cron"]}
                          for s in entry.get("schedules") or []],
            "triggers": [trigger(t) for t in entry.get("triggers") or []]}


def test_served_and_yaml_deployments_agree() -> None:
    served = {name: _served_view(d) for name, d in _served().items()}
    spec = _yaml()
    declared = {entry["name"]: _yaml_view(entry) for entry in spec["deployments"]}
    assert len(declared) == len(spec["deployments"]), "duplicate deployment names in prefect.yaml"
    assert sorted(served) == sorted(declared), "serve_all.py and prefect.yaml list different deployments"
    for name, view in served.items():
        assert view == declared[name], name
    assert spec["prefect-version"] == importlib.metadata.version("prefect")
    assert {entry["work_pool"]["name"] for entry in spec["deployments"]} == {"ptyflows-process"}


def test_every_flow_has_a_deployment_with_a_described_form() -> None:
    from prefect.flows import Flow, load_flow_from_entrypoint

    served = _served()
    entrypoints = {d.entrypoint for d in served.values()}
    for module_path in sorted((REPO / "flows").glob("*.py")):
        module = importlib.import_module(f"flows.{module_path.stem}")
        for attribute, value in vars(module).items():
            if isinstance(value, Flow) and value.fn.__module__ == module.__name__:
                entrypoint = f"flows/{module_path.name}:{attribute}"
                assert entrypoint in entrypoints | SUBFLOWS_ONLY, f"no deployment of {attribute}"
    for d in served.values():
        flow = load_flow_from_entrypoint(str(REPO / d.entrypoint))
        if d.parameters:  # fixed parameters are valid ones (the others come from the form or a trigger)
            flow.validate_parameters(d.parameters)
        for name, prop in d._parameter_openapi_schema.properties.items():
            text = prop.get("description") or ""
            assert text, f"{d.name}: parameter {name} has no description in the UI form"
            assert not any(m in text for m in RAW_MARKUP), f"{d.name}: {name}: raw markup in {text!r}"


def test_schedules_and_triggers_point_where_the_issue_says() -> None:
    from deployments.inbox_watcher import EVENT
    from deployments.serve_all import FLIGHT_CHECK_EVERY, ICI_WATCH_EVERY, NIGHTLY_CRON

    served = _served()
    assert served["ici-flight-check"].schedules[0].schedule.interval == FLIGHT_CHECK_EVERY
    assert served["ici-watch"].schedules[0].schedule.interval == ICI_WATCH_EVERY <= timedelta(hours=1)
    nightly = served["nightly-regression"]
    assert nightly.schedules[0].schedule.cron == NIGHTLY_CRON
    assert nightly.parameters == {"profile": "smoke", "fail_if_any": True}
    inbox = served["ici-inbox"].triggers[0]
    assert inbox.expect == {EVENT} and inbox.match.root["ptyflows.kind"] == "hdf5"
    assert set(inbox.parameters) == {"run_root", "inputs"}
    cbf = served["diffuse-inbox"]
    assert cbf.entrypoint == "flows/diffuse_phase3.py:diffuse_phase3"
    assert cbf.triggers[0].expect == {EVENT} and cbf.triggers[0].match.root["ptyflows.kind"] == "cbf"
    assert cbf.triggers[0].parameters == {"cbf_image_paths": ["{{ event.resource['ptyflows.path'] }}"],
                                          "output_base_dir": "{{ event.resource['ptyflows.run-root'] }}"}
    report = served["ici-report"].triggers[0]
    assert report.expect == {"prefect.flow-run.Completed"}
    assert report.match_related.root["prefect.resource.name"] == "ici-loop"


def test_forms_read_numpy_docstrings_without_markup() -> None:
    from deployments.forms import numpy_parameter_descriptions

    def flow_fn(a: int, b: int, c: int, d: int) -> None:
        """Do it.

        Parameters
        ----------
        a, b : the ``first`` two, see :func:`numpy.sum`
            and more text.
        c : third; d : fourth

        Returns nothing.
        """

    assert numpy_parameter_descriptions(flow_fn) == {
        "a": "the first two, see numpy.sum and more text.", "b": "the first two, see numpy.sum and more text.",
        "c": "third", "d": "fourth"}
