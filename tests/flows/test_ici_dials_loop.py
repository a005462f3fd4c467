"""The ICI loop flow with the real DIALS backend: two iterations on four rendered stills."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from ptylib.ici.backends import BackendName, DialsOptions
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.report.final import best_centres
from ptylib.ici.runroot.layout import LEDGER_NAME
from ptylib.ici.runroot.ledger import read_ledger

pytestmark = [
    pytest.mark.prefect_test, pytest.mark.slow, pytest.mark.dials, pytest.mark.usefixtures("prefect_harness"),
]  # without DIALS: skipped, or failed under PTYFLOWS_REQUIRE_DIALS=1 (tests/conftest.py)


@pytest.mark.parametrize("mode", ["refine", "fixed"])
def test_two_iterations_on_four_stills(tmp_path: Path, mode: str) -> None:
    from flows.ici_loop import ici_loop
    from ptylib.ici.synthetic.dials_dataset import make_dials_dataset

    data = make_dials_dataset(tmp_path / "data", events=4, seed=3)
    root = tmp_path / "run"
    report = ici_loop(run_root=str(root), inputs=[str(data.h5_path)], backend=BackendName.DIALS,
                      dials=DialsOptions(**data.dials_options, mode=mode), proposer=ProposerOptions(),
                      max_iterations=2, workers=2)

    histories = read_ledger(root / LEDGER_NAME)
    assert len(histories) == 4
    runs = {row.run_n for h in histories.values() for row in h.rows}
    assert runs == {0, 1} or (runs == {0} and all(h.is_done for h in histories.values()))
    for run_n in sorted(runs):
        run_dir = root / f"run_{run_n:03d}"
        assert (run_dir / f"chunk_metrics_{run_n:03d}.csv").is_file()
        assert (run_dir / f"stream_{run_n:03d}.stream").stat().st_size > 0
        assert not (run_dir / "missing_event_parts.txt").exists()
    # Every true offset lies within 0.05 mm of the first centre, where DIALS indexes these stills.
    assert all(h.rows[0].succeeded for h in histories.values())
    best = best_centres(histories)
    errors = [math.dist(best[k], data.true_shift_mm[k.event]) for k in histories]
    assert report["figures"]["median_centre_error_mm"] == pytest.approx(statistics.median(errors))
    if mode == "refine" and 1 in runs:
        # Run 1 indexes at the centre refined in run 0. (The best-wRMSD centre is no measure here:
        # after detector refinement the wRMSD hardly depends on the supplied centre.)
        second = [math.dist(next((r.det_shift_x_mm, r.det_shift_y_mm) for r in h.rows if r.run_n == 1),
                            data.true_shift_mm[k.event]) for k, h in histories.items() if len(h.rows) > 1]
        assert statistics.median(second) < 0.015 and max(second) < 0.04, second
    assert (root / "report.md").is_file()
