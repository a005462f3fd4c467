"""Steps of the dose/overlap study on files: inputs (phase B), per-dose datasets (C), overlap views (D),
LSQML reconstructions (F). Each step reads paths, writes its files atomically and returns a JSON-ready
record; a record whose key (design + input file hashes) still matches lets a rerun reuse the step.

Every step takes the run folder ``root``: input paths may be given relative to it, and every path a
record stores is relative to it, so a copied run folder is self-contained.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.io.atomic import atomic_open, atomic_write_json
from ptylib.io.manifest import sha256_file
from ptylib.io.report import save_figure
from ptylib.ptycho import plots
from ptylib.ptycho.contract import check_split_disjoint, load_dataset, save_dataset
from ptylib.ptycho.dataset import select_groups, simulate_dataset, subset, with_groups
from ptylib.ptycho.forward import illumination
from ptylib.ptycho.grouping import check_grouping, knn_groups
from ptylib.ptycho.layout import DESIGN, INPUTS
from ptylib.ptycho.lsqml import Device, LSQMLOptions, run_lsqml
from ptylib.ptycho.metrics import compare
from ptylib.ptycho.objects import load_object_probe, synthetic_object
from ptylib.ptycho.options import StudyDesign
from ptylib.ptycho.overlap import spacing_filter, spacing_stats
from ptylib.ptycho.probes import focused_probe
from ptylib.ptycho.scans import raster_positions
from ptylib.ptycho.split import split_on_y
from ptylib.ptycho.stitch import window

PathLike = str | os.PathLike[str]


def rng_for(seed: int, *labels: object) -> np.random.Generator:
    """A generator for one named use of ``seed`` (labels such as "noise", 1000.0): independent streams per use."""
    keys = tuple(zlib.crc32(repr(label).encode()) for label in labels)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=keys))


def dose_label(dose: float) -> str:
    """Folder-safe name of a dose: ``dose_1000``, ``dose_100000`` (photons per exposure)."""
    return f"dose_{dose:.0f}" if float(dose).is_integer() else f"dose_{dose:g}".replace(".", "p")


def save_design(design: StudyDesign, path: PathLike) -> Path:
    """Validate the design and write it as JSON (atomically); an invalid design leaves ``path`` untouched.

    A design made with ``model_copy(update=...)`` skipped validation, hence the check here.
    """
    try:
        design = StudyDesign.model_validate(design.model_dump())
    except ValueError as exc:
        raise ValueError(f"{path}: invalid study design not written: {one_line(exc)}") from None
    atomic_write_json(path, design.model_dump(mode="json"))
    return Path(path)


def one_line(error: Exception) -> str:
    """A pydantic validation error (or any error) as one line: ``field: message; field: message``."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return " ".join(str(error).split())
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'design'}: {e['msg']}" for e in errors())


def load_design(path: PathLike) -> StudyDesign:
    """Read and validate a design JSON; errors name the file."""
    try:
        return StudyDesign.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no study design (run phase A first)") from None
    except ValueError as exc:
        raise ValueError(f"{path}: invalid study design: {one_line(exc)}") from None


def design_change(path: PathLike, design: StudyDesign) -> str | None:
    """Why ``design`` cannot run in the folder whose design file is ``path``; None if it is the same or absent."""
    if not Path(path).exists():
        return None
    existing = load_design(path)
    if existing == design:
        return None
    changed = sorted(k for k, v in design.model_dump().items() if existing.model_dump()[k] != v)
    return (f"{path} holds a different design (fields {', '.join(changed)} differ); "
            "use a new run directory for a new design")


def inputs_change(design: StudyDesign, out_dir: PathLike, object_npz: PathLike | None, *,
                  root: PathLike) -> str | None:
    """What phase B with ``object_npz`` (None: synthetic) would replace in ``out_dir``; None when nothing.

    Finished inputs are replaced when their key (design and object file contents) differs; every later
    phase folder of ``root`` is then derived from replaced inputs and named too.
    """
    out = Path(root) / out_dir
    try:
        record = json.loads((out / INPUTS.name).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if record.get("key") == step_key(design, {"object_npz": object_npz}):
        return None
    source = next((c["value"] for c in record.get("checks", []) if c["check"] == "object source"), "unknown")
    later = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and p.name > out.name)
    return (f"{out} holds inputs made from {source}; {object_npz or 'the synthetic object'} would replace them "
            f"and everything derived from them ({', '.join([out.name, *later])})")


def check_run_dir(root: PathLike, design: StudyDesign, object_npz: PathLike | None, *, force: bool) -> None:
    """Raise ``ValueError`` (one line) when running ``design`` on ``object_npz`` would alter the study in ``root``.

    A changed design is always refused; replaced inputs are refused unless ``force``.
    """
    if object_npz is not None and not Path(object_npz).is_file():
        raise ValueError(f"{object_npz}: no such object/probe NPZ file")
    if (reason := design_change(Path(root) / DESIGN, design)) is not None:
        raise ValueError(reason)
    if not force and (reason := inputs_change(design, INPUTS.parent, object_npz, root=root)) is not None:
        raise ValueError(f"{reason}; pass --force (force=True) to replace them")


def run_relative(path: PathLike, root: PathLike) -> str:
    """``path`` relative to the run folder ``root`` (POSIX form), as study records store it."""
    return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()


def step_key(design: StudyDesign, inputs: Mapping[str, PathLike | None], **extra: object) -> str:
    """Digest of a step's design, input file contents and extra settings: equal keys mean reusable outputs."""
    payload = {"design": design.model_dump(mode="json"), "extra": extra,
               "inputs": {name: sha256_file(p) if p else None for name, p in sorted(inputs.items())}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def reusable(record_path: PathLike, key: str, root: PathLike) -> dict[str, Any] | None:
    """The stored record at ``record_path`` when its key matches and every file it lists exists under ``root``."""
    try:
        record = json.loads(Path(record_path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if record.get("key") != key or not all((Path(root) / p).is_file() for p in record.get("files", [])):
        return None
    return record


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def _finish(record_path: Path, record: dict[str, Any]) -> dict[str, Any]:
    # The record is written last: its presence (with a matching key) marks the step as done.
    atomic_write_json(record_path, record)
    return record


def prepare_inputs(design: StudyDesign, out_dir: PathLike, object_npz: PathLike | None = None, *,
                   root: PathLike, force: bool = False) -> dict[str, Any]:
    """Phase B: build (or load) object and probe, lay out the scan and check the design is feasible on it.

    Writes ``base.npz`` (objectGuess, probeGuess with Σ|P|² = 1, xcoords, ycoords) and ``validation.json``
    into ``out_dir`` (relative to ``root``); ``object_npz`` is relative to the working directory. Finished
    inputs made from another object are replaced only with ``force`` (see :func:`inputs_change`).
    """
    out = Path(root) / out_dir
    key = step_key(design, {"object_npz": object_npz})
    if (done := reusable(out / INPUTS.name, key, root)) is not None:
        return done | {"reused": True}
    if not force and (reason := inputs_change(design, out_dir, object_npz, root=root)) is not None:
        raise ValueError(f"{reason}; pass --force (force=True) to replace them")
    n_px, sim = design.patch_size_px, design.simulation
    if object_npz is not None:
        obj, probe = load_object_probe(object_npz)
        if probe.shape[0] != n_px:
            raise ValueError(f"{object_npz}: key 'probeGuess': expected a {n_px}×{n_px} probe (design "
                             f"patch_size_px), got {probe.shape}")
        probe = probe / np.sqrt(np.sum(np.abs(probe) ** 2))
    else:
        obj = synthetic_object(sim.object_size_px, rng=rng_for(design.seed_simulation, "object"),
                               amplitude_min=sim.amplitude_min, phase_range_rad=sim.phase_range_rad)
        probe = focused_probe(n_px, rng=rng_for(design.seed_simulation, "probe"),
                              pupil_radius_frac=sim.pupil_radius_frac, beam_diameter_frac=sim.beam_diameter_frac)
    x, y = raster_positions(obj.shape, n_px, sim.scan_step_px, jitter_px=sim.scan_jitter_px,
                            rng=rng_for(design.seed_simulation, "scan"))
    split = split_on_y(x, y, n_px, train_fraction=design.train_fraction)
    for part in (split.train, split.test):
        check_grouping(design.neighbor_count, max(design.gridsizes), len(part))
    base = _save_npz(out / "base.npz", {"objectGuess": obj.astype(np.complex64), "probeGuess": probe.astype(np.complex64),
                                         "xcoords": x, "ycoords": y})
    checks = [
        {"check": "object source", "value": str(object_npz) if object_npz else "synthetic fly64-like"},
        {"check": "object shape (px)", "value": list(obj.shape)},
        {"check": "probe shape (px)", "value": list(probe.shape)},
        {"check": "scan positions", "value": len(x)},
        {"check": "train / test / guard-band patterns", "value": [len(split.train), len(split.test), split.dropped]},
        {"check": "split row (px)", "value": split.y_cut_px},
        {"check": "K ≥ C and each split ≥ K patterns",
         "value": f"K={design.neighbor_count}, C={design.group_size}"},
    ]
    base_npz = run_relative(base, root)
    return _finish(out / INPUTS.name, {
        "key": key, "files": [base_npz], "base_npz": base_npz, "checks": checks, "n_patterns": len(x),
        "n_train": len(split.train), "n_test": len(split.test), "y_cut_px": split.y_cut_px})


def generate_dose(design: StudyDesign, base_npz: PathLike, dose: float, out_dir: PathLike, *,
                  root: PathLike) -> dict[str, Any]:
    """Phase C for one dose: simulate → canonicalise → split on y → group → validate; writes train/test NPZs.

    ``base_npz`` and ``out_dir`` are relative to the run folder ``root`` (or absolute).
    """
    out, base_npz = Path(root) / out_dir, Path(root) / base_npz
    key = step_key(design, {"base": base_npz}, dose=dose)
    if (done := reusable(out / "dataset_record.json", key, root)) is not None:
        return done | {"reused": True}
    with np.load(base_npz) as base:
        obj, probe, x, y = base["objectGuess"], base["probeGuess"], base["xcoords"], base["ycoords"]
    n_px = design.patch_size_px
    arrays = simulate_dataset(obj, probe, x, y, dose, rng=rng_for(design.seed_simulation, "noise", float(dose)),
                              ground_truth_patches=design.simulation.store_ground_truth_patches)
    split = split_on_y(x, y, n_px, train_fraction=design.train_fraction)
    counts = np.einsum("nij,nij->n", arrays["diffraction"], arrays["diffraction"], dtype=np.float64)
    record: dict[str, Any] = {"key": key, "dose": float(dose), "y_cut_px": split.y_cut_px,
                              "guard_band_dropped": split.dropped, "mean_counts_per_pattern": float(counts.mean()),
                              "files": []}
    parts = {}
    for part, index in (("train", split.train), ("test", split.test)):
        groups = knn_groups(x[index], y[index], neighbor_count=design.neighbor_count,
                            gridsize=max(design.gridsizes), rng=rng_for(design.seed_grouping, part))
        parts[part] = with_groups(subset(arrays, index), groups)
    record["split_gap_px"] = check_split_disjoint(parts["train"], parts["test"], source=str(out))
    for part, data in parts.items():
        path = save_dataset(out / f"{part}.npz", data)
        record[part] = {"path": run_relative(path, root), "n_patterns": len(data["xcoords"]),
                        "n_groups": len(data["group_indices"]), "sha256": sha256_file(path)}
        record["files"].append(record[part]["path"])
    return _finish(out / "dataset_record.json", record)


def make_view(design: StudyDesign, dose: float, split_npz: Mapping[str, PathLike], view: str,
              out_dir: PathLike, *, root: PathLike) -> dict[str, Any]:
    """Phase D for one dose and view: spacing filter on each split's groups, view NPZs, spacing stats and plot.

    Returns the ``metrics_bundle.json`` record; a split keeping fewer than ``design.min_groups`` groups makes
    the view ``skipped`` with the reason, and no view datasets are written. Paths are relative to ``root``.
    """
    out = Path(root) / out_dir
    split_npz = {part: Path(root) / path for part, path in split_npz.items()}
    spacing = design.spacing_px(view)
    key = step_key(design, split_npz, dose=dose, view=view)
    if (done := reusable(out / "metrics_bundle.json", key, root)) is not None:
        return done | {"reused": True}
    bundle: dict[str, Any] = {"key": key, "dose": float(dose), "view": view, "status": "ok", "reason": None,
                              "overlap_fraction": design.overlap_views[view], "min_spacing_px": spacing, "files": []}
    loaded, kept_by_part = {}, {}
    for part, path in split_npz.items():
        arrays = load_dataset(path)
        kept = spacing_filter(arrays["group_centers"], spacing,
                              rng=rng_for(design.seed_subsampling, view, part))
        stats = spacing_stats(arrays["group_centers"], kept, spacing)
        stats_path = out / f"spacing_{part}.json"
        atomic_write_json(stats_path, stats)
        loaded[part], kept_by_part[part] = arrays, kept
        bundle[part] = {"spacing_stats_path": run_relative(stats_path, root), "output_path": None, **stats}
        bundle["files"].append(bundle[part]["spacing_stats_path"])
        if len(kept) < design.min_groups and bundle["status"] == "ok":
            bundle["status"] = "skipped"
            bundle["reason"] = (f"{part} split keeps {len(kept)} of {len(arrays['group_centers'])} groups at "
                                f"S = {spacing:.1f} px, fewer than min_groups = {design.min_groups}")
    figure = plots.spacing_figure({p: (loaded[p]["group_centers"], kept_by_part[p]) for p in loaded}, spacing,
                                  f"{dose_label(dose)} {view}: S = (1 − {design.overlap_views[view]})·"
                                  f"{design.patch_size_px} = {spacing:.1f} px")
    bundle["spacing_plot"] = run_relative(save_figure(figure, out / "spacing.png"), root)
    bundle["files"].append(bundle["spacing_plot"])
    if bundle["status"] == "ok":
        for part, arrays in loaded.items():
            path = save_dataset(out / f"{view}_{part}.npz", select_groups(arrays, kept_by_part[part], spacing))
            bundle[part]["output_path"] = run_relative(path, root)
            bundle["files"].append(bundle[part]["output_path"])
    return _finish(out / "metrics_bundle.json", bundle)


def illuminated_box(probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray, shape: tuple[int, int],
                    fraction: float = 0.1) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1) of the pixels lit by more than ``fraction`` of the peak illumination."""
    lit = illumination(probe, xcoords, ycoords, shape)
    mask = lit > fraction * lit.max()
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def reconstruct(design: StudyDesign, dataset_npz: PathLike, out_dir: PathLike, title: str, *, root: PathLike,
                threads: int | None = None, device: Device = Device.AUTO,
                on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Phase F for one test split: LSQML, quality against the ground truth on the lit region, files and plots.

    ``dataset_npz`` and ``out_dir`` are relative to the run folder ``root`` (or absolute). ``threads`` and
    ``device`` change speed, not the algorithm, so a finished record is reused whatever they are.
    """
    out, dataset_npz = Path(root) / out_dir, Path(root) / dataset_npz
    options = LSQMLOptions(epochs=design.lsqml_epochs, batch_size=design.lsqml_batch_size,
                           seed=design.seed_subsampling, threads=threads, device=device)
    key = step_key(design, {"dataset": dataset_npz}, lsqml=options.model_dump(exclude={"threads", "device"}))
    if (done := reusable(out / "lsqml_record.json", key, root)) is not None:
        return done | {"reused": True}
    data = load_dataset(dataset_npz)
    result = run_lsqml(data["diffraction"], data["probeGuess"], data["xcoords"], data["ycoords"], options,
                       on_epoch=on_epoch)
    oy, ox = result.canvas_origin_yx
    truth = window(data["objectGuess"], result.canvas_origin_yx, result.object.shape, fill=1)
    y0, y1, x0, x1 = illuminated_box(data["probeGuess"], data["xcoords"] - ox, data["ycoords"] - oy,
                                     result.object.shape)
    quality = compare(truth[y0:y1, x0:x1], result.object[y0:y1, x0:x1], sigma=design.ms_ssim_sigma,
                      frc_threshold=design.frc_threshold)
    npz = _save_npz(out / "lsqml.npz", {"object": result.object, "probe": result.probe, "loss": result.loss,
                                         "canvas_origin_yx": np.asarray(result.canvas_origin_yx, np.int64),
                                         "region_yx": np.asarray([y0, y1, x0, x1], np.int64)})
    metrics_path = out / "metrics.json"
    atomic_write_json(metrics_path, quality)
    loss_png = save_figure(plots.loss_figure(result.loss, f"LSQML loss: {title}"), out / "loss.png")
    image_png = save_figure(plots.object_figure(result.object[y0:y1, x0:x1], truth[y0:y1, x0:x1], title),
                            out / "amplitude_phase.png")
    summary = {"phase_ms_ssim": quality["phase"]["ms_ssim"], "phase_pearson": quality["phase"]["pearson"],
               "amplitude_ms_ssim": quality["amplitude"]["ms_ssim"], "frc_resolution_px": quality["frc"]["resolution_px"],
               "ms_ssim_scales": quality["phase"]["ms_ssim_scales"]}
    files = [run_relative(p, root) for p in (npz, metrics_path, loss_png, image_png)]
    return _finish(out / "lsqml_record.json", {
        "key": key, "title": title, "dataset": run_relative(dataset_npz, root), "n_patterns": len(data["xcoords"]),
        "epochs": options.epochs, "batch_size": options.batch_size, "device": result.device,
        "seconds": result.seconds, "seconds_per_epoch": result.seconds / options.epochs,
        "final_loss": float(result.loss[-1]), "region_yx": [y0, y1, x0, x1], **summary,
        "lsqml_npz": files[0], "metrics_json": files[1], "loss_png": files[2], "image_png": files[3], "files": files})
