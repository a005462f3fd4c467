"""K-choose-C grouping, the spacing filter of overlap views, the y split and stitching."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

from ptylib.ptycho.forward import extract_patches, snap_positions
from ptylib.ptycho.grouping import knn_groups
from ptylib.ptycho.objects import synthetic_object
from ptylib.ptycho.overlap import spacing_filter, spacing_stats
from ptylib.ptycho.scans import random_positions, raster_positions
from ptylib.ptycho.split import split_on_y
from ptylib.ptycho.stitch import canvas_size_px, stitch_patches, window


def test_groups_are_valid_k_choose_c_draws() -> None:
    x, y = raster_positions((200, 200), 32, 6, jitter_px=1.0, rng=np.random.default_rng(0))
    groups = knn_groups(x, y, neighbor_count=7, gridsize=2, rng=np.random.default_rng(1))
    assert groups.indices.shape == (len(x), 4) and groups.indices.dtype == np.int64
    _, knn = cKDTree(np.stack([x, y], 1)).query(np.stack([x, y], 1), k=7)
    for row, anchor in zip(groups.indices, groups.anchors):
        assert len(set(row)) == 4 and set(row) <= set(knn[anchor])
    members = np.stack([x[groups.indices], y[groups.indices]], -1)
    np.testing.assert_allclose(groups.centers, members.mean(1))
    np.testing.assert_allclose(groups.offsets, members - groups.centers[:, None])
    again = knn_groups(x, y, neighbor_count=7, gridsize=2, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(groups.indices, again.indices)


def test_k_choose_c_is_uniform_over_subsets() -> None:
    x, y = np.arange(5.0) * 10, np.zeros(5)
    groups = knn_groups(x, y, neighbor_count=5, gridsize=2, rng=np.random.default_rng(2), groups_per_anchor=7000)
    subsets = {frozenset(r) for r in groups.indices}
    assert len(subsets) == math.comb(5, 4)
    counts = np.unique(np.sort(groups.indices, axis=1), axis=0, return_counts=True)[1]
    assert counts.min() > 0.9 * counts.mean()  # 35000 draws over 5 subsets: each within 10 % of 7000


def test_grouping_refuses_k_below_c_and_handles_gridsize_one() -> None:
    x, y = raster_positions((100, 100), 32, 8)
    with pytest.raises(ValueError, match="K-choose-C grouping needs K ≥ C: K=3 < C=gridsize²=4"):
        knn_groups(x, y, neighbor_count=3, gridsize=2, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="fewer than K=7"):
        knn_groups(x[:5], y[:5], neighbor_count=7, gridsize=2, rng=np.random.default_rng(0))
    single = knn_groups(x, y, neighbor_count=1, gridsize=1, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(single.indices[:, 0], np.arange(len(x)))
    assert np.all(single.offsets == 0)


@pytest.mark.parametrize("spacing", [38.4, 102.4, 0.0])
def test_spacing_filter_keeps_only_pairs_at_least_s_apart(spacing: float) -> None:
    x, y = random_positions((600, 600), 128, 800, rng=np.random.default_rng(3))
    centers = np.stack([x, y], 1)
    kept = spacing_filter(centers, spacing, rng=np.random.default_rng(4))
    if len(kept) > 1:
        assert pdist(centers[kept]).min() >= spacing
    # Maximal: every dropped centre is closer than S to a kept one.
    dropped = np.setdiff1d(np.arange(len(centers)), kept)
    if len(dropped):
        distance, _ = cKDTree(centers[kept]).query(centers[dropped])
        assert distance.max() < spacing
    np.testing.assert_array_equal(kept, spacing_filter(centers, spacing, rng=np.random.default_rng(4)))  # seeded
    assert spacing > 0 or len(kept) == len(centers)
    stats = spacing_stats(centers, kept, spacing)
    assert stats["n_kept"] == len(kept) and stats["respects_spacing"]
    assert spacing == 0.0 or stats["kept_min_nn_px"] >= spacing


def test_spacing_exactly_s_is_allowed_and_negative_refused() -> None:
    centers = np.array([[0.0, 0.0], [38.4, 0.0], [50.0, 0.0]])
    kept = spacing_filter(centers, 38.4, rng=np.random.default_rng(0))
    assert len(kept) == 2
    with pytest.raises(ValueError, match="minimum spacing must be ≥ 0 px"):
        spacing_filter(centers, -1.0, rng=np.random.default_rng(0))


def test_spacing_filter_is_fast_on_many_centres() -> None:
    rng = np.random.default_rng(5)
    centers = rng.uniform(0, 4000, size=(50_000, 2))
    for spacing in (38.4, 102.4):
        start = time.perf_counter()
        kept = spacing_filter(centers, spacing, rng=rng)
        assert time.perf_counter() - start < 2.0
        assert pdist(centers[kept]).min() >= spacing


def test_y_split_shares_no_pixels() -> None:
    x, y = raster_positions((160, 160), 32, 5, jitter_px=0.7, rng=np.random.default_rng(6))
    split = split_on_y(x, y, 32)
    assert len(split.train) and len(split.test) and split.dropped > 0
    assert len(split.train) + len(split.test) + split.dropped == len(x)
    starts, _ = snap_positions(x, y, 32)
    footprint = {}
    for name, index in (("train", split.train), ("test", split.test)):
        mask = np.zeros((160, 160), bool)
        rows = starts[index, 0, None] + np.arange(32)
        cols = starts[index, 1, None] + np.arange(32)
        mask[rows[:, :, None], cols[:, None, :]] = True
        footprint[name] = mask
    assert not np.any(footprint["train"] & footprint["test"])
    assert footprint["train"][: split.y_cut_px].any() and not footprint["train"][split.y_cut_px :].any()
    assert not footprint["test"][: split.y_cut_px].any()
    with pytest.raises(ValueError, match="too short"):
        split_on_y(x[:3], np.full(3, 40.0), 32)


def test_stitching_exact_patches_reproduces_the_object() -> None:
    obj = synthetic_object(96, rng=np.random.default_rng(7))
    x, y = raster_positions(obj.shape, 32, 7)
    patches = extract_patches(obj, snap_positions(x, y, 32)[0], 32)
    centre = np.array([47.5, 47.5])  # a pixel corner, like every scan centre
    offsets = np.stack([x, y], 1) - centre
    result = stitch_patches(patches, offsets)
    side = math.ceil(32 + 2 * np.abs(offsets).max())
    assert result.canvas.shape == (side, side) == (canvas_size_px(offsets, 32),) * 2
    covered = result.weight > 0
    origin = (round(centre[1] - result.center_px), round(centre[0] - result.center_px))
    truth = window(obj, origin, result.canvas.shape)
    np.testing.assert_allclose(result.canvas[covered], truth[covered], rtol=1e-6)
    assert covered.sum() == (x.max() - x.min() + 32) * (y.max() - y.min() + 32)
    with pytest.raises(ValueError, match="cannot hold patches"):
        stitch_patches(patches, offsets, canvas_px=side - 8)


def test_canvas_size_follows_offsets_and_window_pads() -> None:
    offsets = np.array([[-10.2, 3.0], [4.0, 12.6]])
    assert canvas_size_px(offsets, 64) == math.ceil(64 + 2 * 12.6)
    image = np.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(window(image, (-1, 2), (3, 3), fill=-1),
                                  [[-1, -1, -1], [2, 3, -1], [6, 7, -1]])
    assert list(itertools.chain(*window(image, (5, 5), (1, 2), fill=9))) == [9, 9]
