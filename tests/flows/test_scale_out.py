"""The ICI event fan-out on a 2-worker local Dask cluster gives the same ledger as the thread runner."""

from __future__ import annotations

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
