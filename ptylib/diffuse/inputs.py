"""Checks of a diffuse run's inputs before any flow starts: one-line errors naming the file and field."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ptylib.diffuse.experiment import read_experiment
from ptylib.diffuse.images import check_sizes, read_still
from ptylib.diffuse.options import DiffuseOptions


def validate_run_inputs(cbf_paths: Sequence[str | os.PathLike[str]],
                        experiment_paths: Sequence[str | os.PathLike[str]] | None,
                        options: DiffuseOptions) -> list[Path]:
    """Read every still (and its experiment file); returns the CBF paths made absolute.

    Relative paths are relative to the current working directory.
    """
    if not cbf_paths:
        raise ValueError("--cbf-image-paths: no CBF image given")
    cbfs = [Path(p).absolute() for p in cbf_paths]
    if experiment_paths:
        if len(experiment_paths) != len(cbfs):
            raise ValueError(f"--experiment-paths: {len(experiment_paths)} experiment files for {len(cbfs)} "
                             "CBF images; give one per image, in the same order")
        for cbf, expt in zip(cbfs, experiment_paths, strict=True):
            image, _ = read_still(cbf)
            check_sizes(image, read_experiment(expt), cbf, expt)
    else:
        if not options.dials.unit_cell or not options.dials.space_group:
            raise ValueError("dials.unit_cell / dials.space_group: the DIALS path needs the known cell and space "
                             "group (--unit-cell, --space-group), or give --experiment-paths")
        for cbf in cbfs:
            read_still(cbf)
    return cbfs
