"""The steps of one scenario on files: simulate → split → group, train, infer → stitch, compare, report.

Each step reads what the previous ones wrote under the scenario folder ``out`` and writes its own files
atomically (JSON + Markdown per diagnostic), so a flow passes only paths and a step can be rerun alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.io.atomic import (
    atomic_open,
    atomic_save_npy,
    atomic_write_json,
    atomic_write_text,
)
from ptylib.io.report import markdown_table, save_figure
from ptylib.ptycho.contract import load_dataset, save_dataset
from ptylib.ptycho.diagnostics import comparison, figures, report
from ptylib.ptycho.diagnostics.data import simulate_split_group
from ptylib.ptycho.diagnostics.grouping_stats import grouping_summary
from ptylib.ptycho.diagnostics.probe_stats import probe_normalisation_ab
from ptylib.ptycho.diagnostics.reassembly import (
    reassembly_limits,
    stitch_frame,
    stitch_on_canvas,
)
from ptylib.ptycho.diagnostics.scenario import ScenarioOptions
from ptylib.ptycho.diagnostics.training import train_scenario
from ptylib.ptycho.stitch import window

PathLike = str | os.PathLike[str]
MODEL_DIR = "model"


def read_record(out: PathLike, name: str) -> dict[str, Any]:
    """A step's JSON record, or an error naming the missing file."""
    path = Path(out) / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing; run the step that writes it first") from None


def write_diagnostic(out: PathLike, name: str, record: Mapping[str, Any], markdown: str) -> dict[str, Any]:
    """Write ``name.json`` and ``name.md`` atomically; returns the record."""
    atomic_write_json(Path(out) / f"{name}.json", record)
    atomic_write_text(Path(out) / f"{name}.md", markdown)
    return dict(record)


def as_markdown(title: str, record: Mapping[str, Any]) -> str:
    """A diagnostic record as a two-column Markdown table under a heading."""
    rows = [{"quantity": key, "value": value} for key, value in report.flatten(record).items()]
    return f"# {title}\n\n" + markdown_table(rows)


def simulate_step(options: ScenarioOptions, out: PathLike) -> dict[str, Any]:
    """Simulate, split and group; write ``train.npz``, ``test.npz``, ``probe_raw.npy``, ``data.json``, and the
    probe-normalisation and grouping diagnostics."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = simulate_split_group(options)
    for part in ("train", "test"):
        save_dataset(out / f"{part}.npz", getattr(data, part))
    atomic_save_npy(out / "probe_raw.npy", data.probe_raw)
    write_diagnostic(out, "probe_normalisation", probe := probe_normalisation_ab(data.probe_raw,
                                                                                 data.train["probeGuess"]),
                     as_markdown(f"Probe normalisation A/B: {options.name}", probe))
    grouping = {part: grouping_summary(getattr(data, part), options.n_groups) for part in ("train", "test")}
    write_diagnostic(out, "grouping", grouping, as_markdown(f"Grouping: {options.name}", grouping))
    record = {"scenario": options.model_dump(mode="json"), "object_size_px": options.object_size_px,
              "y_cut_px": data.y_cut_px, "guard_band_dropped": data.guard_band_dropped,
              "n_train": len(data.train["xcoords"]), "n_test": len(data.test["xcoords"]),
              "groups_train": len(data.train["group_indices"]), "groups_test": len(data.test["group_indices"])}
    atomic_write_json(out / "data.json", record)
    return record


def train_step(options: ScenarioOptions, out: PathLike,
               on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train the PINN on ``train.npz``; save the model (when training finished) and ``training_history``."""
    from ptylib.ptycho.pinn.store import save_model

    out = Path(out)
    result, record = train_scenario(load_dataset(out / "train.npz"), options.gridsize, epochs=options.epochs,
                                    batch_size=options.batch_size, learning_rate=options.learning_rate,
                                    seed=options.seed, source=str(out / "train.npz"), on_epoch=on_epoch)
    if result is not None:
        save_model(out / MODEL_DIR, result, scenario=options.name)
    nan = record["nan"]
    save_figure(figures.history_figure(record["history"], nan and nan["epoch"], f"{options.name}: training"),
                out / "training_history.png")
    summary = {"epochs_run": len(record["history"]), "epochs_requested": options.epochs,
               "final_loss": record["history"][-1]["loss"] if record["history"] else None,
               "first_nan_epoch": nan and nan["epoch"], "first_nan_tensor": nan and nan["tensor"],
               "model_intensity_scale": record["intensity_scale"]}
    markdown = as_markdown(f"Training history: {options.name}", summary) + "\n" + markdown_table(
        [{"epoch": h["epoch"], "loss": h["loss"]} for h in record["history"]])
    return write_diagnostic(out, "training_history", record | {"summary": summary,
                                                               "model_dir": MODEL_DIR if result else None}, markdown)


def infer_stitch_step(options: ScenarioOptions, out: PathLike) -> dict[str, Any]:
    """Predict the test groups, stitch the patches' centres on the scenario's canvas (clipping what does not
    fit), measure the reassembly limits, rescale (opt-in) and save amplitude/phase NPY + PNG."""
    from ptylib.ptycho.pinn.infer import central_crop, predict_patches
    from ptylib.ptycho.pinn.store import load_model

    out = Path(out)
    test = load_dataset(out / "test.npz")
    network, sidecar = load_model(out / MODEL_DIR)
    members, patches, seconds, data_scale = predict_patches(network, sidecar, test, source=str(out / "test.npz"))
    crops = central_crop(patches.reshape(-1, *patches.shape[-2:]))
    x, y = test["xcoords"][members].ravel(), test["ycoords"][members].ravel()
    frame = stitch_frame(x, y, crops.shape[-1], options.canvas_px)
    limits = reassembly_limits(crops, frame.offsets_xy, frame.side)
    canvas, weight = stitch_on_canvas(crops, frame.offsets_xy, frame.side)
    origin = frame.origin_yx
    truth = window(test["objectGuess"], origin, (frame.side, frame.side), fill=0)
    y0, y1, x0, x1 = comparison.covered_box(weight)
    truth_crop, recon_crop, covered = truth[y0:y1, x0:x1], canvas[y0:y1, x0:x1], weight[y0:y1, x0:x1] > 0
    factor = comparison.rescale_factor(options.rescale.value, recon_crop[covered], truth_crop[covered],
                                       model_scale=sidecar["intensity_scale"], data_scale=data_scale)
    recon_crop = comparison.rescale_amplitude(recon_crop, factor)
    atomic_save_npy(out / "amplitude.npy", np.abs(recon_crop).astype(np.float32))
    atomic_save_npy(out / "phase.npy", np.angle(recon_crop).astype(np.float32))
    with atomic_open(out / "truth_crop.npz", "wb") as handle:
        np.savez(handle, truth=truth_crop, reconstruction=recon_crop, covered=covered)
    write_diagnostic(out, "reassembly", limits, as_markdown(f"Reassembly limits: {options.name}", limits))
    record = {"canvas_origin_yx": list(origin), "covered_box_yx": [y0, y1, x0, x1], "shape": list(recon_crop.shape),
              "rescale": options.rescale.value, "rescale_factor": factor, "model_intensity_scale":
              sidecar["intensity_scale"], "data_intensity_scale": data_scale, "predict_seconds": seconds,
              "n_patches": int(members.size)}
    atomic_write_json(out / "inference.json", record)
    return record


def compare_step(options: ScenarioOptions, out: PathLike) -> dict[str, Any]:
    """Ground-truth comparison and bias statistics of the saved reconstruction; difference PNGs."""
    out = Path(out)
    with np.load(out / "truth_crop.npz") as npz:
        truth, recon, covered = npz["truth"], npz["reconstruction"], npz["covered"]
    # Only pixels some patch covers are compared; the others are NaN in the figure.
    metrics = comparison.compare_to_truth(recon[covered], truth[covered])
    shown = {"amplitude": (np.abs(truth), np.abs(recon)),
             "phase (rad)": (np.angle(truth), comparison.align_phase(recon, truth, covered))}
    shown = {k: (np.where(covered, a, np.nan), np.where(covered, b, np.nan)) for k, (a, b) in shown.items()}
    save_figure(figures.side_by_side(shown, f"{options.name}: test split"), out / "comparison.png")
    write_diagnostic(out, "comparison", metrics, as_markdown(f"Ground-truth comparison: {options.name}", metrics))
    bias = comparison.bias_stats(recon[covered], truth[covered])
    inference = read_record(out, "inference")
    bias |= {k: inference[k] for k in ("rescale", "rescale_factor", "model_intensity_scale", "data_intensity_scale")}
    return write_diagnostic(out, "bias", bias, as_markdown(f"Amplitude bias: {options.name}", bias))


def _optional(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def report_step(options: ScenarioOptions, out: PathLike) -> dict[str, Any]:
    """``report.json`` (checks + ``passed``), ``report.md`` and ``run_metadata.json`` of the scenario."""
    out = Path(out)
    training = read_record(out, "training_history")
    checks = report.scenario_checks(training, _optional(out, "reassembly"), _optional(out, "comparison"),
                                    _optional(out, "bias"), min_pearson=options.min_pearson,
                                    bias_tolerance=options.bias_tolerance)
    images = {t: p for t, p in (("training history", "training_history.png"),
                                ("truth / reconstruction / difference", "comparison.png")) if (out / p).is_file()}
    record = report.report_record(options.name, checks, images=images)
    atomic_write_json(out / "report.json", record)
    atomic_write_text(out / "report.md", report.report_markdown(record, images))
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    atomic_write_json(out / "run_metadata.json", {"scenario": options.model_dump(mode="json"),
                                                   "data": read_record(out, "data"), "passed": record["passed"],
                                                   "inference": _optional(out, "inference"), "files": files})
    return record
