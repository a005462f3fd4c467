"""The all-pipelines parent flow: failures isolated, one report with every pipeline, the parent fails last."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from flows import all_pipelines as parent
from flows.pipelines import PIPELINES, Pipeline

pytestmark = [pytest.mark.prefect_test, pytest.mark.usefixtures("prefect_harness")]


def _registry(tmp_path: Path) -> tuple[Pipeline, ...]:
    """Two cheap real flows: the ICI report on a folder that is no run root (fails), the ICI watch (passes)."""
    return (
        Pipeline(name="broken", flow="flows.ici_report:ici_report", run_dir_parameter="run_root",
                 profiles={"smoke": {}}, figures=lambda result: {}),
        Pipeline(name="watch", flow="flows.ici_watch:ici_watch", run_dir_parameter="runs_dir",
                 profiles={"smoke": {}}, figures=lambda result: {"continued": len(result["continued"])},
                 checks=lambda figures: [] if figures["continued"] == 0 else ["nothing to continue expected"]),
    )


def test_a_failing_pipeline_is_reported_and_the_next_still_runs(tmp_path: Path, monkeypatch) -> None:
    from prefect.client.orchestration import get_client

    monkeypatch.setattr(parent, "PIPELINES", _registry(tmp_path))
    (tmp_path / "run" / "watch").mkdir(parents=True)
    state = parent.all_pipelines(profile="smoke", run_dir=str(tmp_path / "run"), return_state=True)
    assert state.is_failed()
    with pytest.raises(parent.PipelinesFailed, match="1 of 2 pipelines failed: broken"):
        state.result()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    rows = {row["pipeline"]: row for row in summary["pipelines"]}
    assert rows["broken"]["status"] == "FAILED" and "no image_run_log.csv" in rows["broken"]["problems"][0]
    assert rows["watch"]["status"] == "passed" and rows["watch"]["figures"] == {"continued": 0}
    report = (tmp_path / "run" / "report.md").read_text()
    assert "1/2 passed" in report and report.count("flow run") >= 2

    async def artifact() -> str:
        async with get_client() as client:
            found = await client.read_latest_artifacts()
            return next(a.data for a in found if a.key == "all-pipelines-smoke")

    assert "| broken | FAILED |" in asyncio.run(artifact())


def test_unknown_pipeline_names_are_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown \['nope'\]; registered: "):
        parent.all_pipelines(profile="smoke", run_dir=str(tmp_path), pipelines=["nope"])
    assert not any(tmp_path.iterdir())


def test_every_registered_pipeline_has_both_profiles_and_a_loadable_flow() -> None:
    for pipeline in PIPELINES:
        assert set(pipeline.profiles) == {"smoke", "small"}, pipeline.name
        flow = pipeline.load_flow()
        for parameters in pipeline.profiles.values():
            flow.validate_parameters({**parameters, pipeline.run_dir_parameter: "runs/x"})
