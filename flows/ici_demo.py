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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow

from flows.ici_loop import ici_loop
from ptylib.ici.backends import BackendName, CrystfelOptions, DialsOptions
from ptylib.ici.proposer.options import ProposerOptions
from ptylib.ici.synthetic.dataset import make_synthetic_run
from ptylib.io.lock import RunRootLock


def standin_indexamajig(bin_dir: Path) -> Path:
    """Write ``bin_dir/indexamajig``: the stand-in indexer with indexamajig's interface, on this Python."""
    path = bin_dir / "indexamajig"
    bin_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m ptylib.ici.synthetic.standin_indexer \"$@\"\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@dataclass(frozen=True)
class DemoData:
    """The demo's dataset and indexer: :meth:`loop_arguments` gives ``ici_loop`` what it needs to index it."""

    h5_path: Path
    dials_options: dict[str, Any] | None
    geometry_path: Path | None = None
    indexamajig: Path | None = None
    images: str | None = None

    def loop_arguments(self, refine: bool) -> dict[str, Any]:
        """The events and backend options of ``ici_loop``, with or without detector refinement.

        DIALS indexes the rendered stills as a folder of CBFs (``images``), as a user's data would be.
        """
        if self.dials_options is not None:
            options = {k: v for k, v in self.dials_options.items() if k != "image_template"}
            dials = DialsOptions(**options, mode="refine" if refine else "fixed")
            return {"images": self.images, "backend": BackendName.DIALS, "dials": dials}
        crystfel = CrystfelOptions(geometry=self.geometry_path, indexamajig=str(self.indexamajig), refine=refine)
        return {"inputs": [str(self.h5_path)], "backend": BackendName.CRYSTFEL, "crystfel": crystfel}


def prepare_demo_data(root: Path, n_events: int, data_seed: int, radius_mm: float, indexer: str) -> DemoData:
    """Write (or reuse) the synthetic run under ``root/data`` for the indexer ``auto``, ``dials`` or ``standin``.

    ``auto`` takes DIALS when ``dials.import`` is on PATH: the stills are then rendered by the
    diffraction simulator; otherwise spot images with hidden centres for the stand-in indexamajig.
    """
    if indexer not in ("auto", "dials", "standin"):
        raise ValueError(f"indexer must be auto, dials or standin, not {indexer!r}")
    if indexer == "dials" or (indexer == "auto" and shutil.which("dials.import") is not None):
        from ptylib.ici.synthetic.dials_dataset import make_dials_dataset

        data = make_dials_dataset(root / "data", events=n_events, seed=data_seed, radius_mm=radius_mm)
        print(f"{n_events} stills ({data.images}); indexing them with DIALS")
        return DemoData(data.h5_path, data.dials_options, images=data.images)
    run = make_synthetic_run(root / "data", n_events, seed=data_seed, radius_mm=radius_mm)
    why = " (DIALS is not installed)" if indexer == "auto" else ""
    print(f"synthetic run: {run.n_events} events in {run.h5_path} (hidden true centres in {run.truth_path.name}); "
          f"indexing them with the stand-in indexamajig{why}")
    return DemoData(run.h5_path, None, run.geometry_path, standin_indexamajig(root / "bin"))


@flow(name="ici-demo", log_prints=True)
def ici_demo(
    run_root: str = "runs/demo/ici",
    n_events: int = 16,
    data_seed: int = 2026,
    refine: bool = True,
    indexer: str = "auto",
    proposer: ProposerOptions | None = None,
    max_iterations: int = 10,
    workers: int = 2,
) -> dict[str, object]:
    """Write a synthetic run under ``<run_root>/data`` and run the ICI loop on it in ``run_root``.

    Parameters
    ----------
    run_root : folder of the demo; the synthetic data go to its data sub-folder.
    n_events : synthetic events (stills) to write.
    data_seed : seed of the synthetic data (true centres, crystal orientations).
    refine : let the indexer refine the detector; off gives the Step-1 search only.
    indexer : dials, standin (the stand-in indexamajig) or auto (DIALS when dials.import is on PATH).
    proposer : the proposer's knobs (the seed's defaults).
    max_iterations : total number of runs of the run root.
    workers : event batches indexed at the same time.
    """
    root = Path(run_root).resolve()
    options = proposer or ProposerOptions()
    # The data is written into the run root too: under its lock, which the loop then shares.
    with RunRootLock(root, owner="ici-demo flow"):
        data = prepare_demo_data(root, n_events, data_seed, options.radius_mm, indexer)
        return ici_loop(run_root=str(root), **data.loop_arguments(refine), proposer=options,
                        max_iterations=max_iterations, workers=workers)
