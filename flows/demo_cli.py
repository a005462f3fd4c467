"""``ptyflows demo``: every landed pipeline's small profile as subflows of one parent run, with one report.

Prefect and the flows are imported only when the command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ptyflows demo``."""
    from flows.pipelines import pipeline_names

    parser.add_argument("--profile", choices=("small", "smoke"), default="small",
                        help="small (the demo, minutes per pipeline) or smoke (the nightly regression's, faster)")
    parser.add_argument("--run-dir", help="folder of this run (default runs/<profile>/<UTC timestamp>)")
    parser.add_argument("--pipeline", dest="pipelines", action="append", choices=pipeline_names(),
                        help="run only this pipeline (repeatable; default all)")


def run_demo(args: argparse.Namespace) -> int:
    """Run the parent flow; print each pipeline's status and the report. Exit 1 when any pipeline failed."""
    from flows.all_pipelines import PipelinesFailed, all_pipelines

    state = all_pipelines(profile=args.profile, run_dir=args.run_dir, pipelines=args.pipelines,
                          fail_if_any=True, return_state=True)
    result = state.result(raise_on_failure=False)
    if isinstance(result, PipelinesFailed):
        print(f"error: {result}", file=sys.stderr)
        return 1
    if isinstance(result, BaseException):
        print(f"error: {type(result).__name__}: {result}", file=sys.stderr)
        return 2
    print(f"report: {result['report']}")
    for row in result["pipelines"]:
        print(f"  {row['pipeline']}: {row['status']} in {row['seconds']} s ({row['run_dir']})")
    return 0
