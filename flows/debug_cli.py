"""``ptyflows debug list|run|ab``: the sim-lines debug scenarios from the command line.

``run`` flags are generated from :class:`ScenarioOptions` (defaults: the chosen built-in scenario's values).
Options are validated before any flow starts, so bad input gives one line and exit code 2. Prefect,
TensorFlow and numpy-heavy modules are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
import typing

from ptylib.ptycho.diagnostics.ab import AB_KINDS
from ptylib.ptycho.diagnostics.scenario import (
    BUILTIN,
    ScenarioOptions,
    builtin_scenario,
)

EXIT_INPUT_ERROR = 2
NOT_FLAGS = ("name",)


def _flag_type(annotation: object) -> tuple[type, list[str] | None]:
    """(argparse type, choices) of a field annotation; ``X | None`` gives X's."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union \
        else annotation
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return str, [m.value for m in base]
    return base, None  # type: ignore[return-value]


def add_scenario_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` flag per :class:`ScenarioOptions` field, help from the field's docstring."""
    for name, field in ScenarioOptions.model_fields.items():
        if name in NOT_FLAGS:
            continue
        kind, choices = _flag_type(field.annotation)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, choices=choices, default=None,
                            metavar=None if choices else name.upper(),
                            help=f"{(field.description or name).rstrip('.')} (default: the scenario's)")


def add_debug_arguments(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``debug`` command group (``list``, ``run``, ``ab``)."""
    debug = subparsers.add_parser("debug", help="sim-lines debug scenarios and A/B diagnostics (seed 004)",
                                  description="Sim-lines debug scenarios: lines object → PINN → stitch, "
                                              "with diagnostics and a pass/fail report.")
    commands = debug.add_subparsers(dest="debug_command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="list the built-in scenarios and their settings")
    listing.set_defaults(handler=run_list)
    run = commands.add_parser("run", help="run one scenario end to end (Prefect flow sim-lines-debug)")
    run.add_argument("scenario", metavar="SCENARIO", help=f"one of {', '.join(BUILTIN)}")
    run.add_argument("--out", default="runs/sim-lines", help="output folder (default runs/sim-lines)")
    add_scenario_flags(run)
    run.set_defaults(handler=run_scenario)
    ab = commands.add_parser("ab", help="an A/B diagnostic (Prefect flow sim-lines-ab)")
    ab.add_argument("kind", metavar="KIND", help=f"one of {', '.join(AB_KINDS)}")
    ab.add_argument("--out", default="runs/sim-lines", help="output folder (default runs/sim-lines)")
    ab.add_argument("--epochs", type=int, help="PINN epochs of the grid/nongrid runs (default: the scenarios')")
    ab.add_argument("--canvas-px", type=int, help="undersized canvas of the reassembly A/B (default: one patch)")
    ab.set_defaults(handler=run_ab)


def _error(message: object) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_INPUT_ERROR


def run_list(args: argparse.Namespace) -> int:
    """Print each built-in scenario with its overrides of the defaults."""
    for name, overrides in BUILTIN.items():
        print(f"{name:12s} {json.dumps(overrides)}")
    return 0


def run_scenario(args: argparse.Namespace) -> int:
    """Validate the scenario (one-line errors), run the flow, print the verdict; exit 0 only if it passed."""
    from ptylib.ptycho.diagnostics.data import scenario_probe
    from ptylib.ptycho.study import one_line

    overrides = {k: getattr(args, k) for k in ScenarioOptions.model_fields if k not in NOT_FLAGS}
    try:
        options = builtin_scenario(args.scenario, **overrides)
        scenario_probe(options)  # a custom probe is read and checked before the flow starts
    except ValueError as exc:
        return _error(one_line(exc))
    from flows.sim_lines_debug import sim_lines_debug

    report = sim_lines_debug(scenario=args.scenario, out_dir=args.out, options=options)
    for c in report["checks"]:
        print(f"  {'pass' if c['passed'] else 'FAIL'}  {c['name']}: {c['value']} (threshold {c['threshold']})")
    print(f"{options.name}: {'PASSED' if report['passed'] else 'FAILED'}; report in {report['out']}/report.md")
    return 0 if report["passed"] else 1


def run_ab(args: argparse.Namespace) -> int:
    """Run an A/B diagnostic flow; print where its table is."""
    if args.kind not in AB_KINDS:
        return _error(f"unknown A/B diagnostic {args.kind!r}; choose one of {', '.join(AB_KINDS)}")
    from flows.sim_lines_debug import sim_lines_ab

    sim_lines_ab(kind=args.kind, out_dir=args.out, epochs=args.epochs, canvas_px=args.canvas_px)
    print(f"A/B {args.kind}: {args.out}/ab/ab_{args.kind}.md")
    return 0
