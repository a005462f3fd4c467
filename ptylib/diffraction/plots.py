"""Figures and the Markdown report of a refinement run (matplotlib; no Prefect)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.io.report import format_cell, markdown_table, save_figure

PARAMETERS = (("mosaic_spread_deg", "mosaic spread (deg)"), ("misset_x_deg", "misset x (deg)"),
              ("misset_y_deg", "misset y (deg)"), ("misset_z_deg", "misset z (deg)"))


def _runs(history: Sequence[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
    """History rows grouped by start (plain Adam has one start, robust mode several)."""
    runs: dict[int, list[Mapping[str, Any]]] = {}
    for row in history:
        runs.setdefault(int(row["start"]), []).append(row)
    return runs


def loss_figure(history: Sequence[Mapping[str, Any]], best_start: int = 0) -> Any:
    """Mean squared error per step, log scale; one line per start, the winning start drawn bold."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for start, rows in _runs(history).items():
        losses = np.array([row["loss"] for row in rows])
        best = start == best_start
        ax.semilogy(np.arange(len(losses)), losses, lw=2 if best else 1, alpha=1 if best else 0.5,
                    label=f"start {start}" + (" (best)" if best else ""))
    ax.set_xlabel("step")
    ax.set_ylabel("MSE loss (photons²)")
    ax.set_title("Loss")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def parameter_figure(history: Sequence[Mapping[str, Any]], truth: Mapping[str, float], best_start: int = 0) -> Any:
    """Each refined parameter's trajectory against its ground truth (dashed)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    runs = _runs(history)
    for ax, (key, label) in zip(axes.ravel(), PARAMETERS, strict=True):
        for start, rows in runs.items():
            best = start == best_start
            ax.plot([row[key] for row in rows], lw=2 if best else 1, alpha=1 if best else 0.4)
        ax.axhline(truth[key], color="k", ls="--", lw=1, label="truth")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("step")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Parameter trajectories")
    fig.tight_layout()
    return fig


def image_figure(experimental: np.ndarray, initial: np.ndarray, final: np.ndarray) -> Any:
    """Experimental, initial and final images (shared log colour scale) and the final residual."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, 4, figsize=(15, 4))
    top = float(max(experimental.max(), initial.max(), final.max()))
    norm = LogNorm(vmin=max(top * 1e-4, 1e-12), vmax=max(top, 1e-11))
    for ax, image, title in zip(axes[:3], (experimental, initial, final), ("experimental (truth)", "initial",
                                                                           "final"), strict=True):
        shown = ax.imshow(np.clip(image, norm.vmin, None), origin="lower", cmap="viridis", norm=norm)
        ax.set_title(title)
    fig.colorbar(shown, ax=axes[:3], shrink=0.8, label="photons / pixel")
    residual = final - experimental
    limit = float(np.abs(residual).max()) or 1.0
    shown = axes[3].imshow(residual, origin="lower", cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[3].set_title("residual (final - experimental)")
    fig.colorbar(shown, ax=axes[3], shrink=0.8)
    for ax in axes:
        ax.set_xlabel("fast (px)")
    axes[0].set_ylabel("slow (px)")
    return fig


def save_plots(history: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], experimental: np.ndarray,
               initial: np.ndarray, final: np.ndarray, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``loss.png``, ``parameters.png`` and ``images.png`` of one refinement run; returns title → path.

    ``summary`` is ``RefinementResult.summary()``; the images are photons per pixel [slow, fast].
    """
    out = Path(out_dir)
    truth = dict(zip((key for key, _ in PARAMETERS), [summary["truth"][0], *summary["truth"][1]], strict=True))
    best = summary["best_start"]
    return {
        "Loss (log scale)": save_figure(loss_figure(history, best), out / "loss.png"),
        "Parameters against truth": save_figure(parameter_figure(history, truth, best), out / "parameters.png"),
        "Images: experimental, initial, final, residual": save_figure(image_figure(experimental, initial, final),
                                                                      out / "images.png"),
    }


def parameter_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows (parameter, true, initial, refined, error) of a refinement summary."""
    rows = []
    for index, (_, label) in enumerate(PARAMETERS):
        values = [summary[name][0] if index == 0 else summary[name][1][index - 1]
                  for name in ("truth", "start", "refined")]
        rows.append({"parameter": label, "true": values[0], "initial": values[1], "refined": values[2],
                     "error": abs(values[2] - values[0])})
    return rows


def report_markdown(summary: Mapping[str, Any]) -> str:
    """The run's report: success verdict, criteria table, parameter table and losses."""
    criteria = [{**row, "value": format_cell(row["value"]), "passed": "PASS" if row["passed"] else "FAIL"}
                for row in summary["criteria"]]
    verdict = "all four seed criteria met" if summary["success"] else "NOT all seed criteria met"
    return "\n".join([
        f"# Refinement demo ({summary['mode']}): {verdict}", "",
        markdown_table(criteria, ["criterion", "value", "threshold", "passed"]),
        markdown_table(parameter_rows(summary), ["parameter", "true", "initial", "refined", "error"]),
        f"Loss (MSE, photons²): initial {format_cell(summary['initial_loss'])}, final "
        f"{format_cell(summary['final_loss'])}; {summary['steps']} steps.", "",
    ])
