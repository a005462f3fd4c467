"""Diffraction simulator: forward and forward+backward time, memory, and the C nanoBragg on the same images.

Run ``python bench/simulator.py``. Two tables, each its own section of ``bench/RESULTS.md``:

* CPU (always): the refinement demo (64 x 64) and the same crystal on a 1024 x 1024 detector (2x2
  auto-oversampling, 5 mosaic domains: 21 million sub-pixel x domain evaluations), with 1 torch
  thread and with all cores, each in a fresh child process so that its peak RSS is its own. The
  forward+backward child times the forward pass interleaved with it, so their ratio (target <= 3
  at 1024 x 1024) comes from one process. The C program (``NANOBRAGG`` or ``nanoBragg`` on PATH,
  built without OpenMP) runs single-threaded in the same run (target: C time / ours >= 1).
  Both scenes are nanoBragg command lines, which the C program and ``ptyflows simulate`` read alike.
* CUDA (when torch sees a device, or ``--device``): 1024 x 1024 with 5 domains and 2048 x 2048
  with 20 domains, float32 and float64, eager and fused (``torch.compile``) kernels: first call
  (compilation included), forward (median of 5) and forward+backward (median of 3) after warm-up,
  peak device memory, and G sub-pixel x domain evaluations per second. Targets (issue 17): at
  1024 x 1024 in float32 forward <= 3 ms and forward+backward <= 10 ms; >= 20 G/s at 2048 x 2048.
  Without a device the CUDA section of RESULTS.md is left as it is.
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
from ptylib.diffraction.execution import thread_candidates

HEADING = "## Diffraction simulator"
CUDA_HEADING = "## Diffraction simulator on CUDA"
CRYSTAL = ("-cell 100 100 100 90 90 90 -N 5 -default_F 100 -misset 5 3 -2 -mosaic 0.8 -mosaic_seed 42 -lambda 1 "
           "-distance 100 -pixel 0.1 -fluence 1e28")
SCENES = {
    "demo 64x64": f"{CRYSTAL} -mosaic_domains 5 -detpixels 64",
    "1024x1024": f"{CRYSTAL} -mosaic_domains 5 -detpixels 1024",
}
DEVICE_SCENES = {
    "1024x1024, 5 domains": f"{CRYSTAL} -mosaic_domains 5 -detpixels 1024",
    "2048x2048, 20 domains": f"{CRYSTAL} -mosaic_domains 20 -detpixels 2048",
}
REPEATS = {"demo 64x64": 20, "1024x1024": 3}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _simulator(line: str, **kwargs: object) -> object:
    from ptylib.diffraction.cli import (
        add_simulate_arguments,
        simulation_options_from_args,
    )
    from ptylib.diffraction.simulator import Simulator

    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    return Simulator(simulation_options_from_args(parser.parse_args(line.split())), **kwargs)


def _timed_passes(simulator: object, target: object, synchronize: object = lambda: None) -> tuple[
        object, object]:
    """Two callables: a forward pass without gradients, and forward + MSE loss + backward (misset, mosaic)."""
    import torch

    def forward() -> torch.Tensor:
        with torch.no_grad():
            image = simulator.render(misset_deg=simulator.tensor([5.0, 3.0, -2.0]), mosaic_spread_deg=0.8)
        synchronize()
        return image

    def forward_backward() -> torch.Tensor:
        misset = simulator.tensor([5.0, 3.0, -2.0]).requires_grad_()
        spread = simulator.tensor(0.8).requires_grad_()
        image = simulator.render(misset_deg=misset + 0.01, mosaic_spread_deg=spread)
        torch.mean((image - target) ** 2).backward()
        synchronize()
        return image

    return forward, forward_backward


def _clock(function: object) -> tuple[float, float]:
    start, start_cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - start, time.process_time() - start_cpu


def measure(scene: str, mode: str, threads: int, image_path: str | None) -> dict[str, float]:
    """Child process: medians of wall and CPU seconds, set-up and peak RSS (MiB)."""
    import torch

    torch.set_num_threads(threads)
    simulator = _simulator(SCENES[scene], threads=threads)
    with torch.no_grad():
        target = simulator.render()
    setup_rss = _rss_mb()
    forward, forward_backward = _timed_passes(simulator, target)
    timings: dict[str, list[tuple[float, float]]] = {"forward": [], "backward": []}
    for _ in range(REPEATS[scene]):
        if mode == "backward":  # interleaved, so the ratio of the two sees the same load
            timings["backward"].append(_clock(forward_backward))
        timings["forward"].append(_clock(forward))
    if image_path:
        np.save(image_path, forward().numpy().astype(np.float32))
    result = {"setup_rss_mb": setup_rss, "peak_rss_mb": _rss_mb(), "oversample": simulator.oversample,
              "keep_jacobian": simulator.keep_jacobian}
    for name, values in timings.items():
        if values:
            result[f"{name}_wall_s"] = statistics.median(v[0] for v in values)
            result[f"{name}_cpu_s"] = statistics.median(v[1] for v in values)
    return result


def measured_threads(scene: str) -> int:
    """Child process: the thread count the simulator's own measurement picks for ``scene``."""
    import torch

    simulator = _simulator(SCENES[scene])
    with torch.no_grad():
        simulator.render()
    return simulator.threads


def run_child(*args: str) -> object:
    output = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True,
                            text=True).stdout
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


def _ms(seconds: float, cpu: float | None = None) -> str:
    return f"{seconds * 1e3:.1f} ms" + (f" (CPU {cpu * 1e3:.1f} ms)" if cpu is not None else "")


def cpu_rows(binary: str | None, counts: list[int]) -> list[tuple[str, str, str]]:
    """The CPU table: ours per thread count, forward+backward over forward, the C program."""
    cores = len(os.sched_getaffinity(0))
    rows: list[tuple[str, str, str]] = []
    for scene in SCENES:
        with tempfile.TemporaryDirectory() as work:
            image_path = str(Path(work) / "ours.npy")
            forward = {n: run_child("measure", scene, "forward", str(n), image_path if n == counts[0] else "")
                       for n in counts}
            backward = {n: run_child("measure", scene, "backward", str(n), "") for n in counts}
            our_image = np.load(image_path).astype(np.float64)
        for n in counts:
            f, b = forward[n], backward[n]
            label = f"{n} torch thread{'s' if n > 1 else ''}"
            rows.append((f"{scene}: forward, {label}", _ms(f["forward_wall_s"], f["forward_cpu_s"]),
                         (f"median of {REPEATS[scene]}; {f['oversample']}x{f['oversample']} sub-pixels; peak RSS "
                          f"{f['peak_rss_mb']:.0f} MiB (after set-up {f['setup_rss_mb']:.0f} MiB)")))
            rows.append((f"{scene}: forward + backward, {label}", _ms(b["backward_wall_s"], b["backward_cpu_s"]),
                         (f"MSE loss, gradients for misset and mosaic; Jacobians "
                          f"{'kept' if b['keep_jacobian'] else 'recomputed'}; peak RSS {b['peak_rss_mb']:.0f} MiB")))
            rows.append((f"{scene}: (forward + backward) / forward, {label}",
                         (f"{b['backward_wall_s'] / b['forward_wall_s']:.2f}x (CPU "
                          f"{b['backward_cpu_s'] / b['forward_cpu_s']:.2f}x)"),
                         "same process, interleaved" + (" (target at 1024x1024: <= 3)" if "1024" in scene else "")))
        rows.append((f"{scene}: thread count the simulator measures", str(run_child("threads", scene)),
                     f"fastest of {', '.join(map(str, thread_candidates(cores)))} on one block, fresh process"))
        if binary:
            c_time, c_image = run_nanobragg(binary, scene, repeats=5 if scene.startswith("demo") else 1)
            pearson = np.corrcoef(our_image.ravel(), c_image.ravel())[0, 1]
            ratio = our_image.sum() / c_image.sum()
            rows.append((f"{scene}: C nanoBragg, 1 thread", _ms(c_time["wall_s"], c_time["cpu_s"]),
                         (f"whole program incl. start-up and file output; our image vs C: Pearson r = 1 - "
                          f"{1 - pearson:.1e}, total ratio {ratio:.7f}")))
            fastest = min(forward[n]["forward_wall_s"] for n in counts)
            rows.append((f"{scene}: C / ours (forward, best thread count)", f"{c_time['wall_s'] / fastest:.2f}x",
                         "> 1 means ours is faster" + (" (target at 1024x1024: >= 1)" if "1024" in scene else "")))
        else:
            rows.append((f"{scene}: C nanoBragg", "not run", "set NANOBRAGG=/path/to/nanoBragg"))
    return rows


def device_rows(device: str, scenes: dict[str, str], *, forward_repeats: int = 5,
                backward_repeats: int = 3) -> list[tuple[str, str, str]]:
    """The device table: per scene, dtype and kernel, first call, forward, forward+backward, memory, rate."""
    import torch

    on_cuda = torch.device(device).type == "cuda"
    synchronize = (lambda: torch.cuda.synchronize(device)) if on_cuda else (lambda: None)
    rows: list[tuple[str, str, str]] = []
    for scene, line in scenes.items():
        for dtype in (torch.float32, torch.float64):
            for fused in (False, True):
                simulator = _simulator(line, dtype=dtype, device=device, fused=fused)
                first, _ = _clock(lambda s=simulator: (s.render().sum().item()))
                with torch.no_grad():
                    target = simulator.render()
                forward, forward_backward = _timed_passes(simulator, target, synchronize)
                forward_backward()  # compiles the Jacobian variant of a fused kernel
                if on_cuda:
                    torch.cuda.reset_peak_memory_stats(device)
                forward_s = statistics.median(_clock(forward)[0] for _ in range(forward_repeats))
                backward_s = statistics.median(_clock(forward_backward)[0] for _ in range(backward_repeats))
                peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if on_cuda else "n/a"
                evaluations = target.numel() * simulator.oversample**2 * simulator.options.crystal.mosaic_domains
                kernel = "fused" if fused else "eager"
                failure = f"; compile failed: {simulator.compile_failure}" if simulator.compile_failure else ""
                rows.append((f"{scene}, {str(dtype).removeprefix('torch.')}, {kernel}: forward / forward + backward",
                             f"{_ms(forward_s)} / {_ms(backward_s)}",
                             (f"{evaluations / forward_s / 1e9:.3g} G evaluations/s; first call {first:.1f} s; "
                              f"peak memory {peak}; blocks of {simulator.chunk_elements:.2e} elements; Jacobians "
                              f"{'kept' if simulator.keep_jacobian else 'recomputed'}{failure}")))
                del simulator, target
                if on_cuda:
                    torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None,
                        help="device of the second table (default: cuda when torch sees one, else no table)")
    parser.add_argument("--skip-cpu", action="store_true", help="only the device table")
    parser.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                        help="torch thread counts of the CPU table (default: 1 and all cores)")
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    command = f"`{' '.join(['python bench/simulator.py', *sys.argv[1:]])}`"
    if not args.skip_cpu:
        binary = shutil.which(os.environ.get("NANOBRAGG", "nanoBragg")) or os.environ.get("NANOBRAGG")
        counts = sorted(set(args.threads or {1, len(os.sched_getaffinity(0))}))
        report = measurement_report(HEADING, f"{command}: {machine_line()}", cpu_rows(binary, counts))
        print(report)
        store_section(HEADING, report)
    if device is None:
        print("no CUDA device: the CUDA section of RESULTS.md is left as it is")
        return
    name = torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else device
    report = measurement_report(CUDA_HEADING, f"{command}: {machine_line()}; device: {name}",
                                device_rows(device, DEVICE_SCENES))
    print(report)
    store_section(CUDA_HEADING, report)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        if sys.argv[2] == "threads":
            print(json.dumps(measured_threads(sys.argv[3])))
        else:
            scene_name, mode_name, thread_count, path = sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
            print(json.dumps(measure(scene_name, mode_name, thread_count, path or None)))
    else:
        main()
