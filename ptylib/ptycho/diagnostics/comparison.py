"""Ground-truth comparison, bias statistics and the best-fit amplitude scalar of a stitched reconstruction."""

from __future__ import annotations

import numpy as np

from ptylib.ptycho.metrics import pearson

PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)


def covered_box(weight: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1) of the canvas pixels at least one patch covers; (0, 0, 0, 0) if none."""
    rows, cols = np.flatnonzero((weight > 0).any(axis=1)), np.flatnonzero((weight > 0).any(axis=0))
    if not len(rows):
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def best_fit_scalar(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Least-squares s minimising ‖s·predicted − truth‖² over finite pixels: Σ p·t / Σ p² (NaN if p ≡ 0)."""
    p, t = np.asarray(predicted, np.float64).ravel(), np.asarray(truth, np.float64).ravel()
    ok = np.isfinite(p) & np.isfinite(t)
    denominator = float(p[ok] @ p[ok])
    return float(p[ok] @ t[ok]) / denominator if denominator > 0 else float("nan")


def align_phase(predicted: np.ndarray, truth: np.ndarray, mask: np.ndarray | bool = True) -> np.ndarray:
    """Predicted phase (radians) with the global phase offset removed: angle(pred·e^{iφ}) where φ is the
    angle of Σ truth·conj(pred) over ``mask`` (a constant phase is invisible in far-field data)."""
    offset = np.angle(np.sum(np.where(mask, truth * np.conj(predicted), 0)))
    return np.angle(predicted * np.exp(1j * offset))


def error_stats(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, max |error| and Pearson r of two real images (finite pixels only)."""
    ok = np.isfinite(predicted) & np.isfinite(truth)
    if not ok.any():
        nan = float("nan")
        return {"mae": nan, "rmse": nan, "max_error": nan, "pearson": nan, "finite_fraction": 0.0}
    diff = predicted[ok] - truth[ok]
    return {"mae": float(np.mean(np.abs(diff))), "rmse": float(np.sqrt(np.mean(diff**2))),
            "max_error": float(np.max(np.abs(diff))), "pearson": pearson(truth[ok], predicted[ok]),
            "finite_fraction": float(ok.mean())}


def compare_to_truth(predicted: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Amplitude and phase error statistics of a complex reconstruction against the complex truth (same shape)."""
    return {"amplitude": error_stats(np.abs(predicted), np.abs(truth)),
            "phase": error_stats(align_phase(predicted, truth), np.angle(truth))}


def bias_stats(predicted: np.ndarray, truth: np.ndarray) -> dict[str, object]:
    """Mean, median and percentiles of predicted and true amplitude, their differences and ratios, and the
    least-squares scalar that maps predicted onto true amplitude (with the error left after applying it)."""
    p, t = np.abs(predicted).ravel().astype(np.float64), np.abs(truth).ravel().astype(np.float64)
    ok = np.isfinite(p) & np.isfinite(t)
    p, t = p[ok], t[ok]

    def summary(values: np.ndarray) -> dict[str, float]:
        if not len(values):
            return {"mean": float("nan"), "median": float("nan")}
        q = np.percentile(values, PERCENTILES)
        return {"mean": float(values.mean()), "median": float(np.median(values)),
                **{f"p{int(k)}": float(v) for k, v in zip(PERCENTILES, q)}}

    ratio = p[t > 0] / t[t > 0]
    scalar = best_fit_scalar(p, t)
    rescaled = error_stats(scalar * p, t) if np.isfinite(scalar) else error_stats(p * np.nan, t)
    mean_ratio = float(p.mean() / t.mean()) if len(p) and t.mean() > 0 else float("nan")
    return {"predicted": summary(p), "truth": summary(t), "difference": summary(p - t), "ratio": summary(ratio),
            "mean_ratio": mean_ratio, "best_fit_scalar": scalar, "rescaled_amplitude": rescaled}


def rescale_factor(mode: str, predicted: np.ndarray, truth: np.ndarray, *, model_scale: float | None,
                   data_scale: float | None) -> float:
    """The amplitude factor of a rescale mode: 1 (``none``), the best-fit scalar (``lsq``) or the data's
    intensity scale over the model's recorded one (``intensity_scale``)."""
    if mode == "none":
        return 1.0
    if mode == "lsq":
        return best_fit_scalar(np.abs(predicted), np.abs(truth))
    if mode == "intensity_scale":
        if not model_scale or not data_scale:
            raise ValueError("rescale 'intensity_scale' needs the model's and the data's intensity scales")
        return float(data_scale / model_scale)
    raise ValueError(f"unknown rescale {mode!r}; choose one of none, lsq, intensity_scale")


def rescale_amplitude(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` with its amplitude multiplied by ``factor`` and its phase kept."""
    return (image * np.float32(factor)).astype(image.dtype)
