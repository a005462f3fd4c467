"""Sim-lines debug flows end to end under the Prefect test harness, with real TensorFlow PINN training.

Scenarios run at reduced sizes (N = 32 patches, fewer images and epochs) so the file stays near two minutes
on two CPU cores; the built-ins' full sizes are documented in docs/sim_lines_debug.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.prefect_test]

REDUCED = {"patch_size_px": 32, "scan_step_px": 4}
PROFILES = {"gs1_ideal": REDUCED | {"n_images": 400, "n_groups": 200, "batch_size": 16, "epochs": 15},
            "gs2_ideal": REDUCED | {"n_images": 256, "n_groups": 128, "batch_size": 8, "epochs": 40}}


@pytest.mark.parametrize("name", ["gs1_ideal", "gs2_ideal"])
def test_ideal_scenarios_pass_their_checks(prefect_harness: None, tmp_path, name: str) -> None:
    from flows.sim_lines_debug import sim_lines_debug
    from ptylib.ptycho.diagnostics.scenario import builtin_scenario

    options = builtin_scenario(name, **PROFILES[name])
    report = sim_lines_debug(scenario=name, out_dir=str(tmp_path), options=options)
    out = tmp_path / name
    stored = json.loads((out / "report.json").read_text())
    assert stored["passed"] is report["passed"] is True, stored["checks"]
    assert {c["name"] for c in stored["checks"]} >= {"no NaN in training", "canvas fits every patch"}
    reassembly = json.loads((out / "reassembly.json").read_text())
    assert reassembly["fits_canvas"] and reassembly["lost_energy_fraction"] == 0.0
    history = json.loads((out / "training_history.json").read_text())
    assert history["nan"] is None and len(history["history"]) == options.epochs
    amplitude = np.load(out / "amplitude.npy")
    assert amplitude.shape == tuple(json.loads((out / "inference.json").read_text())["shape"])
    assert np.isfinite(amplitude).all() and amplitude.std() > 0
    metadata = json.loads((out / "run_metadata.json").read_text())
    assert metadata["scenario"]["gridsize"] == options.gridsize and "report.md" in metadata["files"]
    assert "![truth / reconstruction / difference](comparison.png)" in (out / "report.md").read_text()


def test_diverging_run_names_its_first_nan_epoch() -> None:
    """One corrupted detector pixel near float32's maximum makes the Poisson loss overflow in the first epoch:
    the real PINN training stops and the history names the epoch and the tensor."""
    from ptylib.ptycho.diagnostics.data import simulate_split_group
    from ptylib.ptycho.diagnostics.report import scenario_checks
    from ptylib.ptycho.diagnostics.scenario import builtin_scenario
    from ptylib.ptycho.diagnostics.training import train_scenario

    options = builtin_scenario("gs1_ideal", **REDUCED, n_images=256, n_groups=48)
    train = dict(simulate_split_group(options).train)
    diffraction = train["diffraction"].copy()
    diffraction[0, 16, 16] = 3e38
    train["diffraction"] = diffraction
    seen: list[int] = []
    result, record = train_scenario(train, 1, epochs=3, batch_size=8, learning_rate=3e-3, seed=1,
                                    on_epoch=lambda epoch, loss: seen.append(epoch))
    assert result is None and seen == [] and record["history"] == []
    assert record["nan"]["epoch"] == 1 and "non-finite" in record["nan"]["message"]
    assert record["nan"]["tensor"] in record["nan"]["message"] and record["nan"]["tensor"] != "unknown"
    checks = scenario_checks(record, None, None, None, min_pearson=0.2, bias_tolerance=0.25)
    assert checks[0]["value"] == f"epoch 1: {record['nan']['tensor']}" and not any(c["passed"] for c in checks)
