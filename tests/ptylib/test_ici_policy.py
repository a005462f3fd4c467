"""Proposer switching logic, DONE rules, Step-2 strict contract and the run-root proposing pass."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from ici_reference import make_dxdy_lookup, propose_event

from ptylib.ici.model import EventHistory, EventKey, IciInputError, Proposal
from ptylib.ici.proposer import propose as propose_run_module
from ptylib.ici.proposer.done import done_reason
from ptylib.ici.proposer.dxdy import DxdyLookup, read_dxdy, run_root_dxdy_lookup
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.policy import propose_events
from ptylib.ici.proposer.propose import propose_run_root
from ptylib.ici.proposer.rng import event_stream
from ptylib.ici.runroot.layout import LEDGER_NAME, STATE_NAME, event_dir
from ptylib.ici.runroot.ledger import format_ledger, read_ledger
from ptylib.ici.runroot.sidecar import read_state
from ptylib.io.lock import LOCK_NAME

Trial = tuple[float, float, float | None]
STREAM = event_stream(EventKey("/x.h5", 0), 1, 1337, "test")


def history(trials: Sequence[Trial], reasons: list[str] | None = None, *, name: str = "/data/a.h5",
            event: int = 0) -> EventHistory:
    """An event from (x_mm, y_mm, wrmsd or None) trials; ``reasons[i]`` is row i's proposal reason."""
    built = EventHistory.from_trials(EventKey(name, event), trials)
    for row, reason in zip(built.rows, reasons or []):
        row.proposal = Proposal(0.0, 0.0, reason)
    return built


def spread(wrmsds: list[float | None]) -> list[Trial]:
    """Trials 10 um apart along x with the given wRMSDs."""
    return [(0.01 * i, 0.0, w) for i, w in enumerate(wrmsds)]


def no_dxdy(key: EventKey, run_n: int) -> tuple[None, None, str]:
    return None, None, "dxdy_missing_file"


def propose(h: EventHistory, options: ProposerOptions | None = None, lookup: DxdyLookup = no_dxdy) -> Proposal:
    return propose_event(h, options or ProposerOptions(policy="hillmap"), dxdy_lookup=lookup, rng=STREAM)


# ----------------------------------------------------------------------------- DONE rules

DEFAULT = ProposerOptions(policy="hillmap")
# Isolate the dx/dy rule from the wRMSD-sequence rules.
DXDY_ONLY = ProposerOptions(policy="hillmap", stability_N=50, noimprove_N=50)


@pytest.mark.parametrize(
    ("wrmsds", "expected"),
    [
        ([1.0, 1.2, None, None, None, None, None], "done_streak"),
        ([1.0, 1.2, None, math.inf, None, math.inf, None], "done_streak"),  # inf is a failure
        ([1.0, 1.2, None, None, None, None], None),  # streak 4 < 5
        ([1.0, None, None, None, None, None, None], None),  # 1 success < 2
        ([1.0, 1.04, 0.97], "done_stable"),  # rel. std 0.029 <= 0.05
        ([1.0, 1.12, 0.90], None),  # rel. std 0.09; best improved by 10 %
        ([1.0, 1.5, 0.99], "done_noimprove"),  # last 2 improve the best by 1 % <= 2 %
        ([1.0, 1.5, 0.97], None),  # 3 % > 2 %
        ([1.0, None, 1.5, None, 0.99], "done_noimprove"),  # counts successful runs only
        ([1.0, 1.5], None),  # too few successes for either rule
    ],
)
def test_wrmsd_sequence_rules(wrmsds: list[float | None], expected: str | None) -> None:
    assert done_reason(history(spread(wrmsds)).rows, DEFAULT) == expected


def dxdy_history(offsets_um: list[float], wrmsds: list[float], *, step2: bool = True) -> EventHistory:
    """A first Step-1 run far away, then runs at x = offsets (um) reached by dx/dy steps."""
    trials = [(0.03, 0.0, 2.0)] + [(o * 1e-3, 0.0, w) for o, w in zip(offsets_um, wrmsds)]
    reasons = ["dxdy_damped" if step2 else "step1_hillmap_wrmsd_sample"] * len(trials)
    return history(trials, reasons)


@pytest.mark.parametrize(
    ("offsets_um", "wrmsds", "step2", "expected"),
    [
        ([0.0, 3.0, 5.0], [0.50, 0.52, 0.51], True, "done_converged_dxdy"),  # spread 5 um <= 0.1 R
        ([0.0, 3.0, 5.1], [0.50, 0.52, 0.51], True, None),  # recurring fails (5.1 um)
        ([0.0, 3.0, 5.0], [0.50, 0.60, 0.58], True, None),  # median 0.58 > 1.1 x best 0.5
        ([0.0, 3.0, 5.0], [0.50, 0.52, 0.51], False, None),  # not dx/dy steps
    ],
)
def test_converged_dxdy_needs_both_conditions(offsets_um: list[float], wrmsds: list[float], step2: bool,
                                              expected: str | None) -> None:
    assert done_reason(dxdy_history(offsets_um, wrmsds, step2=step2).rows, DXDY_ONLY) == expected


def test_converged_dxdy_needs_successful_steps() -> None:
    h = dxdy_history([0.0, 3.0, 5.0], [0.50, 0.52, 0.51])
    h.rows[-2].wrmsd = None
    assert done_reason(h.rows, DXDY_ONLY) is None


def test_done_event_stays_done() -> None:
    h = history(spread([1.0, None]))
    h.rows[-1].proposal = Proposal(None, None, "done_stable")
    assert propose(h) == Proposal(None, None, "done_stable")


def test_done_rule_gives_done_proposal() -> None:
    assert propose(history(spread([1.0, 1.04, 0.97]))) == Proposal(None, None, "done_stable")


# ----------------------------------------------------------------------------- switching

def test_never_indexed_explores_and_indexed_before_samples_weighted() -> None:
    assert propose(history(spread([None, None]))).reason == "step1_hillmap_explore"
    assert propose(history(spread([1.0, None]))).reason == "step1_hillmap_wrmsd_sample"
    none_step2 = ProposerOptions(policy="hillmap", step2_algorithm="none")
    assert propose(history(spread([None, 1.0])), none_step2).reason == "step1_hillmap_wrmsd_sample"


def test_step2_damped_update_is_exact() -> None:
    def lookup(key: EventKey, run_n: int) -> tuple[float, float, str]:
        return 2e-6 * 1e3, -3e-6 * 1e3, "dxdy_ok"

    h = history(spread([None, 1.0]))
    p = propose(h, lookup=lookup)
    assert p == Proposal(0.01 - 0.8 * (2e-6 * 1e3), 0.0 - 0.8 * (-3e-6 * 1e3), "dxdy_damped")


def test_dxdy_lookup_also_reads_suffixed_event_folders(tmp_path: Path) -> None:
    key = EventKey("/d/a.h5", 0)
    assert run_root_dxdy_lookup(tmp_path, {key: 3}, 1e3)(key, 1) == (None, None, "dxdy_missing_file")
    (tmp_path / "run_001" / "event_000003").mkdir(parents=True)  # the original's first folder, no file
    retry = tmp_path / "run_001" / "event_000003_retry"
    retry.mkdir()
    (retry / "per_frame_dx_dy.csv").write_text("dx,dy\n1e-6,-2e-6\n")
    dx, dy, reason = run_root_dxdy_lookup(tmp_path, {key: 3}, 1e3)(key, 1)  # listings are read once per lookup
    assert (dx, dy, reason) == (pytest.approx(1e-3), pytest.approx(-2e-3), "dxdy_ok")
    assert run_root_dxdy_lookup(tmp_path, {key: 4}, 1e3)(key, 1)[2] == "dxdy_missing_file"  # event_000004 differs


def test_missing_dxdy_falls_back_to_weighted_step1() -> None:
    p = propose(history(spread([None, 1.0])))
    assert p.reason == "step1_hillmap_wrmsd_sample_fallback_nodxdy"
    assert p.dx_mm is not None


def test_step2_point_too_close_to_a_tried_centre_falls_back() -> None:
    def tiny(key: EventKey, run_n: int) -> tuple[float, float, str]:
        return 1e-4, 0.0, "dxdy_ok"  # damped step 0.08 um < 0.5 um spacing

    assert propose(history(spread([None, 1.0])), lookup=tiny).reason == "step1_hillmap_wrmsd_sample_fallback_dxdy_spacing"


# ----------------------------------------------------------------------------- Step-2 files

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (None, "dxdy_missing_file"),
        ("", "dxdy_empty"),
        ("frame,dx,dy\n", "dxdy_empty"),
        ("frame,dx\n0,1e-6\n", "dxdy_missing_columns"),
        ("frame,dx,dy\n0,1e-6,nan\n", "dxdy_non_finite"),
        ("frame,dx,dy\n0,1e-6,inf\n", "dxdy_non_finite"),
        ("frame,dx,dy\n0,1e-6,abc\n", "dxdy_non_numeric"),
        ("frame,dx,dy\n0,1e-6,2e-6\n1,3e-6\n", "dxdy_missing_columns"),
    ],
)
def test_step2_strict_contract(tmp_path: Path, text: str | None, reason: str) -> None:
    path = tmp_path / "per_frame_dx_dy.csv"
    if text is not None:
        write(path, text)
    assert read_dxdy(path, 1e3) == (None, None, reason)


def test_step2_reads_last_row_in_mm(tmp_path: Path) -> None:
    path = write(tmp_path / "per_frame_dx_dy.csv", "frame,dx,dy\n0,9e-6,9e-6\n1, 2e-6 ,-3e-6\n\n")
    assert read_dxdy(path, 1e3) == (2e-6 * 1e3, -3e-6 * 1e3, "dxdy_ok")


def test_step2_uses_the_latest_successful_runs_file(tmp_path: Path) -> None:
    h = history([(0.0, 0.0, 1.0), (0.02, 0.0, None), (0.01, 0.01, 0.9)])
    write(event_dir(tmp_path, 0, 3) / "per_frame_dx_dy.csv", "dx,dy\n1e-5,1e-5\n")
    write(event_dir(tmp_path, 2, 3) / "per_frame_dx_dy.csv", "dx,dy\n-4e-6,5e-6\n")
    lookup = make_dxdy_lookup(lambda key, run_n: event_dir(tmp_path, run_n, 3), 1e3)
    assert propose(h, lookup=lookup) == Proposal(0.01 - 0.8 * (-4e-6 * 1e3), 0.01 - 0.8 * (5e-6 * 1e3), "dxdy_damped")
    mapping = {(h.key, 2): event_dir(tmp_path, 2, 3)}
    assert propose(h, lookup=make_dxdy_lookup(mapping, 1e3)).reason == "dxdy_damped"
    assert propose(h, lookup=make_dxdy_lookup({}, 1e3)).reason.endswith("_fallback_nodxdy")


# ----------------------------------------------------------------------------- many events

def mixed_histories(n: int, seed: int = 0) -> dict[EventKey, EventHistory]:
    rng = random.Random(seed)
    out = {}
    for event in range(n):
        trials = [(rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), rng.choice([None, math.inf, rng.uniform(0.3, 2)]))
                  for _ in range(rng.randint(1, 8))]
        h = history(trials, ["step1_hillmap_wrmsd_sample"] * (len(trials) - 1), name=f"/d/f{event % 3}.h5", event=event)
        out[h.key] = h
    return out


def test_same_proposals_for_shuffled_event_order(tmp_path: Path) -> None:
    histories = mixed_histories(120)
    indices = {key: i for i, key in enumerate(histories)}
    for key in list(histories)[::4]:  # some events have Step-2 files
        last = histories[key].rows[-1]
        write(event_dir(tmp_path, last.run_n, indices[key]) / "per_frame_dx_dy.csv", "dx,dy\n3e-6,-2e-6\n")
    reference = propose_events(histories, DEFAULT, tmp_path)
    keys = list(histories)
    random.Random(5).shuffle(keys)
    shuffled = propose_events({k: histories[k] for k in keys}, DEFAULT, tmp_path, event_indices=indices)
    assert shuffled == reference
    assert list(shuffled) == keys
    assert any(p.reason == "dxdy_damped" for p in reference.values())


def test_same_knobs_same_proposals_new_knobs_new_proposals(tmp_path: Path) -> None:
    histories = mixed_histories(60)
    first = propose_events(histories, DEFAULT, tmp_path)
    assert propose_events(histories, ProposerOptions(policy="hillmap"), tmp_path) == first
    moving = [k for k, p in first.items() if p.reason.startswith("step1")]
    for other in (ProposerOptions(policy="hillmap", seed=1338), ProposerOptions(policy="hillmap", beta=9.0)):
        again = propose_events(histories, other, tmp_path)
        assert all(again[k] != first[k] for k in moving)


# ----------------------------------------------------------------------------- run root

def seed_run_root(root: Path, n: int = 30) -> None:
    histories = mixed_histories(n, seed=3)
    for h in histories.values():
        h.rows[-1].proposal = None
    root.mkdir(parents=True, exist_ok=True)
    (root / LEDGER_NAME).write_text(format_ledger(histories))


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file's bytes but the run root's lock file (propose takes the lock, which creates it)."""
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.is_file() and p.name != LOCK_NAME}


def test_propose_run_root_is_idempotent_and_reacts_to_new_knobs(tmp_path: Path) -> None:
    seed_run_root(tmp_path)
    outcome = propose_run_root(tmp_path, DEFAULT)
    assert outcome.n_changed == outcome.n_events == 30
    first = snapshot(tmp_path)
    ledger = read_ledger(tmp_path / LEDGER_NAME)
    assert all(h.rows[-1].proposal is not None for h in ledger.values())
    state = read_state(tmp_path / STATE_NAME)
    assert all(len(s.proposal_history) == 1 for s in state.events.values())

    again = propose_run_root(tmp_path, DEFAULT)
    assert again.n_changed == 0 and snapshot(tmp_path) == first
    assert again.counts_by_reason == outcome.counts_by_reason

    changed = propose_run_root(tmp_path, ProposerOptions(policy="hillmap", seed=7))
    done = sum(h.is_done for h in ledger.values())
    assert changed.n_changed == 30 - done > 0
    assert done == changed.n_done
    state = read_state(tmp_path / STATE_NAME)
    assert sum(len(s.proposal_history) for s in state.events.values()) == 30 + changed.n_changed


def test_propose_run_root_changes_nothing_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_run_root(tmp_path)
    before = snapshot(tmp_path)

    def broken(*args: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(propose_run_module, "format_ledger_and_state", broken)
    with pytest.raises(OSError):
        propose_run_root(tmp_path, DEFAULT)
    assert snapshot(tmp_path) == before


def test_propose_run_root_without_ledger_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(IciInputError, match=LEDGER_NAME):
        propose_run_root(tmp_path, DEFAULT)
