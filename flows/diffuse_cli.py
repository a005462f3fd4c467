"""``ptyflows diffuse run | check | demo``: the diffuse flows from the command line (the seed's option names).

Each ``--*-config`` / ``--*-config-json`` option takes a JSON string or a JSON file holding fields of
the options model named in its help (generated from the model). Inputs are checked before any
flow starts; a bad one ends the command with a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.scale_out import add_scale_out_arguments, scale_out_from_args
from ptylib.diffuse.options import (
    BraggMaskOptions,
    DialsPhase1Options,
    DiffuseOptions,
    ExtractionOptions,
    GridOptions,
    ScalingOptions,
    StaticMaskOptions,
    describe_fields,
    options_from_json,
)

CONFIG_OPTIONS = {
    "static_mask": ("--static-mask-config", StaticMaskOptions),
    "bragg_mask": ("--bragg-mask-config", BraggMaskOptions),
    "extraction": ("--extraction-config-json", ExtractionOptions),
    "scaling": ("--relative-scaling-config-json", ScalingOptions),
    "grid": ("--grid-config-json", GridOptions),
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _fail(message: str) -> int:
    print(f"ptyflows diffuse: error: {message}", file=sys.stderr)
    return 2


def add_diffuse_commands(sub: argparse._SubParsersAction) -> None:
    """Add the ``diffuse`` group with ``run``, ``check`` and ``demo``."""
    diffuse = sub.add_parser("diffuse", help="diffuse scattering: Phases 1-3 and the Phase 3 visual check",
                             description="Diffuse scattering from stills (docs/diffuse.md).")
    commands = diffuse.add_subparsers(dest="diffuse_command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="Phases 1-3 + visual check over CBF stills (flow diffuse-phase3)")
    run.add_argument("--cbf-image-paths", nargs="+", required=True, metavar="CBF", help="miniCBF stills")
    run.add_argument("--output-base-dir", required=True, help="base folder of the run")
    run.add_argument("--experiment-paths", nargs="+", metavar="EXPT",
                     help="one DIALS .expt per still (known geometry); without them DIALS indexes each still")
    run.add_argument("--run-name", help="run sub-folder (default: <first CBF stem>_<N>stills; reruns resume)")
    for dest, (flag, model) in CONFIG_OPTIONS.items():
        run.add_argument(flag, dest=dest, metavar="JSON", help=f"JSON string or file: {describe_fields(model)}")
    run.add_argument("--unit-cell", help="DIALS path: known cell a,b,c,alpha,beta,gamma (Å, degrees)")
    run.add_argument("--space-group", help="DIALS path: known space group, e.g. P222")
    run.add_argument("--dials-phil-path", help="DIALS path: extra PHIL file for dials.index")
    run.add_argument("--no-visual-check", action="store_true", help="skip the diagnostics")
    run.add_argument("--max-plot-points", type=_positive_int, default=20000, help="most q-points in the coverage plot")
    add_scale_out_arguments(run)
    run.set_defaults(handler=run_command)
    check = commands.add_parser("check", help="the Phase 3 visual check on existing outputs (flow diffuse-visual-check)")
    check.add_argument("--grid-definition-file", required=True, help="global_voxel_grid_definition.json")
    check.add_argument("--scaling-model-params-file", required=True, help="refined_scaling_model_params.json")
    check.add_argument("--voxel-data-file", required=True, help="voxel_data_relative.npz or .hdf5")
    check.add_argument("--output-dir", required=True, help="folder for plots and summaries")
    check.add_argument("--corrected-pixel-data-dir", help="folder of CorrectedDiffusePixelData_*.npz (coverage plot)")
    check.add_argument("--max-plot-points", type=_positive_int, default=20000, help="most q-points in the coverage plot")
    check.set_defaults(handler=check_command)
    demo = commands.add_parser("demo", help="render the synthetic set with known truth, process it, write accuracy.json")
    demo.add_argument("--out", default="runs/diffuse_demo", help="demo folder (default runs/diffuse_demo)")
    demo.add_argument("--stills", type=_positive_int, default=None, help="number of synthetic stills (default 24)")
    demo.add_argument("--dials", action="store_true", help="index every still with DIALS instead of the true geometry")
    demo.set_defaults(handler=demo_command)


def _options(args: argparse.Namespace) -> DiffuseOptions:
    parts: dict[str, Any] = {dest: options_from_json(model, getattr(args, dest), option=flag)
                             for dest, (flag, model) in CONFIG_OPTIONS.items()}
    dials: dict[str, Any] = {"unit_cell": args.unit_cell, "space_group": args.space_group}
    if args.dials_phil_path:
        phil = Path(args.dials_phil_path)
        if not phil.is_file():
            raise ValueError(f"--dials-phil-path: {phil} does not exist")
        dials["dials_phil_path"] = phil.absolute()
    return DiffuseOptions(**parts, dials=DialsPhase1Options(**dials))


def _guarded(body: Callable[[], int]) -> int:
    try:
        return body()
    except ValueError as exc:
        return _fail(str(exc).splitlines()[0])


def run_command(args: argparse.Namespace) -> int:
    """``diffuse run``: check inputs, then run the diffuse-phase3 flow."""
    def body() -> int:
        from ptylib.diffuse.inputs import validate_run_inputs

        options = _options(args)
        cbfs = validate_run_inputs(args.cbf_image_paths, args.experiment_paths, options)
        experiments = [str(Path(p).absolute()) for p in args.experiment_paths] if args.experiment_paths else None
        from flows.diffuse_phase3 import diffuse_phase3

        result = diffuse_phase3([str(p) for p in cbfs], str(Path(args.output_base_dir).absolute()), experiments,
                                options, args.run_name, not args.no_visual_check, args.max_plot_points,
                                scale_out_from_args(args))
        print(f"run folder: {result['run_dir']}  (stills used {len(result['stills_used'])}, "
              f"failed {len(result['stills_failed'])})")
        return 0

    return _guarded(body)


def check_command(args: argparse.Namespace) -> int:
    """``diffuse check``: check the three files, then run the diffuse-visual-check flow."""
    def body() -> int:
        from ptylib.diffuse.diagnostics import check_inputs

        check_inputs(args.grid_definition_file, args.scaling_model_params_file, args.voxel_data_file)
        if args.corrected_pixel_data_dir and not Path(args.corrected_pixel_data_dir).is_dir():
            raise ValueError(f"--corrected-pixel-data-dir: {args.corrected_pixel_data_dir} is not a folder")
        from flows.diffuse_visual_check import diffuse_visual_check

        result = diffuse_visual_check(args.grid_definition_file, args.scaling_model_params_file, args.voxel_data_file,
                                      args.output_dir, args.corrected_pixel_data_dir, args.max_plot_points)
        print(f"{len(result['pngs'])} plots and summaries in {args.output_dir}")
        return 0

    return _guarded(body)


def demo_command(args: argparse.Namespace) -> int:
    """``diffuse demo``: render, process and score the synthetic set."""
    def body() -> int:
        from ptylib.diffuse.synthetic import SyntheticDiffuseOptions

        data = SyntheticDiffuseOptions() if args.stills is None else SyntheticDiffuseOptions(stills=args.stills)
        from flows.diffuse_demo import TARGETS, diffuse_demo

        result = diffuse_demo(args.out, data, DiffuseOptions(), not args.dials)
        for key, target in TARGETS.items():
            print(f"{key}: {result[key]:.4f} (target >= {target})")
        print(f"n_voxels_compared: {result['n_voxels_compared']}; accuracy.json: {result['accuracy_json']}")
        return 0 if all(result["targets_met"].values()) else 1

    return _guarded(body)
