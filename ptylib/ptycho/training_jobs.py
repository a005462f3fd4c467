"""Phase E of the dose/overlap study: the training job matrix, one job's training, its manifest, the loss guardrail.

Per dose the matrix holds a PINN at gridsize 1 on the full train split, a PINN at each gridsize > 1 on
every overlap view's train split, and the supervised baseline (gridsize 1, full train split). A view
that phase D skipped becomes a skip entry with its reason. A job whose record key (design, dataset hash,
job) still matches is not retrained.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ptylib.io.atomic import atomic_write_json
from ptylib.io.manifest import sha256_file
from ptylib.io.report import save_figure
from ptylib.ptycho import plots
from ptylib.ptycho.contract import load_dataset
from ptylib.ptycho.options import StudyDesign
from ptylib.ptycho.pinn.options import ModelKind
from ptylib.ptycho.study import dose_label, reusable, run_relative, step_key

FULL_VIEW = "full"
"""Name of the 'view' that is a dose's whole train/test split (phase C), not an overlap view."""


class GuardrailError(ValueError):
    """A candidate training manifest fails the loss guardrail."""


@dataclass(frozen=True)
class TrainingJob:
    """One network to train: which dose, view, gridsize and kind, on which train split."""

    dose: float
    view: str
    gridsize: int
    kind: ModelKind
    dataset: str
    """Train split NPZ, relative to the run folder."""

    @property
    def name(self) -> str:
        """``pinn_gs1``, ``pinn_gs2_dense``, ``baseline`` …: unique within a dose."""
        if self.kind == ModelKind.BASELINE:
            return "baseline"
        return f"pinn_gs{self.gridsize}" + ("" if self.view == FULL_VIEW else f"_{self.view}")

    @property
    def job_id(self) -> str:
        """``dose_1000/pinn_gs2_dense``: unique within a study."""
        return f"{dose_label(self.dose)}/{self.name}"


def build_jobs(design: StudyDesign, datasets: Sequence[Mapping[str, Any]],
               views: Sequence[Mapping[str, Any]]) -> tuple[list[TrainingJob], list[dict[str, Any]]]:
    """The job matrix from phase C's dataset records and phase D's view bundles, and the skipped entries."""
    jobs: list[TrainingJob] = []
    skipped: list[dict[str, Any]] = []
    bundles = {(float(b["dose"]), b["view"]): b for b in views}
    for record in datasets:
        dose, train = float(record["dose"]), record["train"]["path"]
        if 1 in design.gridsizes:
            jobs.append(TrainingJob(dose, FULL_VIEW, 1, ModelKind.PINN, train))
        for view in design.overlap_views:
            for gridsize in (g for g in design.gridsizes if g > 1):
                bundle = bundles.get((dose, view))
                if bundle is None or bundle["status"] != "ok":
                    reason = bundle["reason"] if bundle else "no phase D output for this view"
                    skipped.append({"dose": dose, "view": view, "gridsize": gridsize,
                                    "job": f"{dose_label(dose)}/pinn_gs{gridsize}_{view}",
                                    "reason": f"view skipped in phase D: {reason}"})
                else:
                    jobs.append(TrainingJob(dose, view, gridsize, ModelKind.PINN, bundle["train"]["output_path"]))
        jobs.append(TrainingJob(dose, FULL_VIEW, 1, ModelKind.BASELINE, train))
    return jobs, skipped


def select_jobs(jobs: Iterable[TrainingJob], *, doses: Sequence[float] = (), views: Sequence[str] = (),
                gridsizes: Sequence[int] = ()) -> list[TrainingJob]:
    """The jobs matching every given filter (an empty filter keeps all)."""
    return [j for j in jobs if (not doses or any(math.isclose(j.dose, d) for d in doses))
            and (not views or j.view in views) and (not gridsizes or j.gridsize in gridsizes)]


def train_job(design: StudyDesign, job: TrainingJob, out_dir: str | os.PathLike[str], *,
              root: str | os.PathLike[str], on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train one job (or reuse its finished record): model folder, history JSON, loss plot, record.

    ``out_dir`` and the job's dataset are relative to the run folder ``root``; so are the record's paths.
    """
    from ptylib.ptycho.pinn.store import save_model
    from ptylib.ptycho.pinn.train import train_model

    out, dataset = Path(root) / out_dir, Path(root) / job.dataset
    options = design.training
    key = step_key(design, {"dataset": dataset}, job=job.name, gridsize=job.gridsize, kind=job.kind.value)
    if (done := reusable(out / "training_record.json", key, root)) is not None:
        return done | {"reused": True}
    data = load_dataset(dataset)
    start = time.perf_counter()
    result = train_model(data, job.kind, job.gridsize, options, source=str(dataset), on_epoch=on_epoch)
    dataset_sha = sha256_file(dataset)
    sidecar = save_model(out / "model", result, job=job.job_id, dose=job.dose, view=job.view,
                         options=options.model_dump(mode="json"), train_dataset_sha256=dataset_sha)
    history_path = out / "history.json"
    atomic_write_json(history_path, result.history)
    loss_png = save_figure(plots.loss_figure(
        [h["loss"] for h in result.history], f"{job.job_id}: training loss",
        ylabel="Poisson NLL − saturated" if job.kind == ModelKind.PINN else "patch MAE"), out / "loss.png")
    files = [run_relative(p, root) for p in (out / "model" / "model.keras", out / "model" / "model.json", history_path,
                                             loss_png)]
    record = {"key": key, **{k: v for k, v in asdict(job).items() if k != "kind"}, "kind": job.kind.value,
              "job": job.job_id, "name": job.name, "dataset_sha256": dataset_sha, "n_groups": len(data["xcoords"] if job.gridsize == 1 else data["group_indices"]),
              "seed": options.seed, "epochs": len(result.history), "initial_loss": result.initial_loss,
              "final_loss": result.final_loss,
              "wall_seconds": time.perf_counter() - start, "seconds_per_epoch": result.seconds_per_epoch,
              "intensity_scale": result.intensity_scale, "model_dir": run_relative(out / "model", root),
              "model_path": files[0], "model_sha256": sidecar["model_sha256"], "history_json": files[2],
              "loss_png": files[3], "files": files}
    atomic_write_json(out / "training_record.json", record)
    return record


def manifest_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    """A job record as a ``training_manifest.json`` entry (paths relative to the run folder)."""
    return {k: v for k, v in record.items() if k not in {"key", "files"}}


def load_manifest(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """A training manifest, or a one-line error naming the file and what it was for."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GuardrailError(f"{path}: no such {what} training manifest") from None
    except json.JSONDecodeError as exc:
        raise GuardrailError(f"{path}: {what} training manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest.get("jobs"), list):
        raise GuardrailError(f"{path}: key 'jobs': expected a list of training jobs, got {type(manifest.get('jobs'))}")
    return manifest


def check_training_loss(reference: str | os.PathLike[str], candidate: str | os.PathLike[str], *,
                        tolerance: float = 0.25, doses: Sequence[float] = (), views: Sequence[str] = (),
                        gridsizes: Sequence[int] = ()) -> list[dict[str, Any]]:
    """Compare each selected candidate job's final loss with the reference job of the same id.

    A job passes when its loss is finite and ≤ reference · (1 + ``tolerance``). Returns one row per job;
    raises :class:`GuardrailError` listing the failures (a missing or non-finite loss fails).
    """
    ref_jobs = {j["job"]: j for j in load_manifest(reference, "reference")["jobs"]}
    cand = load_manifest(candidate, "candidate")["jobs"]
    selected = [j for j in cand if (not doses or any(math.isclose(j.get("dose", math.nan), d) for d in doses))
                and (not views or j.get("view") in views) and (not gridsizes or j.get("gridsize") in gridsizes)]
    if not selected:
        raise GuardrailError(f"{candidate}: no candidate job matches the filters (dose {list(doses)}, view "
                             f"{list(views)}, gridsize {list(gridsizes)})")
    rows, failures = [], []
    for job in selected:
        loss, ref = job.get("final_loss"), ref_jobs.get(job["job"], {}).get("final_loss")
        if job["job"] not in ref_jobs:
            verdict = f"no job {job['job']} in the reference manifest"
        elif not isinstance(loss, (int, float)) or not math.isfinite(loss):
            verdict = f"final_loss is {loss!r}: expected a finite number"
        elif not isinstance(ref, (int, float)) or not math.isfinite(ref):
            verdict = f"reference final_loss is {ref!r}: expected a finite number"
        elif loss > ref * (1 + tolerance):
            verdict = f"final_loss {loss:.5g} exceeds reference {ref:.5g} by more than {tolerance:.0%}"
        else:
            verdict = "ok"
        rows.append({"job": job["job"], "final_loss": loss, "reference_loss": ref, "verdict": verdict})
        if verdict != "ok":
            failures.append(f"{job['job']}: {verdict}")
    if failures:
        raise GuardrailError(f"{candidate}: loss guardrail failed against {reference}: " + "; ".join(failures))
    return rows
