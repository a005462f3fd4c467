"""Recover mosaic spread and misset by gradient descent through the simulator (the seed's refinement demo).

Plain mode is the seed's loop: Adam (lr 0.05) on the mean squared error between the simulated and
the "experimental" image, the mosaic spread clamped to [0.01, 5] degrees after each step. It misses
the seed's own criteria from most starts (bench/refine_success.py), so robust mode is the default;
it adds what plain Adam lacks from far starts (it stalls or needs several hundred steps):

1. search: the misset is scored on a grid around the start (default +-6 deg in 3 deg steps, 125
   renders without gradients) with a coarse loss, the squared difference of log(1 + I / mean)
   of Gaussian-blurred images, at a broad mosaic spread; the best few grid points become starts;
2. coarse: from each start, L-BFGS on that coarse loss (wide basin);
3. fine: L-BFGS on the mean squared error; the start with the lowest final error wins.

Any NaN or Inf in the loss or the parameters stops the run with ``RefinementDiverged``.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from ptylib.diffraction.options import (
    BeamOptions,
    CrystalOptions,
    DetectorOptions,
    SimulationOptions,
)
from ptylib.diffraction.simulator import Simulator
from ptylib.io.atomic import atomic_open, atomic_write_json, atomic_write_text

#: Called after every optimisation step with (steps done, steps planned).
ProgressCallback = Callable[[int, int], None]

HISTORY_COLUMNS = ("iteration", "stage", "start", "loss", "objective",
                   "mosaic_spread_deg", "misset_x_deg", "misset_y_deg", "misset_z_deg")


IMAGES_NAME = "images.npz"
RESULT_NAME = "result.json"


class RefinementDiverged(RuntimeError):
    """The loss or a parameter became NaN or Inf; the message names the iteration and the value."""


class CriteriaNotMet(RuntimeError):
    """A finished refinement missed some of the seed's success criteria; the message lists them."""

    @classmethod
    def from_summary(cls, summary: dict[str, Any], where: str) -> CriteriaNotMet:
        """The error for a run summary (``RefinementResult.summary()``); ``where`` says where its files are."""
        failed = [f"{row['criterion']} = {row['value']:.4g} (needs {row['threshold']})"
                  if isinstance(row["value"], float) else f"{row['criterion']}"
                  for row in summary["criteria"] if not row["passed"]]
        return cls(f"{summary['mode']} refinement missed {len(failed)} of {len(summary['criteria'])} seed criteria: "
                   f"{'; '.join(failed)}; report and plots in {where}")


class RefinementOptions(BaseModel):
    """The refinement demo: scene, ground truth, start, optimiser and success thresholds (seed defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

    true_mosaic_deg: float = Field(0.8, ge=0)
    """Ground-truth mosaic spread (degrees) of the synthetic experimental image."""
    true_misset_deg: tuple[float, float, float] = (5.0, 3.0, -2.0)
    """Ground-truth misset about x, y, z (degrees)."""
    start_mosaic_deg: float = Field(0.2, gt=0)
    """Initial guess of the mosaic spread (degrees)."""
    start_misset_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Initial guess of the misset (degrees)."""
    learning_rate: float = Field(0.05, gt=0)
    """Adam learning rate (degrees per step, roughly) of plain mode."""
    iterations: int = Field(100, ge=1)
    """Adam iterations of plain mode."""
    mosaic_min_deg: float = Field(0.01, gt=0)
    """Lower clamp of the refined mosaic spread (degrees)."""
    mosaic_max_deg: float = Field(5.0, gt=0)
    """Upper clamp of the refined mosaic spread (degrees)."""
    fpixels: int = Field(64, ge=1)
    """Detector pixels along fast."""
    spixels: int = Field(64, ge=1)
    """Detector pixels along slow."""
    pixel_size_mm: float = Field(0.1, gt=0)
    """Pixel size (mm)."""
    distance_mm: float = Field(100.0, gt=0)
    """Sample-detector distance (mm)."""
    wavelength_A: float = Field(1.0, gt=0)
    """Wavelength (Å)."""
    fluence_photons_per_m2: float = Field(1e28, gt=0)
    """Fluence (photons/m^2)."""
    cell_A: float = Field(100.0, gt=0)
    """Edge of the cubic unit cell (Å)."""
    n_cells: int = Field(5, ge=1)
    """Unit cells along each axis."""
    default_F: float = Field(100.0, gt=0)
    """Structure factor of every reflection (electrons)."""
    mosaic_domains: int = Field(5, ge=1)
    """Mosaic domains."""
    mosaic_seed: int = 42
    """Seed of the domain orientations (fixed draws make the loss deterministic)."""
    dtype: Literal["float64", "float32"] = "float64"
    """Compute precision."""
    robust: bool = True
    """Grid search + coarse-to-fine L-BFGS from several starts (default); False: the seed's single-start Adam."""
    robust_search_half_width_deg: float = Field(6.0, ge=0)
    """Half width of the misset search grid around the start (degrees, each axis)."""
    robust_search_step_deg: float = Field(3.0, gt=0)
    """Step of the misset search grid (degrees)."""
    robust_search_mosaic_deg: float = Field(1.0, gt=0)
    """Mosaic spread assumed while searching (degrees); broad spots widen the basin."""
    robust_starts: int = Field(3, ge=1)
    """Best grid points refined further."""
    robust_blur_px: float = Field(1.5, gt=0)
    """Gaussian sigma (pixels) of the coarse loss."""
    robust_coarse_iterations: int = Field(15, ge=0)
    """L-BFGS iterations on the coarse loss per start."""
    robust_fine_iterations: int = Field(30, ge=1)
    """L-BFGS iterations on the mean squared error per start."""
    min_loss_reduction: float = Field(10.0, gt=0)
    """Success: initial loss / final loss at least this."""
    mosaic_tolerance_deg: float = Field(0.1, gt=0)
    """Success: |refined - true mosaic spread| at most this (degrees)."""
    misset_tolerance_deg: float = Field(1.0, gt=0)
    """Success: every |refined - true misset angle| at most this (degrees)."""

    @model_validator(mode="after")
    def _clamp_range(self) -> RefinementOptions:
        if self.mosaic_min_deg >= self.mosaic_max_deg:
            raise ValueError(f"mosaic_min_deg ({self.mosaic_min_deg}) must be below mosaic_max_deg "
                             f"({self.mosaic_max_deg})")
        return self

    def scene(self) -> SimulationOptions:
        """The simulated experiment (the crystal carries the ground truth)."""
        return SimulationOptions(
            crystal=CrystalOptions(
                cell_a_A=self.cell_A, cell_b_A=self.cell_A, cell_c_A=self.cell_A,
                n_cells=(self.n_cells,) * 3, default_F=self.default_F, misset_deg=self.true_misset_deg,
                mosaic_spread_deg=self.true_mosaic_deg, mosaic_domains=self.mosaic_domains,
                mosaic_seed=self.mosaic_seed),
            detector=DetectorOptions(fpixels=self.fpixels, spixels=self.spixels,
                                     pixel_size_mm=self.pixel_size_mm, distance_mm=self.distance_mm),
            beam=BeamOptions(wavelength_A=self.wavelength_A, fluence_photons_per_m2=self.fluence_photons_per_m2),
        )

    @property
    def search_offsets_deg(self) -> list[tuple[float, float, float]]:
        """Misset offsets of the robust search grid (degrees)."""
        steps = math.floor(self.robust_search_half_width_deg / self.robust_search_step_deg + 1e-9)
        axis = [k * self.robust_search_step_deg for k in range(-steps, steps + 1)]
        return list(itertools.product(axis, repeat=3))

    @property
    def total_iterations(self) -> int:
        """Optimisation steps the run will report to the progress callback."""
        if not self.robust:
            return self.iterations
        starts = min(self.robust_starts, len(self.search_offsets_deg))
        return len(self.search_offsets_deg) + starts * (self.robust_coarse_iterations + self.robust_fine_iterations)


@dataclass
class RefinementResult:
    """History, images and the seed's four success criteria of one refinement run."""

    options: RefinementOptions
    history: list[dict[str, Any]]
    experimental: np.ndarray
    initial: np.ndarray
    final: np.ndarray
    initial_loss: float
    final_loss: float
    final_mosaic_deg: float
    final_misset_deg: tuple[float, float, float]
    best_start: int = 0
    search: list[dict[str, Any]] = field(default_factory=list)

    def criteria_table(self) -> list[dict[str, Any]]:
        """The seed's success criteria as rows (criterion, value, threshold, passed)."""
        opts = self.options
        reduction = self.initial_loss / self.final_loss if self.final_loss > 0 else math.inf
        mosaic_error = abs(self.final_mosaic_deg - opts.true_mosaic_deg)
        misset_error = max(abs(a - b) for a, b in zip(self.final_misset_deg, opts.true_misset_deg, strict=True))
        finite = all(math.isfinite(row[key]) for row in self.history
                     for key in ("loss", "mosaic_spread_deg", "misset_x_deg", "misset_y_deg", "misset_z_deg"))
        return [
            {"criterion": "loss reduction (initial / final)", "value": reduction,
             "threshold": f">= {opts.min_loss_reduction:g}", "passed": reduction >= opts.min_loss_reduction},
            {"criterion": "mosaic spread error (deg)", "value": mosaic_error,
             "threshold": f"<= {opts.mosaic_tolerance_deg:g}", "passed": mosaic_error <= opts.mosaic_tolerance_deg},
            {"criterion": "largest misset error (deg)", "value": misset_error,
             "threshold": f"<= {opts.misset_tolerance_deg:g}", "passed": misset_error <= opts.misset_tolerance_deg},
            {"criterion": "no NaN/Inf in loss or parameters", "value": finite, "threshold": "True",
             "passed": finite},
        ]

    @property
    def success(self) -> bool:
        """All four criteria passed."""
        return all(row["passed"] for row in self.criteria_table())

    def summary(self) -> dict[str, Any]:
        """JSON-ready outcome: mode, truth / start / refined (mosaic, misset), losses, criteria, search."""
        opts = self.options
        return {
            "mode": "robust" if opts.robust else "plain Adam",
            "truth": [opts.true_mosaic_deg, list(opts.true_misset_deg)],
            "start": [opts.start_mosaic_deg, list(opts.start_misset_deg)],
            "refined": [self.final_mosaic_deg, list(self.final_misset_deg)],
            "initial_loss": self.initial_loss, "final_loss": self.final_loss, "steps": len(self.history),
            "criteria": self.criteria_table(), "success": self.success, "best_start": self.best_start,
            "search": self.search,
        }


class _Problem:
    """The simulator, the experimental image and the two losses shared by both modes."""

    def __init__(self, options: RefinementOptions, device: torch.device | str) -> None:
        dtype = torch.float64 if options.dtype == "float64" else torch.float32
        self.options = options
        self.simulator = Simulator(options.scene(), dtype=dtype, device=device)
        with torch.no_grad():
            self.experimental = self.render(options.true_mosaic_deg, options.true_misset_deg)
        self._scale = float(self.experimental.mean())
        self._kernel = _gaussian_kernel(options.robust_blur_px, self.experimental)
        self._coarse_target = self._coarse(self.experimental)

    def render(self, mosaic_deg: Tensor | float, misset_deg: Tensor | Sequence[float]) -> Tensor:
        """Image for the given mosaic spread and misset (degrees)."""
        return self.simulator.render(mosaic_spread_deg=mosaic_deg, misset_deg=misset_deg)

    def mse(self, image: Tensor) -> Tensor:
        """The seed's loss: mean squared difference to the experimental image (photons^2)."""
        return torch.mean((image - self.experimental) ** 2)

    def coarse(self, image: Tensor) -> Tensor:
        """Robust-mode loss: squared difference of log(1 + blurred image / mean)."""
        return torch.mean((self._coarse(image) - self._coarse_target) ** 2)

    def _coarse(self, image: Tensor) -> Tensor:
        kernel = self._kernel
        radius = kernel.numel() // 2
        padded = torch.nn.functional.pad(image[None, None], (radius, radius, radius, radius), mode="replicate")
        blurred = torch.nn.functional.conv2d(torch.nn.functional.conv2d(padded, kernel.view(1, 1, 1, -1)),
                                             kernel.view(1, 1, -1, 1))
        return torch.log1p(blurred[0, 0] / self._scale)


def _gaussian_kernel(sigma_px: float, like: Tensor) -> Tensor:
    radius = max(1, math.ceil(3 * sigma_px))
    x = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return kernel / kernel.sum()


def refine(options: RefinementOptions, *, device: torch.device | str = "cpu",
           progress: ProgressCallback | None = None) -> RefinementResult:
    """Run the refinement demo (plain Adam, or the robust mode when ``options.robust``).

    Raises
    ------
    RefinementDiverged
        When the loss or a refined parameter becomes NaN or Inf.
    """
    problem = _Problem(options, device)
    tracker = _Tracker(options.total_iterations, progress)
    with torch.no_grad():
        initial = problem.render(options.start_mosaic_deg, options.start_misset_deg)
        initial_loss = float(problem.mse(initial))
    if options.robust:
        search = _search(problem, tracker)
        finals = [_lbfgs_start(problem, tracker, index, candidate) for index, candidate in enumerate(search)]
        best_start = min(range(len(finals)), key=lambda i: finals[i][2])
        mosaic, misset, _ = finals[best_start]
    else:
        search, best_start = [], 0
        mosaic, misset = _adam(problem, tracker)
    with torch.no_grad():
        final = problem.render(mosaic, misset)
        final_loss = float(problem.mse(final))
    return RefinementResult(
        options=options, history=tracker.rows, experimental=problem.experimental.cpu().numpy(),
        initial=initial.cpu().numpy(), final=final.cpu().numpy(), initial_loss=initial_loss,
        final_loss=final_loss, final_mosaic_deg=mosaic, final_misset_deg=tuple(misset),
        best_start=best_start, search=search,
    )


class _Tracker:
    """History rows, NaN/Inf checks and progress reporting."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.total = total
        self.done = 0
        self._progress = progress
        self._iterations: dict[tuple[str, int], int] = {}

    def step(self, stage: str, start: int, loss: Tensor, objective: Tensor, mosaic: Tensor, misset: Tensor) -> None:
        """Record one step (loss before it, parameters after it, as the seed does) and report progress."""
        values = {"loss": float(loss), "objective": float(objective), "mosaic_spread_deg": float(mosaic)}
        names = ("misset_x_deg", "misset_y_deg", "misset_z_deg")
        values.update(zip(names, misset.detach().cpu().tolist(), strict=True))
        iteration = self._iterations.get((stage, start), 0)
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        if bad:
            raise RefinementDiverged(
                f"{stage} iteration {iteration} (start {start}): {', '.join(bad)} became NaN/Inf "
                f"({', '.join(f'{k}={v:.6g}' for k, v in values.items())}); lower the learning rate or "
                "check the scene")
        self.rows.append({"iteration": iteration, "stage": stage, "start": start, **values})
        self._iterations[stage, start] = iteration + 1
        self.advance()

    def advance(self) -> None:
        """Count one step towards the progress total."""
        self.done += 1
        if self._progress is not None:
            self._progress(self.done, self.total)


def _adam(problem: _Problem, tracker: _Tracker) -> tuple[float, list[float]]:
    """The seed's loop: Adam on the mean squared error, mosaic clamped after each step."""
    opts = problem.options
    sim = problem.simulator
    mosaic = sim.tensor(opts.start_mosaic_deg).requires_grad_()
    misset = sim.tensor(opts.start_misset_deg).requires_grad_()
    optimizer = torch.optim.Adam([mosaic, misset], lr=opts.learning_rate)
    for _ in range(opts.iterations):
        optimizer.zero_grad()
        loss = problem.mse(problem.render(mosaic, misset))
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            mosaic.clamp_(opts.mosaic_min_deg, opts.mosaic_max_deg)
        tracker.step("adam", 0, loss.detach(), loss.detach(), mosaic.detach(), misset)
    return mosaic.item(), misset.detach().cpu().tolist()


def _search(problem: _Problem, tracker: _Tracker) -> list[dict[str, Any]]:
    """Score the misset grid around the start with the coarse loss; return the best ``robust_starts``."""
    opts = problem.options
    start = np.asarray(opts.start_misset_deg)
    scored = []
    with torch.no_grad():
        for offset in opts.search_offsets_deg:
            misset = (start + np.asarray(offset)).tolist()
            loss = float(problem.coarse(problem.render(opts.robust_search_mosaic_deg, misset)))
            scored.append({"misset_deg": misset, "coarse_loss": loss})
            tracker.advance()
    if not any(math.isfinite(row["coarse_loss"]) for row in scored):
        raise RefinementDiverged("search: the coarse loss is NaN/Inf at every grid point")
    scored.sort(key=lambda row: row["coarse_loss"] if math.isfinite(row["coarse_loss"]) else math.inf)
    return scored[: opts.robust_starts]


def _lbfgs_start(problem: _Problem, tracker: _Tracker, index: int,
                 candidate: dict[str, Any]) -> tuple[float, list[float], float]:
    """Coarse then fine L-BFGS from one search candidate; returns (mosaic, misset, final MSE)."""
    opts = problem.options
    sim = problem.simulator
    mosaic = sim.tensor(opts.robust_search_mosaic_deg).requires_grad_()
    misset = sim.tensor(candidate["misset_deg"]).requires_grad_()
    for stage, objective, iterations in (("coarse", problem.coarse, opts.robust_coarse_iterations),
                                         ("fine", problem.mse, opts.robust_fine_iterations)):
        optimizer = torch.optim.LBFGS([mosaic, misset], lr=1.0, max_iter=1, line_search_fn="strong_wolfe")
        for done in range(iterations):
            losses: list[Tensor] = []

            def closure(objective: Callable[[Tensor], Tensor] = objective, losses: list[Tensor] = losses,
                        optimizer: torch.optim.LBFGS = optimizer) -> Tensor:
                optimizer.zero_grad()
                # The line search may probe outside the clamp range; render the clamped spread there.
                image = problem.render(mosaic.clamp(opts.mosaic_min_deg, opts.mosaic_max_deg), misset)
                value = objective(image)
                if not losses:
                    losses.append(problem.mse(image).detach())
                    losses.append(value.detach())
                value.backward()
                return value

            before = torch.cat([mosaic.detach().reshape(1), misset.detach()])
            optimizer.step(closure)
            with torch.no_grad():
                mosaic.clamp_(opts.mosaic_min_deg, opts.mosaic_max_deg)
            tracker.step(stage, index, losses[0], losses[1], mosaic.detach(), misset)
            if torch.equal(before, torch.cat([mosaic.detach().reshape(1), misset.detach()])):
                # L-BFGS made no move (converged, or no descent found): it never will from here.
                for _ in range(iterations - done - 1):
                    tracker.advance()
                break
    with torch.no_grad():
        final_mse = float(problem.mse(problem.render(mosaic, misset)))
    return mosaic.item(), misset.detach().cpu().tolist(), final_mse


def history_csv(history: Sequence[dict[str, Any]]) -> str:
    """The history as CSV text with ``HISTORY_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def write_result(result: RefinementResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the history (JSON, CSV), ``images.npz`` and ``result.json`` (the summary) atomically; their paths."""
    out = Path(out_dir)
    json_path, csv_path = write_history(result.history, out)
    with atomic_open(out / IMAGES_NAME, "wb") as handle:
        np.savez_compressed(handle, experimental=result.experimental, initial=result.initial, final=result.final)
    atomic_write_json(out / RESULT_NAME, result.summary())
    return {"history_json": json_path, "history_csv": csv_path, "images": out / IMAGES_NAME,
            "result": out / RESULT_NAME}


def write_history(history: Sequence[dict[str, Any]], out_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``history.json`` and ``history.csv`` into ``out_dir`` atomically; returns both paths."""
    out = Path(out_dir)
    json_path, csv_path = out / "history.json", out / "history.csv"
    atomic_write_json(json_path, list(history))
    atomic_write_text(csv_path, history_csv(history))
    return json_path, csv_path
