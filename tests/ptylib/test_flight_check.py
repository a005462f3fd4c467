"""Fresh, pruned run roots and the ICI flight check's thresholds (no Prefect)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ptylib.ici.report.flight_check import (
    FlightCheckOptions,
    failure_message,
    threshold_rows,
)
from ptylib.io.run_roots import new_run_root, prune_run_roots

HOLD_LOCK = """
import sys, time
from ptylib.io.lock import RunRootLock
with RunRootLock(sys.argv[1], owner="a flight check still running"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_each_run_root_is_new_and_only_the_newest_unlocked_ones_are_pruned(tmp_path: Path) -> None:
    roots = [new_run_root(tmp_path) for _ in range(4)]
    assert len(set(roots)) == 4 and all(re.fullmatch(r"\d{8}T\d{6}Z(-\d+)?", r.name) for r in roots)
    (tmp_path / "notes").mkdir()  # not a run root: never pruned
    for root in roots:
        (root / "ledger.csv").write_text("x\n")
    # The lock is re-entrant within a process, so the running check is another process.
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(roots[1])], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        removed = prune_run_roots(tmp_path, keep=2)
    finally:
        holder.kill()
        holder.wait()
    assert removed == [roots[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([roots[1].name, roots[2].name, roots[3].name, "notes"])
    assert prune_run_roots(tmp_path, keep=2) == [roots[1]]  # its lock is free now
    with pytest.raises(ValueError, match="keep must be at least 1"):
        prune_run_roots(tmp_path, keep=0)


def test_thresholds_fail_on_low_rate_large_error_or_missing_figures() -> None:
    options = FlightCheckOptions(min_index_rate=0.75, max_centre_error_mm=0.02)
    good = {"final_ever_indexed_rate": 1.0, "median_centre_error_mm": 0.005}
    rows = threshold_rows(good, options)
    assert [r["figure"] for r in rows] == ["final_ever_indexed_rate", "median_centre_error_mm"]
    assert all(r["passed"] for r in rows) and failure_message(rows, "root") is None
    bad = threshold_rows({"final_ever_indexed_rate": 0.5, "median_centre_error_mm": 0.005,
                          "median_refined_centre_error_mm": 0.03}, options)
    assert [r["passed"] for r in bad] == [False, True, False]
    assert failure_message(bad, "runs/x") == ("ICI flight check in runs/x missed: final_ever_indexed_rate = 0.5 "
                                              "(needs >= 0.75); median_refined_centre_error_mm = 0.03 (needs <= 0.02)")
    no_truth = threshold_rows({"final_ever_indexed_rate": 1.0}, options)  # no centre error: cannot pass
    assert not no_truth[1]["passed"] and math.isnan(no_truth[1]["value"])
