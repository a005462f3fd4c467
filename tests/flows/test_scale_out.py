"""Fan-outs on a 2-worker local Dask cluster give the same outputs as on threads: the ICI loop's event batches
(the same ledger), the diffuse pipeline's per-still Phases 1-2 (the same pixel data and merged map), and the
study's job lists (:func:`flows.scale_out.run_jobs`)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from flows.ici_demo import standin_indexamajig
from flows.scale_out import RunnerKind, ScaleOut
from ptylib.ici.backends import CrystfelOptions
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.ici.synthetic.dataset import make_synthetic_run

pytestmark = [pytest.mark.prefect_test, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_dask_and_threads_give_the_same_ledger(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from flows.ici_loop import ici_loop

    data = make_synthetic_run(tmp_path / "data", 6, seed=17, radius_mm=0.05)
    crystfel = CrystfelOptions(geometry=data.geometry_path, indexamajig=str(standin_indexamajig(tmp_path / "bin")))
    common = {"inputs": [str(data.h5_path)], "crystfel": crystfel, "max_iterations": 2, "workers": 2, "batch_size": 2}
    ici_loop(run_root=str(tmp_path / "threads"), **common)
    with caplog.at_level(logging.INFO):
        ici_loop(run_root=str(tmp_path / "dask"), scale_out=ScaleOut(runner=RunnerKind.DASK, dask_workers=2), **common)
    assert "dask" in caplog.text.lower()
    threads = (tmp_path / "threads" / LEDGER_NAME).read_text()
    assert threads.count("\n") > 6 * 2  # every event indexed in both runs
    assert (tmp_path / "dask" / LEDGER_NAME).read_text() == threads


def raise_iteration_cap(root: Path, max_iterations: int) -> None:
    """Raise the ``max_iterations`` recorded in a loop's manifest, as a user would by hand."""
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["parameters"]["max_iterations"] = max_iterations
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_ici_watch_continues_an_unfinished_loop_with_its_recorded_parameters(tmp_path: Path) -> None:
    from flows.ici_loop import ici_loop
    from flows.ici_watch import ici_watch, unfinished_loop

    data = make_synthetic_run(tmp_path / "data", 3, seed=4, radius_mm=0.05)
    crystfel = CrystfelOptions(geometry=data.geometry_path, indexamajig=str(standin_indexamajig(tmp_path / "bin")))
    root = tmp_path / "runs" / "r1"
    ici_loop(run_root=str(root), inputs=[str(data.h5_path)], crystfel=crystfel, max_iterations=1, workers=1)
    assert unfinished_loop(root) is None  # its cap is reached
    raise_iteration_cap(root, 2)
    assert unfinished_loop(root)["crystfel"]["geometry"] == str(data.geometry_path)
    assert ici_watch(str(tmp_path / "runs")) == {"continued": [str(root)], "busy": []}
    assert (root / "run_001").is_dir() and unfinished_loop(root) is None


def test_diffuse_stills_on_dask_give_the_same_outputs_as_threads(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import json

    import numpy as np
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )

    from flows.diffuse_phase3 import diffuse_phase3
    from ptylib.diffuse.layout import RunLayout
    from ptylib.diffuse.synthetic import SyntheticDiffuseOptions, render_synthetic

    data = render_synthetic(SyntheticDiffuseOptions(stills=3, pixels=128), tmp_path / "data")
    common = {"cbf_image_paths": [str(p) for p in data.cbf_paths], "output_base_dir": str(tmp_path),
              "experiment_paths": [str(p) for p in data.experiment_paths], "visual_check": False}
    threads = diffuse_phase3(run_name="threads", **common)
    with caplog.at_level(logging.INFO):
        dask = diffuse_phase3(run_name="dask", scale_out=ScaleOut(runner=RunnerKind.DASK, dask_workers=2), **common)
    assert "dask" in caplog.text.lower()
    assert threads["stills_used"] == dask["stills_used"] == [1, 2, 3]

    async def fan_out_runs() -> dict[str, list[str]]:
        async with get_client() as client:
            runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["diffuse-stills"])))
            return {run.name: [f"{t.name.rsplit('-', 1)[0]} {t.state_type.value}" for t in await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))] for run in runs}

    runs = asyncio.run(fan_out_runs())  # the Dask run's fan-out is a subflow; the threads run's is inline
    assert not any(name.endswith("/threads") for name in runs)
    (tasks,) = [tasks for name, tasks in runs.items() if name.endswith("/dask")]
    # The Dask workers' task runs are recorded on the flow's API, under the subflow.
    assert sorted(tasks) == ["diffuse-phase1 COMPLETED"] * 3 + ["diffuse-phase2 COMPLETED"] * 3
    a, b = RunLayout(Path(threads["run_dir"])), RunLayout(Path(dask["run_dir"]))
    for still in (1, 2, 3):
        with np.load(a.pixel_data(still)) as left, np.load(b.pixel_data(still)) as right:
            assert left.files == right.files
            for key in left.files:
                np.testing.assert_array_equal(left[key], right[key], err_msg=f"still {still}: {key}")
    with np.load(a.voxel_data) as left, np.load(b.voxel_data) as right:
        assert left.files == right.files and left[left.files[0]].size > 0
        for key in left.files:
            np.testing.assert_array_equal(left[key], right[key], err_msg=key)
    assert json.loads(a.scaling.read_text()) == json.loads(b.scaling.read_text())
