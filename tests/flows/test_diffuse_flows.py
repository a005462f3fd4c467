"""The diffuse flows under a real Prefect API: the demo on the default synthetic set (accuracy targets), resume,
the visual check on its outputs, and one-line CLI errors before any flow starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.cli import main

pytestmark = [pytest.mark.prefect_test]

SEED_PLOTS = ("grid_visualization_conceptual.png", "voxel_occupancy_slice_L0.png", "voxel_occupancy_histogram.png",
              "scaling_model_params.png", "scaling_residuals.png", "merged_intensity_slice_L0.png",
              "merged_sigma_slice_K0.png", "merged_isigi_slice_H0.png", "merged_radial_avg.png",
              "merged_intensity_histogram.png", "grid_summary.txt", "phase3_diagnostics_summary.txt")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    from flows.diffuse_demo import diffuse_demo

    out = tmp_path_factory.mktemp("diffuse_demo")
    diffuse_demo(str(out))
    return out


@pytest.mark.slow
def test_demo_meets_the_accuracy_targets(demo_run: Path) -> None:
    from flows.diffuse_demo import TARGETS

    figures = json.loads((demo_run / "accuracy.json").read_text())
    assert set(figures) >= {"scale_pearson", "map_pearson", "bragg_flux_removed", "n_voxels_compared"}
    for key, target in TARGETS.items():
        assert figures[key] >= target, (key, figures[key])
    assert figures["n_voxels_compared"] > 5000
    diagnostics = demo_run / "run" / "phase3_diagnostics"
    for name in SEED_PLOTS:
        assert (diagnostics / name).stat().st_size > 0, name
    summary = (diagnostics / "phase3_diagnostics_summary.txt").read_text()
    assert "redundancy_median" in summary and "HKL bounds" in summary
    params = json.loads((demo_run / "run" / "phase3" / "refined_scaling_model_params.json").read_text())
    assert len(params["b_i"]) == 24 and params["residuals"]["n"] > 0


@pytest.mark.slow
def test_rerun_resumes_and_check_cli_runs_on_outputs(demo_run: Path, tmp_path: Path) -> None:
    from flows.diffuse_phase3 import diffuse_phase3

    run = demo_run / "run"
    merged = run / "phase3" / "voxel_data_relative.npz"
    before = merged.stat().st_mtime_ns
    cbfs = sorted(str(p) for p in (demo_run / "data" / "cbf").glob("*.cbf"))
    expts = sorted(str(p) for p in (demo_run / "data" / "expt").glob("*.expt"))
    diffuse_phase3(cbfs, str(demo_run), expts, run_name="run", visual_check=False)
    assert merged.stat().st_mtime_ns == before  # nothing recomputed
    code = main(["diffuse", "check", "--grid-definition-file", str(run / "phase3" / "global_voxel_grid_definition.json"),
                 "--scaling-model-params-file", str(run / "phase3" / "refined_scaling_model_params.json"),
                 "--voxel-data-file", str(run / "phase3" / "voxel_data_relative.hdf5"),
                 "--output-dir", str(tmp_path / "check")])
    assert code == 0
    assert (tmp_path / "check" / "merged_radial_avg.png").is_file()


def test_cli_bad_inputs_fail_with_one_line_before_any_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.cbf"
    broken.write_bytes(b"not a cbf")
    cases = [
        (["diffuse", "run", "--cbf-image-paths", str(broken), "--output-base-dir", str(tmp_path),
          "--unit-cell", "36,42,48,90,90,90", "--space-group", "P222"], "broken.cbf"),
        (["diffuse", "run", "--cbf-image-paths", str(broken), "--output-base-dir", str(tmp_path),
          "--grid-config-json", '{"ndiv_h": 0}'], "--grid-config-json"),
        (["diffuse", "run", "--cbf-image-paths", str(broken), "--output-base-dir", str(tmp_path),
          "--grid-config-json", '{"d_min_target": 0}'], "d_min_target"),
        (["diffuse", "check", "--grid-definition-file", str(tmp_path / "nope.json"), "--scaling-model-params-file",
          "x.json", "--voxel-data-file", "v.npz", "--output-dir", str(tmp_path / "o")], "nope.json"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
