"""Step-1 hillmap: spacing guarantees, relaxing, determinism and sampling statistics (mm, px)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from ici_reference import propose_event

from ptylib.ici.model import EventHistory, EventKey, Proposal
from ptylib.ici.proposer import hillmap
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.policy import propose_many
from ptylib.ici.proposer.rng import event_stream

Trial = tuple[float, float, float | None]


def history(trials: Sequence[Trial], *, name: str = "/data/a.h5", event: int = 0,
            reasons: list[str] | None = None) -> EventHistory:
    """An event history from (x_mm, y_mm, wrmsd or None) trials; ``reasons`` are the rows' proposals."""
    built = EventHistory.from_trials(EventKey(name, event), trials)
    for row, reason in zip(built.rows, reasons or []):
        row.proposal = Proposal(0.0, 0.0, reason)
    return built


def no_dxdy(key: EventKey, run_n: int) -> tuple[None, None, str]:
    return None, None, "dxdy_missing_file"


def nearest(point: tuple[float, float], trials: EventHistory) -> float:
    return min(math.hypot(point[0] - r.det_shift_x_mm, point[1] - r.det_shift_y_mm) for r in trials.rows)


def draw_many(trials: Sequence[Trial], options: ProposerOptions, n: int = 1500) -> np.ndarray:
    """Proposals (n x 2) for ``n`` events with the same trials (their streams differ)."""
    histories = [history(trials, event=i) for i in range(n)]
    proposals = propose_many(histories, options, no_dxdy)
    return np.array([(p.dx_mm, p.dy_mm) for p in proposals.values()])


def fraction_within(xy: np.ndarray, point: tuple[float, float], radius_mm: float) -> float:
    """Fraction of the proposals ``xy`` (n x 2, mm) within ``radius_mm`` of ``point``."""
    return float(np.mean(np.hypot(xy[:, 0] - point[0], xy[:, 1] - point[1]) < radius_mm))


def test_no_proposal_closer_than_min_spacing_to_any_tried_centre() -> None:
    rng = np.random.default_rng(7)
    options = ProposerOptions(policy="hillmap", min_spacing_mm=0.01, step1_candidates=512)
    histories = []
    for event in range(400):
        n = int(rng.integers(1, 14))
        centre = rng.normal(0.0, 0.3, 2)
        # Tight clusters make the spacing bite; some trials lie outside the disk.
        xy = centre + rng.normal(0.0, rng.choice([0.005, 0.03, 0.08]), (n, 2))
        failures: list[float | None] = [None, math.inf]
        wrmsd = [float(w) if rng.random() < 0.4 else failures[int(rng.integers(2))] for w in rng.uniform(0.2, 3, n)]
        histories.append(history([(x, y, w) for (x, y), w in zip(xy.tolist(), wrmsd)], event=event))

    def dxdy(key: EventKey, run_n: int) -> tuple[float, float, str]:
        return 0.004 * (key.event % 5), 0.0, "dxdy_ok"  # damped steps of 0..16 um: some violate the spacing

    reasons: Counter[str] = Counter()
    for lookup in (no_dxdy, dxdy):
        proposals = propose_many(histories, options, lookup)
        for h in histories:
            p = proposals[h.key]
            reasons[p.reason] += 1
            if p.dx_mm is not None and p.dy_mm is not None:
                assert nearest((p.dx_mm, p.dy_mm), h) >= options.min_spacing_mm * (1 - 1e-12), (h, p)
                assert not p.reason.endswith("_relaxed")
    assert sum(n for reason, n in reasons.items() if not reason.startswith("done")) > 400
    assert reasons["dxdy_damped"] >= 5 and reasons["step1_hillmap_wrmsd_sample_fallback_dxdy_spacing"] >= 5


def _covered_history() -> list[Trial]:
    # The first centre plus six centres on a 0.04 mm ring cover the whole 0.05 mm disk at 0.049 mm spacing.
    ring = [(0.04 * math.cos(a), 0.04 * math.sin(a), None) for a in np.linspace(0, 2 * math.pi, 6, endpoint=False)]
    return [(0.0, 0.0, None), *ring]


def test_no_valid_candidate_is_done_exhausted_without_relax() -> None:
    options = ProposerOptions(policy="hillmap", min_spacing_mm=0.049, done_on_streak_length=50)
    h = history(_covered_history())
    proposal = propose_event(h, options, dxdy_lookup=no_dxdy, rng=event_stream(h.key, 7, 1, "x"))
    assert proposal == Proposal(None, None, "done_step1_exhausted")


def test_spacing_relax_halves_the_spacing_until_a_candidate_fits() -> None:
    options = ProposerOptions(policy="hillmap", min_spacing_mm=0.049, step1_allow_spacing_relax=True,
                              done_on_streak_length=50)
    h = history(_covered_history())
    proposal = propose_event(h, options, dxdy_lookup=no_dxdy, rng=event_stream(h.key, 7, 1, "x"))
    assert proposal.reason == "step1_hillmap_explore_relaxed"
    assert proposal.dx_mm is not None and proposal.dy_mm is not None
    distance = nearest((proposal.dx_mm, proposal.dy_mm), h)
    assert options.min_spacing_mm / 64 < distance < options.min_spacing_mm
    assert math.hypot(proposal.dx_mm, proposal.dy_mm) <= options.radius_mm


def test_batched_draw_equals_single_event_draw() -> None:
    options = ProposerOptions(policy="hillmap")
    trials = [[(0.01 * i, -0.002 * j, 0.5 + 0.1 * j if (i + j) % 3 == 0 else None) for j in range(1 + i % 6)]
              for i in range(40)]
    histories = [history(t, event=i) for i, t in enumerate(trials)]
    batched = propose_many(histories, options, no_dxdy)
    for h in histories:
        stream = event_stream(h.key, h.rows[-1].run_n + 1, options.seed, options.digest())
        assert propose_event(h, options, dxdy_lookup=no_dxdy, rng=stream) == batched[h.key]


@pytest.mark.parametrize(
    "trials",
    [
        [(0.0, 0.0, None), (0.03, 0.0, 1.0), (0.0, 0.03, 1.4), (-0.02, -0.02, None)],  # bound: sum of amplitudes
        [(0.0, 0.0, None), (0.01, 0.0, None), (0.0, 0.012, None), (-0.004, -0.005, None)],  # concave bound
    ],
)
def test_rejection_draw_has_the_distribution_of_the_full_weighted_draw(monkeypatch: pytest.MonkeyPatch,
                                                                       trials: list[Trial]) -> None:
    options = ProposerOptions(policy="hillmap", step1_candidates=1024)
    fast = draw_many(trials, options, 1500)
    # No rejection tries at all: every event takes the full draw over all its candidates.
    monkeypatch.setattr(hillmap, "_TRIES", 0)
    monkeypatch.setattr(hillmap, "_TRY_FRACTION", 10**9)
    full = draw_many(trials, options, 1500)
    assert not np.array_equal(fast, full)
    # Tolerances are 3.5 standard errors of the difference of two independent samples.
    np.testing.assert_allclose(fast.mean(axis=0), full.mean(axis=0), atol=0.0032)
    np.testing.assert_allclose(fast.std(axis=0), full.std(axis=0), rtol=0.09)
    assert abs(fraction_within(fast, (0.03, 0.0), 0.015) - fraction_within(full, (0.03, 0.0), 0.015)) < 0.055


def test_success_hill_attracts_samples() -> None:
    options = ProposerOptions(policy="hillmap", step1_candidates=1024)
    explore = draw_many([(0.0, 0.0, None)], options)
    attracted = draw_many([(0.0, 0.0, None), (0.03, 0.0, 1.0)], options)
    # Expected from the weight integrals: ~0.25 with the hill, ~0.10 without.
    assert fraction_within(attracted, (0.03, 0.0), 0.015) > 0.2
    assert fraction_within(attracted, (0.03, 0.0), 0.015) > 1.8 * fraction_within(explore, (0.03, 0.0), 0.015)
    assert attracted[:, 0].mean() > explore[:, 0].mean() + 0.01
    assert np.all(np.hypot(*attracted.T) <= options.radius_mm * (1 + 1e-12))  # the disk is around the FIRST centre


def test_failures_near_the_first_centre_push_samples_away() -> None:
    options = ProposerOptions(policy="hillmap", step1_candidates=1024)
    one_failure = draw_many([(0.0, 0.0, None)], options)
    cluster = [(0.0, 0.0, None)] + [(0.002 * math.cos(a), 0.002 * math.sin(a), None) for a in range(9)]
    many_failures = draw_many(cluster, options)
    assert fraction_within(many_failures, (0.0, 0.0), 0.012) < 0.7 * fraction_within(one_failure, (0.0, 0.0), 0.012)
    assert np.hypot(*many_failures.T).mean() > np.hypot(*one_failure.T).mean() + 0.002


def test_boltzmann_weights_and_base_amplitude() -> None:
    options = ProposerOptions(policy="hillmap", beta=2.0)
    batch = hillmap.Step1Batch(
        xy=np.array([[0.0, 0.0], [0.01, 0.0], [0.02, 0.0], [0.0, 0.01], [0.1, 0.1], [0.1, 0.12]]),
        wrmsd=np.array([np.nan, 1.0, 1.5, np.nan, np.nan, np.nan]),
        counts=np.array([4, 2]),
        keys=np.zeros((2, 2), dtype=np.uint64),
    )
    amplitudes, n_success = hillmap.trial_amplitudes(batch, options)
    w = np.array([1.0, math.exp(-2.0 * 0.5)])
    w /= w.sum()
    a0 = options.step1_A0
    expected = [a0 / 2 - 0.1 * a0, 5.0 * a0 * w[0], 5.0 * a0 * w[1], -0.1 * a0, a0 - 0.1 * a0, -0.1 * a0]
    np.testing.assert_allclose(amplitudes, expected)
    np.testing.assert_array_equal(n_success, [2, 0])


def test_concave_bound_is_an_upper_bound_of_the_weight() -> None:
    rng = np.random.default_rng(3)
    options = ProposerOptions(policy="hillmap")
    for n_failures in (1, 4, 12, 30):
        x = np.concatenate(([0.0], rng.normal(0, 0.02, n_failures)))[None]
        y = np.concatenate(([0.0], rng.normal(0, 0.02, n_failures)))[None]
        amp = np.concatenate(([1.8], np.full(n_failures, -0.2)))[None]
        bound = hillmap._concave_bound(x, y, amp, options.radius_mm)[0]
        r, a = options.radius_mm * np.sqrt(rng.random(20000)), 2 * np.pi * rng.random(20000)
        cx, cy = r * np.cos(a), r * np.sin(a)
        sigma = options.radius_mm / 2
        d2 = (cx[:, None] - x[0]) ** 2 + (cy[:, None] - y[0]) ** 2
        field = np.maximum((amp[0] * np.exp(-d2 / (2 * sigma**2))).sum(axis=1), 0)
        assert field.max() <= bound
        # Nearly tight on H = field / G(c - c0), which is what keeps the rejection sampler efficient.
        h = field / np.exp(-(cx**2 + cy**2) / (2 * sigma**2))
        assert bound <= h.max() + 1e-3
