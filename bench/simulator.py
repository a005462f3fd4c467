"""Diffraction simulator: forward and forward+backward time, peak memory, and the C nanoBragg on the same images.

Run ``python bench/simulator.py``. Both scenes are given as nanoBragg command lines, which the C
program and ``ptyflows simulate``'s parser read alike: the refinement demo (64 x 64) and the same
crystal on a 1024 x 1024 detector (2x2 auto-oversampling, 5 mosaic domains: 21 million
sub-pixel x domain evaluations). Each of our measurements runs in a fresh child process so that its
peak RSS is its own; the C program (``NANOBRAGG`` or ``nanoBragg`` on PATH, built without OpenMP)
runs single-threaded in the same run. Target: our forward <= the C single-thread time at 1024 x 1024.
The report replaces the ``## Diffraction simulator`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import machine_line, measurement_report, store_section

HEADING = "## Diffraction simulator"
SCENES = {
    "demo 64x64": "-cell 100 100 100 90 90 90 -N 5 -default_F 100 -misset 5 3 -2 -mosaic 0.8 -mosaic_domains 5 "
                  "-mosaic_seed 42 -lambda 1 -distance 100 -pixel 0.1 -detpixels 64 -fluence 1e28",
    "1024x1024": "-cell 100 100 100 90 90 90 -N 5 -default_F 100 -misset 5 3 -2 -mosaic 0.8 -mosaic_domains 5 "
                 "-mosaic_seed 42 -lambda 1 -distance 100 -pixel 0.1 -detpixels 1024 -fluence 1e28",
}
REPEATS = {"demo 64x64": 20, "1024x1024": 3}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(scene: str, mode: str, threads: int, image_path: str | None) -> dict[str, float]:
    """Child process: seconds per iteration (median), CPU seconds, setup and peak RSS (MiB)."""
    import torch

    from ptylib.diffraction.cli import add_simulate_arguments, simulation_options_from_args
    from ptylib.diffraction.simulator import Simulator

    torch.set_num_threads(threads)
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    simulator = Simulator(simulation_options_from_args(parser.parse_args(SCENES[scene].split())))
    with torch.no_grad():
        target = simulator.render()
    setup_rss = _rss_mb()
    wall, cpu = [], []
    for _ in range(REPEATS[scene]):
        misset = simulator.tensor([5.0, 3.0, -2.0]).requires_grad_(mode == "backward")
        spread = simulator.tensor(0.8).requires_grad_(mode == "backward")
        start, start_cpu = time.perf_counter(), time.process_time()
        if mode == "backward":
            image = simulator.render(misset_deg=misset + 0.01, mosaic_spread_deg=spread)
            torch.mean((image - target) ** 2).backward()
        else:
            with torch.no_grad():
                image = simulator.render(misset_deg=misset, mosaic_spread_deg=spread)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    if image_path:
        np.save(image_path, image.detach().numpy().astype(np.float32))
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu), "setup_rss_mb": setup_rss,
            "peak_rss_mb": _rss_mb(), "oversample": simulator.oversample}


def run_child(scene: str, mode: str, threads: int, image_path: str | None = None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", scene, mode, str(threads)]
    if image_path:
        command.append(image_path)
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_nanobragg(binary: str, scene: str, repeats: int) -> tuple[dict[str, float], np.ndarray]:
    """Wall and CPU seconds (median) of the C program, single-threaded, and its float image."""
    wall, cpu = [], []
    with tempfile.TemporaryDirectory() as work:
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([binary, *SCENES[scene].split(), "-floatfile", "float.bin", "-nonoise", "-nopgm",
                            "-noprogress"], cwd=work, check=True, capture_output=True,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
            wall.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        image = np.fromfile(Path(work) / "float.bin", dtype="<f4")
    side = int(np.sqrt(image.size))
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu)}, image.reshape(side, side)


def main() -> None:
    binary = shutil.which(os.environ.get("NANOBRAGG", "nanoBragg")) or os.environ.get("NANOBRAGG")
    default_threads = len(os.sched_getaffinity(0))
    rows: list[tuple[str, str, str]] = []
    header = machine_line()
    for scene in SCENES:
        with tempfile.TemporaryDirectory() as work:
            image_path = str(Path(work) / "ours.npy")
            ours = {threads: run_child(scene, "forward", threads, image_path if threads == 1 else None)
                    for threads in sorted({1, default_threads})}
            backward = {threads: run_child(scene, "backward", threads) for threads in sorted({1, default_threads})}
            our_image = np.load(image_path).astype(np.float64)
        for threads in sorted(ours):
            f, b = ours[threads], backward[threads]
            rows.append((f"{scene}: forward, {threads} torch thread{'s' if threads > 1 else ''}",
                         f"{f['wall_s'] * 1e3:.1f} ms (CPU {f['cpu_s'] * 1e3:.1f} ms)",
                         f"median of {REPEATS[scene]}; {f['oversample']}x{f['oversample']} sub-pixels; peak RSS "
                         f"{f['peak_rss_mb']:.0f} MiB (after set-up {f['setup_rss_mb']:.0f} MiB)"))
            rows.append((f"{scene}: forward + backward, {threads} torch thread{'s' if threads > 1 else ''}",
                         f"{b['wall_s'] * 1e3:.1f} ms (CPU {b['cpu_s'] * 1e3:.1f} ms)",
                         f"MSE loss, gradients for misset and mosaic; peak RSS {b['peak_rss_mb']:.0f} MiB"))
        if binary:
            c_time, c_image = run_nanobragg(binary, scene, repeats=5 if scene.startswith("demo") else 1)
            pearson = np.corrcoef(our_image.ravel(), c_image.ravel())[0, 1]
            ratio = our_image.sum() / c_image.sum()
            rows.append((f"{scene}: C nanoBragg, 1 thread", f"{c_time['wall_s'] * 1e3:.1f} ms "
                         f"(CPU {c_time['cpu_s'] * 1e3:.1f} ms)",
                         f"whole program incl. start-up and file output; our image vs C: Pearson r = "
                         f"{pearson:.8f}, total ratio {ratio:.6f}"))
            fastest = min(o["wall_s"] for o in ours.values())
            rows.append((f"{scene}: C / ours (forward, best thread count)", f"{c_time['wall_s'] / fastest:.2f}x",
                         "> 1 means ours is faster" + (" (target at 1024x1024: >= 1)" if "1024" in scene else "")))
        else:
            rows.append((f"{scene}: C nanoBragg", "not run", "set NANOBRAGG=/path/to/nanoBragg"))
    report = measurement_report(HEADING, header, rows)
    print(report)
    store_section(HEADING, report)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        scene_name, mode_name, thread_count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print(json.dumps(measure(scene_name, mode_name, thread_count, sys.argv[5] if len(sys.argv) > 5 else None)))
    else:
        main()
