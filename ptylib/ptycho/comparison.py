"""Phase G of the dose/overlap study: PINN vs supervised baseline vs LSQML on one test split.

All three images are cut from the same object-pixel region (phase F's illuminated box of the test split)
and go through the same registration (:func:`ptylib.ptycho.metrics.register`, ≤ 4 px shift, global phase
removed) and the same metrics (:func:`ptylib.ptycho.metrics.compare`) against the ground truth.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.io.atomic import atomic_open, atomic_write_json, atomic_write_text
from ptylib.io.report import save_figure
from ptylib.ptycho import plots
from ptylib.ptycho.contract import load_dataset
from ptylib.ptycho.metrics import compare, register
from ptylib.ptycho.options import StudyDesign
from ptylib.ptycho.stitch import window
from ptylib.ptycho.study import reusable, run_relative, step_key

METHODS: tuple[str, ...] = ("pinn", "baseline", "lsqml")
MAX_SHIFT_PX = 4.0
CSV_FIELDS: tuple[str, ...] = ("method", "phase_ms_ssim", "amplitude_ms_ssim", "phase_mae", "amplitude_mae",
                               "phase_mse", "amplitude_mse", "psnr", "amplitude_psnr", "frc50_px",
                               "phase_pearson", "shift_y_px", "shift_x_px")


def metric_row(method: str, quality: Mapping[str, Any]) -> dict[str, Any]:
    """The flat metrics of one method (``psnr`` is the phase PSNR, in dB; FRC50 in pixels)."""
    phase, amplitude = quality["phase"], quality["amplitude"]
    return {"method": method, "phase_ms_ssim": phase["ms_ssim"], "amplitude_ms_ssim": amplitude["ms_ssim"],
            "phase_mae": phase["mae"], "amplitude_mae": amplitude["mae"], "phase_mse": phase["mse"],
            "amplitude_mse": amplitude["mse"], "psnr": phase["psnr_db"], "amplitude_psnr": amplitude["psnr_db"],
            "frc50_px": quality["frc"]["resolution_px"], "phase_pearson": phase["pearson"],
            "shift_y_px": quality["shift_yx_px"][0], "shift_x_px": quality["shift_yx_px"][1]}


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: row[k] for k in CSV_FIELDS} for row in rows)
    return buffer.getvalue()


def pinn_image(model_dir: str | os.PathLike[str], data: Mapping[str, np.ndarray], source: str) -> tuple[np.ndarray, tuple[int, int], dict[str, Any]]:
    """A saved model's stitched reconstruction of ``data``: (image, canvas origin (row, col), timing)."""
    from ptylib.ptycho.pinn.infer import reconstruct
    from ptylib.ptycho.pinn.store import load_model

    network, sidecar = load_model(model_dir)
    rec = reconstruct(network, sidecar, data, source=source)
    return rec.object, rec.canvas_origin_yx, {"seconds": rec.seconds, "n_patterns": rec.n_patterns}


def compare_condition(design: StudyDesign, dose: float, view: str, test_npz: str, model_dirs: Mapping[str, str],
                      lsqml_npz: str, out_dir: str | os.PathLike[str], title: str, *,
                      root: str | os.PathLike[str]) -> dict[str, Any]:
    """Reconstruct the test split with each model, align all three methods to the truth and score them.

    ``model_dirs`` maps ``pinn`` and ``baseline`` to saved model folders; they, ``test_npz``, ``lsqml_npz`` and
    ``out_dir`` are relative to the run folder ``root``. Writes ``aligned.npz`` (truth and registered
    images), ``metrics.csv``, ``metrics.json``, ``comparison.png`` and ``comparison_record.json``.
    """
    out, test_npz, lsqml_npz = Path(root) / out_dir, str(Path(root) / test_npz), Path(root) / lsqml_npz
    model_dirs = {m: Path(root) / d for m, d in model_dirs.items()}
    inputs = {"test": test_npz, "lsqml": lsqml_npz} | {m: d / "model.keras" for m, d in model_dirs.items()}
    key = step_key(design, inputs, dose=dose, view=view, max_shift_px=MAX_SHIFT_PX)
    if (done := reusable(out / "comparison_record.json", key, root)) is not None:
        return done | {"reused": True}
    data = load_dataset(test_npz)
    with np.load(lsqml_npz) as lsqml:
        origin = tuple(int(v) for v in lsqml["canvas_origin_yx"])
        y0, y1, x0, x1 = (int(v) for v in lsqml["region_yx"])
        images = {"lsqml": (lsqml["object"], origin)}
    timing = {}
    for method in ("pinn", "baseline"):
        image, canvas_origin, timing[method] = pinn_image(model_dirs[method], data, test_npz)
        images[method] = (image, canvas_origin)
    top_left = (origin[0] + y0, origin[1] + x0)  # the region in dataset-object pixels
    shape = (y1 - y0, x1 - x0)
    truth = window(data["objectGuess"], top_left, shape, fill=1)
    rows, aligned, curves = [], {"truth": truth}, {}
    for method in METHODS:
        image, canvas_origin = images[method]
        cut = window(image, (top_left[0] - canvas_origin[0], top_left[1] - canvas_origin[1]), shape, fill=1)
        quality = compare(truth, cut, sigma=design.ms_ssim_sigma, frc_threshold=design.frc_threshold,
                          max_shift_px=MAX_SHIFT_PX)
        reg = register(truth, cut, max_shift_px=MAX_SHIFT_PX)
        aligned[method] = reg.image
        aligned[f"{method}_truth"] = reg.reference
        curves[method] = (np.asarray(quality["frc"]["frequency"]), np.asarray(quality["frc"]["curve"]))
        rows.append(metric_row(method, quality) | {"ms_ssim_scales": quality["phase"]["ms_ssim_scales"]})
    with atomic_open(out / "aligned.npz", "wb") as handle:
        np.savez(handle, **aligned, region_yx=np.asarray([top_left[0], top_left[0] + shape[0], top_left[1],
                                                           top_left[1] + shape[1]], np.int64))
    atomic_write_text(out / "metrics.csv", _csv_text(rows))
    atomic_write_json(out / "metrics.json", rows)
    figure = save_figure(plots.comparison_figure(aligned, METHODS, curves, design.frc_threshold, title),
                         out / "comparison.png")
    files = [run_relative(out / name, root) for name in ("aligned.npz", "metrics.csv", "metrics.json", figure.name)]
    record = {"key": key, "dose": float(dose), "view": view, "test_dataset": run_relative(test_npz, root), "rows": rows,
              "inference": timing, "region_yx": [top_left[0], top_left[0] + shape[0], top_left[1], top_left[1] + shape[1]],
              "aligned_npz": files[0], "metrics_csv": files[1], "metrics_json": files[2], "figure": files[3],
              "files": files}
    atomic_write_json(out / "comparison_record.json", record)
    return record
