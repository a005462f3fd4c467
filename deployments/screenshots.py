"""Headless-Chromium screenshots of the Prefect UI: flow-run pages and artifact pages of finished runs.

``python -m deployments.screenshots --ui-url http://127.0.0.1:4200 --out docs/img/ui --flow ici-demo ...``
takes, for the latest completed run of each named flow, its flow-run page and the page of each of its
artifacts (``<flow>-run.png``, ``<flow>-<artifact key>.png``). It drives Debian's ``chromium`` with a
fresh profile per page and no network other than the given address.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")
"""Flags of every Chromium call: headless, no sandbox (root in CI), nothing contacted but the page."""


def chromium_path() -> str | None:
    """The Chromium executable on PATH, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, *, screenshot: Path | None = None, size: tuple[int, int] = (1400, 900),
             wait_ms: int = 8000, timeout_s: float = 120, profile_parent: Path | None = None) -> str:
    """Load ``url`` in headless Chromium (fresh profile under ``profile_parent``, default the system's temporary
    folder); save a PNG to ``screenshot`` or return the DOM."""
    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("chromium not found on PATH (Debian: apt-get install --no-install-recommends chromium)")
    with tempfile.TemporaryDirectory(prefix="ptyflows-chromium-", dir=profile_parent) as profile:
        argv = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                f"--virtual-time-budget={wait_ms}"]
        argv += [f"--screenshot={screenshot}"] if screenshot is not None else ["--dump-dom"]
        done = subprocess.run([*argv, url], capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0 or (screenshot is not None and not screenshot.is_file()):
        raise RuntimeError(f"chromium failed on {url} (exit {done.returncode}): {done.stderr[-500:]}")
    return done.stdout


def capture_flow(ui_url: str, flow_name: str, out: Path, size: tuple[int, int]) -> list[Path]:
    """Screenshots of the latest completed run of ``flow_name`` and of its artifacts; returns the PNGs."""
    import httpx

    api = httpx.Client(base_url=f"{ui_url}/api", timeout=30)
    runs = api.post("/flow_runs/filter", json={
        "flows": {"name": {"any_": [flow_name]}}, "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
        "sort": "END_TIME_DESC", "limit": 1}).json()
    if not runs:
        raise LookupError(f"no completed run of flow {flow_name!r} at {ui_url}")
    run = runs[0]
    pngs = [out / f"{flow_name}-run.png"]
    chromium(f"{ui_url}/runs/flow-run/{run['id']}", screenshot=pngs[0], size=size)
    artifacts = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    for artifact in artifacts:
        if artifact.get("key") and artifact["type"] in ("markdown", "table"):
            pngs.append(out / f"{flow_name}-{artifact['key']}.png")
            chromium(f"{ui_url}/artifacts/artifact/{artifact['id']}", screenshot=pngs[-1], size=size)
    return pngs


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: screenshots of the named flows' latest completed runs."""
    parser = argparse.ArgumentParser(prog="python -m deployments.screenshots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ui-url", required=True, help="the UI's address, e.g. http://127.0.0.1:4200")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--flow", action="append", required=True, help="flow name (repeatable)")
    parser.add_argument("--size", type=int, nargs=2, default=(1400, 900), metavar=("W", "H"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.flow:
        for png in capture_flow(args.ui_url.rstrip("/"), name, args.out, tuple(args.size)):
            print(png)


if __name__ == "__main__":
    main()
