"""Benchmark of the ICI DIALS backend: success and RMSD vs centre offset, time per still, loop overhead.

Run ``python bench/ici_dials.py`` (``--events``, ``--workers``; needs Debian's ``dials``). It renders
(or reuses, in ``--data``) the default DIALS dataset (:mod:`ptylib.ici.synthetic.dials_dataset`), prints a
Markdown report and puts it in ``bench/RESULTS.md`` under ``## ICI DIALS backend``.

1. **Offset curve.** Each event is indexed with the supplied centre moved from its true centre by
   ``d`` mm (along +x), in both modes: indexed count, median DIALS positional RMSD, median wRMSD
   (the project's, from the stream part) and, in ``refine`` mode, the median distance between the
   refined and the true shift.
2. **Time per still** (``refine`` mode at the true centre): the three DIALS command-line programs
   as three processes; the backend with ``persistent=False`` (the three programs in one DIALS process
   per still); the backend's default, each still handed to the DIALS server (DIALS imported once).
3. **Loop overhead.** One ICI iteration through the kernels the flow calls (plan, job scripts,
   runner with one worker, stream concatenation, chunk metrics, ingest, propose): its wall time
   against the time the DIALS workers report (``elapsed_s`` in ``dials_summary.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.results import machine_line, store_section  # noqa: E402
from ptylib.ici.backends import DialsBackend, EventJob, dials_worker, make_backend  # noqa: E402
from ptylib.ici.events import resolve_events  # noqa: E402
from ptylib.ici.loop import plan_next_run  # noqa: E402
from ptylib.ici.proposer.options import ProposerOptions  # noqa: E402
from ptylib.ici.proposer.propose import propose_run_root  # noqa: E402
from ptylib.ici.runner import collect_run, concatenate_streams, run_event_batch  # noqa: E402
from ptylib.ici.runroot.ingest import ingest_run  # noqa: E402
from ptylib.ici.runroot.layout import event_dir, run_directory
from ptylib.ici.synthetic.dials_dataset import make_dials_dataset  # noqa: E402

HEADING = "## ICI DIALS backend"
Row = tuple[str, str, str]
OFFSETS_MM = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def run_jobs(backend: DialsBackend, root: Path, jobs: list[EventJob], workers: int) -> list[dict]:
    """Run ``jobs`` (one run) through the runner; each event's ``dials_summary.json`` plus its wRMSD."""
    run_dir = root / f"run_{jobs[0].run_n:03d}"
    backend.prepare_run(run_dir, jobs)
    scripts = [backend.write_event_script(j, event_dir(root, j.run_n, j.event_index)) for j in jobs]
    run_event_batch(scripts, timeout_s=600, workers=workers)
    concatenate_streams(run_dir, jobs[0].run_n, [j.event_index for j in jobs])
    results = collect_run(run_dir, jobs[0].run_n, jobs, backend)
    out = []
    for job, result in zip(jobs, results, strict=True):
        summary = json.loads((event_dir(root, job.run_n, job.event_index) / dials_worker.SUMMARY_NAME).read_text())
        out.append({**summary, "wrmsd": result.metric.wrmsd, "indexed": result.metric.indexed})
    return out


def offset_curve(data, work: Path, workers: int) -> list[str]:  # noqa: ANN001 - DialsDataset
    """Markdown rows of the offset curve (see the module docstring)."""
    keys = resolve_events([str(data.h5_path)])
    rows = []
    for mode in ("fixed", "refine"):
        backend = make_backend("dials", {**data.dials_options, "mode": mode})
        jobs = [EventJob(key, len(OFFSETS_MM) * e + k, 0, data.true_shift_mm[e][0] + d, data.true_shift_mm[e][1])
                for e, key in enumerate(keys) for k, d in enumerate(OFFSETS_MM)]
        summaries = run_jobs(backend, work / f"curve_{mode}", jobs, workers)
        for k, d in enumerate(OFFSETS_MM):
            picked = summaries[k :: len(OFFSETS_MM)]
            ok = [s for s in picked if s["indexed"]]
            rmsd = [s["rmsd_px"] for s in picked if "rmsd_px" in s]
            error = [_refined_error(s, data.true_shift_mm[e]) for e, s in enumerate(picked)
                     if s["indexed"] and "det_shift_mm" in s]
            rows.append(f"| {mode} | {d:g} | {len(ok)}/{len(picked)} | {_median(rmsd)} | "
                        f"{_median([s['wrmsd'] for s in ok])} | {_median(error, 4) if mode == 'refine' else ''} |")
    return rows


def _refined_error(summary: dict, true_shift) -> float:  # noqa: ANN001
    applied = summary["det_shift_mm_applied"]
    refined = [a + s for a, s in zip(applied, summary["det_shift_mm"], strict=True)]
    return float(((refined[0] - true_shift[0]) ** 2 + (refined[1] - true_shift[1]) ** 2) ** 0.5)


def _median(values: list[float], digits: int = 3) -> str:
    return f"{statistics.median(values):.{digits}f}" if values else "–"


def time_per_still(data, work: Path, n: int) -> list[Row]:  # noqa: ANN001
    """Rows (measurement, time, note): seconds per still through the CLI programs, the in-process worker, the DIALS server."""
    keys = resolve_events([str(data.h5_path)])[:n]
    jobs = [EventJob(k, i, 0, *data.true_shift_mm[k.event]) for i, k in enumerate(keys)]
    seconds: dict[str, list[float]] = {}
    for label, persistent in (("in-process", False), ("server", True)):
        backend = make_backend("dials", {**data.dials_options, "persistent": persistent})
        for job in jobs:
            script = backend.write_event_script(job, event_dir(work / label, 0, job.event_index))
            start = time.monotonic()
            run_event_batch([script], timeout_s=600, workers=1)
            seconds.setdefault(label, []).append(time.monotonic() - start)
    for job in jobs:
        summary = json.loads((event_dir(work / "server", 0, job.event_index) / dials_worker.SUMMARY_NAME).read_text())
        options = dials_worker.parser().parse_args(backend.worker_args(job))
        directory = work / "cli" / f"event_{job.event_index:06d}"
        directory.mkdir(parents=True)
        start = time.monotonic()
        for name, args, _ in dials_worker.program_steps(options, summary["supplied_centre_px"]):
            subprocess.run([f"dials.{name}", *args], cwd=directory, capture_output=True, check=True)
        seconds.setdefault("cli", []).append(time.monotonic() - start)
        if not (directory / "indexed.expt").is_file():
            raise RuntimeError(f"the command-line programs did not index {job.key.label()} (see {directory})")
    first, later = seconds["server"][0], statistics.median(seconds["server"][1:] or seconds["server"])
    return [
        ("`dials.import`, `dials.find_spots`, `dials.index` as three processes",
         f"{statistics.median(seconds['cli']):.1f} s", f"median of {n} stills; no scoring"),
        ("backend, `persistent=False`: the three programs in one DIALS process per still",
         f"{statistics.median(seconds['in-process']):.1f} s", f"median of {n}, whole event script"),
        ("backend, `persistent=True` (default): the still handed to the DIALS server", f"{later:.1f} s",
         f"median of stills 2..{n}; the first, which may start the server, {first:.1f} s"),
    ]


def loop_overhead(data, work: Path) -> list[Row]:  # noqa: ANN001
    """Rows (measurement, time, note): one iteration through the loop's kernels vs the DIALS time inside it."""
    backend = make_backend("dials", data.dials_options)
    keys = resolve_events([str(data.h5_path)])
    root = work / "loop"
    start = time.monotonic()
    plan = plan_next_run({}, keys, -1)
    run_dir = run_directory(root, plan.run_n)
    backend.prepare_run(run_dir, plan.jobs)
    scripts = [backend.write_event_script(j, event_dir(root, plan.run_n, j.event_index)) for j in plan.jobs]
    run_event_batch(scripts, timeout_s=600, workers=1)
    concatenate_streams(run_dir, plan.run_n, [j.event_index for j in plan.jobs])
    collect_run(run_dir, plan.run_n, plan.jobs, backend)
    ingest_run(root, plan.run_n)
    propose_run_root(root, ProposerOptions())
    total = time.monotonic() - start
    inside = sum(json.loads((event_dir(root, plan.run_n, j.event_index) / dials_worker.SUMMARY_NAME).read_text())
                 ["elapsed_s"] for j in plan.jobs)
    return [(f"one iteration, {len(keys)} events, 1 worker", f"{total:.1f} s",
             f"DIALS workers report {inside:.1f} s: {100 * (1 - inside / total):.1f} % of the iteration is "
             "outside DIALS' programs (target <= 10 %)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4, help="stills of the dataset (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="events indexed at once in the offset curve")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "ptyflows-bench-dials-data",
                        help="dataset folder (reused when it holds the same dataset)")
    args = parser.parse_args()
    if shutil.which("dials.import") is None:
        sys.exit("DIALS is not installed: apt-get install -y dials (as root)")
    header = machine_line()
    data = make_dials_dataset(args.data, events=args.events)
    work = Path(tempfile.mkdtemp(prefix="ici-dials-bench-"))
    try:
        curve = offset_curve(data, work, args.workers)
        timing = time_per_still(data, work, min(args.events, 4))
        overhead = loop_overhead(data, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [HEADING, "", header + f"; DIALS {_dials_version()}", "",
             f"Offset curve: {args.events} rendered stills (default DIALS dataset), supplied centre moved by d "
             "along +x from the true one.", "",
             "| mode | d (mm) | indexed | median DIALS RMSD (px) | median wRMSD (px) "
             "| median refined-centre error (mm) |",
             "|---|---|---|---|---|---|", *curve, "",
             "| measurement | time | note |", "|---|---|---|", *(f"| {a} | {b} | {c} |" for a, b, c in timing + overhead)]
    report = "\n".join(lines) + "\n"
    print(report)
    store_section(HEADING, report)


def _dials_version() -> str:
    done = subprocess.run(["dials.version"], capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0].removeprefix("DIALS ").strip() if done.stdout else "unknown"


if __name__ == "__main__":
    main()
