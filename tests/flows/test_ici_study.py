"""The ICI convergence study flow on the stand-in indexer (real Prefect, real files)."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import pytest

from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.ici.runroot.ledger import read_ledger
from ptylib.ici.synthetic.dataset import read_truth

pytestmark = [pytest.mark.prefect_test, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_study_compares_strategies_on_the_same_events(tmp_path: Path) -> None:
    from flows.ici_study import ici_study

    root = tmp_path / "study"
    result = ici_study(run_root=str(root), n_events=6, data_seed=11, modes=("fixed", "refine"),
                       strategies=("model", "spiral"), indexer="standin",
                       proposer=ProposerOptions(baseline_runs=3), max_iterations=6)

    rows = {(r["mode"], r["strategy"]): r for r in result["figures"]}
    assert set(rows) == {("fixed", "model"), ("fixed", "spiral"), ("refine", "model"), ("refine", "spiral")}
    truth = read_truth(root / "data" / "synthetic.h5").true_offset_mm
    start_error = statistics.median(math.hypot(x, y) for x, y in truth)  # every event starts at (0, 0)
    with open(root / "study_curves.csv", newline="") as handle:
        curves = list(csv.DictReader(handle))
    for (mode, strategy), row in rows.items():
        histories = read_ledger(root / mode / strategy / LEDGER_NAME)
        assert len(histories) == 6 and row["events"] == 6
        assert row["runs / event"] == pytest.approx(statistics.mean(len(h.rows) for h in histories.values()))
        first = [c for c in curves if c["mode"] == mode and c["strategy"] == strategy and c["runs"] == "1"]
        assert float(first[0]["median_error_mm"]) == pytest.approx(start_error)
        reasons = {r.proposal.reason for h in histories.values() for r in h.rows if r.proposal}
        if strategy == "spiral":  # a fixed budget: three runs, then DONE
            assert row["runs / event"] == 3 and row["DONE"] == 1.0
            assert reasons == {"spiral_point", "done_budget"}
        else:
            assert any(reason.startswith("model_") for reason in reasons)
    # Without refinement only the model homes in; with it, every strategy's combined refined centre is close.
    assert rows["fixed", "model"]["median error (mm)"] < 0.5 * rows["fixed", "spiral"]["median error (mm)"]
    assert rows["fixed", "model"]["median error (mm)"] < 0.01
    assert math.isnan(rows["fixed", "model"]["refined centre: median (mm)"])
    for strategy in ("model", "spiral"):
        assert rows["refine", strategy]["refined centre: median (mm)"] < 0.008
    text = (root / "study.md").read_text()
    assert "| refine | spiral |" in text and (root / "study.png").stat().st_size > 10_000
    assert result["report"] == str(root / "study.md")


def test_study_rejects_unknown_strategies(tmp_path: Path) -> None:
    from flows.ici_study import ici_study

    with pytest.raises(ValueError, match="strategies among model, hillmap, spiral, random"):
        ici_study(run_root=str(tmp_path), strategies=("model", "grid"), indexer="standin")
    assert not (tmp_path / "data").exists()
