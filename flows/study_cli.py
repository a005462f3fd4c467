"""``ptyflows study generate|views|lsqml|train|run|infer|check-loss``: the dose/overlap study from the command line.

``generate`` runs phases A–C, ``views`` A–D, ``lsqml`` A–D and F, ``train`` A–E, ``run`` A–H (or
``--phases``); finished steps in the run directory are reused. ``infer`` applies a trained model to any
contract dataset; ``check-loss`` is the training-loss guardrail. Prefect, numpy, torch and TensorFlow are
imported only when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flows.scale_out import ScaleOut, add_scale_out_arguments, scale_out_from_args
from ptylib.ptycho.lsqml import Device, LSQMLOptions, resolve_device
from ptylib.ptycho.options import StudyDesign

COMMANDS = {"generate": ("ABC", "phases A-C: design, inputs, datasets per dose"),
            "views": ("ABCD", "phases A-D: ... and dense/sparse overlap views"),
            "lsqml": ("ABCDF", "phases A-D and F: ... and pty-chi LSQML of every test split"),
            "train": ("ABCDE", "phases A-E: ... and the PINN / supervised-baseline training jobs"),
            "run": ("ABCDEFGH", "phases A-H: the whole study, ending with phase_h/summary.md")}


def _training_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--dose", type=float, action="append", default=[],
                         help="phase E: train only this dose (repeatable)")
    command.add_argument("--view", action="append", default=[],
                         help="phase E: train only this view (full, dense, sparse; repeatable)")
    command.add_argument("--gridsize", type=int, action="append", default=[],
                         help="phase E: train only this gridsize (repeatable)")
    command.add_argument("--dry-run", action="store_true",
                         help="phase E: write phase_e/training_plan.json and train nothing (later phases skipped)")
    command.add_argument("--guardrail-reference", help="phase E: a reference training_manifest.json; every trained "
                                                       "job's final loss must not exceed it by the tolerance")
    command.add_argument("--guardrail-tolerance", type=float, default=0.25,
                         help="allowed fractional excess over the reference loss (default 0.25)")


def add_study_arguments(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``study`` command group to a subparsers object."""
    study = subparsers.add_parser("study", help="dose/overlap ptychography study (phases A-H)",
                                  description="Dose/overlap ptychography study: datasets, overlap views, PINN and "
                                              "baseline training, LSQML, three-way comparison, summary.")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="COMMAND")
    for name, (phases, text) in COMMANDS.items():
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--profile", choices=("smoke", "small", "full"), default="small",
                             help="design profile: smoke (tests), small (N=64, minutes), full (the seed's numbers)")
        command.add_argument("--run-dir", help="study folder (default runs/study-<profile>)")
        command.add_argument("--object-npz", help="real object/probe NPZ (objectGuess, probeGuess) instead of "
                                                  "the synthetic fly64-like pair")
        command.add_argument("--torch-threads", type=int, default=1,
                             help="torch threads for LSQML (default 1; more rarely helps pty-chi on CPU)")
        command.add_argument("--lsqml-batch-size", type=int, metavar="N",
                             help=f"{_doc(StudyDesign, 'lsqml_batch_size')} (default: the profile's, "
                                  f"{StudyDesign.model_fields['lsqml_batch_size'].default} in small and full)")
        command.add_argument("--device", choices=[d.value for d in Device], default=Device.AUTO.value,
                             help=f"where LSQML runs: {_doc(LSQMLOptions, 'device')} (default auto)")
        command.add_argument("--force", action="store_true",
                             help="replace inputs that the run folder made from another object (and all that "
                                  "was derived from them); without it such a run is refused")
        if name == "run":
            command.add_argument("--phases", default=phases, help="letters of the phases to run (default ABCDEFGH)")
        if "E" in phases:
            _training_arguments(command)
        if set(phases) & set("EFG"):
            add_scale_out_arguments(command)  # where the training, LSQML and comparison jobs run
        command.set_defaults(handler=run_study, phases=phases)
    infer = commands.add_parser("infer", help="apply a trained model to a dataset (amplitude/phase NPY + PNG)",
                                description="Reconstruct a contract-valid dataset NPZ with a model folder "
                                            "written by phase E (model.keras + model.json).")
    infer.add_argument("--model", required=True, help="model folder (phase_e/<dose>/<job>/model)")
    infer.add_argument("--data", required=True, help="dataset NPZ following docs/data_contracts.md")
    infer.add_argument("--out", required=True, help="output folder")
    infer.set_defaults(handler=run_infer)
    check = commands.add_parser("check-loss", help="training-loss guardrail: candidate vs reference manifest",
                                description="Fail when a candidate job's final loss is missing, non-finite or "
                                            "above the reference job's by more than the tolerance.")
    check.add_argument("--reference", required=True, help="reference training_manifest.json")
    check.add_argument("--candidate", required=True, help="candidate training_manifest.json")
    check.add_argument("--tolerance", type=float, default=0.25, help="allowed fractional excess (default 0.25)")
    check.add_argument("--dose", type=float, action="append", default=[], help="only this dose (repeatable)")
    check.add_argument("--view", action="append", default=[], help="only this view (repeatable)")
    check.add_argument("--gridsize", type=int, action="append", default=[], help="only this gridsize (repeatable)")
    check.set_defaults(handler=run_check_loss)


def _doc(model: type, field: str) -> str:
    """A field's docstring without its final full stop (argparse help text)."""
    return (model.model_fields[field].description or field).rstrip(".")


def run_study(args: argparse.Namespace) -> int:
    """Run the study flow for the chosen phases; print where the outputs are. Exit code 2 on bad input.

    The design, the run folder and a guardrail reference are checked before the flow starts, so bad input
    gives one line, no traceback.
    """
    reference = getattr(args, "guardrail_reference", None)
    if reference is not None and not Path(reference).is_file():
        print(f"error: {reference}: no such guardrail reference manifest", file=sys.stderr)
        return 2
    from ptylib.io.lock import RunRootLockedError
    from ptylib.ptycho.study import check_run_dir, one_line

    run_dir = args.run_dir or f"runs/study-{args.profile}"
    training = {"doses": args.dose, "views": args.view, "gridsizes": args.gridsize, "dry_run": args.dry_run,
                "guardrail_reference": reference,
                "guardrail_tolerance": args.guardrail_tolerance} if "E" in args.phases else {}
    try:
        design = StudyDesign.for_profile(args.profile)
        if args.lsqml_batch_size is not None:
            design = StudyDesign.model_validate(design.model_dump() | {"lsqml_batch_size": args.lsqml_batch_size})
        check_run_dir(run_dir, design, args.object_npz, force=args.force)
        if "F" in args.phases:
            resolve_device(Device(args.device))
    except ValueError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    from flows.dose_overlap_study import dose_overlap_study

    try:
        result = dose_overlap_study(run_dir=run_dir, profile=args.profile, design=design,
                                    object_npz=args.object_npz, phases=args.phases,
                                    torch_threads=args.torch_threads, device=Device(args.device), force=args.force,
                                    scale_out=scale_out_from_args(args) if hasattr(args, "runner") else ScaleOut(),
                                    **training)
    except (ValueError, RunRootLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"study in {result['run_dir']}")
    for phase, output in result["outputs"].items():
        print(f"  phase {phase}: {output if isinstance(output, str) else output.get('base_npz', output)}")
    return 0


def run_infer(args: argparse.Namespace) -> int:
    """Reconstruct ``--data`` with ``--model`` into ``--out``. Exit code 2 on bad input."""
    from ptylib.ptycho.pinn.infer import infer_to_files

    try:
        record = infer_to_files(args.model, args.data, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{record['n_patterns']} patterns in {record['seconds']:.2f} s "
          f"({record['patterns_per_second']:.0f} patterns/s); image {record['shape']} in {args.out}")
    return 0


def run_check_loss(args: argparse.Namespace) -> int:
    """Print the guardrail rows; exit code 1 when the guardrail fails, 2 when a manifest is unreadable."""
    from ptylib.ptycho.training_jobs import GuardrailError, check_training_loss

    try:
        rows = check_training_loss(args.reference, args.candidate, tolerance=args.tolerance, doses=args.dose,
                                   views=args.view, gridsizes=args.gridsize)
    except GuardrailError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if "guardrail failed" in str(exc) else 2
    for row in rows:
        print(f"{row['job']}: final_loss {row['final_loss']:.5g} vs reference {row['reference_loss']:.5g}: ok")
    return 0
