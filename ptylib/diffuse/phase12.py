"""Phases 1 and 2 of one still: geometry (known or from DIALS), masks, then the corrected pixel data.

Each step is resumable: it leaves its outputs plus a stamp ``<output>.done.json`` holding the
SHA-256 of its inputs and its options, and a rerun with the same inputs returns at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.diffuse.experiment import read_experiment
from ptylib.diffuse.extraction import extract_pixels, write_pixel_data
from ptylib.diffuse.images import check_sizes, read_still
from ptylib.diffuse.layout import RunLayout
from ptylib.diffuse.masks import compute_masks, read_masks, write_masks
from ptylib.diffuse.options import (
    BraggMaskOptions,
    ExtractionOptions,
    StaticMaskOptions,
)
from ptylib.io.atomic import atomic_write_bytes, atomic_write_json
from ptylib.io.manifest import sha256_file


def _stamp_doc(inputs: list[Path], options: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": {str(p): sha256_file(p) for p in inputs}, "options": options}


def is_done(output: Path, inputs: list[Path], options: dict[str, Any]) -> bool:
    """True when ``output`` exists with a stamp matching these inputs' contents and options."""
    stamp = output.with_name(output.name + ".done.json")
    if not (output.is_file() and stamp.is_file()):
        return False
    try:
        return json.loads(stamp.read_text(encoding="utf-8")) == _stamp_doc(inputs, options)
    except (OSError, ValueError):
        return False


def mark_done(output: Path, inputs: list[Path], options: dict[str, Any]) -> None:
    """Write the stamp of ``output`` (after the output itself)."""
    atomic_write_json(output.with_name(output.name + ".done.json"), _stamp_doc(inputs, options))


def phase1_known(cbf: str | os.PathLike[str], experiment_in: str | os.PathLike[str], layout: RunLayout, still: int,
                 static: StaticMaskOptions, bragg: BraggMaskOptions) -> dict[str, Any]:
    """Phase 1 with known geometry: copy ``experiment_in`` as the still's experiment, compute and save masks.

    Returns the output paths and mask pixel counts. Raises a one-line ``ValueError`` for an
    unreadable image, sizes that disagree or an empty diffuse mask.
    """
    cbf, experiment_in = Path(cbf), Path(experiment_in)
    target = layout.experiment(still)
    options = {"geometry": "known", "static": static.model_dump(mode="json"), "bragg": bragg.model_dump(mode="json")}
    if not is_done(layout.masks(still), [cbf, experiment_in], options):
        target.parent.mkdir(parents=True, exist_ok=True)
        experiment = read_experiment(experiment_in)
        if experiment_in.resolve() != target.resolve():
            atomic_write_bytes(target, experiment_in.read_bytes())
        _masks_for(cbf, experiment, target, layout, still, static, bragg)
        mark_done(layout.masks(still), [cbf, experiment_in], options)
    return _phase1_summary(layout, still)


def _masks_for(cbf: Path, experiment: Any, experiment_path: Path, layout: RunLayout, still: int,
               static: StaticMaskOptions, bragg: BraggMaskOptions) -> None:
    image, saturation = read_still(cbf)
    check_sizes(image, experiment, cbf, experiment_path)
    masks = compute_masks(image, experiment, static, bragg, saturation)
    if not masks.total_diffuse.any():
        raise ValueError(f"{cbf}: field 'total_diffuse' mask is empty: no pixel is left for diffuse scattering "
                         f"(static good {int(masks.static_good.sum())}, Bragg {int(masks.bragg.sum())} pixels)")
    write_masks(layout.masks(still), masks)


def phase1_masks_from(cbf: str | os.PathLike[str], layout: RunLayout, still: int, static: StaticMaskOptions,
                      bragg: BraggMaskOptions, stamp_options: dict[str, Any]) -> dict[str, Any]:
    """Masks for a still whose experiment is already at ``layout.experiment(still)`` (DIALS path)."""
    cbf = Path(cbf)
    experiment_path = layout.experiment(still)
    if not is_done(layout.masks(still), [cbf, experiment_path], stamp_options):
        _masks_for(cbf, read_experiment(experiment_path), experiment_path, layout, still, static, bragg)
        mark_done(layout.masks(still), [cbf, experiment_path], stamp_options)
    return _phase1_summary(layout, still)


def _phase1_summary(layout: RunLayout, still: int) -> dict[str, Any]:
    masks = read_masks(layout.masks(still))
    return {"still": still, "experiment": str(layout.experiment(still)), "masks": str(layout.masks(still)),
            "static_good_px": int(masks.static_good.sum()), "bragg_px": int(masks.bragg.sum()),
            "total_diffuse_px": int(masks.total_diffuse.sum())}


def phase2(cbf: str | os.PathLike[str], layout: RunLayout, still: int, options: ExtractionOptions) -> dict[str, Any]:
    """Phase 2 of one still from its Phase-1 outputs; returns the NPZ path and the observation count."""
    cbf = Path(cbf)
    output = layout.pixel_data(still)
    inputs = [cbf, layout.experiment(still), layout.masks(still)]
    stamp = {"extraction": options.model_dump(mode="json")}
    if not is_done(output, inputs, stamp):
        image, _ = read_still(cbf)
        experiment = read_experiment(layout.experiment(still))
        arrays = extract_pixels(image, experiment, read_masks(layout.masks(still)).total_diffuse, options)
        write_pixel_data(output, arrays, still)
        mark_done(output, inputs, stamp)
    with np.load(output) as data:
        count = int(data["intensity"].size)
    return {"still": still, "pixel_data": str(output), "observations": count}
