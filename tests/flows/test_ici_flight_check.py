"""The scheduled ICI flight check: a fresh run root each time, the newest kept, a failed run on bad figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptylib.ici.report.flight_check import FlightCheckFailed, FlightCheckOptions

pytestmark = [pytest.mark.prefect_test, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_flight_check_runs_fresh_keeps_the_newest_and_fails_on_a_missed_threshold(tmp_path: Path) -> None:
    from flows.ici_flight_check import ici_flight_check

    quick = FlightCheckOptions(indexer="standin", max_iterations=2, keep_runs=1)
    first = ici_flight_check(parent=str(tmp_path), check=quick)
    second = ici_flight_check(parent=str(tmp_path), check=quick)
    assert first["run_root"] != second["run_root"] and second["removed"] == [first["run_root"]]
    result = json.loads((Path(second["run_root"]) / "flight_check.json").read_text())
    assert result["passed"] and result["figures"]["runs"] == 2  # the loop really ran, not a finished root
    assert [r["figure"] for r in second["checks"]][:2] == ["final_ever_indexed_rate", "median_centre_error_mm"]

    strict = quick.model_copy(update={"max_centre_error_mm": 1e-6})
    state = ici_flight_check(parent=str(tmp_path), check=strict, return_state=True)
    assert state.is_failed() and "median_centre_error_mm" in state.message and "needs <= 1e-06" in state.message
    with pytest.raises(FlightCheckFailed, match="ICI flight check in .* missed"):
        state.result()
    roots = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(roots) == 1 and not json.loads((roots[0] / "flight_check.json").read_text())["passed"]
