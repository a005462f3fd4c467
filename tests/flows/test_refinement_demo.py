"""The refinement demo flow under the Prefect harness: run directory, plots, artifacts, both modes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = [pytest.mark.prefect_test, pytest.mark.usefixtures("prefect_harness")]


def _artifact_keys() -> set[str]:
    from prefect.client.orchestration import get_client

    async def keys() -> set[str]:
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts() if a.key}

    return asyncio.run(keys())


def test_plain_run_writes_history_plots_report_and_artifacts(tmp_path: Path) -> None:
    from flows.refinement_demo import refinement_demo
    from ptylib.diffraction.refine import RefinementOptions

    summary = refinement_demo(options=RefinementOptions(iterations=5), run_dir=str(tmp_path))
    assert summary["mode"] == "plain Adam" and summary["steps"] == 5
    assert summary["criteria"][0]["criterion"].startswith("loss reduction")
    for name in ("history.json", "history.csv", "images.npz", "result.json", "loss.png", "parameters.png",
                 "images.png", "report.md", "manifest.json"):
        assert (tmp_path / name).is_file(), name
    assert len(json.loads((tmp_path / "history.json").read_text())) == 5
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["parameters"]["options"]["learning_rate"] == 0.05 and "report" in manifest["outputs"]
    assert "| loss reduction" in (tmp_path / "report.md").read_text()
    assert {"refinement-demo-criteria", "refinement-demo-report", "refinement-demo-plots"} <= _artifact_keys()


@pytest.mark.slow
def test_robust_run_meets_the_seed_criteria(tmp_path: Path) -> None:
    """Plain Adam with the seed's settings misses the mosaic criterion after 100 steps (see
    tests/ptylib/test_diffraction_refine.py); the flow in robust mode meets all four seed criteria."""
    from flows.refinement_demo import refinement_demo
    from ptylib.diffraction.refine import RefinementOptions

    summary = refinement_demo(options=RefinementOptions(robust=True), run_dir=str(tmp_path))
    assert summary["success"], summary["criteria"]
    assert summary["mode"] == "robust" and len(summary["search"]) == 3
