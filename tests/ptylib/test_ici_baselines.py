"""The study's baseline policies (spiral, random) and the study's figures."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from ptylib.ici.model import EventHistory, EventKey, Proposal
from ptylib.ici.proposer.baselines import (
    DONE_BUDGET,
    REASON_RANDOM,
    REASON_SPIRAL,
    spiral_offsets_mm,
)
from ptylib.ici.proposer.dxdy import DXDY_MISSING_FILE
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.policy import propose_many
from ptylib.ici.report.study import answer_after, error_curve_mm, strategy_figures


def _no_dxdy(key: EventKey, run_n: int):
    return None, None, DXDY_MISSING_FILE


def _history(event: int, trials: list[tuple[float, float, float | None]], first=(0.01, -0.02)) -> EventHistory:
    shifted = [(first[0] + x, first[1] + y, w) for x, y, w in trials]
    return EventHistory.from_trials(EventKey("/data/run.h5", event), shifted)


def test_spiral_points_cover_the_disk_evenly() -> None:
    points = spiral_offsets_mm(0.05, 9)
    radii = np.hypot(points[:, 0], points[:, 1])
    assert radii[0] == 0.0 and radii[-1] == pytest.approx(0.05)
    assert np.all(np.diff(radii) > 0)
    # Equal-area rings: r_j^2 grows linearly with j.
    np.testing.assert_allclose(radii**2, 0.05**2 * np.arange(9) / 8, rtol=1e-12, atol=1e-18)
    gaps = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    assert gaps[~np.eye(9, dtype=bool)].min() > 0.01


def test_spiral_walks_its_points_from_the_first_centre_then_stops_at_the_budget() -> None:
    options = ProposerOptions(policy="spiral", baseline_runs=4)
    table = spiral_offsets_mm(options.radius_mm, 4)
    trials: list[tuple[float, float, float | None]] = [(0.0, 0.0, 0.3)]
    for j in range(1, 4):
        history = _history(0, trials)
        proposal = propose_many([history], options, _no_dxdy)[history.key]
        assert proposal.reason == REASON_SPIRAL
        assert (proposal.dx_mm, proposal.dy_mm) == pytest.approx((0.01 + table[j, 0], -0.02 + table[j, 1]))
        trials.append((table[j, 0], table[j, 1], None))
    history = _history(0, trials)
    assert propose_many([history], options, _no_dxdy)[history.key] == Proposal(None, None, DONE_BUDGET)


def test_random_search_is_uniform_in_the_disk_and_independent_of_event_order() -> None:
    options = ProposerOptions(policy="random", baseline_runs=5)
    histories = [_history(e, [(0.0, 0.0, None)]) for e in range(2000)]
    proposals = propose_many(histories, options, _no_dxdy)
    offsets = np.array([(p.dx_mm - 0.01, p.dy_mm + 0.02) for p in proposals.values()])
    radii = np.hypot(offsets[:, 0], offsets[:, 1])
    assert {p.reason for p in proposals.values()} == {REASON_RANDOM}
    assert radii.max() <= options.radius_mm
    # Uniform in area: half of the points lie inside r = R / sqrt(2).
    assert np.mean(radii < options.radius_mm / math.sqrt(2)) == pytest.approx(0.5, abs=0.04)
    assert len({(p.dx_mm, p.dy_mm) for p in proposals.values()}) == 2000
    shuffled = propose_many(histories[::-1], options, _no_dxdy)
    assert all(shuffled[k] == proposals[k] for k in proposals)
    other_seed = propose_many(histories[:10], dataclasses.replace(options, seed=1), _no_dxdy)
    assert all(other_seed[k] != proposals[k] for k in other_seed)


def test_baseline_knob_leaves_the_other_policies_unchanged() -> None:
    for policy in ("model", "hillmap"):
        one, other = ProposerOptions(policy=policy), ProposerOptions(policy=policy, baseline_runs=11)
        assert one.digest() == other.digest()
    assert ProposerOptions(policy="random").digest() != ProposerOptions(policy="random", baseline_runs=11).digest()
    with pytest.raises(ValueError, match="baseline_runs"):
        ProposerOptions(baseline_runs=1)


def test_study_figures_from_known_histories() -> None:
    truth = {EventKey("/data/run.h5", 0): (0.03, 0.0), EventKey("/data/run.h5", 1): (0.0, 0.0)}
    a = EventHistory.from_trials(EventKey("/data/run.h5", 0), [(0.0, 0.0, None), (0.02, 0.0, 0.4), (0.03, 0.0, 0.2)])
    b = EventHistory.from_trials(EventKey("/data/run.h5", 1), [(0.0, 0.04, 0.5), (0.0, 0.01, 0.3)])
    b.rows[-1].proposal = Proposal(None, None, "done_stable")
    histories = {a.key: a, b.key: b}

    assert answer_after(a, 1) == (0.0, 0.0)  # never indexed yet: the first centre
    assert answer_after(a, 2) == (0.02, 0.0)
    curve = error_curve_mm([a, b], [truth[a.key], truth[b.key]])
    np.testing.assert_allclose(curve, [np.median([0.03, 0.04]), np.median([0.01, 0.01]), np.median([0.0, 0.01])])

    figures = strategy_figures("fixed", "spiral", histories, truth)
    assert figures.events == 2 and figures.runs_per_event == 2.5 and figures.done_fraction == 0.5
    assert figures.runs_to_first_index == 1.5 and figures.never_indexed == 0
    assert figures.median_error_mm == pytest.approx(0.005)
    assert math.isnan(figures.refined_median_error_mm)
    refined = strategy_figures("refine", "spiral", histories, truth, refined_mm={a.key: (0.029, 0.0)})
    # b has no refined centre and answers with its best-wRMSD centre (0.01 mm off).
    assert refined.refined_median_error_mm == pytest.approx(np.median([0.001, 0.01]))
    with pytest.raises(ValueError, match="no event"):
        strategy_figures("fixed", "spiral", histories, {})
