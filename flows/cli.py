"""``ptyflows``: one command-line entry point, a subcommand group per pipeline.

Imports are deferred into each subcommand so that ``--help`` and the fast paths
(``ici propose``, ``ici summarize``, ``simulate``) load no Prefect, torch or TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

Handler = Callable[[argparse.Namespace], int]

DESCRIPTION = """\
X-ray diffraction imaging pipelines as Prefect flows.

pipelines:
  ici        iterative detector-shift (beam-centre) indexing loop for serial crystallography
  simulate   render one diffraction image with the differentiable (torch) simulator
  refine     recover mosaic spread and misset by gradient descent through the simulator
  study      dose/overlap ptychography study (datasets, views, PINN, LSQML, comparison)
  debug      sim-lines debug scenarios: PINN on a lines object, diagnostics, pass/fail report
  diffuse    diffuse scattering from stills: Phases 1-3 and the Phase 3 visual check
  demo       the main job: every pipeline's small profile on built-in synthetic data
  ui         the local Prefect server, UI, worker, inbox watcher and deployments (up|status|down)
"""


def _add_ici(sub: argparse._SubParsersAction) -> None:
    from ptylib.ici import cli as ici_cli

    ici = sub.add_parser("ici", help="iterative centre-shift indexing (ICI) loop",
                         description="Iterative detector-shift indexing for serial crystallography.")
    ici_sub = ici.add_subparsers(dest="ici_command", required=True, metavar="COMMAND")

    ici_cli.add_ici_commands(ici_sub)

    from flows import ici_cli_run

    run = ici_sub.add_parser("run", help="run the ICI loop as a Prefect flow on your stills or HDF5 data",
                             description="The ICI loop (flows/ici_loop.py) on your data: index every event at its "
                                         "proposed detector shift, ingest, propose, repeat; the answer is "
                                         "RUN_ROOT/centres.csv.")
    ici_cli_run.add_run_arguments(run)
    run.set_defaults(handler=ici_cli_run.run_loop)

    demo = ici_sub.add_parser("demo", help="run the ICI loop on a built-in synthetic run (stand-in indexer)")
    ici_cli_run.add_demo_arguments(demo)
    demo.set_defaults(handler=ici_cli_run.run_demo)
    study = ici_sub.add_parser("study", help="compare the proposer with spiral and random search on synthetic data",
                               description="The ICI convergence study (flows/ici_study.py): every strategy runs "
                                           "the loop on the same events; table and plot in RUN_ROOT/study.md.")
    ici_cli_run.add_study_arguments(study)
    study.set_defaults(handler=ici_cli_run.run_study)


def _add_diffraction(sub: argparse._SubParsersAction) -> None:
    from ptylib.diffraction import cli as diffraction_cli

    simulate = sub.add_parser("simulate", help="render one image (nanoBragg option names and units) to .npy",
                              description="Render one diffraction image with the torch simulator; "
                                          "the .npy is float32 photons per pixel laid out [slow, fast].")
    diffraction_cli.add_simulate_arguments(simulate)
    simulate.set_defaults(handler=diffraction_cli.run_simulate)

    refine = sub.add_parser("refine", help="recover mosaic spread and misset by gradient descent",
                            description="The refinement demo's kernel with a progress bar (no Prefect); "
                                        "the Prefect flow is flows/refinement_demo.py:refinement_demo.")
    diffraction_cli.add_refine_arguments(refine)
    refine.set_defaults(handler=diffraction_cli.run_refine)


def build_parser() -> argparse.ArgumentParser:
    """The full ``ptyflows`` argument parser."""
    parser = argparse.ArgumentParser(prog="ptyflows", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="PIPELINE")
    _add_ici(sub)
    _add_diffraction(sub)
    from flows.study_cli import add_study_arguments

    add_study_arguments(sub)
    from flows.debug_cli import add_debug_arguments

    add_debug_arguments(sub)
    from flows.diffuse_cli import add_diffuse_commands

    add_diffuse_commands(sub)

    from flows import demo_cli

    demo = sub.add_parser("demo", help="the main job: every pipeline's small profile on built-in synthetic data",
                          description="Every landed pipeline's small profile as subflows of one parent flow "
                                      "run, failures isolated; one report (artifact and report.md) at the end.")
    demo_cli.add_demo_arguments(demo)
    demo.set_defaults(handler=demo_cli.run_demo)
    from flows import ui_cli

    ui_cli.add_ui_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the process exit code.

    The project's own errors (bad input, a locked run root, a dead indexer) end as one line
    ``error: ...`` on stderr with exit code 2, not a traceback.
    """
    args = build_parser().parse_args(argv)
    from flows.ui_cli import use_running_server

    use_running_server()
    handler: Handler = args.handler
    try:
        return handler(args)
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[Exception], ...]:
    """The exception types that describe the user's input or environment (imported only when needed)."""
    from ptylib.ici.loop import IndexerFailedError
    from ptylib.ici.model import IciInputError
    from ptylib.io.lock import RunRootLockedError

    return IciInputError, IndexerFailedError, RunRootLockedError


if __name__ == "__main__":
    sys.exit(main())
