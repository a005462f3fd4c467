"""Command line of the ICI kernels: ``ptyflows ici propose``, ``ici summarize`` and ``ici dials-server stop``.

Mounted by ``flows/cli.py`` and runnable alone as ``python -m ptylib.ici.cli propose|summarize|dials-server``.
This path imports no Prefect, torch or TensorFlow; numpy is imported only when a command runs.
Bad input prints one line ``error: <message>`` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from ptylib.ici.model import IciInputError
from ptylib.ici.proposer.options import POLICIES, STEP2_ALGORITHMS, ProposerOptions

EXIT_INPUT_ERROR = 2

# Flag (the seed's spelling), help text; the option name is the flag without "--", dashes -> "_".
_FLAGS: tuple[tuple[str, str], ...] = (
    ("--radius-mm", "Step-1 search radius around the first centre (mm)"),
    ("--min-spacing-mm", "minimum distance of a proposal to every tried centre (mm)"),
    ("--seed", "base seed of the per-event random streams"),
    ("--step1-A0", "amplitude A0 of the base Gaussian at the first centre"),
    ("--step1-hill-amp-frac", "amplitude of the success hills, as a fraction of A0"),
    ("--step1-drop-amp-frac", "amplitude of the failure drops, as a fraction of A0"),
    ("--step1-candidates", "candidates drawn in the disk per proposal"),
    ("--step1-explore-floor", "weight added to every candidate"),
    ("--beta", "Boltzmann sharpness of the wRMSD weighting (1/px)"),
    ("--done-on-streak-successes", "DONE after a failure streak once this many runs succeeded"),
    ("--done-on-streak-length", "length of that failure streak (runs)"),
    ("--noimprove-N", "DONE when the last N successes do not improve the best wRMSD ..."),
    ("--noimprove-eps", "... by more than this relative amount"),
    ("--stability-N", "DONE when the last N successful wRMSDs ..."),
    ("--stability-std", "... have a relative std at most this"),
    ("--N-conv", "dx/dy convergence: number of recent dx/dy steps examined"),
    ("--recurring-tol", "dx/dy convergence: their centres lie within this fraction of --radius-mm"),
    ("--median-rel-tol", "dx/dy convergence: their median wRMSD is within this fraction of the best"),
    ("--damping-factor", "Step-2 damping lambda: next = last - lambda * (dx, dy)"),
    ("--dxdy-unit-to-mm", "factor from per_frame_dx_dy.csv units to mm"),
    ("--model-probe-frac", "model policy: radius of the probe triangle around the first centre, fraction of R"),
    ("--model-min-successes", "model policy: successful runs needed before the wRMSD cone is fitted"),
    ("--model-noise-frac", "model policy: relative wRMSD noise of one run (fit weights, stop rule)"),
    ("--model-max-centre-se-frac", "model policy: largest standard error of the fitted centre, fraction of R"),
    ("--model-min-curvature-t", "model policy: smallest t-statistic of the fitted curvature"),
    ("--model-max-chi", "model policy: largest RMS standardised residual of the fit"),
    ("--model-refine-sigma-mm", "model policy: error of one refined centre per axis (mm)"),
    ("--model-refine-tol-mm", "model policy: DONE once the combined refined centre's standard error is below this (mm)"),
    ("--model-repeat-tol-mm", "model policy: DONE once a run at the previous refined centre refines to within this "
                              "of it again, i.e. a deterministic indexer (mm)"),
    ("--baseline-runs", "spiral and random policies: runs per event, first centre included"),
)


def add_ici_propose_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--run-root`` and every proposer knob (the seed's flag names and defaults, ``--policy``, ``--model-*``).

    The knobs go into an argument group ``proposer`` created here, so a caller that adds its own
    groups first (``ici run``: data, indexer) gets them listed before the knobs in ``--help``.
    """
    defaults = ProposerOptions()
    types = {f.name: type(getattr(defaults, f.name)) for f in fields(ProposerOptions)}
    parser.add_argument("--run-root", required=True, type=Path, help="ICI run root holding image_run_log.csv")
    group = parser.add_argument_group("proposer", "how the next detector shift of each event is chosen")
    for flag, text in _FLAGS:
        name = flag[2:].replace("-", "_")
        default = getattr(defaults, name)
        group.add_argument(flag, dest=name, type=types[name], default=default, help=f"{text} (default {default})")
    group.add_argument("--step1-allow-spacing-relax", dest="step1_allow_spacing_relax", action="store_true",
                        help="halve the spacing when no candidate respects it (default: event becomes DONE)")
    group.add_argument("--step2-algorithm", dest="step2_algorithm", choices=STEP2_ALGORITHMS,
                        default=defaults.step2_algorithm, help="Step-2 refinement after a success (default dxdy)")
    group.add_argument("--policy", dest="policy", choices=POLICIES, default=defaults.policy,
                        help=f"proposal policy: centre model, the seed's hillmap, or the study's baselines "
                             f"spiral / random (default {defaults.policy})")


def add_ici_summarize_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``ici summarize`` to ``parser``."""
    parser.add_argument("--run-root", required=True, type=Path, help="ICI run root holding image_run_log.csv")
    parser.add_argument("--markdown", action="store_true", help="print Markdown instead of plain text")


def options_from_args(args: argparse.Namespace) -> ProposerOptions:
    """The :class:`ProposerOptions` given on the command line (ValueError/TypeError name a bad option)."""
    return ProposerOptions(**{f.name: getattr(args, f.name) for f in fields(ProposerOptions)})


def _fail(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_INPUT_ERROR


def run_propose(args: argparse.Namespace) -> int:
    """``ici propose``: patch the ledger and state of ``--run-root`` with the next shifts; prints counts."""
    from ptylib.ici.runroot.ledger import gc_paused

    try:
        options = options_from_args(args)
    except (ValueError, TypeError) as exc:
        return _fail(f"bad option: {exc}")
    if "numpy" not in sys.modules:
        # The proposer's linear algebra is on tiny matrices: OpenBLAS's thread pool would only add
        # start-up time and threads spinning on the other cores (an explicit setting is kept).
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with gc_paused():  # numpy's import and the pass make ~10^5 objects that live to the end
        from ptylib.ici.proposer.propose import propose_run_root
        from ptylib.io.lock import RunRootLockedError

        try:
            outcome = propose_run_root(Path(args.run_root), options)
        except (IciInputError, OSError, RunRootLockedError) as exc:
            return _fail(exc)
    print(outcome.to_text())
    return 0


def run_summarize(args: argparse.Namespace) -> int:
    """``ici summarize``: print the summary of ``--run-root`` and its centres table (text, or Markdown)."""
    from ptylib.ici.report.centres import centres_table, centres_text, run_root_centres
    from ptylib.ici.report.summary import summarize_run_root
    from ptylib.io.report import markdown_table

    try:
        summary = summarize_run_root(Path(args.run_root))
        centres = run_root_centres(Path(args.run_root))
    except (IciInputError, OSError) as exc:
        return _fail(exc)
    if getattr(args, "markdown", False):
        print(f"{summary.to_markdown()}\n## Centres\n\n{markdown_table(centres_table(centres))}")
    else:
        print(f"{summary.to_text()}\ncentres (as in centres.csv; '-' = none):\n{centres_text(centres)}")
    return 0


def run_dials_server(args: argparse.Namespace) -> int:
    """``ici dials-server stop``: end this user's DIALS servers (stills in progress end as ``dials_crashed``)."""
    from ptylib.ici.backends.dials_worker import ForeignServerError, stop_servers

    try:
        replies = stop_servers()
    except (PermissionError, ForeignServerError) as exc:
        return _fail(exc)
    for reply in replies:
        print(f"stopped the DIALS server pid {reply.get('pid')} ({reply.get('ended_stills', 0)} stills in progress ended)")
    if not replies:
        print("no DIALS server is running")
    return 0


def add_ici_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``propose``, ``summarize`` and ``dials-server`` subcommands (with their handlers) to ``sub``."""
    propose = sub.add_parser("propose", help="propose the next detector shift of every event")
    add_ici_propose_arguments(propose)
    propose.set_defaults(handler=run_propose)
    summarize = sub.add_parser("summarize", help="summarise a run root's ledger")
    add_ici_summarize_arguments(summarize)
    summarize.set_defaults(handler=run_summarize)
    server = sub.add_parser("dials-server", help="control this user's DIALS server (the DIALS backend's worker)",
                            description="The DIALS backend hands stills to a per-user server that ends by itself "
                                        "2 minutes after its last still or when the last flow it serves ends.")
    server.add_argument("action", choices=("stop",), help="stop: end the server now")
    server.set_defaults(handler=run_dials_server)


def build_parser() -> argparse.ArgumentParser:
    """The standalone parser of ``python -m ptylib.ici.cli``."""
    parser = argparse.ArgumentParser(prog="python -m ptylib.ici.cli", description="ICI proposer and summary.")
    add_ici_commands(parser.add_subparsers(dest="ici_command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``propose``, ``summarize`` or ``dials-server`` from ``argv``; returns the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
