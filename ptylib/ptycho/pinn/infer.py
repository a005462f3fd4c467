"""Inference: predict the object patches of a dataset with a trained network and stitch them into an image.

Patches of a gs = 2 model pass through the same overlap constraint as in training. Each patch's central
``N/2`` square (the illuminated part; the rim is unconstrained by the data) is averaged into a canvas
laid out like LSQML's (:func:`ptylib.ptycho.lsqml.reconstruction_canvas`); pixels no patch covers are 1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.ptycho.contract import DatasetContractError
from ptylib.ptycho.lsqml import reconstruction_canvas
from ptylib.ptycho.pinn.data import intensity_scale, make_groups
from ptylib.ptycho.pinn.train import network_inputs
from ptylib.ptycho.stitch import stitch_patches

PREDICT_BATCH = 64  # groups per forward pass: bounds memory


@dataclass(frozen=True)
class Reconstruction:
    """A stitched reconstruction on a canvas of the dataset's object pixels."""

    object: np.ndarray
    """(H, W) complex64 stitched object."""
    canvas_origin_yx: tuple[int, int]
    """Dataset-object pixel (row, col) of canvas pixel (0, 0)."""
    seconds: float
    """Wall time of the network's forward passes (s)."""
    n_patterns: int
    """Diffraction patterns fed to the network (a pattern in several groups counts each time)."""
    input_scale: float
    """Intensity scale of this dataset (RMS amplitude per pixel) the inputs were divided by."""


def check_compatible(sidecar: Mapping[str, Any], arrays: Mapping[str, np.ndarray], source: str) -> None:
    """Raise a one-line error when the model's patch size or gridsize does not fit the dataset."""
    n_px = arrays["diffraction"].shape[-1]
    if n_px != sidecar["patch_size_px"]:
        raise DatasetContractError(f"{source}: key 'diffraction': expected {sidecar['patch_size_px']}×"
                                   f"{sidecar['patch_size_px']} patterns (the model's N), got {n_px}×{n_px}")
    gridsize = int(sidecar["gridsize"])
    if gridsize > 1 and "group_indices" not in arrays:
        raise DatasetContractError(f"{source}: key 'group_indices': expected (G, {gridsize ** 2}) groups for the "
                                   f"model's gridsize {gridsize}, got no such key")


def predict_patches(network: Any, sidecar: Mapping[str, Any], arrays: Mapping[str, np.ndarray], *,
                    source: str = "<arrays>") -> tuple[np.ndarray, np.ndarray, float, float]:
    """Member indices (G, C), patches (G, C, N, N) complex64, forward seconds and the input scale."""
    import tensorflow as tf

    from ptylib.ptycho.pinn.network import patches_from_outputs
    from ptylib.ptycho.pinn.physics import overlap_constraint

    check_compatible(sidecar, arrays, source)
    groups = make_groups(arrays, int(sidecar["gridsize"]), source=source)
    scale = intensity_scale(arrays["diffraction"])
    x = network_inputs(groups.amplitudes, scale)
    starts = (groups.starts_yx - groups.starts_yx[:, :1]).astype(np.int32)
    out, start = [], time.perf_counter()
    for lo in range(0, len(x), PREDICT_BATCH):
        # predict_on_batch runs Keras' compiled predict function (kept on the model), not eager layer calls.
        amplitude, phase = network.predict_on_batch(x[lo : lo + PREDICT_BATCH])
        patches = patches_from_outputs(tf.constant(amplitude), tf.constant(phase))
        out.append(overlap_constraint(patches, tf.constant(starts[lo : lo + PREDICT_BATCH])).numpy())
    seconds = time.perf_counter() - start
    return groups.members, np.concatenate(out).astype(np.complex64), seconds, scale


def central_crop(patches: np.ndarray) -> np.ndarray:
    """The central N/2 × N/2 square of patches (..., N, N)."""
    n_px = patches.shape[-1]
    lo = n_px // 4
    return patches[..., lo : lo + n_px // 2, lo : lo + n_px // 2]


def reconstruct(network: Any, sidecar: Mapping[str, Any], arrays: Mapping[str, np.ndarray], *,
                source: str = "<arrays>", margin_px: int = 2) -> Reconstruction:
    """Predict every group of the dataset and stitch the patches' centres on the dataset's canvas."""
    members, patches, seconds, scale = predict_patches(network, sidecar, arrays, source=source)
    x, y = np.asarray(arrays["xcoords"])[members].ravel(), np.asarray(arrays["ycoords"])[members].ravel()
    n_px = patches.shape[-1]
    (oy, ox), (height, width) = reconstruction_canvas(arrays["xcoords"], arrays["ycoords"], n_px, margin_px)
    side = max(height, width)
    center = (side - 1) / 2
    offsets = np.stack([x - ox - center, y - oy - center], axis=1)
    crops = central_crop(patches.reshape(-1, n_px, n_px))
    stitched = stitch_patches(crops, offsets, canvas_px=side)
    image = np.where(stitched.weight > 0, stitched.canvas, 1).astype(np.complex64)[:height, :width]
    return Reconstruction(image, (oy, ox), seconds, int(members.size), scale)


def infer_to_files(model_dir: str | os.PathLike[str], data_npz: str | os.PathLike[str],
                   out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Apply a saved model to a contract dataset: ``amplitude.npy``, ``phase.npy``, ``amplitude_phase.png``,
    ``inference.json`` in ``out_dir``. The dataset and the model are checked before anything is written."""
    from ptylib.io.atomic import atomic_save_npy, atomic_write_json
    from ptylib.io.manifest import sha256_file
    from ptylib.io.report import save_figure
    from ptylib.ptycho import plots
    from ptylib.ptycho.contract import load_dataset
    from ptylib.ptycho.pinn.store import load_model, load_sidecar

    sidecar = load_sidecar(model_dir)
    data = load_dataset(data_npz)
    check_compatible(sidecar, data, str(data_npz))
    network, sidecar = load_model(model_dir)
    rec = reconstruct(network, sidecar, data, source=str(data_npz))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_save_npy(out / "amplitude.npy", np.abs(rec.object).astype(np.float32))
    atomic_save_npy(out / "phase.npy", np.angle(rec.object).astype(np.float32))
    png = save_figure(plots.amplitude_phase_figure(rec.object, f"{sidecar['kind']} gs{sidecar['gridsize']}: "
                                                                f"{Path(data_npz).name}"), out / "amplitude_phase.png")
    record = {"model_dir": str(model_dir), "model_sha256": sidecar.get("model_sha256"), "data": str(data_npz),
              "data_sha256": sha256_file(data_npz), "canvas_origin_yx": list(rec.canvas_origin_yx),
              "shape": list(rec.object.shape), "n_patterns": rec.n_patterns, "seconds": rec.seconds,
              "patterns_per_second": rec.n_patterns / rec.seconds if rec.seconds > 0 else None,
              "input_scale": rec.input_scale, "training_intensity_scale": sidecar["intensity_scale"],
              "files": [str(out / "amplitude.npy"), str(out / "phase.npy"), str(png)]}
    atomic_write_json(out / "inference.json", record)
    return record
