"""Figures of a scenario: truth / reconstruction / difference panels and the training history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _figure(n_rows: int, n_cols: int) -> tuple[Any, Any]:
    # A bare Figure, not pyplot: no global figure registry, safe in Prefect's worker threads.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.3 * n_cols, 3.0 * n_rows))
    return fig, fig.subplots(n_rows, n_cols, squeeze=False)


def side_by_side(rows: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str) -> Any:
    """Per row (label → (truth, reconstruction), real images): truth, reconstruction (same colour limits) and
    their difference."""
    fig, axes = _figure(len(rows), 3)
    for r, (label, (truth, recon)) in enumerate(rows.items()):
        finite = truth[np.isfinite(truth)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        for c, (image, name, limits) in enumerate(((truth, "truth", (lo, hi)), (recon, "reconstruction", (lo, hi)),
                                                    (recon - truth, "difference", (None, None)))):
            shown = axes[r, c].imshow(image, cmap="gray" if c < 2 else "RdBu_r", vmin=limits[0], vmax=limits[1])
            axes[r, c].set_title(f"{label}: {name}", fontsize=9)
            axes[r, c].axis("off")
            fig.colorbar(shown, ax=axes[r, c], fraction=0.046)
    fig.suptitle(title)
    return fig


def history_figure(history: Sequence[Mapping[str, float]], nan_epoch: int | None, title: str) -> Any:
    """Training loss per epoch, with the first non-finite epoch marked."""
    fig, axes = _figure(1, 1)
    ax = axes[0, 0]
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["loss"] for h in history], marker=".")
    if nan_epoch is not None:
        ax.axvline(nan_epoch, color="r", ls="--", label=f"first NaN: epoch {nan_epoch}")
        ax.legend(fontsize=8)
    ax.set(xlabel="epoch", ylabel="training loss (Poisson NLL)", title=title)
    ax.grid(True, alpha=0.3)
    return fig
