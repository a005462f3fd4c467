"""One parent flow that runs every registered pipeline's profile as a subflow: the demo and the nightly regression.

Each pipeline (:data:`flows.pipelines.PIPELINES`) runs in ``<run_dir>/<name>``; a failing one is
recorded and the next one still runs. The parent ends with one report (Markdown artifact,
``report.md`` and ``summary.json`` in ``run_dir``): status, wall time, key figures, run folder and
a link to each subflow run. With ``fail_if_any`` the parent run fails when any pipeline failed.
"""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.pipelines import PIPELINES, SKIPPED_IN_DEMO, Pipeline, Profile
from ptylib.io.atomic import atomic_write_json, atomic_write_text
from ptylib.io.report import markdown_table
from tasks.artifacts import publish_markdown


class PipelinesFailed(RuntimeError):
    """Raised at the end of a run in which at least one pipeline failed (with ``fail_if_any``)."""


def default_run_dir(profile: str) -> Path:
    """``runs/<profile>/<UTC timestamp>``: a fresh folder per run."""
    return Path("runs") / profile / datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _run_link(flow_run_id: Any) -> str:
    from prefect.utilities.urls import url_for

    url = url_for("flow-run", obj_id=flow_run_id) if flow_run_id else None
    return f"[flow run]({url})" if url else f"flow run `{flow_run_id}`"


def run_pipeline(pipeline: Pipeline, profile: Profile, root: Path) -> dict[str, Any]:
    """Run one pipeline's profile as a subflow; return its row of the report (never raises on its failure)."""
    folder = root / pipeline.name
    parameters = {**pipeline.profiles[profile], pipeline.run_dir_parameter: str(folder)}
    start = time.perf_counter()
    row: dict[str, Any] = {"pipeline": pipeline.name, "run_dir": str(folder)}
    try:
        subflow = pipeline.load_flow().with_options(flow_run_name=f"{profile}-{pipeline.name}")
        state = subflow(**parameters, return_state=True)
        row["flow_run_id"] = str(state.state_details.flow_run_id)
        result = state.result(raise_on_failure=False)
        if isinstance(result, BaseException):
            raise result
        figures = pipeline.figures(result)
        failed = pipeline.checks(figures)
        row.update(status="FAILED" if failed else "passed", figures=figures, problems=failed)
    except Exception as exc:  # noqa: BLE001 - one pipeline's failure must not stop the others
        get_run_logger().error("pipeline %s failed: %s: %s", pipeline.name, type(exc).__name__, exc)
        row.update(status="FAILED", figures={}, problems=[f"{type(exc).__name__}: {exc}"])
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def report_markdown(profile: str, root: Path, rows: list[dict[str, Any]], skipped: dict[str, str]) -> str:
    """The parent run's report: one row per pipeline, then what was skipped."""
    table = markdown_table([{
        "pipeline": r["pipeline"], "status": r["status"], "s": r["seconds"],
        "problems": "; ".join(r["problems"]) or "-", "run": _run_link(r.get("flow_run_id")),
        "key figures": "; ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                                 for k, v in r["figures"].items()) or "-",
        "folder": f"`{r['run_dir']}`"} for r in rows])
    passed = sum(r["status"] == "passed" for r in rows)
    lines = [f"# All pipelines, {profile} profile: {passed}/{len(rows)} passed", "", f"Run folder: `{root}`", "", table]
    if skipped:
        lines += ["", "Not run here:", ""] + [f"- **{name}**: {why}" for name, why in skipped.items()]
    return "\n".join(lines) + "\n"


@flow(name="all-pipelines", flow_run_name="all-pipelines-{profile}", log_prints=True)
def all_pipelines(
    profile: Profile = "small",
    run_dir: str | None = None,
    pipelines: list[str] | None = None,
    fail_if_any: bool = True,
) -> dict[str, Any]:
    """Run every registered pipeline's ``profile`` as a subflow, isolating failures; one report at the end.

    Parameters
    ----------
    profile : smoke (the nightly regression, about a minute per pipeline) or small (the demo, minutes).
    run_dir : folder of this run; default a fresh runs/PROFILE/UTC-TIMESTAMP under the working directory.
    pipelines : names of the pipelines to run; default every registered one (flows/pipelines.py).
    fail_if_any : fail the parent run, after its report, when any pipeline failed.
    """
    known = {p.name: p for p in PIPELINES}
    chosen = pipelines or list(known)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ValueError(f"pipelines: unknown {unknown}; registered: {sorted(known)}")
    root = (Path(run_dir) if run_dir else default_run_dir(profile)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in chosen:
        print(f"{profile} profile of {name} in {root / name}")
        rows.append(run_pipeline(known[name], profile, root))
        print(f"  {name}: {rows[-1]['status']} in {rows[-1]['seconds']} s")
    skipped = {n: "not selected" for n in known if n not in chosen} | (SKIPPED_IN_DEMO if profile == "small" else {})
    markdown = report_markdown(profile, root, rows, skipped)
    atomic_write_text(root / "report.md", markdown)
    atomic_write_json(root / "summary.json", {"profile": profile, "pipelines": rows, "skipped": skipped})
    publish_markdown(f"all-pipelines-{profile}", markdown, f"Every pipeline's {profile} profile: pass/fail and key figures")
    failed = [r["pipeline"] for r in rows if r["status"] != "passed"]
    if failed and fail_if_any:
        raise PipelinesFailed(f"{len(failed)} of {len(rows)} pipelines failed: {', '.join(failed)} (see {root / 'report.md'})")
    return {"run_dir": str(root), "pipelines": rows, "report": str(root / "report.md")}
