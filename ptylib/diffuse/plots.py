"""Plot helpers of the Phase 3 visual check (matplotlib figures; the caller saves them)."""

from __future__ import annotations

from typing import Any

import numpy as np

SLICE_AXES = {"L": ("H", "K"), "K": ("H", "L"), "H": ("K", "L")}


def _figure(width: float = 6.0, height: float = 4.5) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def plot_3d_grid_slice(grid_data_3d: np.ndarray, slice_dim: str, slice_idx: int, title: str,
                       extent: tuple[float, float, float, float], *, log: bool = False,
                       cmap: str = "viridis", label: str = "") -> Any:
    """Heatmap of a 2-D slice of a (H, K, L) array at index ``slice_idx`` along ``slice_dim`` ('H', 'K' or 'L')."""
    from matplotlib.colors import LogNorm

    axis = "HKL".index(slice_dim)
    plane = np.take(grid_data_3d, slice_idx, axis=axis).astype(np.float64)
    fig, ax = _figure()
    finite = plane[np.isfinite(plane) & (plane > 0)] if log else plane[np.isfinite(plane)]
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if log and finite.size and finite.max() > finite.min() else None
    image = ax.imshow(plane.T, origin="lower", extent=extent, cmap=cmap, norm=norm, aspect="auto",
                      interpolation="nearest")
    x_name, y_name = SLICE_AXES[slice_dim]
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=label)
    return fig


def plot_radial_average(q_magnitudes: np.ndarray, intensities: np.ndarray, num_bins: int, title: str,
                        sigmas: np.ndarray | None = None) -> Any:
    """Mean intensity per |q| bin (error bars: standard error of the bin's mean, or propagated sigmas)."""
    edges = np.linspace(q_magnitudes.min(), q_magnitudes.max(), num_bins + 1)
    which = np.clip(np.digitize(q_magnitudes, edges) - 1, 0, num_bins - 1)
    count = np.bincount(which, minlength=num_bins)
    mean = np.bincount(which, intensities, num_bins) / np.maximum(count, 1)
    if sigmas is not None:
        error = np.sqrt(np.bincount(which, sigmas**2, num_bins)) / np.maximum(count, 1)
    else:
        spread = np.bincount(which, intensities**2, num_bins) / np.maximum(count, 1) - mean**2
        error = np.sqrt(np.maximum(spread, 0) / np.maximum(count, 1))
    centres = 0.5 * (edges[1:] + edges[:-1])
    fig, ax = _figure()
    ok = count > 0
    ax.errorbar(centres[ok], mean[ok], yerr=error[ok], fmt="o-", ms=3)
    ax.set_xlabel("|q| (1/Å)")
    ax.set_ylabel("mean I (relative)")
    ax.set_title(title)
    return fig


def plot_parameter_vs_index(param_values: np.ndarray, index_values: np.ndarray, title: str, param_label: str,
                            index_label: str, reference: np.ndarray | None = None) -> Any:
    """A parameter (e.g. b_i) against still index, optionally beside reference values."""
    fig, ax = _figure()
    ax.plot(index_values, param_values, "o-", label=param_label)
    if reference is not None:
        ax.plot(index_values, reference, "x", label="reference")
        ax.legend()
    ax.set_xlabel(index_label)
    ax.set_ylabel(param_label)
    ax.set_title(title)
    return fig


def plot_smoother_curve(control_q: np.ndarray, control_values: np.ndarray, title: str) -> Any:
    """The resolution smoother a(|q|): piecewise-linear curve through its control points."""
    fig, ax = _figure()
    if control_q.size:
        ax.plot(control_q, control_values, "o-")
    else:
        ax.axhline(1.0)
        ax.text(0.5, 0.5, "a(|q|) fixed at 1 (no control points)", transform=ax.transAxes, ha="center")
    ax.set_xlabel("|q| (1/Å)")
    ax.set_ylabel("a(|q|)")
    ax.set_title(title)
    return fig


def plot_histogram(values: np.ndarray, title: str, xlabel: str, *, bins: int | np.ndarray = 60,
                   log_too: bool = False) -> Any:
    """Histogram of ``values``; with ``log_too`` a second panel with a log y-axis."""
    import matplotlib.pyplot as plt

    panels = 2 if log_too else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.5), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.hist(values[np.isfinite(values)], bins=bins)
        ax.set_yscale("log" if k == 1 else "linear")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count" + (" (log)" if k == 1 else ""))
        ax.set_title(title)
    return fig


def plot_binned_histogram(edges: np.ndarray, counts: np.ndarray, title: str, xlabel: str) -> Any:
    """A histogram given as bin edges and counts (e.g. the scaling residuals)."""
    fig, ax = _figure()
    ax.stairs(counts, edges, fill=True)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    return fig


def plot_coverage(q_points: np.ndarray, box: np.ndarray, title: str) -> Any:
    """3-D scatter of sample q-points with the grid's bounding box in q (corners ``box`` (8, 3))."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(projection="3d")
    if q_points.size:
        ax.scatter(q_points[:, 0], q_points[:, 1], q_points[:, 2], s=1, alpha=0.3)
    for i in range(8):
        for j in range(i + 1, 8):
            if bin(i ^ j).count("1") == 1:  # corners differing in one axis share an edge
                ax.plot(*zip(box[i], box[j], strict=True), color="k", lw=0.8)
    ax.set_xlabel("qx")
    ax.set_ylabel("qy")
    ax.set_zlabel("qz")
    ax.set_title(title)
    return fig
