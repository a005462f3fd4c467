"""Agreement of the simulator with the stored C nanoBragg references, and of two slightly wrong crystals.

Run ``python bench/nanobragg_agreement.py``: one Markdown table (Pearson r, total ratio, largest
pixel difference over the maximum) for every reference in ``tests/fixtures/nanobragg`` and for the
refinement demo's reference rendered with a mosaic spread of 0.7 instead of 0.8 deg and with a misset
of 5.1 instead of 5.0 deg about x. ``tests/ptylib/test_diffraction_nanobragg.py`` holds the bounds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REFERENCE_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nanobragg"
WRONG = (("-mosaic", "0.8", "0.7"), ("-misset", "5", "5.1"))


def render(args: list[str]) -> np.ndarray:
    """Our image for nanoBragg arguments (float64)."""
    import torch

    from ptylib.diffraction.cli import (
        add_simulate_arguments,
        simulation_options_from_args,
    )
    from ptylib.diffraction.simulator import Simulator

    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    args = [str(REFERENCE_DIR / a) if a.endswith(".hkl") else a for a in args]
    with torch.no_grad():
        return Simulator(simulation_options_from_args(parser.parse_args(args))).render().numpy()


def row(name: str, ours: np.ndarray, expected: np.ndarray) -> str:
    pearson = np.corrcoef(ours.ravel(), expected.ravel())[0, 1]
    largest = np.abs(ours - expected).max() / expected.max()
    return f"| {name} | 1 − {1 - pearson:.1e} | {ours.sum() / expected.sum():.8f} | {largest:.1e} |"


def main() -> None:
    references = json.loads((REFERENCE_DIR / "commands.json").read_text())["references"]
    lines = ["| reference | Pearson r | total ours / C | max abs diff / max |", "|---|---|---|---|"]
    for reference in references:
        expected = np.load(REFERENCE_DIR / f"{reference['name']}.npz")["image"].astype(np.float64)
        lines.append(row(reference["name"], render(reference["args"]), expected))
    demo = next(r for r in references if r["name"] == "misset_mosaic")
    expected = np.load(REFERENCE_DIR / "misset_mosaic.npz")["image"].astype(np.float64)
    for flag, right, wrong in WRONG:
        args = list(demo["args"])
        args[args.index(flag) + 1] = wrong
        lines.append(row(f"misset_mosaic rendered with {flag} {wrong} instead of {right}", render(args), expected))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
