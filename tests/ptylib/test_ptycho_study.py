"""Study steps on files (phases B, C, D): outputs, recorded skips, reuse, and light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ptylib.ptycho import study
from ptylib.ptycho.contract import check_split_disjoint, load_dataset
from ptylib.ptycho.options import StudyDesign


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyDesign, Path, dict, dict]:
    root = tmp_path_factory.mktemp("study")
    design = StudyDesign.for_profile("smoke")
    inputs = study.prepare_inputs(design, "b", root=root)
    dataset = study.generate_dose(design, inputs["base_npz"], 1e3, "c", root=root)
    return design, root, inputs, dataset


def test_phase_b_and_c_outputs(smoke_run: tuple[StudyDesign, Path, dict, dict]) -> None:
    _, root, inputs, dataset = smoke_run
    assert (inputs["n_patterns"], inputs["n_train"], inputs["n_test"]) == (576, 192, 192)
    assert (inputs["base_npz"], dataset["train"]["path"]) == ("b/base.npz", "c/train.npz")  # run-folder relative
    train, test = load_dataset(root / dataset["train"]["path"]), load_dataset(root / dataset["test"]["path"])
    assert check_split_disjoint(train, test) >= 0 and dataset["split_gap_px"] >= 0
    assert float(train["dose"]) == 1e3 and train["group_indices"].shape == (192, 4)
    totals = np.concatenate([np.square(d["diffraction"].astype(np.float64)).sum(axis=(1, 2)) for d in (train, test)])
    assert totals.mean() == pytest.approx(1e3, rel=0.05)
    assert train["Y"].shape == (192, 32, 32) and train["ycoords"].max() < test["ycoords"].min()


def test_phase_d_views_and_recorded_skip(smoke_run: tuple[StudyDesign, Path, dict, dict]) -> None:
    design, root, _, dataset = smoke_run
    split = {p: dataset[p]["path"] for p in ("train", "test")}
    dense = study.make_view(design, 1e3, split, "dense", "d/dense", root=root)
    sparse = study.make_view(design, 1e3, split, "sparse", root / "d" / "sparse", root=root)
    assert dense["status"] == "ok" and dense["min_spacing_px"] == pytest.approx(0.3 * 32)
    for part in ("train", "test"):
        view = load_dataset(root / dense[part]["output_path"])
        assert float(view["min_center_spacing_px"]) == pytest.approx(9.6)
        assert dense[part]["n_kept"] == len(view["group_indices"]) >= design.min_groups
        assert dense[part]["kept_min_nn_px"] >= 9.6
        assert json.loads((root / dense[part]["spacing_stats_path"]).read_text())["respects_spacing"] is True
    assert sparse["status"] == "skipped" and "fewer than min_groups = 6" in sparse["reason"]
    assert sparse["train"]["output_path"] is None and not list((root / "d" / "sparse").glob("sparse_*.npz"))
    assert sparse["spacing_plot"] == "d/sparse/spacing.png" and (root / sparse["spacing_plot"]).is_file()
    bundle = json.loads((root / "d" / "dense" / "metrics_bundle.json").read_text())
    assert set(bundle) >= {"train", "test", "status", "min_spacing_px"}


def test_finished_steps_are_reused_until_inputs_change(smoke_run: tuple[StudyDesign, Path, dict, dict]) -> None:
    design, root, inputs, dataset = smoke_run
    again = study.generate_dose(design, inputs["base_npz"], 1e3, "c", root=root)
    assert again["reused"] is True and again["train"]["sha256"] == dataset["train"]["sha256"]
    other = StudyDesign.model_validate(design.model_dump() | {"seed_grouping": 5})
    assert study.step_key(other, {"base": root / inputs["base_npz"]}, dose=1e3) != dataset["key"]
    (root / dataset["test"]["path"]).unlink()
    redone = study.generate_dose(design, inputs["base_npz"], 1e3, "c", root=root)
    assert "reused" not in redone and redone["test"]["sha256"] == dataset["test"]["sha256"]  # deterministic


def test_wrong_probe_size_in_user_npz(tmp_path: Path) -> None:
    path = tmp_path / "real.npz"
    np.savez(path, objectGuess=np.ones((200, 200), np.complex64), probeGuess=np.ones((64, 64), np.complex64))
    with pytest.raises(ValueError, match="real.npz: key 'probeGuess': expected a 32×32 probe"):
        study.prepare_inputs(StudyDesign.for_profile("smoke"), "b", object_npz=path, root=tmp_path)


def test_kernels_and_cli_import_without_torch_tensorflow_or_prefect() -> None:
    code = ("import sys, ptylib.ptycho.study, ptylib.ptycho.metrics, flows.study_cli;"
            "print([m for m in ('torch', 'tensorflow', 'prefect', 'ptychi') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("flags", "message"), [
    (["--lsqml-batch-size", "0"], "error: lsqml_batch_size: Input should be greater than or equal to 1"),
    (["--object-npz", "missing.npz"], "error: missing.npz: no such object/probe NPZ file"),
])
def test_cli_rejects_bad_input_before_any_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               flags: list[str], message: str) -> None:
    import argparse

    from flows.study_cli import add_study_arguments

    parser = argparse.ArgumentParser()
    add_study_arguments(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["study", "lsqml", "--profile", "smoke", "--run-dir", str(tmp_path / "s"), *flags])
    assert args.handler(args) == 2
    error = capsys.readouterr().err
    assert error.startswith(message) and error.count("\n") == 1
    assert not (tmp_path / "s").exists()
