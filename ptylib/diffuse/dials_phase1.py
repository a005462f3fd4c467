"""Phase 1 geometry from DIALS: one still through the ICI backend's DIALS worker (import, find spots, index, refine).

The worker (:mod:`ptylib.ici.backends.dials_worker`, run under DIALS' own Python) writes
``imported.expt``, ``strong.refl``, ``indexed.expt``, ``indexed.refl`` and ``dials_summary.json``
into the still's ``dials/`` folder; it indexes with the known cell and space group
(``indexing.method=fft1d``) and refines the crystal and the detector's in-plane position (the beam
centre). Success is read from the summary (indexed fraction and RMSD gate), never from exit codes;
``indexed.expt`` then becomes the still's ``Experiment_dials_<i>.expt``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from ptylib.diffuse.layout import RunLayout
from ptylib.diffuse.options import DialsPhase1Options
from ptylib.io.atomic import atomic_write_bytes

OUTPUTS = ("imported.expt", "strong.refl", "indexed.expt", "indexed.refl", "dials_summary.json")


class DialsNotIndexedError(RuntimeError):
    """DIALS ran but the still did not pass the indexing gate (an outcome, not a crash: no retry)."""


def dials_command(cbf: Path, options: DialsPhase1Options) -> list[str]:
    """The worker's command line for one still (imports the ICI backend late: its modules may move)."""
    from ptylib.ici.backends import dials as ici_dials

    if not options.unit_cell or not options.space_group:
        raise ValueError("the DIALS path needs dials.unit_cell and dials.space_group (known symmetry); "
                         "or give --experiment-paths for the known-geometry path")
    mode = [] if options.persistent else ["--in-process"]
    index_args = ["--index-arg=refinement.parameterisation.crystal.fix=cell"] if options.fix_cell else []
    if options.dials_phil_path:
        index_args.append(f"--index-arg={options.dials_phil_path.resolve()}")
    return [*ici_dials.dials_interpreter(), "-I", str(ici_dials.WORKER), *mode, "--image", str(cbf.resolve()),
            "--det-shift-mm=0.0,0.0", "--unit-cell", options.unit_cell, "--space-group", options.space_group,
            "--mode", "refine", "--min-indexed-fraction", repr(options.min_indexed_fraction),
            "--max-rmsd-px", repr(options.max_rmsd_px), "--stream", "dials.stream", "--filename", str(cbf),
            "--event", "//0", *index_args]


def dials_geometry(cbf: str | os.PathLike[str], layout: RunLayout, still: int,
                   options: DialsPhase1Options) -> dict[str, Any]:
    """Run DIALS on one still and install ``indexed.expt`` as its experiment; returns DIALS' summary."""
    cbf = Path(cbf)
    work = layout.dials_dir(still)
    work.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # a rerun must not read an earlier attempt's files
        (work / name).unlink(missing_ok=True)
    command = dials_command(cbf, options)
    with open(work / "dials.stdout", "w") as out, open(work / "dials.stderr", "w") as err:
        subprocess.run(command, cwd=work, stdout=out, stderr=err, timeout=options.timeout_s, check=False,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        summary = json.loads((work / "dials_summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        tail = (work / "dials.stderr").read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{cbf}: the DIALS worker wrote no summary ({tail[0]}); see {work}") from None
    if not summary.get("indexed"):
        raise DialsNotIndexedError(f"{cbf}: DIALS did not index the still: {summary.get('reason')}")
    atomic_write_bytes(layout.experiment(still), (work / "indexed.expt").read_bytes())
    return summary
