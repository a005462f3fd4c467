"""Reading stills for the diffuse pipeline with one-line errors naming the file and field."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ptylib.diffuse.experiment import StillExperiment
from ptylib.io.minicbf import read_minicbf


def read_still(path: str | os.PathLike[str]) -> tuple[np.ndarray, int | None]:
    """(int32 image [slow, fast], saturation counts from ``Count_cutoff`` or None) of a miniCBF file."""
    path = Path(path)
    try:
        image, fields = read_minicbf(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read CBF image: {exc.strerror or exc}") from None
    except (ValueError, KeyError, IndexError) as exc:
        text = str(exc)
        raise ValueError(text if text.startswith(str(path)) else f"{path}: unreadable CBF image: {text}") from None
    cutoff = fields.get("Count_cutoff", "").split()
    try:
        saturation = int(cutoff[0]) if cutoff else None
    except ValueError:
        saturation = None
    return image, saturation


def check_sizes(image: np.ndarray, experiment: StillExperiment, image_path: str | os.PathLike[str],
                experiment_path: str | os.PathLike[str]) -> None:
    """Raise a one-line error when the experiment's panel size differs from the image's."""
    slow, fast = image.shape
    if tuple(experiment.image_size) != (fast, slow):
        raise ValueError(f"{experiment_path}: field 'image_size' is {list(experiment.image_size)} (fast, slow) "
                         f"but {image_path} is {fast} x {slow} pixels")
