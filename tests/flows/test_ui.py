"""``ptyflows ui up``/``down`` end to end: a real local server, served deployments, triggers, the UI in Chromium.

One stack for the module (server start-up dominates the cost): an ICI demo run triggered through the
REST API, its artifacts, the report run that its completion triggers, a headless-Chromium screenshot of
the flow-run page (kept under ``$PTYFLOWS_TEST_ARTIFACTS``, default ``test-artifacts/``), and the inbox:
a file dropped into it starts the ``ici-inbox`` deployment, a symbolic link to a file outside is ignored, and a
CBF still dropped into it starts the ``diffuse-inbox`` deployment, which indexes it with DIALS and completes.
``ui down`` must leave no process of the stack behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from deployments.local_stack import free_port, read_stack, started_by
from deployments.screenshots import chromium, chromium_path
from flows.ici_demo import standin_indexamajig
from ptylib.diffuse.layout import RunLayout
from ptylib.diffuse.synthetic import SyntheticDiffuseOptions, render_synthetic
from ptylib.ici.synthetic.dataset import make_synthetic_run

pytestmark = [pytest.mark.ui, pytest.mark.slow]
REPO = Path(__file__).parents[2]
INBOX_START_LIMIT_S = 30.0
"""A complete file in the inbox starts its deployment (ICI or diffuse) within this time (watcher poll 1 s, settle 2 s)."""


def _cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


class Api:
    """The few REST calls the tests need, against the stack's server."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        for attempt in range(10):  # a busy SQLite database answers 503 while serve registers deployments
            response = self.http.post(path, json=body or {})
            if response.status_code != 503:
                break
            time.sleep(1 + attempt)
        response.raise_for_status()
        return response.json()

    def deployment(self, flow: str, name: str, timeout_s: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = self.http.get(f"/deployments/name/{flow}/{name}")
            if response.status_code == 200:
                return response.json()
            time.sleep(1)
        raise TimeoutError(f"deployment {flow}/{name} not registered within {timeout_s} s")

    def runs(self, deployment_id: str) -> list[dict[str, Any]]:
        return self.post("/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}}})

    def wait_final(self, run_id: str, timeout_s: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.http.get(f"/flow_runs/{run_id}").json()
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(1)
        raise TimeoutError(f"flow run {run_id} not finished within {timeout_s} s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``ptyflows ui up`` on a free port (schedules paused), torn down with ``ptyflows ui down``."""
    work = tmp_path_factory.mktemp("ui")
    data = make_synthetic_run(work / "data", 4, seed=5, radius_mm=0.05)
    inbox_parameters = work / "ici_inbox.json"
    inbox_parameters.write_text(json.dumps({
        "backend": "crystfel", "max_iterations": 1, "workers": 1,
        "crystfel": {"geometry": str(data.geometry_path), "indexamajig": str(standin_indexamajig(work / "bin"))}}))
    diffuse_parameters = work / "diffuse_inbox.json"  # the synthetic sample's cell and symmetry, as a user gives theirs
    sample = SyntheticDiffuseOptions()
    diffuse_parameters.write_text(json.dumps({"options": {"dials": {
        "unit_cell": ",".join(f"{v:g}" for v in sample.cell_A_deg), "space_group": sample.space_group_symbol}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PYTHONPATH=str(REPO), PREFECT_RUNNER_POLL_FREQUENCY="2")
    state = work / "state"
    up = _cli("ui", "up", "--state-dir", str(state), "--port", str(free_port()), "--inbox", str(work / "inbox"),
              "--inbox-runs-dir", str(work / "runs"), "--ici-inbox-parameters", str(inbox_parameters),
              "--diffuse-inbox-parameters", str(diffuse_parameters), "--schedules-paused", cwd=work, env=env)
    recorded = read_stack(state)
    try:
        assert up.returncode == 0, up.stderr
        assert f"Prefect UI: {recorded['ui_url']}" in up.stdout
        assert recorded["host"] == "127.0.0.1" and recorded["ui_url"].startswith("http://127.0.0.1:")
        yield {"work": work, "state": state, "env": env, "data": data, "api": Api(recorded["api_url"]),
               "url": recorded["ui_url"]}
    finally:
        down = _cli("ui", "down", "--state-dir", str(state), cwd=work, env=env)
        assert down.returncode == 0, down.stderr
    assert "server" in down.stdout and "deployments" in down.stdout
    assert started_by(state / "prefect-home") == [], "ui down left processes of the stack running"
    assert read_stack(state) is None


@pytest.fixture(scope="module")
def demo_run(stack: dict[str, Any]) -> dict[str, Any]:
    """A small ICI demo run started through the API on the served ``ici-demo`` deployment, finished."""
    api: Api = stack["api"]
    deployment = api.deployment("ici-demo", "ici-demo")
    run_root = stack["work"] / "demo"
    created = api.post(f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {
        "run_root": str(run_root), "n_events": 4, "max_iterations": 2, "indexer": "standin", "workers": 1}})
    return api.wait_final(created["id"]) | {"run_root": str(run_root)}


def test_ici_run_through_the_api_completes_with_artifacts_and_triggers_its_report(stack, demo_run) -> None:
    api: Api = stack["api"]
    assert demo_run["state_type"] == "COMPLETED", demo_run["state"]
    assert (Path(demo_run["run_root"]) / "report.md").is_file()
    artifacts = api.post("/artifacts/filter", {"artifacts": {"key": {"any_": ["ici-loop-final", "ici-final-figures"]}}})
    assert {a["key"] for a in artifacts} == {"ici-loop-final", "ici-final-figures"}
    final = next(a for a in artifacts if a["key"] == "ici-loop-final")
    assert "median_centre_error_mm" in final["data"] and "data:image/png;base64," in final["data"]

    # The ici-loop subflow's completion starts the ici-report deployment on the same run root.
    report = api.deployment("ici-report", "ici-report")
    deadline = time.monotonic() + 120
    while not (runs := api.runs(report["id"])) and time.monotonic() < deadline:
        time.sleep(1)
    assert runs, "no ici-report run after the ICI loop completed"
    assert runs[0]["parameters"]["run_root"] == str(Path(demo_run["run_root"]).resolve())
    assert api.wait_final(runs[0]["id"], 180)["state_type"] == "COMPLETED"
    assert api.post("/artifacts/filter", {"artifacts": {"key": {"any_": ["ici-report"]}}})


def test_flow_run_page_renders_in_headless_chromium(stack, demo_run, tmp_path: Path) -> None:
    if chromium_path() is None:
        pytest.skip("chromium not installed (.ci/in-venv installs Debian's package when run as root)")
    import matplotlib.image

    out = Path(os.environ.get("PTYFLOWS_TEST_ARTIFACTS", REPO / "test-artifacts")) / "ui"
    out.mkdir(parents=True, exist_ok=True)
    png = out / "ici-demo-flow-run.png"
    page = f"{stack['url']}/runs/flow-run/{demo_run['id']}"
    chromium(page, screenshot=png, profile_parent=tmp_path)
    pixels = matplotlib.image.imread(png)[..., :3]
    assert pixels.std() > 0.05, "blank screenshot"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
    dom = chromium(page, profile_parent=tmp_path)
    assert demo_run["name"] in dom and "Completed" in dom
    deadline = time.monotonic() + 10  # chromium's helper processes exit just after the browser
    while (leftovers := [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(tmp_path).encode() in _read(p)]):
        assert time.monotonic() < deadline, f"chromium left processes behind: {leftovers}"
        time.sleep(0.5)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def test_inbox_file_starts_the_ici_deployment_and_links_outside_are_ignored(stack) -> None:
    api: Api = stack["api"]
    inbox, source = stack["work"] / "inbox", stack["data"].h5_path
    deployment = api.deployment("ici-loop", "ici-inbox")
    (inbox / "outside.h5").symlink_to(source)  # points outside the inbox: never reported
    # The stand-in indexer reads the synthetic data's hidden truth beside the image; the watcher ignores it.
    shutil.copyfile(f"{source}.truth.json", inbox / "drop.h5.truth.json")
    partial = inbox / "drop.h5.part"
    shutil.copyfile(source, partial)  # a copy tool's partial name, renamed when the copy is complete
    partial.rename(inbox / "drop.h5")
    complete = time.monotonic()
    while not (runs := api.runs(deployment["id"])) and time.monotonic() - complete < INBOX_START_LIMIT_S:
        time.sleep(0.5)
    assert runs, f"no ici-inbox run within {INBOX_START_LIMIT_S} s of a complete file"
    assert len(runs) == 1 and runs[0]["parameters"]["inputs"] == [str((inbox / "drop.h5").resolve())]
    finished = api.wait_final(runs[0]["id"], 240)
    assert finished["state_type"] == "COMPLETED", finished["state"]
    run_root = Path(runs[0]["parameters"]["run_root"])
    assert run_root.parent == (stack["work"] / "runs").resolve() and (run_root / "image_run_log.csv").is_file()
    time.sleep(3)  # several more watcher polls: the link stays ignored
    assert len(api.runs(deployment["id"])) == 1
    log = (stack["state"] / "logs" / "inbox-watcher.log").read_text()
    assert "drop.h5" in log and "outside.h5" not in log


@pytest.mark.dials
def test_inbox_cbf_still_starts_the_diffuse_deployment(stack) -> None:
    api: Api = stack["api"]
    inbox = stack["work"] / "inbox"
    deployment = api.deployment("diffuse-phase3", "diffuse-inbox")
    still = render_synthetic(SyntheticDiffuseOptions(stills=1), stack["work"] / "cbf-data").cbf_paths[0]
    partial = inbox / f"{still.name}.part"
    shutil.copyfile(still, partial)
    partial.rename(inbox / still.name)
    complete = time.monotonic()
    while not (runs := api.runs(deployment["id"])) and time.monotonic() - complete < INBOX_START_LIMIT_S:
        time.sleep(0.5)
    assert runs, f"no diffuse-inbox run within {INBOX_START_LIMIT_S} s of a complete CBF file"
    parameters = runs[0]["parameters"]
    assert len(runs) == 1 and parameters["cbf_image_paths"] == [str((inbox / still.name).resolve())]
    assert parameters["options"]["dials"]["space_group"] == "P222"  # the deployment's own, from ui up
    finished = api.wait_final(runs[0]["id"], 300)
    assert finished["state_type"] == "COMPLETED", finished["state"]
    run_dir = Path(parameters["output_base_dir"]) / f"{still.stem}_1stills"
    assert run_dir.parent.parent == (stack["work"] / "runs").resolve()
    layout = RunLayout(run_dir)
    assert (layout.dials_dir(1) / "indexed.refl").is_file()  # indexed by DIALS, not from a known geometry
    assert layout.voxel_data.stat().st_size > 0
    table = api.post("/artifacts/filter", {"artifacts": {"key": {"any_": ["diffuse-phases-1-2"]},
                                                         "flow_run_id": {"any_": [runs[0]["id"]]}}})
    assert len(table) == 1
    rows = json.loads(table[0]["data"]) if isinstance(table[0]["data"], str) else table[0]["data"]
    assert [row["status"] for row in rows] == ["ok"]
