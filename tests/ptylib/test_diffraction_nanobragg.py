"""Agreement with the original C nanoBragg on the stored reference images (tests/fixtures/nanobragg)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ptylib.diffraction.cli import add_simulate_arguments, simulation_options_from_args  # noqa: E402
from ptylib.diffraction.simulator import Simulator  # noqa: E402

REFERENCE_DIR = Path(__file__).parents[1] / "fixtures" / "nanobragg"
REFERENCES = json.loads((REFERENCE_DIR / "commands.json").read_text())["references"]


def _render(args: list[str]) -> np.ndarray:
    # The stored nanoBragg arguments are replayed through our own command-line parser.
    args = [str(REFERENCE_DIR / a) if a.endswith(".hkl") else a for a in args]
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    options = simulation_options_from_args(parser.parse_args(args))
    with torch.no_grad():
        return Simulator(options).render().numpy()


@pytest.mark.parametrize("reference", REFERENCES, ids=[r["name"] for r in REFERENCES])
def test_matches_c_nanobragg(reference: dict) -> None:
    expected = np.load(REFERENCE_DIR / f"{reference['name']}.npz")["image"].astype(np.float64)
    ours = _render(reference["args"])
    assert ours.shape == expected.shape
    pearson = np.corrcoef(ours.ravel(), expected.ravel())[0, 1]
    total_ratio = ours.sum() / expected.sum()
    assert pearson >= 0.999, f"{reference['name']}: Pearson r = {pearson:.6f}"
    assert abs(total_ratio - 1) <= 0.01, f"{reference['name']}: total intensity ratio {total_ratio:.5f}"


def test_at_least_four_references_cover_the_required_features() -> None:
    joined = " ".join(r["command"] for r in REFERENCES)
    assert len(REFERENCES) >= 4
    for flag in ("-misset", "-mosaic", "-hkl", "-oversample", "-polar", "-Xbeam", "-default_F"):
        assert flag in joined
