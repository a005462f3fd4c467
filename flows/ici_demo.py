"""The ICI demo as a flow: a synthetic serial run with hidden true centres, indexed by DIALS or a stand-in.

It is the README's main job, the scheduled flight check of the deployments, and a way to try the
loop from the Prefect UI without data. With ``indexer="dials"`` the stills are rendered by the
diffraction simulator and indexed by the real DIALS programs; with ``indexer="standin"`` spot images
are indexed by the stand-in ``indexamajig`` (CrystFEL's command line and stream format, a response
model instead of indexing); ``"auto"`` takes DIALS when it is installed.
"""

from __future__ import annotations

import shlex
import shutil
import stat
import sys
from pathlib import Path

from prefect import flow

from flows.ici_loop import ici_loop
from ptylib.ici.backends import BackendName, CrystfelOptions, DialsOptions
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
    indexer: str = "auto",
    proposer: ProposerOptions | None = None,
    max_iterations: int = 10,
    workers: int = 2,
) -> dict[str, object]:
    """Write a synthetic run under ``<run_root>/data`` and run the ICI loop on it in ``run_root``.

    ``indexer`` is ``dials``, ``standin`` or ``auto`` (DIALS when ``dials.import`` is on PATH).
    ``refine=False`` runs the indexer without detector refinement (Step-1 search only).
    """
    root = Path(run_root).resolve()
    options = proposer or ProposerOptions()
    if indexer not in ("auto", "dials", "standin"):
        raise ValueError(f"indexer must be auto, dials or standin, not {indexer!r}")
    use_dials = indexer == "dials" or (indexer == "auto" and shutil.which("dials.import") is not None)
    if use_dials:
        from ptylib.ici.dials_dataset import make_dials_dataset

        data = make_dials_dataset(root / "data", events=n_events, seed=data_seed, radius_mm=options.radius_mm)
        print(f"rendered {n_events} stills in {data.h5_path}; indexing them with DIALS")
        dials = DialsOptions(**data.dials_options, mode="refine" if refine else "fixed")
        return ici_loop(run_root=str(root), inputs=[str(data.h5_path)], backend=BackendName.DIALS, dials=dials,
                        proposer=options, max_iterations=max_iterations, workers=workers)
    data = make_synthetic_run(root / "data", n_events, seed=data_seed, radius_mm=options.radius_mm)
    why = " (DIALS is not installed)" if indexer == "auto" else ""
    print(f"synthetic run: {data.n_events} events in {data.h5_path} (hidden true centres in {data.truth_path.name}); "
          f"indexing them with the stand-in indexamajig{why}")
    crystfel = CrystfelOptions(geometry=data.geometry_path, indexamajig=str(standin_indexamajig(root / "bin")),
                               refine=refine)
    return ici_loop(run_root=str(root), inputs=[str(data.h5_path)], crystfel=crystfel, proposer=options,
                    max_iterations=max_iterations, workers=workers)
