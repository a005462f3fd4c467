"""Benchmark of the ICI proposer: proposal time, peak memory and a whole ``ici propose`` process.

Run ``python bench/ici.py`` (``--dials``: also the DIALS backend's time per still and the share of
an iteration spent outside DIALS, from :mod:`bench.ici_dials`, on 4 rendered stills; needs Debian's
``dials``). Prints a Markdown report and puts it in ``bench/RESULTS.md`` under ``## ICI proposer``
(replacing an older section of that name). The reference is a naive Step-1 hillmap with a Python
loop over candidates, timed in the same run on a few events.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: make the bench package importable

from bench.results import machine_line, measurement_report, store_section  # noqa: E402
from ptylib.ici.model import EventHistory, EventKey, LedgerRow, Proposal
from ptylib.ici.proposer.hillmap import Step1Batch, trial_amplitudes
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.proposer.policy import propose_events, propose_many
from ptylib.ici.proposer.propose import propose_run_root
from ptylib.ici.proposer.rng import event_stream, uniforms
from ptylib.ici.runroot.layout import DXDY_NAME, LEDGER_NAME, event_dir
from ptylib.ici.runroot.ledger import format_ledger, read_ledger
from ptylib.ici.runroot.sidecar import format_ledger_and_state

HEADING = "## ICI proposer"
OPTIONS = ProposerOptions(policy="hillmap")  # the Step-1 hillmap is what the naive reference loop reproduces


def synthetic_histories(n_events: int, n_trials: int, seed: int = 0) -> dict[EventKey, EventHistory]:
    """Ledger-like histories: 40 % blank events never index; the others index near a hidden centre.

    Shifts are uniform in the 0.05 mm disk around the first centre; a run indexes with probability
    ``0.9 exp(-(d / 0.02 mm)^2)`` (``d`` = distance to the hidden centre) and then has
    ``wRMSD = 0.3 + 20 d`` px with 5 % noise. Earlier rows carry a Step-1 proposal, the last none.
    """
    rng = np.random.default_rng(seed)
    first = rng.normal(0.0, 0.01, (n_events, 2))
    truth = first + rng.normal(0.0, 0.015, (n_events, 2))
    radius = OPTIONS.radius_mm * np.sqrt(rng.random((n_events, n_trials)))
    angle = 2 * np.pi * rng.random((n_events, n_trials))
    xy = first[:, None, :] + np.stack((radius * np.cos(angle), radius * np.sin(angle)), axis=-1)
    xy[:, 0] = first
    distance = np.hypot(*(xy - truth[:, None, :]).transpose(2, 0, 1))
    blank = rng.random(n_events) < 0.4
    indexed = (rng.random((n_events, n_trials)) < 0.9 * np.exp(-((distance / 0.02) ** 2))) & ~blank[:, None]
    wrmsd = (0.3 + 20 * distance) * (1 + 0.05 * rng.standard_normal((n_events, n_trials)))
    xs, ys, ok, wr = xy[..., 0].tolist(), xy[..., 1].tolist(), indexed.tolist(), wrmsd.tolist()
    step1 = Proposal(0.0, 0.0, "step1_hillmap_wrmsd_sample")
    histories = {}
    for e in range(n_events):
        key = EventKey(f"/data/serial/run_{e % 17:03d}.h5", e)
        rows, ever = [], False
        for k in range(n_trials):
            ever = ever or ok[e][k]
            rows.append(LedgerRow(k, xs[e][k], ys[e][k], ever, wr[e][k] if ok[e][k] else None,
                                  step1 if k < n_trials - 1 else None))
        histories[key] = EventHistory(key, rows)
    return histories


def never_indexed_chains(n_events: int, n_runs: int) -> dict[EventKey, EventHistory]:
    """Histories made by the proposer itself for events that never index (the floor-dominated regime)."""
    histories = {EventKey("/data/blank.h5", e): EventHistory(EventKey("/data/blank.h5", e),
                                                             [LedgerRow(0, 0.0, 0.0, False, None)])
                 for e in range(n_events)}
    for _ in range(n_runs - 1):
        proposals = propose_many(histories.values(), OPTIONS, lambda key, run_n: (None, None, "none"))
        for key, proposal in proposals.items():
            rows = histories[key].rows
            rows[-1].proposal = proposal
            if proposal.dx_mm is not None and proposal.dy_mm is not None:
                rows.append(LedgerRow(rows[-1].run_n + 1, proposal.dx_mm, proposal.dy_mm, False, None))
    for history in histories.values():
        history.rows[-1].proposal = None
    return histories


def naive_step1(history: EventHistory, options: ProposerOptions) -> tuple[float, float]:
    """Reference: the seed's Step-1 hillmap with a Python loop over candidates (same formulas)."""
    rows = history.rows
    xy = np.array([(r.det_shift_x_mm, r.det_shift_y_mm) for r in rows])
    wr = np.array([r.wrmsd if r.succeeded else math.nan for r in rows])
    amplitudes, _ = trial_amplitudes(Step1Batch(xy, wr, np.array([len(rows)]), np.zeros((1, 2), np.uint64)), options)
    stream = event_stream(history.key, rows[-1].run_n + 1, options.seed, options.digest())
    index = np.arange(options.step1_candidates)[None, :]
    u = uniforms(np.array([stream.candidate_key], np.uint64), 2 * index)[0].tolist()
    v = uniforms(np.array([stream.candidate_key], np.uint64), 2 * index + 1)[0].tolist()
    sigma2 = (options.radius_mm / 2) ** 2
    x0, y0 = xy[0]
    candidates, weights = [], []
    for j in range(options.step1_candidates):
        radius, angle = options.radius_mm * math.sqrt(u[j]), 2 * math.pi * v[j]
        cx, cy = x0 + radius * math.cos(angle), y0 + radius * math.sin(angle)
        field, ok = 0.0, True
        for (px, py), a in zip(xy.tolist(), amplitudes.tolist()):
            d2 = (cx - px) ** 2 + (cy - py) ** 2
            ok = ok and d2 >= options.min_spacing_mm**2
            field += a * math.exp(-d2 / (2 * sigma2))
        candidates.append((cx, cy))
        weights.append((max(field, 0.0) + options.step1_explore_floor) if ok else 0.0)
    pick = np.random.default_rng(stream.select_key).random() * sum(weights)
    total = 0.0
    for candidate, weight in zip(candidates, weights):
        total += weight
        if total > pick:
            return candidate
    return candidates[-1]


def timed(function: Callable[..., Any], *args: Any, repeat: int = 1) -> tuple[float, Any]:
    """Best wall time (s) of ``repeat`` calls and the last result."""
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_traced_mb(function: Callable[..., Any], *args: Any) -> float:
    """Peak Python + numpy heap (MB) traced while ``function(*args)`` runs."""
    tracemalloc.start()
    function(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def write_root(root: Path, histories: dict[EventKey, EventHistory], dxdy_fraction: float = 0.0) -> None:
    """A run root with the ledger (no sidecar) and Step-2 files for a fraction of the indexed events."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / LEDGER_NAME).write_text(format_ledger(histories))
    rng = np.random.default_rng(1)
    for index, history in enumerate(histories.values()):
        last = history.rows[-1]
        if last.succeeded and rng.random() < dxdy_fraction:
            path = event_dir(root, last.run_n, index) / DXDY_NAME
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"dx,dy\n{rng.normal(0, 5e-6)!r},{rng.normal(0, 5e-6)!r}\n")


def dials_rows(work: Path) -> list[tuple[str, str, str]]:
    """The DIALS backend's time per still and loop overhead (:mod:`bench.ici_dials`) on 4 rendered stills."""
    from bench.ici_dials import loop_overhead, time_per_still
    from ptylib.ici.synthetic.dials_dataset import make_dials_dataset

    if shutil.which("dials.import") is None:
        sys.exit("--dials: DIALS is not installed: apt-get install -y dials (as root)")
    data = make_dials_dataset(Path(tempfile.gettempdir()) / "ptyflows-bench-dials-data", events=4)
    return time_per_still(data, work / "dials", 4) + loop_overhead(data, work / "dials")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dials", action="store_true", help="also time the DIALS backend (needs dials)")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    header = machine_line()
    work = Path(tempfile.mkdtemp(prefix="ici-bench-"))
    try:
        # Reference vs vectorised Step-1 on the same events (per-event time).
        sample = list(synthetic_histories(8, 10, seed=9).values())
        naive_s, _ = timed(lambda: [naive_step1(h, OPTIONS) for h in sample])
        naive_per_event = naive_s / len(sample)

        for n_events, target in ((1_000, 1.0), (100_000, 60.0)):
            histories = synthetic_histories(n_events, 10)
            seconds, proposals = timed(propose_events, histories, OPTIONS, work, repeat=3 if n_events < 10_000 else 1)
            reasons = Counter(p.reason.split("_fallback")[0] for p in proposals.values())
            per_event = seconds / n_events
            rows.append((f"`propose_events`, {n_events:,} events x 10 trials (target < {target:g} s)",
                         f"{seconds:.2f} s ({per_event * 1e6:.0f} us/event)",
                         f"{naive_per_event / per_event:,.0f}x faster than the naive loop per event"))
            peak_mb = peak_traced_mb(propose_events, histories, OPTIONS, work)
            rows.append((f"peak traced memory, {n_events:,} x 10", f"{peak_mb:.0f} MB",
                         "tracemalloc (Python objects + numpy buffers) during `propose_events`"))
            root = work / f"root_{n_events}"
            write_root(root, histories, dxdy_fraction=0.8 if n_events < 10_000 else 0.0)
            del histories, proposals
            parse_s, parsed = timed(read_ledger, root / LEDGER_NAME)
            format_s, _ = timed(format_ledger_and_state, parsed, None)
            del parsed
            seconds_io, outcome = timed(propose_run_root, root, OPTIONS)
            step2_note = " (80 % of indexed events with Step-2 files)" if n_events < 10_000 else ""
            note = (f"{outcome.n_changed:,} proposals written; of this, parsing the ledger takes ~{parse_s:.2f} s "
                    f"and formatting ledger + sidecar ~{format_s:.2f} s")
            rows.append((f"`propose_run_root` incl. reading + writing ledger and sidecar, {n_events:,} x 10{step2_note}",
                         f"{seconds_io:.2f} s", note))
            mix = ", ".join(f"{reason} {count / n_events:.0%}" for reason, count in reasons.most_common())
            rows.append((f"reasons, {n_events:,} x 10 (no Step-2 files)", mix, ""))

        chains = never_indexed_chains(1_000, 30)
        seconds, _ = timed(propose_events, chains, OPTIONS, work, repeat=3)
        rows.append(("`propose_events`, 1,000 never-indexed events x 30 proposer-made runs (weight ~ floor)",
                     f"{seconds:.2f} s ({seconds / 1_000 * 1e6:.0f} us/event)", "tight concave bound keeps rejection sampling"))

        # A whole ``ici propose`` process (interpreter start, imports, read, propose, write).
        root = work / "cli"
        histories = synthetic_histories(2_000, 8, seed=4)
        command = [sys.executable, "-m", "ptylib.ici.cli", "propose", "--run-root", str(root)]
        # As on a user's install: bytecode cached after the first call (this sandbox sets PYTHONDONTWRITEBYTECODE).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        runs = []
        for attempt in range(8):
            write_root(root, histories)
            start = time.perf_counter()
            subprocess.run(command, cwd=REPO, check=True, capture_output=True, env=env)
            if attempt:  # the first call writes the bytecode
                runs.append(time.perf_counter() - start)
        floor = []
        for _ in range(7):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import numpy"], check=True, env=env)
            floor.append(time.perf_counter() - start)
        rows.append(("process `python -m ptylib.ici.cli propose`, 2,000 events x 8 trials",
                     f"{statistics.median(runs):.2f} s (median of 7, fastest {min(runs):.2f} s)",
                     f"of which `python -c 'import numpy'` alone takes {statistics.median(floor):.2f} s"))
        rows.append(("reference: naive per-candidate Python loop, Step-1 of one event",
                     f"{naive_per_event * 1e3:.0f} ms/event", f"{len(sample)} events, 8192 candidates"))
        if args.dials:
            rows += dials_rows(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS of the whole benchmark process", f"{peak_rss:.0f} MB", "`getrusage`"))

    report = measurement_report(HEADING, header, rows)
    print(report)
    store_section(HEADING, report)


if __name__ == "__main__":
    main()
