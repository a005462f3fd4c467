"""Phase 3 relative scaling: ``DiffuseScalingModel`` with per-still scales b_i and a resolution smoother a(|q|).

Model of observation o (still i, voxel v, |q|, corrected intensity I and sigma from Phase 2):

    I_o ~ b_i a(|q_o|) I_v,     a(|q|) = sum_k c_k phi_k(|q|)   (piecewise-linear hats on K control points)

Refined by regularised weighted least squares, minimising

    sum_o w_o (I_o - b_i a(|q_o|) I_v)^2 + s (lambda_smooth |D2 c|^2 + lambda_ridge |c - 1|^2),   w_o = 1 / sigma_o^2

(``D2`` second differences, ``s`` the mean diagonal of the data term's normal matrix in c so the
weights are scale-free) by alternating exact sub-problems: I_v (closed form per voxel), b_i
(closed form per still), c (a K x K linear system). Every sub-step lowers the objective. The
gauge (b, a, I) -> (g b, a, I / g) and (b, h a, I / h) is fixed after every round by
``mean_i log b_i = 0`` and ``mean_k c_k = 1``. Only voxels with at least
``min_observations_per_voxel`` observations drive b and c; all voxels are merged. Observations
are streamed from the HDF5 accumulator in chunks (held in memory when they fit in one chunk).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.diffuse.accumulator import iter_observations, read_counts
from ptylib.diffuse.options import ScalingOptions
from ptylib.io.atomic import atomic_write_json

RESIDUAL_EDGES = np.linspace(-8.0, 8.0, 81)


@dataclass
class DiffuseScalingModel:
    """Parameters of the scaling model (module docstring); ``stills`` are 1-based still numbers."""

    stills: np.ndarray
    b: np.ndarray
    control_q: np.ndarray
    control_values: np.ndarray
    history: list[float] = field(default_factory=list)

    def smoother(self, q_mag: np.ndarray) -> np.ndarray:
        """a(|q|) at ``q_mag`` (1/Å); 1 when there are no control points."""
        if self.control_q.size < 2:
            return np.ones_like(q_mag, dtype=np.float64)
        k0, frac = _hat(q_mag, self.control_q)
        return self.control_values[k0] * (1 - frac) + self.control_values[k0 + 1] * frac

    def scale_of(self, still: np.ndarray, q_mag: np.ndarray, still_row: np.ndarray) -> np.ndarray:
        """b_i a(|q|) per observation (``still_row`` maps still number -> row of ``b``)."""
        return self.b[still_row[still]] * self.smoother(q_mag)

    def to_json(self) -> dict[str, Any]:
        """Parameters for ``refined_scaling_model_params.json``."""
        return {"stills": self.stills.tolist(), "b_i": self.b.tolist(),
                "a_control_q_per_A": self.control_q.tolist(), "a_control_values": self.control_values.tolist(),
                "gauge": "mean(log b_i) = 0 and mean(a control values) = 1",
                "objective_history": self.history}


def _hat(q_mag: np.ndarray, control_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    step = control_q[1] - control_q[0]
    t = np.clip((q_mag - control_q[0]) / step, 0.0, control_q.size - 1 - 1e-9)
    k0 = np.minimum(t.astype(np.int64), control_q.size - 2)
    return k0, t - k0


@dataclass(frozen=True)
class ScalingResult:
    """Refined model, merged voxel intensities (relative) and the refinement's figures."""

    model: DiffuseScalingModel
    intensity: np.ndarray
    sigma: np.ndarray
    counts: np.ndarray
    residuals: dict[str, Any]
    iterations: int


class _Observations:
    """Chunks of the accumulator, cached in memory when they fit in one chunk."""

    def __init__(self, path: Path, chunk_rows: int, total: int) -> None:
        self.path, self.chunk_rows = path, chunk_rows
        self.cached = list(iter_observations(path, chunk_rows)) if total <= chunk_rows else None

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.cached) if self.cached is not None else iter_observations(self.path, self.chunk_rows)


def refine_scaling(accumulator: str | os.PathLike[str], options: ScalingOptions) -> ScalingResult:
    """Refine b_i and a(|q|) and merge (module docstring)."""
    counts, total = read_counts(accumulator)
    if total == 0:
        raise ValueError(f"{accumulator}: field 'n_observations' is 0: no observation fell inside the voxel grid")
    chunks = _Observations(Path(accumulator), options.chunk_observations, total)
    stills, q_lo, q_hi = _extent(chunks)
    still_row = np.full(int(stills.max()) + 1, -1, dtype=np.int64)
    still_row[stills] = np.arange(stills.size)
    n_ctrl = options.smoother_points if options.smoother_points >= 2 and q_hi > q_lo else 0
    model = DiffuseScalingModel(stills=stills, b=np.ones(stills.size), control_q=np.linspace(q_lo, q_hi, n_ctrl),
                                control_values=np.ones(n_ctrl))
    refined = counts >= options.min_observations_per_voxel
    intensity, _, objective = _merge(chunks, model, still_row, counts.size, refined)
    iterations = 0
    for iterations in range(1, options.max_iterations + 1):
        _update_scales(chunks, model, still_row, intensity, refined)
        if n_ctrl:
            _update_smoother(chunks, model, still_row, intensity, refined, options)
        _fix_gauge(model)
        intensity, _, new_objective = _merge(chunks, model, still_row, counts.size, refined)
        model.history.append(new_objective)
        if abs(objective - new_objective) <= options.tolerance * max(abs(objective), 1e-300):
            break
        objective = new_objective
    intensity, sigma, _ = _merge(chunks, model, still_row, counts.size, refined)
    return ScalingResult(model=model, intensity=intensity, sigma=sigma, counts=counts,
                         residuals=_residuals(chunks, model, still_row, intensity, refined), iterations=iterations)


def _extent(chunks: _Observations) -> tuple[np.ndarray, float, float]:
    stills: set[int] = set()
    q_lo, q_hi = np.inf, -np.inf
    for chunk in chunks:
        stills.update(np.unique(chunk["still"]).tolist())
        q_lo, q_hi = min(q_lo, float(chunk["q_mag"].min())), max(q_hi, float(chunk["q_mag"].max()))
    return np.array(sorted(stills), dtype=np.int64), q_lo, q_hi


def _merge(chunks: _Observations, model: DiffuseScalingModel, still_row: np.ndarray, n_voxels: int,
           refined: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted-mean I_v given the scales, its sigma, and the data term of the objective."""
    numerator = np.zeros(n_voxels)
    denominator = np.zeros(n_voxels)
    for chunk in chunks:
        scale = model.scale_of(chunk["still"], chunk["q_mag"].astype(np.float64), still_row)
        weight = 1.0 / chunk["sigma"].astype(np.float64) ** 2
        numerator += np.bincount(chunk["voxel_idx"], weight * scale * chunk["intensity"], minlength=n_voxels)
        denominator += np.bincount(chunk["voxel_idx"], weight * scale**2, minlength=n_voxels)
    seen = denominator > 0
    intensity = np.divide(numerator, denominator, out=np.full(n_voxels, np.nan), where=seen)
    sigma = np.divide(1.0, np.sqrt(denominator), out=np.full(n_voxels, np.nan), where=seen)
    objective = 0.0
    for chunk in chunks:
        use = refined[chunk["voxel_idx"]]
        scale = model.scale_of(chunk["still"][use], chunk["q_mag"][use].astype(np.float64), still_row)
        residual = (chunk["intensity"][use] - scale * intensity[chunk["voxel_idx"][use]]) / chunk["sigma"][use]
        objective += float(np.dot(residual, residual))
    return intensity, sigma, objective


def _update_scales(chunks: _Observations, model: DiffuseScalingModel, still_row: np.ndarray,
                   intensity: np.ndarray, refined: np.ndarray) -> None:
    numerator = np.zeros(model.b.size)
    denominator = np.zeros(model.b.size)
    for chunk in chunks:
        use = refined[chunk["voxel_idx"]]
        row = still_row[chunk["still"][use]]
        g = model.smoother(chunk["q_mag"][use].astype(np.float64)) * intensity[chunk["voxel_idx"][use]]
        weight = 1.0 / chunk["sigma"][use].astype(np.float64) ** 2
        numerator += np.bincount(row, weight * g * chunk["intensity"][use], minlength=model.b.size)
        denominator += np.bincount(row, weight * g**2, minlength=model.b.size)
    has_data = denominator > 0
    model.b[has_data] = numerator[has_data] / denominator[has_data]


def _update_smoother(chunks: _Observations, model: DiffuseScalingModel, still_row: np.ndarray,
                     intensity: np.ndarray, refined: np.ndarray, options: ScalingOptions) -> None:
    n = model.control_q.size
    normal = np.zeros(n * n)
    rhs = np.zeros(n)
    for chunk in chunks:
        use = refined[chunk["voxel_idx"]]
        k0, frac = _hat(chunk["q_mag"][use].astype(np.float64), model.control_q)
        h = model.b[still_row[chunk["still"][use]]] * intensity[chunk["voxel_idx"][use]]
        weight = 1.0 / chunk["sigma"][use].astype(np.float64) ** 2
        wh2, whi = weight * h**2, weight * h * chunk["intensity"][use]
        for (dk, dl), basis in (((0, 0), (1 - frac) ** 2), ((0, 1), (1 - frac) * frac),
                                ((1, 0), frac * (1 - frac)), ((1, 1), frac**2)):
            normal += np.bincount((k0 + dk) * n + k0 + dl, wh2 * basis, minlength=n * n)
        rhs += np.bincount(k0, whi * (1 - frac), minlength=n) + np.bincount(k0 + 1, whi * frac, minlength=n)
    normal = normal.reshape(n, n)
    strength = np.trace(normal) / n
    second = np.diff(np.eye(n), n=2, axis=0)
    system = normal + strength * (options.smoothness_weight * second.T @ second + options.ridge_weight * np.eye(n))
    model.control_values = np.linalg.solve(system, rhs + strength * options.ridge_weight * np.ones(n))


def _fix_gauge(model: DiffuseScalingModel) -> None:
    positive = model.b > 0
    model.b /= np.exp(np.mean(np.log(model.b[positive])))
    if model.control_values.size:
        model.control_values /= model.control_values.mean()


def _residuals(chunks: _Observations, model: DiffuseScalingModel, still_row: np.ndarray, intensity: np.ndarray,
               refined: np.ndarray) -> dict[str, Any]:
    """Histogram and moments of the normalised residuals (I - b a I_v) / sigma of the refined voxels."""
    histogram = np.zeros(RESIDUAL_EDGES.size - 1, dtype=np.int64)
    n, total, total_sq = 0, 0.0, 0.0
    for chunk in chunks:
        use = refined[chunk["voxel_idx"]]
        scale = model.scale_of(chunk["still"][use], chunk["q_mag"][use].astype(np.float64), still_row)
        residual = (chunk["intensity"][use] - scale * intensity[chunk["voxel_idx"][use]]) / chunk["sigma"][use]
        histogram += np.histogram(residual, RESIDUAL_EDGES)[0]
        n, total, total_sq = n + residual.size, total + float(residual.sum()), total_sq + float(np.dot(residual, residual))
    mean = total / max(n, 1)
    return {"n": n, "mean": mean, "rms": float(np.sqrt(total_sq / max(n, 1))),
            "std": float(np.sqrt(max(total_sq / max(n, 1) - mean**2, 0.0))),
            "histogram_edges": RESIDUAL_EDGES.tolist(), "histogram_counts": histogram.tolist()}


def write_scaling_params(path: str | os.PathLike[str], result: ScalingResult, options: ScalingOptions) -> Path:
    """Write ``refined_scaling_model_params.json`` (parameters, residuals, iterations, options) atomically."""
    doc = {**result.model.to_json(), "iterations": result.iterations, "residuals": result.residuals,
           "options": options.model_dump(mode="json")}
    atomic_write_json(path, doc)
    return Path(path)
