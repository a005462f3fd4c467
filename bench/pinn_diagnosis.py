"""Diagnosis of the PINN/baseline images on a finished dose/overlap study run (small profile or larger).

``python bench/pinn_diagnosis.py saved RUN_DIR [--dose D]``: the saved phase-E models (PINN gs2 dense and
the baseline) and the true patches ``Y`` stitched through inference's path on the dense view's train
and test splits. ``python bench/pinn_diagnosis.py train RUN_DIR KIND GRIDSIZE '{"epochs": 20}' [--dose D]
[--inputs raw|log|centered] [--every K]``: one training job with those options (gs 1 on the dose's whole
training split or every K-th pattern of it, gs 2 on its dense view), scored on its own training patterns
(correlation with ``Y``) and on the dense train and test splits. Scores are amplitude and
phase MS-SSIM (``ptylib.ptycho.metrics.compare``) on the box covered by the patches' central N/2 squares,
and the standard deviation of the predicted central amplitudes (a collapsed network predicts ≈ 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ptylib.ptycho.contract import load_dataset
from ptylib.ptycho.lsqml import reconstruction_canvas
from ptylib.ptycho.metrics import compare
from ptylib.ptycho.pinn import infer, train
from ptylib.ptycho.stitch import window


def score(arrays: Mapping[str, np.ndarray], image: np.ndarray, origin_yx: tuple[int, int]) -> dict[str, float]:
    """Amplitude and phase MS-SSIM of a stitched image against ``objectGuess`` on the patch-centre box."""
    n_px, margin = arrays["diffraction"].shape[-1], 2
    (oy, ox), (height, width) = reconstruction_canvas(arrays["xcoords"], arrays["ycoords"], n_px, margin)
    inset = margin + n_px // 4
    top_left, shape = (oy + inset, ox + inset), (height - 2 * inset, width - 2 * inset)
    truth = window(arrays["objectGuess"], top_left, shape, fill=1)
    cut = window(image, (top_left[0] - origin_yx[0], top_left[1] - origin_yx[1]), shape, fill=1)
    quality = compare(truth, cut, max_shift_px=4.0)
    return {"amplitude_ms_ssim": round(quality["amplitude"]["ms_ssim"], 3),
            "phase_ms_ssim": round(quality["phase"]["ms_ssim"], 3)}


def model_scores(network: Any, sidecar: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Scores of a network's stitched reconstruction plus the spread of its predicted central amplitudes."""
    members, patches, _, _ = infer.predict_patches(network, sidecar, arrays)
    image, origin = infer.stitch_group_patches(arrays, members, patches)
    return score(arrays, image, origin) | {"amp_std_pred": round(float(np.std(np.abs(infer.central_crop(patches)))), 4)}


def patch_fit(network: Any, sidecar: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Correlation of predicted central-patch amplitude and phase with the true patches ``Y``."""
    members, patches, _, _ = infer.predict_patches(network, sidecar, arrays)
    predicted, truth = infer.central_crop(patches), infer.central_crop(np.asarray(arrays["Y"])[members])
    return {f"{name}_corr": round(float(np.corrcoef(part(predicted).ravel(), part(truth).ravel())[0, 1]), 3)
            for name, part in (("amplitude", np.abs), ("phase", np.angle))}


def use_inputs(mode: str) -> None:
    """Replace the network's input transform in training and inference alike (raw is the code's own)."""
    raw = train.network_inputs

    def transformed(amplitudes: np.ndarray, scale: float) -> np.ndarray:
        x = raw(amplitudes, scale)
        x = np.log1p(x) if mode == "log" else x - x.mean(axis=0, keepdims=True)
        return x.astype(np.float32)

    if mode != "raw":
        train.network_inputs = infer.network_inputs = transformed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["saved", "train"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("job", nargs="*", help="train: KIND GRIDSIZE OPTIONS_JSON")
    parser.add_argument("--dose", default="10000")
    parser.add_argument("--every", type=int, default=1, help="train: every k-th training pattern only (gs 1)")
    parser.add_argument("--inputs", choices=["raw", "log", "centered"], default="raw")
    args = parser.parse_args()
    view = args.run_dir / "phase_d" / f"dose_{args.dose}" / "dense"
    splits = {s: dict(load_dataset(view / f"dense_{s}.npz")) for s in ("train", "test")}
    out: dict[str, Any] = {}
    if args.mode == "saved":
        from ptylib.ptycho.pinn.store import load_model

        for split, arrays in splits.items():
            members = np.arange(len(arrays["xcoords"]))[:, None]
            out[f"truth_Y_{split}"] = score(arrays, *infer.stitch_group_patches(arrays, members, arrays["Y"][members]))
            for job in ("pinn_gs2_dense", "baseline"):
                network, sidecar = load_model(args.run_dir / "phase_e" / f"dose_{args.dose}" / job / "model")
                out[f"{job}_{split}"] = model_scores(network, sidecar, arrays)
    else:
        from ptylib.ptycho.pinn.options import ModelKind, TrainingOptions

        kind, gridsize, options = ModelKind(args.job[0]), int(args.job[1]), TrainingOptions(**json.loads(args.job[2]))
        use_inputs(args.inputs)
        data = (args.run_dir / "phase_c" / f"dose_{args.dose}" / "train.npz") if gridsize == 1 else view / "dense_train.npz"
        training = dict(load_dataset(data))
        if args.every > 1:
            from ptylib.ptycho.dataset import subset

            training = subset(training, np.arange(0, len(training["xcoords"]), args.every))
        result = train.train_model(training, kind, gridsize, options)
        sidecar = {"gridsize": gridsize, "patch_size_px": result.patch_size_px, "intensity_scale": result.intensity_scale}
        out = {"initial_loss": round(result.initial_loss, 4), "final_loss": round(result.final_loss, 4),
               "epochs": len(result.history), "training_patches": patch_fit(result.network, sidecar, training)}
        out |= {split: model_scores(result.network, sidecar, arrays) for split, arrays in splits.items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
