"""``ptyflows study generate|views|lsqml``: the dose/overlap study from the command line.

``generate`` runs phases A–C, ``views`` A–D and ``lsqml`` A–D and F; finished phases in the run directory
are reused. Prefect, numpy and torch are imported only when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys

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
        command.set_defaults(handler=run_study, phases=phases)


def run_study(args: argparse.Namespace) -> int:
    """Run the study flow for the chosen phases; print where the outputs are. Exit code 2 on bad input."""
    from flows.dose_overlap_study import dose_overlap_study
    from ptylib.io.lock import RunRootLockedError

    run_dir = args.run_dir or f"runs/study-{args.profile}"
    try:
        result = dose_overlap_study(run_dir=run_dir, profile=args.profile, object_npz=args.object_npz,
                                    phases=args.phases, torch_threads=args.torch_threads)
    except (ValueError, RunRootLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"study in {result['run_dir']}")
    for phase, output in result["outputs"].items():
        print(f"  phase {phase}: {output if isinstance(output, str) else output.get('base_npz', output)}")
    return 0
