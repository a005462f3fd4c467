"""The dose/overlap study flow on the smoke profile: files, numbers, artifacts, recorded skips, resume."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ptylib.io.manifest import read_manifest, sha256_file
from ptylib.ptycho import study
from ptylib.ptycho.contract import load_dataset
from ptylib.ptycho.options import StudyDesign

pytestmark = [pytest.mark.prefect_test, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())



def _mentions(root: Path, text: str) -> list[Path]:
    """The JSON files under ``root`` whose text contains ``text``."""
    return [p for p in root.rglob("*.json") if text in p.read_text()]


def test_smoke_study_end_to_end(tmp_path: Path, artifact_keys) -> None:
    from flows.dose_overlap_study import dose_overlap_study

    root = tmp_path / "study"
    result = dose_overlap_study(run_dir=str(root), profile="smoke", phases="ABCDF")  # E, G, H: test_dose_overlap_learning
    assert set(result["outputs"]) == set("ABCDF")
    design = StudyDesign.for_profile("smoke")
    assert study.load_design(root / "phase_a" / "design.json") == design

    validation = _json(root / "phase_b" / "validation.json")
    assert (validation["n_patterns"], validation["n_train"], validation["n_test"]) == (576, 192, 192)

    datasets = _json(root / "phase_c" / "run_manifest.json")["doses"]
    assert [d["dose"] for d in datasets] == [1e3, 1e5]
    for record in datasets:
        assert record["mean_counts_per_pattern"] == pytest.approx(record["dose"], rel=0.05)
        assert record["split_gap_px"] >= 0
        for part in ("train", "test"):
            assert sha256_file(root / record[part]["path"]) == record[part]["sha256"]
            assert record[part]["n_patterns"] == 192 and record[part]["n_groups"] == 192

    views = _json(root / "phase_d" / "views_manifest.json")
    status = {(v["dose"], v["view"]): v for v in views["views"]}
    assert len(status) == 4
    for dose in (1e3, 1e5):
        dense, sparse = status[(dose, "dense")], status[(dose, "sparse")]
        assert dense["status"] == "ok" and dense["test"]["kept_min_nn_px"] >= 9.6
        assert len(load_dataset(root / dense["test"]["output_path"])["group_indices"]) == dense["test"]["n_kept"] >= 6
        assert sparse["status"] == "skipped" and "fewer than min_groups = 6" in sparse["reason"]
        assert (root / sparse["spacing_plot"]).is_file()
        bundle = _json(root / "phase_d" / study.dose_label(dose) / "dense" / "metrics_bundle.json")
        assert (root / bundle["train"]["spacing_stats_path"]).is_file()
        assert (root / bundle["test"]["output_path"]).is_file()
    assert len(views["skipped"]) == 2

    lsqml = _json(root / "phase_f" / "lsqml_manifest.json")
    quality = {(r["dose"], r["target"]): r for r in lsqml["reconstructions"]}
    assert set(quality) == {(1e3, "full"), (1e5, "full"), (1e3, "dense"), (1e5, "dense")}
    assert [s["view"] for s in lsqml["skipped"]] == ["sparse", "sparse"]
    assert quality[(1e5, "full")]["phase_pearson"] >= 0.9
    for target in ("full", "dense"):
        assert quality[(1e5, target)]["phase_ms_ssim"] > quality[(1e3, target)]["phase_ms_ssim"]
    for record in quality.values():
        assert record["epochs"] == design.lsqml_epochs and record["final_loss"] > 0
        assert all((root / p).stat().st_size > 0 for p in record["files"])

    manifest = read_manifest(root)
    assert manifest["pipeline"] == "dose_overlap_study" and manifest["seeds"]["grouping"] == 123
    assert manifest["outputs"] == {"A": "phase_a/design.json", "B": "phase_b/validation.json",
                                   "C": "phase_c/run_manifest.json", "D": "phase_d/views_manifest.json",
                                   "F": "phase_f/lsqml_manifest.json"}
    assert not _mentions(root, str(root))  # every record points inside the folder, relative to it
    wanted = {"study-design", "study-validation", "study-datasets", "study-views", "study-spacing", "study-lsqml",
              "study-lsqml-figures"}
    assert artifact_keys(wanted) == wanted


def test_failed_phase_keeps_earlier_outputs_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.dose_overlap_study import dose_overlap_study, views_phase
    from flows.study_cli import add_study_arguments

    root = tmp_path / "study"
    parser = argparse.ArgumentParser()
    add_study_arguments(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["study", "generate", "--profile", "smoke", "--run-dir", str(root)])
    assert args.phases == "ABC" and args.handler(args) == 0
    phase_c = sorted((root / "phase_c").rglob("*.npz"))
    before = {p: (sha256_file(p), p.stat().st_mtime_ns) for p in phase_c}

    def broken(*args: object, **kwargs: object) -> dict:
        raise RuntimeError("disk full while writing a view")

    monkeypatch.setattr(study, "make_view", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        dose_overlap_study(run_dir=str(root), profile="smoke", phases="ABCD")
    assert {p: (sha256_file(p), p.stat().st_mtime_ns) for p in phase_c} == before
    assert not (root / "phase_d" / "views_manifest.json").exists()

    monkeypatch.undo()
    views_phase(run_dir=str(root))  # a phase on its own, once its inputs exist
    datasets = _json(root / "phase_c" / "run_manifest.json")["doses"]
    assert {p: (sha256_file(p), p.stat().st_mtime_ns) for p in phase_c} == before
    assert (root / "phase_d" / "views_manifest.json").is_file()
    again = dose_overlap_study(run_dir=str(root), profile="smoke", phases="ABCD")
    assert all(d["reused"] for d in _json(root / again["outputs"]["C"])["doses"]) and len(datasets) == 2


def test_phases_refuse_missing_inputs_and_a_changed_design(tmp_path: Path) -> None:
    from flows.dose_overlap_study import design_phase, dose_overlap_study, lsqml_phase

    with pytest.raises(ValueError, match="run phase A of the study"):
        lsqml_phase(run_dir=str(tmp_path / "empty"))
    design_phase(run_dir=str(tmp_path / "s"), profile="smoke")
    with pytest.raises(ValueError, match="holds a different design .*patch_size_px"):
        design_phase(run_dir=str(tmp_path / "s"), profile="small")
    with pytest.raises(ValueError, match="phases must be letters of ABCDEFGH"):
        dose_overlap_study(run_dir=str(tmp_path / "s"), profile="smoke", phases="AZ")


def test_invalid_design_is_never_written(tmp_path: Path) -> None:
    from flows.dose_overlap_study import design_phase

    bad = StudyDesign.for_profile("smoke").model_copy(update={"doses": (0.0, 1e3)})  # model_copy skips validation
    with pytest.raises(ValueError, match="invalid study design not written: doses: .*must be positive"):
        study.save_design(bad, tmp_path / "design.json")
    assert not (tmp_path / "design.json").exists()
    with pytest.raises(Exception, match="doses"):
        design_phase(run_dir=str(tmp_path / "s"), design=bad)
    assert not (tmp_path / "s" / "phase_a" / "design.json").exists()


def test_copied_run_folder_is_self_contained_and_inputs_are_not_silently_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.dose_overlap_study import dose_overlap_study
    from flows.study_cli import add_study_arguments

    original, copy = tmp_path / "original", tmp_path / "copy"
    dose_overlap_study(run_dir=str(original), profile="smoke", phases="ABCD")
    shutil.copytree(original, copy)
    shutil.rmtree(original)  # a copy that still pointed into the original would now fail or rebuild
    result = dose_overlap_study(run_dir=str(copy), profile="smoke", phases="ABCD")
    assert all(d["reused"] for d in _json(copy / result["outputs"]["C"])["doses"])
    assert all(v["reused"] for v in _json(copy / result["outputs"]["D"])["views"])
    assert not _mentions(copy, str(original)) and not original.exists()

    obj = np.exp(0.3j * np.random.default_rng(0).random((128, 128))).astype(np.complex64)
    np.savez(tmp_path / "real.npz", objectGuess=obj, probeGuess=load_dataset(copy / "phase_c/dose_1000/test.npz")["probeGuess"])
    phase_files = {p: sha256_file(p) for p in copy.rglob("*") if p.is_file() and p.name != "manifest.json"}
    parser = argparse.ArgumentParser()
    add_study_arguments(parser.add_subparsers(dest="command"))
    run = ["study", "generate", "--profile", "smoke", "--run-dir", str(copy), "--object-npz", str(tmp_path / "real.npz")]
    args = parser.parse_args(run)
    assert args.handler(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds inputs made from synthetic fly64-like" in error
    assert "phase_b, phase_c, phase_d" in error and "--force" in error
    with pytest.raises(ValueError, match="real.npz would replace them .*pass --force"):
        dose_overlap_study(run_dir=str(copy), profile="smoke", object_npz=str(tmp_path / "real.npz"), phases="AB")
    assert {p: sha256_file(p) for p in phase_files} == phase_files  # nothing replaced

    args = parser.parse_args([*run, "--force"])
    assert args.handler(args) == 0
    checks = {c["check"]: c["value"] for c in _json(copy / "phase_b" / "validation.json")["checks"]}
    assert checks["object source"] == str(tmp_path / "real.npz")
    assert sha256_file(copy / "phase_c/dose_1000/test.npz") != phase_files[copy / "phase_c/dose_1000/test.npz"]
