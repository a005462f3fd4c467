"""``ptyflows ici run``, ``ici demo`` and ``ici study``: the ICI flows from the command line.

Prefect and the flow are imported only when a command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ptylib.ici.backends.base import BackendName
from ptylib.ici.backends.flags import add_dials_arguments, dials_options_from_args
from ptylib.ici.cli import add_ici_propose_arguments, options_from_args

if TYPE_CHECKING:
    from ptylib.ici.proposer.options import ProposerOptions


def _add_loop_arguments(parser: argparse.ArgumentParser) -> None:
    loop = parser.add_argument_group("loop")
    loop.add_argument("--max-iterations", type=int, default=10, help="total runs of the run root (default 10)")
    loop.add_argument("--workers", type=int, default=2, help="event batches indexed at once (default 2)")
    loop.add_argument("--batch-size", type=int, default=0, help="events per task run (default 0 = automatic)")
    loop.add_argument("--event-timeout-s", type=float, default=600.0, help="limit of one event's job (s)")
    loop.add_argument("--initial-shift-mm", type=float, nargs=2, default=(0.0, 0.0), metavar=("X", "Y"),
                      help="detector shift of each event's first run (mm)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ici run``: data, indexer, loop, then every proposer knob (the seed's flag names)."""
    data = parser.add_argument_group("data (relative paths are relative to the working directory)")
    data.add_argument("--images", metavar="GLOB|LIST",
                      help="still images, one event each: a quoted glob such as 'stills/*.cbf' or a list file "
                           "of image paths (CBF or any format dxtbx reads; --backend dials)")
    data.add_argument("--input", dest="inputs", action="append", default=[], metavar="H5",
                      help="CrystFEL-style multi-event HDF5 file (repeatable)")
    data.add_argument("--events", default="all", help="event selection per input, e.g. 0-99,120 (default all)")
    data.add_argument("--event-list", help="list file of 'file.h5 //N' lines (instead of or besides --input)")
    index = parser.add_argument_group("indexer")
    index.add_argument("--backend", choices=[b.value for b in BackendName], default=BackendName.CRYSTFEL.value,
                       help="indexer: crystfel (indexamajig), dials (Debian's DIALS) or command (your template) "
                            "(default crystfel)")
    crystfel = parser.add_argument_group("crystfel backend")
    crystfel.add_argument("--geometry", help="CrystFEL geometry file (required with --backend crystfel)")
    crystfel.add_argument("--indexamajig", default="indexamajig", help="indexamajig command (default: on PATH)")
    crystfel.add_argument("--indexing", default="xgandalf", help="indexamajig --indexing method (default xgandalf)")
    crystfel.add_argument("--no-refine", action="store_true", help="pass --no-refine (Step-1 search only)")
    crystfel.add_argument("--cell-file", help="unit cell file for indexamajig -p")
    crystfel.add_argument("--extra-args", default="", help="extra indexamajig arguments, as one shell-quoted string")
    add_dials_arguments(parser.add_argument_group("dials backend"))
    command = parser.add_argument_group("command backend")
    command.add_argument("--command-template", help="shell template with {h5_path} {event} {det_shift_x_mm} "
                         "{det_shift_y_mm} {event_dir} {stream} (required with --backend command)")
    _add_loop_arguments(parser)
    from flows.scale_out import add_scale_out_arguments

    add_scale_out_arguments(parser)
    add_ici_propose_arguments(parser)


def _backend_options(args: argparse.Namespace) -> tuple[str, object]:
    """The backend's name and options from the command line; ValueError names a missing or bad flag."""
    from ptylib.ici.backends import CommandOptions, CrystfelOptions

    if args.backend == "dials":
        return "dials", dials_options_from_args(args)
    if args.backend == "command":
        if not args.command_template:
            raise ValueError("--backend command needs --command-template")
        return "command", CommandOptions(template=args.command_template)
    if not args.geometry:
        raise ValueError("--backend crystfel needs --geometry FILE (or use --backend dials for image files)")
    return "crystfel", CrystfelOptions(
        geometry=Path(args.geometry).resolve(), indexamajig=args.indexamajig, indexing=args.indexing,
        refine=not args.no_refine, cell_file=Path(args.cell_file).resolve() if args.cell_file else None,
        extra_args=tuple(shlex.split(args.extra_args)),
    )


def _run_checked(check: Callable[[], Callable[[], dict]], run_root: Path) -> int:
    """Validate the input (``check`` returns the flow's starter), refuse a locked run root, run, print figures.

    Bad input is one line ``error: ...`` on stderr (exit code 2) before any flow run starts and before
    anything is written to the run root.
    """
    from ptylib.ici.model import IciInputError
    from ptylib.io.lock import RunRootLock, RunRootLockedError
    from ptylib.io.paths import reject_control_characters

    try:
        reject_control_characters(Path(run_root).resolve(), "--run-root")
        start = check()
        # Refuse a locked run root before any flow run starts: one clear line instead of a failed run.
        with RunRootLock(run_root, owner="ptyflows ici (probe)"):
            pass
    except (IciInputError, RunRootLockedError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = start()
    print(format_figures(report["figures"]))
    print(f"report: {report['report']}")
    return 0


def format_figures(figures: dict[str, object]) -> str:
    """The final figures as aligned lines: labels right-aligned, numbers rounded to 4 significant digits."""
    width = max((len(k) for k in figures), default=0)
    lines = []
    for key, value in figures.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"{key:>{width}}: {text}")
    return "\n".join(lines)


def run_loop(args: argparse.Namespace) -> int:
    """``ici run``: the ICI loop on the user's data (inputs checked before the flow starts)."""

    def check() -> Callable[[], dict]:
        from ptylib.ici.backends import make_backend
        from ptylib.ici.backends.checks import check_backend_inputs
        from ptylib.ici.events import resolve_events

        backend, options = _backend_options(args)
        proposer = options_from_args(args)
        keys = resolve_events(args.inputs, args.events, args.event_list, images=args.images)
        check_backend_inputs(keys, make_backend(backend, options))

        def start() -> dict:
            from flows.ici_loop import ici_loop
            from flows.scale_out import scale_out_from_args

            return ici_loop(
                run_root=str(Path(args.run_root).resolve()), inputs=[str(Path(i).resolve()) for i in args.inputs],
                events=args.events, event_list=str(Path(args.event_list).resolve()) if args.event_list else None,
                images=args.images and _absolute_images(args.images), backend=backend,
                crystfel=options if backend == "crystfel" else None, command=options if backend == "command" else None,
                dials=options if backend == "dials" else None, proposer=proposer,
                max_iterations=args.max_iterations, initial_shift_mm=tuple(args.initial_shift_mm),
                workers=args.workers, batch_size=args.batch_size, event_timeout_s=args.event_timeout_s,
                scale_out=scale_out_from_args(args),
            )

        return start

    return _run_checked(check, args.run_root)


def _absolute_images(spec: str) -> str:
    """``--images`` made absolute against the working directory (the flow may run elsewhere)."""
    text = os.path.expanduser(spec)
    return text if os.path.isabs(text) else os.path.join(os.getcwd(), text)


def _add_synthetic_arguments(parser: argparse.ArgumentParser, run_root: str) -> None:
    """Proposer knobs, a default run root and the synthetic dataset's arguments (demo and study)."""
    add_ici_propose_arguments(parser)
    parser.set_defaults(run_root=Path(run_root))
    for action in parser._actions:
        if action.dest == "run_root":
            action.required = False
            action.help = f"where to write (default {run_root})"
    parser.add_argument("--n-events", type=int, default=16, help="synthetic events (default 16)")
    parser.add_argument("--data-seed", type=int, default=2026, help="seed of the synthetic data (default 2026)")
    parser.add_argument("--indexer", choices=("auto", "dials", "standin"), default="auto",
                        help="DIALS on rendered stills, or the stand-in indexamajig (default: DIALS when installed)")


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the demo: where to write, how many synthetic events, and the loop/proposer knobs."""
    _add_synthetic_arguments(parser, "runs/demo/ici")
    parser.add_argument("--no-refine", action="store_true", help="index without detector refinement (FIXED mode)")
    _add_loop_arguments(parser)


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the convergence study: the demo's data and knobs (``--baseline-runs`` among them), modes, strategies."""
    from ptylib.ici.proposer.options import POLICIES

    _add_synthetic_arguments(parser, "runs/study/ici")
    parser.add_argument("--modes", default="fixed,refine",
                        help="indexing modes, comma-separated: fixed, refine (default both)")
    parser.add_argument("--strategies", default=",".join(POLICIES),
                        help=f"policies to compare, comma-separated (default {','.join(POLICIES)}; overrides --policy)")
    _add_loop_arguments(parser)


def run_demo(args: argparse.Namespace) -> int:
    """The demo: a synthetic serial run with hidden true centres, indexed by the stand-in indexamajig."""
    from flows.ici_demo import ici_demo

    def check() -> Callable[[], dict]:
        proposer = options_from_args(args)
        return lambda: ici_demo(
            run_root=str(args.run_root), n_events=args.n_events, data_seed=args.data_seed, refine=not args.no_refine,
            indexer=args.indexer, proposer=proposer, max_iterations=args.max_iterations, workers=args.workers,
        )

    return _run_checked(check, args.run_root)


def run_study(args: argparse.Namespace) -> int:
    """``ici study``: every strategy in every mode on the demo's data; prints one line per strategy."""
    from flows.ici_study import ici_study

    def check() -> Callable[[], dict]:
        proposer = options_from_args(args)
        return lambda: _study(proposer)

    def _study(proposer: ProposerOptions) -> dict:
        result = ici_study(
            run_root=str(args.run_root), n_events=args.n_events, data_seed=args.data_seed,
            modes=tuple(_names(args.modes)), strategies=tuple(_names(args.strategies)), indexer=args.indexer,
            proposer=proposer, max_iterations=args.max_iterations,
            initial_shift_mm=tuple(args.initial_shift_mm), workers=args.workers,
        )
        lines = {f"{row['mode']} / {row['strategy']}":
                 f"{row['runs / event']:.2f} runs/event, median error {row['median error (mm)']:.4f} mm"
                 for row in result["figures"]}
        return {"figures": lines, "report": result["report"]}

    return _run_checked(check, args.run_root)


def _names(text: str) -> list[str]:
    """Comma-separated names, blanks dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]
