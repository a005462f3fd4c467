"""The dose/overlap ptychography study: phases A (design), B (inputs), C (datasets per dose), D (dense/sparse
overlap views), E (PINN and baseline training, :mod:`flows.dose_overlap_learning`), F (pty-chi LSQML of
every test split), G (three-way comparison) and H (summary), each a subflow.

Every phase reads and writes files under ``run_dir`` only and can run on its own once the phases before
it have finished. Finished steps are reused (their records match the design and input hashes), so a rerun
after a failure resumes where it stopped; a failing phase never touches an earlier phase's files. Paths in
records and outputs are relative to ``run_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.dose_overlap_learning import compare_phase, summary_phase, train_phase
from flows.scale_out import ScaleOut, dask_cluster, run_jobs, task_runners
from ptylib.io.lock import RunRootLock
from ptylib.io.manifest import read_manifest, write_manifest
from ptylib.ptycho.layout import DESIGN, INPUTS, RUN_MANIFEST, VIEWS_MANIFEST
from ptylib.ptycho.lsqml import Device
from ptylib.ptycho.options import Profile, StudyDesign
from ptylib.ptycho.study import check_run_dir, load_design
from tasks.artifacts import ProgressArtifact
from tasks.ptycho import (
    design_task,
    generate_dose_task,
    inputs_task,
    lsqml_manifest_task,
    lsqml_task,
    read_json,
    run_manifest_task,
    view_task,
    views_manifest_task,
)

PHASES = "ABCDEFGH"


@flow(name="study-phase-a-design", flow_run_name="design-{profile}")
def design_phase(run_dir: str, profile: Profile = "small", design: StudyDesign | None = None) -> str:
    """Phase A: the typed, validated study constants, written to ``phase_a/design.json``.

    Parameters
    ----------
    run_dir : folder of the study.
    profile : named design (smoke, small or full) used when no explicit design is given.
    design : an explicit design; it wins over the profile.
    """
    return design_task(run_dir, design or StudyDesign.for_profile(profile))


@flow(name="study-phase-b-inputs", flow_run_name="inputs")
def inputs_phase(run_dir: str, object_npz: str | None = None, force: bool = False) -> str:
    """Phase B: object and probe (synthetic, or ``object_npz``), scan, and the design's feasibility on them.

    Inputs made earlier from another object are replaced (with all that derives from them) only if ``force``.

    Parameters
    ----------
    run_dir : folder of the study (phase A must have run in it).
    object_npz : a real reconstruction NPZ (objectGuess, probeGuess) instead of the synthetic pair.
    force : replace inputs made earlier from another object, and everything derived from them.
    """
    read_json(run_dir, DESIGN, "A")
    inputs_task(run_dir, str(Path(run_dir) / DESIGN), object_npz, force)
    return INPUTS.as_posix()


@flow(name="study-phase-c-generation", flow_run_name="generation")
def generation_phase(run_dir: str) -> str:
    """Phase C: per dose simulate → canonicalise → split on y → group → validate; ``run_manifest.json``.

    Parameters
    ----------
    run_dir : folder of the study (phases A and B must have run in it).
    """
    design = read_json(run_dir, DESIGN, "A")
    base = read_json(run_dir, INPUTS, "B")["base_npz"]
    progress = ProgressArtifact(len(design["doses"]), "phase C: doses generated")
    futures = [generate_dose_task.submit(run_dir, str(Path(run_dir) / DESIGN), base, dose) for dose in design["doses"]]
    records = []
    for future in futures:
        records.append(future.result())
        progress.advance()
    return run_manifest_task(run_dir, records)


@flow(name="study-phase-d-views", flow_run_name="views")
def views_phase(run_dir: str) -> str:
    """Phase D: dense and sparse views of every dose (spacing filter S = (1 − f)·N); skips carry a reason.

    Parameters
    ----------
    run_dir : folder of the study (phases A to C must have run in it).
    """
    design = read_json(run_dir, DESIGN, "A")
    doses = read_json(run_dir, RUN_MANIFEST, "C")["doses"]
    futures = [view_task.submit(run_dir, str(Path(run_dir) / DESIGN), record["dose"],
                                {part: record[part]["path"] for part in ("train", "test")}, view)
               for record in doses for view in design["overlap_views"]]
    bundles = [future.result() for future in futures]
    for bundle in bundles:
        if bundle["status"] != "ok":
            get_run_logger().warning("view %s at dose %g skipped: %s", bundle["view"], bundle["dose"], bundle["reason"])
    return views_manifest_task(run_dir, bundles)


@flow(name="study-phase-f-lsqml", flow_run_name="lsqml")
def lsqml_phase(run_dir: str, torch_threads: int | None = 1, device: Device = Device.AUTO,
                scale_out: ScaleOut | None = None) -> str:
    """Phase F: pty-chi LSQML of each dose's full test split and of every view's test split, one at a time per
    process (pty-chi sets process-wide torch state, so reconstructions do not share a process concurrently).

    Parameters
    ----------
    run_dir : folder of the study (phases A to D must have run in it).
    torch_threads : torch threads for LSQML (None: torch's default).
    device : torch device for pty-chi (auto: a GPU when present, else the CPU).
    scale_out : where the reconstructions run: one after another in this process (threads, the default) or
        all at once on a Dask cluster, one per worker process.
    """
    design_json = str(Path(run_dir) / DESIGN)
    read_json(run_dir, DESIGN, "A")
    targets = [(r["dose"], "full", r["test"]["path"]) for r in read_json(run_dir, RUN_MANIFEST, "C")["doses"]]
    views = read_json(run_dir, VIEWS_MANIFEST, "D")
    targets += [(b["dose"], b["view"], b["test"]["output_path"]) for b in views["views"] if b["status"] == "ok"]
    skipped = [s | {"reason": f"view skipped in phase D: {s['reason']}"} for s in views["skipped"]]
    with task_runners(scale_out or ScaleOut()) as make_runner:
        records = run_jobs(lsqml_task, [(run_dir, design_json, path, dose, target, torch_threads, device)
                                        for dose, target, path in targets], make_runner, "study-lsqml-jobs")
    return lsqml_manifest_task(run_dir, records, skipped)


@flow(name="dose-overlap-study", flow_run_name="study-{profile}-{phases}")
def dose_overlap_study(run_dir: str, profile: Profile = "small", design: StudyDesign | None = None,
                       object_npz: str | None = None, phases: str = PHASES, torch_threads: int | None = 1,
                       device: Device = Device.AUTO, force: bool = False, doses: list[float] | None = None,
                       views: list[str] | None = None, gridsizes: list[int] | None = None, dry_run: bool = False,
                       guardrail_reference: str | None = None, guardrail_tolerance: float = 0.25,
                       scale_out: ScaleOut | None = None) -> dict[str, Any]:
    """Run the requested phases (letters of ``ABCDEFGH``, in order) of the study in ``run_dir``.

    Parameters
    ----------
    run_dir : folder of the study; phase outputs go to ``phase_a`` … ``phase_f``, plus ``manifest.json``.
    profile, design : the named profile's design, or an explicit one (it wins). A folder keeps its design.
    object_npz : a real reconstruction (``objectGuess``, ``probeGuess``) instead of the synthetic pair
        (relative to the working directory).
    phases : which phases to run; earlier finished steps are reused, so ``"ABCDEFGH"`` resumes a study.
    torch_threads : torch threads for LSQML (None: torch's default). One by default: pty-chi's many small
        CPU kernels gain little from more, and on a shared machine OpenMP oversubscription slows them tenfold.
    device : where LSQML runs: auto (CUDA when torch sees one), cpu or cuda.
    force : replace inputs that a finished phase B made from another object (and all derived from them).
    doses, views, gridsizes : phase E's job filters (``full`` is a dose's whole train split).
    dry_run : phase E only plans its jobs (``phase_e/training_plan.json``); phases after E are not run.
    guardrail_reference, guardrail_tolerance : a reference ``training_manifest.json`` (relative to the
        working directory) whose final losses the trained jobs must not exceed by more than the tolerance.
    scale_out : where the jobs of phases E (training), F (LSQML) and G (comparison) run: one after another in
        this process (threads, the default) or on a Dask cluster (a local one started once for the study and
        shared by the phases, or a scheduler address).
    """
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        raise ValueError(f"phases must be letters of {PHASES}, got {phases!r}")
    if guardrail_reference is not None and not Path(guardrail_reference).is_file():
        raise ValueError(f"{guardrail_reference}: no such guardrail reference manifest (a phase_e/"
                         "training_manifest.json of an accepted run)")
    root = Path(run_dir).resolve()
    object_npz = str(Path(object_npz).resolve()) if object_npz else None
    guardrail_reference = str(Path(guardrail_reference).resolve()) if guardrail_reference else None
    design = design or StudyDesign.for_profile(profile)
    scale_out = scale_out or ScaleOut()
    jobs_scale_out = scale_out if set(phases) & set("EFG") else ScaleOut()  # no cluster for phases without jobs
    with RunRootLock(root, owner="dose-overlap-study flow"), dask_cluster(jobs_scale_out) as shared:
        steps = {"A": lambda: design_phase(str(root), profile, design),
                 "B": lambda: inputs_phase(str(root), object_npz, force),
                 "C": lambda: generation_phase(str(root)), "D": lambda: views_phase(str(root)),
                 "E": lambda: train_phase(str(root), doses or [], views or [], gridsizes or [], dry_run,
                                          guardrail_reference, guardrail_tolerance, shared),
                 "F": lambda: lsqml_phase(str(root), torch_threads, device, shared),
                 "G": lambda: compare_phase(str(root), shared), "H": lambda: summary_phase(str(root))}
        check_run_dir(root, design, object_npz, force=force)
        try:
            outputs: dict[str, Any] = dict(read_manifest(root)["outputs"])  # phases run earlier stay listed
        except ValueError:
            outputs = {}
        for letter in PHASES:
            if letter in phases and not (dry_run and letter > "E"):
                outputs[letter] = steps[letter]()
        stored = load_design(root / DESIGN)
        write_manifest(root, pipeline="dose_overlap_study", inputs=[object_npz] if object_npz else [],
                       parameters={"profile": profile, "design": stored, "object_npz": object_npz, "phases": phases,
                                   "filters": {"doses": doses, "views": views, "gridsizes": gridsizes},
                                   "dry_run": dry_run, "guardrail_reference": guardrail_reference,
                                   "scale_out": scale_out.model_dump(mode="json")},
                       outputs=outputs, extra={"seeds": {"simulation": stored.seed_simulation,
                                                         "grouping": stored.seed_grouping,
                                                         "subsampling": stored.seed_subsampling,
                                                         "training": stored.training.seed}})
    return {"run_dir": str(root), "outputs": outputs}
