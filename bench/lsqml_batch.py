"""LSQML minibatch size against reconstruction quality at one dose, on the same study data.

Run ``python bench/lsqml_batch.py [--profile small] [--dose 1e5] [--batch-sizes 16 32 64 96] [--seeds 456 7]``.
It builds the profile's inputs and the dose's datasets once (phases B, C in a temporary run folder), then
reconstructs the same test split with each batch size and seed through the study's own phase F kernel, and
reports the phase MAE (radians, lit region, after registration) with its ratio to the reference batch 32
measured in the same run, plus phase MS-SSIM and seconds per epoch. The table goes into ``bench/RESULTS.md``
under ``## Ptychography: LSQML batch size``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import machine_line, measurement_report, store_section
from ptylib.ptycho import study
from ptylib.ptycho.lsqml import Device
from ptylib.ptycho.options import PROFILES, StudyDesign

HEADING = "## Ptychography: LSQML batch size"
REFERENCE_BATCH = 32


def main(argv: list[str] | None = None) -> None:
    """Measure, print the Markdown section and store it in RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="small")
    parser.add_argument("--dose", type=float, default=1e5, help="photons per exposure")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64, 96])
    parser.add_argument("--seeds", type=int, nargs="+", default=[456, 7], help="minibatch-order seeds")
    args = parser.parse_args(argv)
    base = StudyDesign.for_profile(args.profile)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="lsqml-batch-") as tmp:
        root = Path(tmp)
        inputs = study.prepare_inputs(base, "b", root=root)
        dataset = study.generate_dose(base, inputs["base_npz"], args.dose, "c", root=root)
        mae: dict[int, list[float]] = {}
        for batch in [REFERENCE_BATCH, *(b for b in args.batch_sizes if b != REFERENCE_BATCH)]:
            for seed in args.seeds:
                design = StudyDesign.model_validate(base.model_dump() | {"lsqml_batch_size": batch,
                                                                         "seed_subsampling": seed})
                record = study.reconstruct(design, dataset["test"]["path"], f"f/{batch}_{seed}", f"batch {batch}",
                                           root=root, threads=1, device=Device.CPU)
                metrics = json.loads((root / record["metrics_json"]).read_text())
                mae.setdefault(batch, []).append(metrics["phase"]["mae"])
                ratio = statistics.mean(mae[batch]) / statistics.mean(mae[REFERENCE_BATCH])
                result = (f"phase MAE {metrics['phase']['mae']:.4f} rad, phase MS-SSIM {record['phase_ms_ssim']:.4f}, "
                          f"{record['seconds_per_epoch']:.3f} s/epoch")
                rows.append((f"batch {batch}, seed {seed}", result,
                             f"mean MAE over seeds so far / batch {REFERENCE_BATCH}'s: {ratio:.2f}"))
                print(" | ".join(rows[-1]), flush=True)
    header = (f"{machine_line('1 thread')}\n\n`python bench/lsqml_batch.py --profile {args.profile} --dose {args.dose:g}`"
              f": profile {args.profile} (N = {base.patch_size_px} px, {record['n_patterns']} test patterns, "
              f"{base.lsqml_epochs} epochs), the same dataset for every row; MAE of the phase on the lit region "
              "after registration.")
    report = measurement_report(HEADING, header, rows)
    print(report)
    store_section(HEADING, report)


if __name__ == "__main__":
    main()
