"""The ICI demo as a flow: a synthetic serial run with hidden true centres, indexed by the stand-in indexamajig.

It is the README's main job, the scheduled flight check of the deployments, and a way to try the
loop from the Prefect UI without data.
"""

from __future__ import annotations

import shlex
import stat
import sys
from pathlib import Path

from prefect import flow

from flows.ici_loop import ici_loop
from ptylib.ici.backends import CrystfelOptions
from ptylib.ici.options import ProposerOptions
from ptylib.ici.synthetic import make_synthetic_run


def standin_indexamajig(bin_dir: Path) -> Path:
    """Write ``bin_dir/indexamajig``: the stand-in indexer with indexamajig's interface, on this Python."""
    path = bin_dir / "indexamajig"
    bin_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m ptylib.ici.simulated_indexer \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@flow(name="ici-demo", log_prints=True)
def ici_demo(
    run_root: str = "runs/demo/ici",
    n_events: int = 24,
    data_seed: int = 2026,
    refine: bool = True,
    proposer: ProposerOptions | None = None,
    max_iterations: int = 10,
    workers: int = 2,
) -> dict[str, object]:
    """Write ``<run_root>/data/synthetic.h5`` (+ truth, geometry) and run the ICI loop on it in ``run_root``.

    ``refine=False`` runs the stand-in indexer like ``indexamajig --no-refine`` (Step-1 search only).
    """
    root = Path(run_root).resolve()
    options = proposer or ProposerOptions()
    data = make_synthetic_run(root / "data", n_events, seed=data_seed, radius_mm=options.radius_mm)
    print(f"synthetic run: {data.n_events} events in {data.h5_path} (hidden true centres in {data.truth_path.name})")
    indexer = CrystfelOptions(geometry=data.geometry_path, indexamajig=str(standin_indexamajig(root / "bin")),
                              refine=refine)
    return ici_loop(run_root=str(root), inputs=[str(data.h5_path)], crystfel=indexer, proposer=options,
                    max_iterations=max_iterations, workers=workers)
