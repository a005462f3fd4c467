"""Simulate → split → group of a scenario, with the landed forward model, y split and K-choose-C grouping."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ptylib.ptycho.dataset import simulate_dataset, subset, with_groups
from ptylib.ptycho.diagnostics.lines import lines_object
from ptylib.ptycho.diagnostics.scenario import (
    ProbeKind,
    ScanKind,
    ScenarioOptions,
    load_custom_probe,
)
from ptylib.ptycho.grouping import Groups, check_grouping, group_geometry, knn_groups
from ptylib.ptycho.probes import focused_probe
from ptylib.ptycho.scans import raster_positions
from ptylib.ptycho.split import split_on_y
from ptylib.ptycho.study import rng_for


def scenario_probe(options: ScenarioOptions) -> np.ndarray:
    """The scenario's probe (N, N) complex64 as made or loaded, before any normalisation."""
    if options.probe == ProbeKind.CUSTOM:
        return load_custom_probe(options.probe_npz or "", options.patch_size_px)
    return focused_probe(options.patch_size_px, rng=rng_for(options.seed, "probe"))


def scan_positions(options: ScenarioOptions) -> tuple[np.ndarray, np.ndarray]:
    """Patch centres (x, y) in object pixels: the first ``n_images`` positions of a ``scan_side``-square
    raster, or as many uniform random positions over the same area; one step of margin on every side."""
    n_px, step, side = options.patch_size_px, options.scan_step_px, options.scan_side
    if options.scan == ScanKind.GRID:
        extent = n_px + step * (side - 1)
        x, y = raster_positions((extent, extent), n_px, step)
        return x[: options.n_images] + step, y[: options.n_images] + step
    rng = rng_for(options.seed, "scan")
    low, high = (n_px - 1) / 2 + step, (n_px - 1) / 2 + step * side
    return rng.uniform(low, high, options.n_images), rng.uniform(low, high, options.n_images)


def sample_groups(xcoords: np.ndarray, ycoords: np.ndarray, options: ScenarioOptions,
                  rng: np.random.Generator) -> Groups:
    """Up to ``n_groups`` groups of C patterns (K-choose-C around each anchor), a seeded random choice."""
    check_grouping(options.neighbor_count, options.gridsize, len(xcoords))
    per_anchor = 1 if options.gridsize == 1 else math.ceil(options.n_groups / len(xcoords))
    groups = knn_groups(xcoords, ycoords, neighbor_count=options.neighbor_count, gridsize=options.gridsize,
                        rng=rng, groups_per_anchor=per_anchor)
    keep = np.sort(rng.permutation(len(groups.indices))[: options.n_groups])
    indices = groups.indices[keep]
    centers, offsets = group_geometry(indices, np.asarray(xcoords, np.float64), np.asarray(ycoords, np.float64))
    return Groups(indices, groups.anchors[keep], centers, offsets)


@dataclass(frozen=True)
class ScenarioData:
    """The simulated scan split into train and test contract datasets (grouped once :func:`group_parts` ran)."""

    train: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    probe_raw: np.ndarray
    """The probe as made or loaded (before normalisation)."""
    y_cut_px: int
    guard_band_dropped: int


def simulate_split(options: ScenarioOptions) -> ScenarioData:
    """Lines object, probe (normalised to Σ|P|² = 1, then dose-scaled by the simulation), scan, Poisson data,
    and the y split with a guard band (no groups yet)."""
    obj = lines_object(options.object_size_px, options.n_lines, rng=rng_for(options.seed, "object"),
                       blur_px=options.line_blur_px)
    probe_raw = scenario_probe(options)
    probe = probe_raw / np.sqrt(np.sum(np.abs(probe_raw) ** 2))
    x, y = scan_positions(options)
    arrays = simulate_dataset(obj, probe, x, y, options.dose, rng=rng_for(options.seed, "noise"))
    split = split_on_y(x, y, options.patch_size_px)
    return ScenarioData(subset(arrays, split.train), subset(arrays, split.test), probe_raw, split.y_cut_px,
                        split.dropped)


def group_part(arrays: dict[str, np.ndarray], options: ScenarioOptions, part: str) -> dict[str, np.ndarray]:
    """One split with its K-choose-C groups (seeded per split); raises ``ValueError`` with too few patterns."""
    groups = sample_groups(arrays["xcoords"], arrays["ycoords"], options, rng_for(options.seed, "groups", part))
    return with_groups(arrays, groups)


def simulate_split_group(options: ScenarioOptions) -> ScenarioData:
    """:func:`simulate_split`, then K-choose-C groups in each split."""
    data = simulate_split(options)
    return replace(data, train=group_part(data.train, options, "train"), test=group_part(data.test, options, "test"))
