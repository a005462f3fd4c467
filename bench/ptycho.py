"""Benchmark of the ptychography kernels: the LSQML adapter against pty-chi called directly, and the
overlap-view spacing filter on 100k group centres; with ``--pinn``, the PINN instead: inference patterns
per second against an LSQML reconstruction of the same test split, training seconds per epoch, peak memory.

Run ``python bench/ptycho.py [--pinn]``. Prints a Markdown report and puts it in ``bench/RESULTS.md`` under
``## Ptychography`` or ``## Ptychography: PINN vs LSQML`` (replacing an older section of that name). Adapter and direct runs alternate on the
same data in the same process, so machine load affects both alike; both use one torch thread, because
on a shared 2-core machine OpenMP oversubscription swamps the comparison, and both wall and process CPU
time are reported.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import machine_line, measurement_report, store_section
from ptylib.ptycho.compat import import_ptychi_api
from ptylib.ptycho.dataset import simulate_dataset
from ptylib.ptycho.grouping import knn_groups
from ptylib.ptycho.lsqml import (
    LSQMLOptions,
    preserved_global_state,
    ptychi_positions,
    reconstruction_canvas,
    run_lsqml,
)
from ptylib.ptycho.objects import synthetic_object
from ptylib.ptycho.overlap import spacing_filter
from ptylib.ptycho.probes import focused_probe
from ptylib.ptycho.scans import raster_positions

HEADING = "## Ptychography"
PINN_HEADING = "## Ptychography: PINN vs LSQML"
N_PX, STEP_PX, EPOCHS, REPEATS = 64, 6, 10, 4


def scan_dataset(side: int) -> dict[str, np.ndarray]:
    """``side``² patterns of 64×64 at 1e5 photons on a jittered raster (step 6 px)."""
    size = N_PX + (side - 1) * STEP_PX + 2
    obj = synthetic_object(size, rng=np.random.default_rng(0))
    probe = focused_probe(N_PX, rng=np.random.default_rng(1))
    x, y = raster_positions((size, size), N_PX, STEP_PX, jitter_px=0.5, rng=np.random.default_rng(2))
    return simulate_dataset(obj, probe, x, y, 1e5, rng=np.random.default_rng(3), ground_truth_patches=False)


def direct_ptychi(data: dict[str, np.ndarray], options: LSQMLOptions) -> np.ndarray:
    """The same reconstruction written as a plain pty-chi script: options, task, ``task.run()``."""
    api = import_ptychi_api()
    from ptychi.api.task import PtychographyTask

    origin, shape = reconstruction_canvas(data["xcoords"], data["ycoords"], N_PX, options.margin_px)
    pos_x, pos_y = ptychi_positions(data["xcoords"], data["ycoords"], origin, shape)
    opts = api.LSQMLOptions()
    opts.object_options.remove_object_probe_ambiguity.enabled = False
    opts.probe_options.optimizable = False
    opts.reconstructor_options.num_epochs = options.epochs
    opts.reconstructor_options.batch_size = options.batch_size
    opts.reconstructor_options.default_device = api.Devices.CPU
    opts.reconstructor_options.random_seed = options.seed
    opts.reconstructor_options.rescale_probe_intensity_in_first_epoch = False
    with preserved_global_state(options.threads):
        task = PtychographyTask(opts, diffraction_data=np.square(data["diffraction"]),
                                object_data=np.ones((1, *shape), np.complex64),
                                probe_data=data["probeGuess"][None, None], probe_position_x_px=pos_x,
                                probe_position_y_px=pos_y)
        task.run()
        return task.get_data_to_cpu("object", as_numpy=True)[0]


def time_lsqml(side: int) -> dict[str, float]:
    """Best-of-REPEATS wall and CPU seconds per epoch (whole call, build included) of adapter and direct,
    and the largest difference between their objects."""
    data = scan_dataset(side)
    options = LSQMLOptions(epochs=EPOCHS, batch_size=96, seed=0, threads=1)
    run_lsqml(data["diffraction"][:8], data["probeGuess"], data["xcoords"][:8], data["ycoords"][:8],
              LSQMLOptions(epochs=1))  # warm-up: imports and first-call allocations
    times: dict[str, list[float]] = {"adapter_wall": [], "adapter_cpu": [], "direct_wall": [], "direct_cpu": []}
    difference = 0.0
    calls = {"adapter": lambda: run_lsqml(data["diffraction"], data["probeGuess"], data["xcoords"], data["ycoords"],
                                          options).object,
             "direct": lambda: direct_ptychi(data, options)}
    for repeat in range(REPEATS):
        objects = []
        for name in sorted(calls, reverse=bool(repeat % 2)):  # alternate which runs first
            wall, cpu = time.perf_counter(), time.process_time()
            objects.append(calls[name]())
            times[f"{name}_wall"].append((time.perf_counter() - wall) / EPOCHS)
            times[f"{name}_cpu"].append((time.process_time() - cpu) / EPOCHS)
        difference = max(difference, float(np.abs(objects[0] - objects[1]).max()))
    return {name: min(values) for name, values in times.items()} | {"difference": difference}


def time_spacing_filter() -> list[tuple[str, str, str]]:
    """Spacing filter on ~100k group centres of a jittered raster (step 12 px, K = 7, C = 4), N = 128."""
    side = 317
    size = 128 + (side - 1) * 12 + 2
    x, y = raster_positions((size, size), 128, 12, jitter_px=0.5, rng=np.random.default_rng(4))
    start = time.perf_counter()
    groups = knn_groups(x, y, neighbor_count=7, gridsize=2, rng=np.random.default_rng(5))
    grouping_s = time.perf_counter() - start
    rows = [(f"K-choose-C grouping of {len(x):,} positions (K = 7, C = 4)", f"{grouping_s:.2f} s", "cKDTree + argsort")]
    for name, fraction in (("dense", 0.7), ("sparse", 0.2)):
        spacing = (1 - fraction) * 128
        times, kept = [], None
        for seed in range(3):
            start = time.perf_counter()
            kept = spacing_filter(groups.centers, spacing, rng=np.random.default_rng(seed))
            times.append(time.perf_counter() - start)
        rows.append(((f"spacing filter, {len(groups.centers):,} group centres, {name} S = {spacing:.1f} px "
                     "(target < 2 s)"), f"{statistics.median(times):.2f} s (median of 3)", f"{len(kept):,} kept"))
    return rows


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (GiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def time_pinn() -> list[tuple[str, str, str]]:
    """PINN (the study's network, gs1 and gs2) vs LSQML on one 256-pattern test split of 64×64 patterns."""
    from ptylib.ptycho.dataset import with_groups
    from ptylib.ptycho.options import StudyDesign
    from ptylib.ptycho.pinn.infer import reconstruct
    from ptylib.ptycho.pinn.options import ModelKind
    from ptylib.ptycho.pinn.train import train_model

    data = scan_dataset(16)
    data = with_groups(data, knn_groups(data["xcoords"], data["ycoords"], neighbor_count=7, gridsize=2,
                                        rng=np.random.default_rng(6)))
    design = StudyDesign.for_profile("small")
    options = design.training.model_copy(update={"epochs": 3})
    rows, start_rss = [], peak_rss_gib()
    for gridsize in (1, 2):
        trained = train_model(data, ModelKind.PINN, gridsize, options)
        rows.append(((f"PINN gs{gridsize} training, {len(data['xcoords'])} groups of {gridsize ** 2}×64×64, "
                      f"batch {options.batch_size}, {options.filters} filters"),
                     f"{trained.seconds_per_epoch:.2f} s/epoch",
                     (f"mean of epochs 2-{options.epochs} (epoch 1 also traces the graph); TF threads "
                      f"{options.threads}")))
        sidecar = {"gridsize": gridsize, "patch_size_px": N_PX}
        reconstruct(trained.network, sidecar, data)  # warm-up: graph tracing
        runs = []
        for _ in range(3):
            wall = time.perf_counter()
            rec = reconstruct(trained.network, sidecar, data)
            runs.append((time.perf_counter() - wall, rec))
        pinn_s, rec = min(runs, key=lambda run: run[0])
        if gridsize == 1:
            pinn_gs1 = (pinn_s, rec.n_patterns)
        rows.append((f"PINN gs{gridsize} inference + stitching of the split",
                     f"{pinn_s:.3f} s, {rec.n_patterns / pinn_s:,.0f} patterns/s",
                     f"best of 3; network alone {rec.seconds:.3f} s"))
    train_rss = peak_rss_gib()
    options_l = LSQMLOptions(epochs=design.lsqml_epochs, batch_size=design.lsqml_batch_size, seed=0, threads=1)
    wall = time.perf_counter()
    run_lsqml(data["diffraction"], data["probeGuess"], data["xcoords"], data["ycoords"], options_l)
    lsqml_s = time.perf_counter() - wall
    rows.append(((f"LSQML of the same split, {options_l.epochs} epochs, batch {options_l.batch_size} (the study's "
                  "small profile)"), f"{lsqml_s:.1f} s", "1 torch thread, build included"))
    rows.append(("LSQML time / PINN gs1 inference time (target ≥ 100)", f"{lsqml_s / pinn_gs1[0]:.0f}×",
                 f"{pinn_gs1[1]} patterns; same process, same data"))
    rows.append(("peak resident memory", (f"{start_rss:.2f} GiB before, {train_rss:.2f} GiB after PINN training "
                                          f"and inference, {peak_rss_gib():.2f} GiB after LSQML"),
                 "process peak (ru_maxrss), TF + torch imported"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pinn", action="store_true", help="time the PINN against LSQML instead")
    if parser.parse_args().pinn:
        report = measurement_report(PINN_HEADING, machine_line("1 thread in the LSQML run"), time_pinn())
        print(report)
        store_section(PINN_HEADING, report)
        return
    header = machine_line("1 thread in the LSQML runs")
    rows: list[tuple[str, str, str]] = []
    for side in (16, 32):
        t = time_lsqml(side)
        rows.append(((f"LSQML, {side * side} patterns of 64×64, {EPOCHS} epochs: adapter vs pty-chi direct "
                     "(target ratio ≤ 1.1)"),
                     (f"wall {t['adapter_wall']:.3f} vs {t['direct_wall']:.3f} s/epoch, ratio "
                     f"{t['adapter_wall'] / t['direct_wall']:.3f}; CPU {t['adapter_cpu']:.3f} vs {t['direct_cpu']:.3f} "
                     f"s/epoch, ratio {t['adapter_cpu'] / t['direct_cpu']:.3f}"),
                     (f"best of {REPEATS} (load only slows), build included, 1 torch thread; objects differ by at most "
                     f"{t['difference']:.1e}")))
    rows += time_spacing_filter()
    report = measurement_report(HEADING, header, rows)
    print(report)
    store_section(HEADING, report)


if __name__ == "__main__":
    main()
