"""Figures of the study: spacing of overlap views, LSQML loss curves, amplitude/phase images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ptylib.ptycho.overlap import nearest_neighbor_distances


def _figure(n_cols: int, width: float = 4.2, height: float = 3.4) -> tuple[Any, Any]:
    # A bare Figure, not pyplot: no global figure registry, safe in Prefect's worker threads.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_cols, height))
    return fig, fig.subplots(1, n_cols, squeeze=False)


def spacing_figure(parts: Mapping[str, tuple[np.ndarray, np.ndarray]], min_spacing_px: float, title: str) -> Any:
    """Per split: nearest-neighbour spacing histogram of all vs kept group centres, and the kept centres' map.

    ``parts`` maps a split name to (centres (G, 2) in pixels, kept indices).
    """
    fig, axes = _figure(2 * len(parts))
    for i, (name, (centers, kept)) in enumerate(parts.items()):
        hist, scatter = axes[0, 2 * i], axes[0, 2 * i + 1]
        nn_all, nn_kept = nearest_neighbor_distances(centers), nearest_neighbor_distances(centers[kept])
        top = max(float(np.max(nn_all, initial=0)), float(np.max(nn_kept, initial=0)), min_spacing_px) * 1.05 or 1.0
        bins = np.linspace(0, top, 40)
        hist.hist(nn_all, bins=bins, alpha=0.5, label=f"all ({len(centers)})")
        hist.hist(nn_kept, bins=bins, alpha=0.7, label=f"kept ({len(kept)})")
        hist.axvline(min_spacing_px, color="k", ls="--", label=f"S = {min_spacing_px:.1f} px")
        hist.set(xlabel="nearest-neighbour centre spacing (px)", ylabel="groups", title=f"{name}")
        hist.legend(fontsize=7)
        scatter.scatter(centers[:, 0], centers[:, 1], s=3, c="0.75")
        scatter.scatter(centers[kept, 0], centers[kept, 1], s=12, c="C1")
        scatter.set(xlabel="x (px)", ylabel="y (px)", title=f"{name}: kept centres", aspect="equal")
        scatter.invert_yaxis()
    fig.suptitle(title)
    return fig


def loss_figure(loss: np.ndarray, title: str) -> Any:
    """LSQML loss per epoch (log scale)."""
    fig, axes = _figure(1, width=5.0)
    ax = axes[0, 0]
    ax.semilogy(np.arange(1, len(loss) + 1), loss, marker=".")
    ax.set(xlabel="epoch", ylabel="loss (pty-chi displayed)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def object_figure(reconstruction: np.ndarray, truth: np.ndarray, title: str) -> Any:
    """Amplitude and phase of a reconstruction beside the ground truth (same colour limits per row)."""
    fig, axes = _figure(4, width=3.2, height=3.0)
    panels = ((np.abs(truth), "truth amplitude"), (np.abs(reconstruction), "LSQML amplitude"),
              (np.angle(truth), "truth phase (rad)"), (np.angle(reconstruction), "LSQML phase (rad)"))
    for k, (image, label) in enumerate(panels):
        ref = panels[0 if k < 2 else 2][0]
        shown = axes[0, k].imshow(image, cmap="gray" if k < 2 else "viridis", vmin=ref.min(), vmax=ref.max())
        axes[0, k].set_title(label, fontsize=9)
        axes[0, k].axis("off")
        fig.colorbar(shown, ax=axes[0, k], fraction=0.046)
    fig.suptitle(title)
    return fig
