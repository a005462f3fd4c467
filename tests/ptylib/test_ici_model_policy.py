"""The model policy: cone fit, probes, DONE and fallback rules, refined-centre combination, determinism (mm, px)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from ici_reference import propose_event

from ptylib.ici.cli import build_parser, options_from_args
from ptylib.ici.model import EventHistory, EventKey, LedgerRow, Proposal
from ptylib.ici.proposer.centre_fit import combine_estimates, fit_cone
from ptylib.ici.proposer.centre_model import PROBES, estimate_refined_centres
from ptylib.ici.proposer.dxdy import DxdyLookup
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.policy import propose_events, propose_many
from ptylib.ici.proposer.propose import propose_run_root
from ptylib.ici.proposer.rng import event_stream
from ptylib.ici.runroot.layout import LEDGER_NAME, event_dir
from ptylib.ici.runroot.ledger import format_ledger, read_ledger

MODEL = ProposerOptions(policy="model")
FIXED = ProposerOptions(policy="model", step2_algorithm="none")
# The hillmap's wRMSD-sequence DONE rules out of reach, so a fallback shows its Step-1 draw.
PATIENT = ProposerOptions(policy="model", step2_algorithm="none", stability_N=50, noimprove_N=50)
A2, K2 = 0.0121, 10.2  # px^2, px^2/mm^2: the DIALS-like cone
Trial = tuple[float, float, float | None]


def cone(xy: Sequence[float], centre: Sequence[float]) -> float:
    """Noise-free wRMSD (px) at ``xy`` (mm) for a true centre ``centre`` (mm)."""
    return math.sqrt(A2 + K2 * ((xy[0] - centre[0]) ** 2 + (xy[1] - centre[1]) ** 2))


def history(trials: Sequence[Trial], *, event: int = 0, name: str = "/data/a.h5") -> EventHistory:
    """An event from (x_mm, y_mm, wrmsd or None) trials; every row but the last carries a placeholder proposal."""
    built = EventHistory.from_trials(EventKey(name, event), trials)
    for row in built.rows[:-1]:
        row.proposal = Proposal(row.det_shift_x_mm, row.det_shift_y_mm, "model_probe")
    return built


def no_dxdy(key: EventKey, run_n: int) -> tuple[None, None, str]:
    return None, None, "dxdy_missing_file"


def propose(h: EventHistory, options: ProposerOptions = FIXED, lookup: DxdyLookup = no_dxdy) -> Proposal:
    return propose_many([h], options, lookup)[h.key]


def probe_points(options: ProposerOptions = FIXED) -> list[tuple[float, float]]:
    """The probe pattern around (0, 0), in the order it is tried (mm)."""
    rho = options.model_probe_frac * options.radius_mm
    return [(f * rho * math.cos(math.radians(a)), f * rho * math.sin(math.radians(a))) for a, f in PROBES]


# ----------------------------------------------------------------------------- the fit


@pytest.mark.parametrize("centre", [(0.0, 0.0), (0.012, -0.031), (-0.047, 0.015), (0.09, 0.06)])
def test_fit_recovers_a_known_centre_from_noiseless_trials(centre: tuple[float, float]) -> None:
    xy = np.array([[(0.0, 0.0), *probe_points()[:3], (0.01, 0.02)]])
    wrmsd = np.array([[cone(p, centre) for p in xy[0]]])
    fit = fit_cone(xy, wrmsd, xy[:, 0], 0.05, 0.05)
    np.testing.assert_allclose(fit.centre_mm[0], centre, atol=1e-12)
    assert fit.a2_px2[0] == pytest.approx(A2, rel=1e-9)
    assert fit.k2_px2_per_mm2[0] == pytest.approx(K2, rel=1e-9)
    assert fit.full_rank[0] and fit.chi[0] < 1e-6


def test_noiseless_event_reaches_its_centre_and_stops() -> None:
    centre = (0.013, -0.022)
    h = history([(0.0, 0.0, cone((0.0, 0.0), centre))])
    reasons = []
    for _ in range(8):
        p = propose(h)
        reasons.append(p.reason)
        if p.is_done:
            break
        h.rows[-1].proposal = p
        h.rows.append(LedgerRow(len(h.rows), p.dx_mm, p.dy_mm, True, cone((p.dx_mm, p.dy_mm), centre)))
    assert reasons == ["model_probe"] * 3 + ["model_fit_minimum", "done_model_converged"]
    last = h.rows[-1]
    assert math.dist((last.det_shift_x_mm, last.det_shift_y_mm), centre) < 1e-12


def test_probes_form_a_triangle_on_the_disk_then_an_inner_one_after_failures() -> None:
    h = history([(0.0, 0.0, None)])
    seen = []
    for _ in range(6):
        p = propose(h)
        assert p.reason == "model_probe"
        seen.append((p.dx_mm, p.dy_mm))
        h.rows[-1].proposal = p
        h.rows.append(LedgerRow(len(h.rows), p.dx_mm, p.dy_mm, False, None))
    np.testing.assert_allclose(seen, probe_points(), atol=1e-15)
    assert all(math.hypot(*p) <= FIXED.radius_mm + 1e-15 for p in seen)
    # All probes failed: the hillmap takes over, and says why.
    assert propose(h).reason == "step1_hillmap_explore_model_fallback_few_successes"


def test_no_four_probe_points_lie_on_one_circle_or_line() -> None:
    points = np.array([(0.0, 0.0), *probe_points()])
    for subset in combinations(range(len(points)), 4):
        q = points[list(subset)]
        design = np.column_stack((np.sum(q * q, axis=1), q, np.ones(4)))
        singular = np.linalg.svd(design / np.linalg.norm(design, axis=0), compute_uv=False)
        assert singular[-1] > 1e-3 * singular[0], subset


def test_fitted_minimum_outside_the_disk_is_projected_onto_its_edge() -> None:
    centre = (0.07, 0.03)
    trials = [(x, y, cone((x, y), centre)) for x, y in [(0.0, 0.0), *probe_points()[:3]]]
    p = propose(history(trials))
    assert p.reason == "model_fit_minimum_disk"
    assert math.hypot(p.dx_mm, p.dy_mm) == pytest.approx(FIXED.radius_mm, rel=1e-12)
    assert math.atan2(p.dy_mm, p.dx_mm) == pytest.approx(math.atan2(centre[1], centre[0]), abs=1e-9)


# ----------------------------------------------------------------------------- fallbacks


def exhausted(successes: Sequence[Trial]) -> EventHistory:
    """Failed runs at the first centre and every probe, then the given successful runs."""
    failed = [(0.0, 0.0, None)] + [(x, y, None) for x, y in probe_points()]
    return history(failed + list(successes))


@pytest.mark.parametrize(
    "successes",
    [
        [(0.01 * i - 0.02, 0.5 * (0.01 * i - 0.02), cone((0.01 * i - 0.02, 0.0), (0.0, 0.01))) for i in range(5)],
        [(x, y, 0.3) for x, y in [(0.01, 0.0), (-0.02, 0.01), (0.0, -0.03), (0.03, 0.02), (-0.01, -0.01)]],
        [(x, y, 0.6 - 2.0 * math.hypot(x, y)) for x, y in [(0.01, 0.0), (-0.02, 0.01), (0.0, -0.03), (0.03, 0.02)]],
    ],
    ids=["collinear", "flat", "dome"],
)
def test_ill_conditioned_trials_fall_back_to_the_hillmap_with_the_reason(successes: list[Trial]) -> None:
    p = propose(exhausted(successes), PATIENT)
    assert p.reason == "step1_hillmap_wrmsd_sample_model_fallback_illconditioned"
    assert p.dx_mm is not None and math.hypot(p.dx_mm, p.dy_mm) <= FIXED.radius_mm


def test_ill_conditioned_fit_takes_the_next_probe_while_there_is_one() -> None:
    flat = [(x, y, 0.3) for x, y in [(0.0, 0.0), *probe_points()[:3]]]
    p = propose(history(flat))
    assert p.reason == "model_probe"
    assert (p.dx_mm, p.dy_mm) == pytest.approx(probe_points()[3])


def test_bad_fit_falls_back_with_its_reason() -> None:
    centre = (0.004, -0.006)
    points = [(0.0, 0.0), *probe_points(), (0.02, 0.02), (-0.02, 0.02), (0.02, -0.02), (-0.02, -0.02)]
    trials = [(x, y, (2.5 if i % 2 else 1.0) * cone((x, y), centre)) for i, (x, y) in enumerate(points)]
    assert propose(history(trials), PATIENT).reason == "step1_hillmap_wrmsd_sample_model_fallback_badfit"


def test_hillmap_done_rules_apply_in_a_fallback_and_the_streak_rule_always() -> None:
    stable = exhausted([(x, y, 0.3) for x, y in [(0.01, 0.0), (-0.02, 0.01), (0.0, -0.03), (0.03, 0.02)]])
    assert propose(stable) == Proposal(None, None, "done_stable_model_fallback_illconditioned")
    centre = (0.0, 0.0)
    streak = [(x, y, cone((x, y), centre)) for x, y in [(0.0, 0.0), *probe_points()[:3]]]
    streak += [(0.001 * i, 0.0, None) for i in range(1, 6)]
    assert propose(history(streak)) == Proposal(None, None, "done_streak")


def test_a_failed_run_at_the_fitted_minimum_is_retried_next_to_it() -> None:
    centre = (0.013, -0.022)
    trials = [(x, y, cone((x, y), centre)) for x, y in [(0.0, 0.0), *probe_points()[:3]]] + [(*centre, None)]
    h = history(trials)
    p = propose(h)
    assert p.reason == "model_fit_minimum_nudged"
    nearest = min(math.dist((p.dx_mm, p.dy_mm), (r.det_shift_x_mm, r.det_shift_y_mm)) for r in h.rows)
    assert FIXED.min_spacing_mm <= nearest < 1.02 * FIXED.min_spacing_mm


# ----------------------------------------------------------------------------- REFINE


def lookup_of(values: dict[int, tuple[float, float]]) -> DxdyLookup:
    """A Step-2 lookup giving ``values[run_n]`` (mm) for every event."""

    def lookup(key: EventKey, run_n: int) -> tuple[float | None, float | None, str]:
        return (*values[run_n], "dxdy_ok") if run_n in values else (None, None, "dxdy_missing_file")

    return lookup


def test_refine_proposes_the_mean_of_all_refined_centres_and_stops_when_precise() -> None:
    truth = (0.02, -0.01)
    noise = [(0.003, -0.001), (-0.002, 0.002), (0.001, 0.0)]
    trials = [(0.0, 0.0, 0.2), (0.021, -0.012, 0.11)]
    dxdy = {n: (x - truth[0] - e[0], y - truth[1] - e[1]) for n, ((x, y, _), e) in enumerate(zip(trials, noise))}
    p = propose(history(trials), MODEL, lookup_of(dxdy))
    assert p.reason == "model_refine_mean"
    assert (p.dx_mm, p.dy_mm) == pytest.approx((truth[0] + 0.0005, truth[1] + 0.0005), abs=1e-12)
    trials.append((p.dx_mm, p.dy_mm, 0.11))
    dxdy[2] = (p.dx_mm - truth[0] - noise[2][0], p.dy_mm - truth[1] - noise[2][1])
    h = history(trials)
    assert propose(h, MODEL, lookup_of(dxdy)) == Proposal(None, None, "done_model_refined")
    (centre, se), = estimate_refined_centres([h], MODEL, lookup_of(dxdy))
    assert centre == pytest.approx((truth[0] + 2e-3 / 3, truth[1] + 1e-3 / 3), abs=1e-12)
    assert se == pytest.approx(MODEL.model_refine_sigma_mm / math.sqrt(3))


def test_a_run_at_the_refined_centre_that_refines_to_it_again_is_done() -> None:
    truth = (0.02, -0.01)
    trials = [(0.0, 0.0, 0.2), (*truth, 0.11)]
    repeat = {0: (-truth[0], -truth[1]), 1: (-0.0004, 0.0003)}  # the second estimate lies 0.5 um away
    assert propose(history(trials), MODEL, lookup_of(repeat)) == Proposal(None, None, "done_model_refined_repeat")
    moved = {0: (-truth[0], -truth[1]), 1: (-0.003, 0.0)}  # 3 um away: noise, keep averaging
    assert propose(history(trials), MODEL, lookup_of(moved)).reason == "model_refine_mean"
    strict = ProposerOptions(policy="model", model_repeat_tol_mm=0.0001)
    assert propose(history(trials), strict, lookup_of(repeat)).reason.startswith("model_refine_mean")


def test_refine_is_done_when_later_successes_leave_no_dxdy() -> None:
    trials = [(0.0, 0.0, 0.2), (0.02, -0.01, 0.11)]
    only_first = {0: (-0.02, 0.01)}
    assert propose(history(trials), MODEL, lookup_of(only_first)) == Proposal(None, None, "done_model_refined_no_dxdy")
    (centre, _), = estimate_refined_centres([history(trials)], MODEL, lookup_of(only_first))
    assert centre == pytest.approx((0.02, -0.01))


def closed_loop(options: ProposerOptions, *, dxdy_runs: int, noise_mm: float, n_events: int = 20,
                max_runs: int = 10) -> list[EventHistory]:
    """Run the proposer against a cone indexer in memory: refined dx/dy only for runs < ``dxdy_runs``."""
    rng = np.random.default_rng(7)
    truths = rng.uniform(-0.035, 0.035, size=(n_events, 2))
    histories = [EventHistory(EventKey("/d/loop.h5", e)) for e in range(n_events)]
    dxdy: dict[tuple[int, int], tuple[float, float]] = {}

    def lookup(key: EventKey, run_n: int) -> tuple[float | None, float | None, str]:
        return (*dxdy[key.event, run_n], "dxdy_ok") if (key.event, run_n) in dxdy else (None, None, "dxdy_missing_file")

    for run_n in range(max_runs):
        open_events = [h for h in histories if not h.is_done]
        if not open_events:
            break
        for h in open_events:
            last = h.rows[-1].proposal if h.rows else None
            x, y = (last.dx_mm, last.dy_mm) if last else (0.0, 0.0)
            truth = truths[h.key.event]
            wrmsd = cone((x, y), truth) * (1 + 0.02 * rng.normal())
            h.rows.append(LedgerRow(run_n, x, y, True, wrmsd))
            if run_n < dxdy_runs:
                error = rng.normal(0.0, noise_mm, 2) if noise_mm else (0.0, 0.0)
                dxdy[h.key.event, run_n] = (x - truth[0] - error[0], y - truth[1] - error[1])
        for h, proposal in zip(open_events, propose_many(open_events, options, lookup).values()):
            h.rows[-1].proposal = proposal
    return histories


def test_closed_loop_stops_without_later_per_frame_files_and_in_two_runs_when_deterministic() -> None:
    without_later = closed_loop(MODEL, dxdy_runs=1, noise_mm=0.004)
    assert all(h.is_done and len(h.rows) <= 6 for h in without_later)
    deterministic = closed_loop(MODEL, dxdy_runs=99, noise_mm=0.0)
    assert all(h.is_done for h in deterministic)
    assert [len(h.rows) for h in deterministic] == [2] * 20
    assert {h.rows[-1].proposal.reason for h in deterministic} == {"done_model_refined_repeat"}
    noisy = closed_loop(MODEL, dxdy_runs=99, noise_mm=0.004)  # a noisy indexer still averages 3 runs
    assert np.mean([len(h.rows) for h in noisy]) >= 2.8


def test_combined_refined_centre_down_weights_an_outlier() -> None:
    estimates = np.array([[(0.0, 0.0), (0.002, 0.0), (0.0, 0.002), (0.05, 0.05)]])
    mean, se = combine_estimates(estimates, 0.004)
    assert np.hypot(*mean[0]) < 0.006 < np.hypot(*estimates[0].mean(axis=0))
    assert se[0] > 0.004 / 2


def test_refine_is_off_with_step2_none() -> None:
    trials = [(0.0, 0.0, 0.2)]
    assert propose(history(trials), FIXED, lookup_of({0: (0.01, 0.01)})).reason == "model_probe"


# ----------------------------------------------------------------------------- many events, files


def mixed_histories(n: int, seed: int = 0) -> dict[EventKey, EventHistory]:
    """Events at every stage: probing, fitting, failing, never indexed, in a hillmap fallback; own hidden centres."""
    rng = random.Random(seed)
    out = {}
    pattern = [(0.0, 0.0), *probe_points()]
    for event in range(n):
        centre = (rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05))
        points = pattern[:rng.randint(1, 5)] + [(rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05))
                                                for _ in range(rng.randint(0, 3))]
        blank = rng.random() < 0.1
        trials = [(x, y, None if blank or rng.random() < 0.15 else cone((x, y), centre) * (1 + 0.05 * rng.gauss(0, 1)))
                  for x, y in points]
        if event % 10 == 9:  # every probe failed: the hillmap decides (its random streams)
            trials = [(x, y, None) for x, y in pattern] + trials[:rng.randint(0, 2)]
        h = history(trials, event=event, name=f"/d/f{event % 3}.h5")
        out[h.key] = h
    return out


def write_dxdy(path: Path, dx_m: float, dy_m: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"dx,dy\n{dx_m!r},{dy_m!r}\n")


def test_same_proposals_for_shuffled_event_order(tmp_path: Path) -> None:
    histories = mixed_histories(150)
    indices = {key: i for i, key in enumerate(histories)}
    for key in list(histories)[::3]:  # every third event has refined centres
        for row in histories[key].rows:
            if row.succeeded:
                write_dxdy(event_dir(tmp_path, row.run_n, indices[key]) / "per_frame_dx_dy.csv", 2e-6, -3e-6)
    reference = propose_events(histories, MODEL, tmp_path)
    keys = list(histories)
    random.Random(5).shuffle(keys)
    shuffled = propose_events({k: histories[k] for k in keys}, MODEL, tmp_path, event_indices=indices)
    assert shuffled == reference and list(shuffled) == keys
    reasons = {p.reason.split("_model_fallback_")[0] if "_model_fallback_" in p.reason else p.reason
               for p in reference.values()}
    assert {"model_probe", "model_fit_minimum", "model_refine_mean", "step1_hillmap_explore"} <= reasons
    alone = {key: propose_events({key: histories[key]}, MODEL, tmp_path, event_indices=indices)[key]
             for key in keys[:20]}
    assert all(alone[key] == reference[key] for key in alone)


def test_single_event_entry_point_agrees_with_the_batch() -> None:
    histories = mixed_histories(40, seed=2)
    batch = propose_many(histories.values(), FIXED, no_dxdy)
    assert any("_model_fallback_" in p.reason for p in batch.values())
    for key, h in histories.items():
        stream = event_stream(key, h.rows[-1].run_n + 1, FIXED.seed, FIXED.digest())
        assert propose_event(h, FIXED, dxdy_lookup=no_dxdy, rng=stream) == batch[key]


def test_run_root_round_trip_with_the_model_policy(tmp_path: Path) -> None:
    histories = mixed_histories(30, seed=3)
    (tmp_path / LEDGER_NAME).write_text(format_ledger(histories))
    outcome = propose_run_root(tmp_path, MODEL)
    assert outcome.n_changed == 30
    first = (tmp_path / LEDGER_NAME).read_bytes()
    ledger = read_ledger(tmp_path / LEDGER_NAME)
    assert {key: h.rows[-1].proposal for key, h in ledger.items()} == propose_many(histories.values(), MODEL, no_dxdy)
    assert propose_run_root(tmp_path, MODEL).n_changed == 0 and (tmp_path / LEDGER_NAME).read_bytes() == first


# ----------------------------------------------------------------------------- knobs


def test_late_knobs_enter_the_digest_only_away_from_their_default() -> None:
    for policy in ("model", "hillmap", "spiral"):
        default = ProposerOptions(policy=policy)
        assert ProposerOptions(policy=policy, model_repeat_tol_mm=default.model_repeat_tol_mm).digest() == default.digest()
    assert ProposerOptions(policy="model", model_repeat_tol_mm=0.0).digest() != ProposerOptions(policy="model").digest()


def test_hillmap_digest_ignores_the_model_knobs() -> None:
    # The digest of the seed's knobs before the model policy existed: hillmap streams are unchanged.
    assert ProposerOptions(policy="hillmap").digest() == "e6a5d8683e2b9486"
    assert ProposerOptions(policy="hillmap", model_noise_frac=0.1).digest() == "e6a5d8683e2b9486"
    assert ProposerOptions(policy="model").digest() != ProposerOptions(policy="model", model_noise_frac=0.1).digest()
    # The model policy's digest before the baselines' knob existed: its streams are unchanged too.
    assert ProposerOptions(policy="model").digest() == "d20a54f730b99e22"


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"policy": "grid"}, "policy must be one of"),
        ({"model_probe_frac": 1.5}, "model_probe_frac must lie in"),
        ({"model_min_successes": 3}, "model_min_successes must be >= 4"),
        ({"model_refine_tol_mm": 0.0}, "model_refine_tol_mm must be > 0"),
    ],
)
def test_bad_model_knobs_are_refused(knobs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProposerOptions(**knobs)


def test_policy_and_model_flags_map_onto_options() -> None:
    args = build_parser().parse_args(["propose", "--run-root", "r", "--policy", "hillmap", "--model-probe-frac", "0.8",
                                      "--model-refine-tol-mm", "0.002", "--model-min-successes", "5"])
    assert options_from_args(args) == ProposerOptions(policy="hillmap", model_probe_frac=0.8, model_refine_tol_mm=0.002,
                                                      model_min_successes=5)
    assert options_from_args(build_parser().parse_args(["propose", "--run-root", "r"])).policy == "model"
