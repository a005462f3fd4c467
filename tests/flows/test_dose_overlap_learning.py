"""Phases E (training), G (comparison) and H (summary) of the dose/overlap study on the smoke profile,
plus ``study infer``, the loss guardrail and bad-input errors. One smoke study A–H is shared by the tests."""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from ptylib.io.manifest import sha256_file

pytestmark = [pytest.mark.prefect_test, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SUMMARY_FIELDS = {"dose", "view", "method", "phase_ms_ssim", "amplitude_ms_ssim", "phase_mae", "amplitude_mae",
                  "psnr", "frc50_px"}


def _json(path: Path) -> object:
    return json.loads(path.read_text())


def _cli(*argv: str) -> int:
    from flows.study_cli import add_study_arguments

    parser = argparse.ArgumentParser()
    add_study_arguments(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["study", *argv])
    return args.handler(args)


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """A smoke study run end to end (phases A–H) through ``ptyflows study run``."""
    root = tmp_path_factory.mktemp("learning") / "study"
    assert _cli("run", "--profile", "smoke", "--run-dir", str(root)) == 0
    return root


def test_training_manifest_skip_summary_and_models(smoke_study: Path) -> None:
    manifest = _json(smoke_study / "phase_e" / "training_manifest.json")
    jobs = {j["job"]: j for j in manifest["jobs"]}
    assert set(jobs) == {f"dose_{d}/{n}" for d in (1000, 100000) for n in ("pinn_gs1", "pinn_gs2_dense", "baseline")}
    for job in jobs.values():
        assert not Path(job["dataset"]).is_absolute() and not Path(job["model_path"]).is_absolute()
        assert sha256_file(smoke_study / job["dataset"]) == job["dataset_sha256"]
        assert sha256_file(smoke_study / job["model_path"]) == job["model_sha256"]
        assert math.isfinite(job["final_loss"]) and job["final_loss"] < job["initial_loss"]
        assert job["seed"] == 789 and job["epochs"] == 3 and job["wall_seconds"] > 0
        history = _json(smoke_study / job["history_json"])
        assert [h["epoch"] for h in history] == [1, 2, 3] and history[-1]["loss"] == job["final_loss"]
        sidecar = _json(smoke_study / job["model_dir"] / "model.json")
        assert sidecar["gridsize"] == job["gridsize"] and sidecar["patch_size_px"] == 32
        assert sidecar["train_dataset_sha256"] == job["dataset_sha256"] and "tensorflow" in sidecar["versions"]
    assert jobs["dose_1000/pinn_gs2_dense"]["dataset"] == "phase_d/dose_1000/dense/dense_train.npz"
    skips = _json(smoke_study / "phase_e" / "skip_summary.json")
    assert skips["skipped_count"] == 2 and {s["job"] for s in skips["skipped_views"]} == {
        "dose_1000/pinn_gs2_sparse", "dose_100000/pinn_gs2_sparse"}
    assert all("fewer than min_groups" in s["reason"] for s in skips["skipped_views"])


def test_unchanged_jobs_are_not_retrained_and_filters_dry_run_guardrail(smoke_study: Path, tmp_path: Path) -> None:
    from flows.dose_overlap_learning import train_phase

    manifest_path = smoke_study / "phase_e" / "training_manifest.json"
    before = {j["job"]: j["model_sha256"] for j in _json(manifest_path)["jobs"]}
    model = smoke_study / "phase_e" / "dose_1000" / "baseline" / "model" / "model.keras"
    stamp = model.stat().st_mtime_ns
    train_phase(run_dir=str(smoke_study), doses=[1000.0], views=["full"])
    assert model.stat().st_mtime_ns == stamp
    assert {j["job"]: j["model_sha256"] for j in _json(manifest_path)["jobs"]} == before  # merged, not replaced

    plan_path = train_phase(run_dir=str(smoke_study), gridsizes=[2], dry_run=True)
    plan = _json(smoke_study / plan_path)
    assert [j["job"] for j in plan["jobs"]] == ["dose_1000/pinn_gs2_dense", "dose_100000/pinn_gs2_dense"]
    assert len(plan["skipped"]) == 2 and plan["dry_run"] is True

    reference = tmp_path / "reference.json"
    shutil.copy(manifest_path, reference)
    assert _cli("check-loss", "--reference", str(reference), "--candidate", str(manifest_path)) == 0
    strict = _json(reference)
    for job in strict["jobs"]:
        job["final_loss"] = job["final_loss"] / 2
    strict["jobs"][0]["final_loss"] = float("nan")
    reference.write_text(json.dumps(strict))
    with pytest.raises(ValueError, match=r"loss guardrail failed .*exceeds reference .* by more than 10%"):
        train_phase(run_dir=str(smoke_study), doses=[100000.0], guardrail_reference=str(reference),
              guardrail_tolerance=0.1)
    assert _json(smoke_study / "phase_e" / "guardrail.json")["passed"] is False
    assert _cli("check-loss", "--reference", str(reference), "--candidate", str(manifest_path),
                "--view", "full", "--gridsize", "1", "--dose", "1000") == 1
    candidate = _json(manifest_path)
    candidate["jobs"][0].pop("final_loss")
    (tmp_path / "cand.json").write_text(json.dumps(candidate))
    from ptylib.ptycho.training_jobs import GuardrailError, check_training_loss

    with pytest.raises(GuardrailError, match=r"final_loss is None: expected a finite number"):
        check_training_loss(manifest_path, tmp_path / "cand.json", doses=[candidate["jobs"][0]["dose"]])


def test_comparison_files_and_fields(smoke_study: Path) -> None:
    compared = _json(smoke_study / "phase_g" / "comparison_manifest.json")
    conditions = {(c["dose"], c["view"]) for c in compared["comparisons"]}
    assert conditions == {(d, v) for d in (1e3, 1e5) for v in ("full", "dense")}
    for record in compared["comparisons"]:
        folder = smoke_study / Path(record["metrics_csv"]).parent
        with open(folder / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [r["method"] for r in rows] == ["pinn", "baseline", "lsqml"]
        assert {"phase_ms_ssim", "amplitude_ms_ssim", "phase_mae", "phase_mse", "psnr", "frc50_px"} <= set(rows[0])
        with np.load(folder / "aligned.npz") as aligned:
            assert {"truth", "pinn", "baseline", "lsqml", "region_yx"} <= set(aligned.files)
            assert aligned["pinn"].shape == aligned["pinn_truth"].shape
        assert (folder / "comparison.png").stat().st_size > 10_000
    lsqml = {(r["dose"], r["target"]): r for r in _json(smoke_study / "phase_f" / "lsqml_manifest.json")["reconstructions"]}
    for record in compared["comparisons"]:
        row = next(r for r in record["rows"] if r["method"] == "lsqml")
        # The same metrics on the same region as phase F: the comparison re-scores LSQML identically.
        assert row["phase_ms_ssim"] == pytest.approx(lsqml[(record["dose"], record["view"])]["phase_ms_ssim"], abs=1e-9)


def test_summary_rows_plots_and_sections(smoke_study: Path) -> None:
    rows = _json(smoke_study / "phase_h" / "summary.json")
    assert len(rows) == 12 and all(SUMMARY_FIELDS <= set(r) for r in rows)
    assert {r["method"] for r in rows} == {"pinn", "baseline", "lsqml"}
    assert all(isinstance(r["phase_ms_ssim"], float) and 0 <= r["phase_ms_ssim"] <= 1 for r in rows)
    by_key = {(r["dose"], r["view"], r["method"]): r for r in rows}
    assert by_key[(1e5, "full", "lsqml")]["phase_ms_ssim"] > 0.9
    text = (smoke_study / "phase_h" / "summary.md").read_text()
    for section in ("## Targets", "## Skipped", "## Seeds", "## Versions", "## Design", "pinn_gs2_sparse"):
        assert section in text
    for png in ("phase_ms_ssim_vs_dose.png", "frc50_px_vs_dose.png"):
        assert (smoke_study / "phase_h" / png).stat().st_size > 5_000
    info = _json(smoke_study / "phase_h" / "run_info.json")
    assert info["seeds"] == {"simulation": 42, "grouping": 123, "subsampling": 456, "training": 789}


def test_infer_round_trip_and_bad_inputs(smoke_study: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from ptylib.ptycho.contract import load_dataset

    model = smoke_study / "phase_e" / "dose_100000" / "pinn_gs2_dense" / "model"
    data = smoke_study / "phase_d" / "dose_100000" / "dense" / "dense_test.npz"
    assert _cli("infer", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "out")) == 0
    amplitude, phase = np.load(tmp_path / "out" / "amplitude.npy"), np.load(tmp_path / "out" / "phase.npy")
    assert amplitude.shape == phase.shape and np.all(np.isfinite(phase)) and amplitude.max() <= 1.0
    assert (tmp_path / "out" / "amplitude_phase.png").stat().st_size > 5_000
    record = _json(tmp_path / "out" / "inference.json")
    assert record["n_patterns"] == 4 * len(load_dataset(data)["group_indices"]) and record["patterns_per_second"] > 0

    capsys.readouterr()
    full_test = smoke_study / "phase_c" / "dose_100000" / "test.npz"
    assert _cli("infer", "--model", str(model), "--data", str(full_test), "--out", str(tmp_path / "o2")) == 0
    arrays = dict(np.load(data))
    arrays["diffraction"] = arrays["diffraction"] ** 2  # intensities stored instead of amplitudes
    np.savez(tmp_path / "bad.npz", **arrays)
    assert _cli("infer", "--model", str(model), "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o3")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.npz: key 'diffraction'" in err and "intensities stored" in err
    assert not (tmp_path / "o3").exists()
    small = {k: v for k, v in np.load(data).items()}
    small["diffraction"] = small["diffraction"][:, ::2, ::2] * 2
    small["probeGuess"] = small["probeGuess"][::2, ::2]
    small.pop("Y")
    np.savez(tmp_path / "n16.npz", **small)
    assert _cli("infer", "--model", str(model), "--data", str(tmp_path / "n16.npz"), "--out", str(tmp_path / "o4")) == 2
    assert "n16.npz: key 'diffraction': expected 32×32 patterns (the model's N), got 16×16" in capsys.readouterr().err

    before = sha256_file(smoke_study / "phase_e" / "training_manifest.json")
    assert _cli("run", "--profile", "smoke", "--run-dir", str(smoke_study), "--phases", "E",
                "--guardrail-reference", str(tmp_path / "missing.json")) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'missing.json'}: no such guardrail reference manifest"
    assert sha256_file(smoke_study / "phase_e" / "training_manifest.json") == before
