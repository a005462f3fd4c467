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


def loss_figure(loss: np.ndarray, title: str, ylabel: str = "loss (pty-chi displayed)") -> Any:
    """A loss per epoch (log scale): LSQML's by default, or a network's training loss."""
    fig, axes = _figure(1, width=5.0)
    ax = axes[0, 0]
    ax.semilogy(np.arange(1, len(loss) + 1), loss, marker=".")
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
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


def comparison_figure(aligned: Mapping[str, np.ndarray], methods: tuple[str, ...],
                      frc_curves: Mapping[str, tuple[np.ndarray, np.ndarray]], threshold: float, title: str) -> Any:
    """Rows amplitude / phase / phase error, columns truth and each registered method; FRC curves at the right."""
    from matplotlib.figure import Figure

    # Constrained layout keeps the colour bars off the FRC panel that spans the last column.
    fig = Figure(figsize=(3.0 * (len(methods) + 2), 8.4), layout="constrained")
    grid = fig.add_gridspec(3, len(methods) + 2)
    columns = [("truth", aligned["truth"], aligned["truth"])]
    columns += [(m, aligned[m], aligned[f"{m}_truth"]) for m in methods]
    amp_ref, phase_ref = np.abs(aligned["truth"]), np.angle(aligned["truth"])
    for j, (name, image, truth) in enumerate(columns):
        error = np.angle(image * np.conj(truth))
        panels = ((np.abs(image), "gray", amp_ref.min(), amp_ref.max(), f"{name} amplitude"),
                  (np.angle(image), "viridis", phase_ref.min(), phase_ref.max(), f"{name} phase (rad)"),
                  (error, "RdBu_r", -0.5, 0.5, f"{name} phase error (rad)"))
        for i, (data, cmap, low, high, label) in enumerate(panels):
            ax = fig.add_subplot(grid[i, j])
            shown = ax.imshow(data, cmap=cmap, vmin=low, vmax=high)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
            if j == len(columns) - 1:
                fig.colorbar(shown, ax=ax, fraction=0.046)
    ax = fig.add_subplot(grid[:, -1])
    for method, (frequency, curve) in frc_curves.items():
        ax.plot(frequency, curve, label=method)
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    ax.set(xlabel="spatial frequency (1/px)", ylabel="FRC", title="FRC vs truth", ylim=(-0.1, 1.05))
    ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def metric_vs_dose_figure(rows: list[Mapping[str, Any]], metric: str, ylabel: str, title: str) -> Any:
    """One line per (method, view) of ``metric`` against dose (log x axis)."""
    fig, axes = _figure(1, width=5.6, height=3.8)
    ax = axes[0, 0]
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in rows:
        series.setdefault((row["method"], row["view"]), []).append((row["dose"], row[metric]))
    styles = {"pinn": "o-", "baseline": "s--", "lsqml": "^:"}
    for (method, view), points in sorted(series.items()):
        points.sort()
        ax.semilogx(*zip(*points), styles.get(method, ".-"), label=f"{method} ({view})")
    ax.set(xlabel="dose (photons per exposure)", ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def amplitude_phase_figure(image: np.ndarray, title: str) -> Any:
    """Amplitude and phase (radians) of one complex image."""
    fig, axes = _figure(2, width=3.6, height=3.2)
    for ax, (data, cmap, label) in zip(axes[0], ((np.abs(image), "gray", "amplitude"),
                                                 (np.angle(image), "viridis", "phase (rad)"))):
        shown = ax.imshow(data, cmap=cmap)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.suptitle(title)
    return fig
