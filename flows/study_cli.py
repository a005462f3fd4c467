"""``ptyflows study generate|views|lsqml``: the dose/overlap study from the command line.

``generate`` runs phases A–C, ``views`` A–D and ``lsqml`` A–D and F; finished phases in the run directory
are reused. Prefect, numpy and torch are imported only when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from ptylib.ptycho.lsqml import Device, LSQMLOptions, resolve_device
from ptylib.ptycho.options import StudyDesign

COMMANDS = {"generate": ("ABC", "phases A-C: design, inputs, datasets per dose"),
            "views": ("ABCD", "phases A-D: ... and dense/sparse overlap views"),
            "lsqml": ("ABCDF", "phases A-D and F: ... and pty-chi LSQML of every test split")}


def add_study_arguments(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``study`` command group (``generate``, ``views``, ``lsqml``) to a subparsers object."""
    study = subparsers.add_parser("study", help="dose/overlap ptychography study (phases A-D, F)",
                                  description="Dose/overlap ptychography study: datasets, overlap views, LSQML.")
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
        command.set_defaults(handler=run_study, phases=phases)


def _doc(model: type, field: str) -> str:
    """A field's docstring without its final full stop (argparse help text)."""
    return (model.model_fields[field].description or field).rstrip(".")


def run_study(args: argparse.Namespace) -> int:
    """Run the study flow for the chosen phases; print where the outputs are. Exit code 2 on bad input.

    The design and the run folder are checked before the flow starts, so bad input gives one line, no traceback.
    """
    from ptylib.io.lock import RunRootLockedError
    from ptylib.ptycho.study import check_run_dir, one_line

    run_dir = args.run_dir or f"runs/study-{args.profile}"
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
                                    torch_threads=args.torch_threads, device=Device(args.device), force=args.force)
    except (ValueError, RunRootLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"study in {result['run_dir']}")
    for phase, output in result["outputs"].items():
        print(f"  phase {phase}: {output if isinstance(output, str) else output.get('base_npz', output)}")
    return 0
