"""The embedded default dataset of the ICI loop with the DIALS backend: rendered lysozyme-like stills.

:func:`make_dials_dataset` renders a serial dataset with the project's simulator
(:func:`ptylib.diffraction.still_renderer.render_stills`: random orientations, a flat background,
Poisson noise) on a single-panel detector a DIALS user would recognise: 1000 x 1000 pixels of
0.172 mm (Pilatus-like) at 155 mm, so the edge of the panel is at 2.0 Å resolution (1 Å beam). Each
event's true beam centre is offset from the nominal one (in the file headers) by up to
``radius_mm / √2`` along fast and slow, so every true offset lies in the ICI search disk of radius
``radius_mm``. Beside the renderer's files it writes the ICI truths (:mod:`ptylib.ici.synthetic.dataset`'s
format): ``still_crystfel.h5.truth.json`` for the HDF5 events and ``cbf/still_#####.cbf.truth.json``
for each still (the ``--images`` events), whose ``true_offset_mm`` is the detector shift that puts
the supplied centre on the true one; with the DIALS backend's (CrystFEL's) meaning of a shift that
is the offset (fast, slow) itself. The ICI report and ``centres.csv`` errors read them.

The crystals (7 x 7 x 14 cells, Gaussian spot shapes) give spots 2-3 pixels wide, so one sample
per pixel renders them faithfully (rendering takes about a second per still); an existing dataset in
``out_dir`` rendered with the same options is reused.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptylib.ici.synthetic.dataset import TRUTH_FORMAT, truth_path_for
from ptylib.io.atomic import atomic_write_json

PREFIX = "still"
#: The panel: 1000 x 1000 pixels of 0.172 mm at 155 mm, i.e. 2.0 Å at the middle of each edge (1 Å beam).
DETECTOR_PIXELS = 1000
PIXEL_MM = 0.172
DISTANCE_MM = 155.0
#: The stills, one event each, as ``ici run --images`` takes them (relative to the dataset folder).
IMAGES_GLOB = "cbf/" + PREFIX + "_*.cbf"
#: Crystal size in cells along a, b, c: a block of about 55 x 55 x 53 nm whose Gaussian spots
#: (nanoBragg's ``-gauss``, no sinc side lobes) are 2-3 pixels wide, so one sample per pixel renders
#: them faithfully. With the earlier 10^3-cell sinc crystals the spots were about one pixel wide and
#: point-sampled: DIALS' positional RMSD at the true centre was 0.54 px against 0.20 px now, and
#: the ICI study's refined centres were 0.0047 mm from the truth (median, 16 stills) against 0.0035 mm
#: now (docs/ici.md, *Why these crystals*).
CRYSTAL_CELLS = (7, 7, 14)
#: Photons per m^2: about the integrated spot intensity of the earlier 10^3-cell crystals at 1e28.
FLUENCE_PHOTONS_PER_M2 = 1.5e28
#: Lysozyme's space group, given to dials.index with the rendered cell (the renderer knows no symmetry).
LYSOZYME_SPACE_GROUP = "P43212"
#: Where :func:`render_stills` puts event ``i``'s miniCBF, as a DIALS backend ``image_template``.
IMAGE_TEMPLATE = "{h5_dir}/cbf/" + PREFIX + "_{frame:05d}.cbf"
#: Spot finding at 6 sigma (DIALS' default is 3). It was needed by the earlier sinc-shaped spots, whose
#: side lobes became spots; on the Gaussian spots it changes little (16 stills, refine mode at the
#: true centre: refined-centre error 0.0035 mm median at 6 sigma, 0.0033 mm at 3 sigma), and the
#: accuracy figures in docs/ici.md were measured with it.
FIND_SPOTS_ARGS = ("spotfinder.threshold.dispersion.sigma_strong=6",)
#: RMSD gate (px), the backend's default being 0.5: at their true centres these stills index with
#: DIALS RMSDs of 0.18-0.23 px (16 events, seed 2026) and 0.28-0.33 px 0.04 mm away, so the gate only
#: matters far from the centre; it was 0.7 px when the docs' accuracy figures were measured.
MAX_RMSD_PX = 0.7


@dataclass(frozen=True)
class DialsDataset:
    """A rendered dataset: its stills (``images``, an absolute glob), the CrystFEL-style HDF5, truths, DIALS options.

    ``true_shift_mm`` (E, 2) is each event's true detector shift (mm), ``dials_options`` the fields of
    a :class:`~ptylib.ici.backends.dials.DialsOptions` that index the HDF5 events (cell, space group,
    image template, spot-finding threshold, RMSD gate); without ``image_template`` they index ``images``.
    """

    h5_path: Path
    images: str
    geometry_path: Path
    truth_path: Path
    stills_truth_path: Path
    true_shift_mm: np.ndarray
    dials_options: dict[str, Any]

    @property
    def n_events(self) -> int:
        """Number of stills."""
        return int(self.true_shift_mm.shape[0])


def _still_options(events: int, seed: int, radius_mm: float, background_photons: float, panel_px: int) -> Any:
    from ptylib.diffraction.options import BeamOptions, DetectorOptions
    from ptylib.diffraction.still_renderer import StillDatasetOptions

    # A smaller panel moves closer, so its edge stays at the same resolution.
    detector = DetectorOptions(fpixels=panel_px, spixels=panel_px, pixel_size_mm=PIXEL_MM,
                               distance_mm=DISTANCE_MM * panel_px / DETECTOR_PIXELS, oversample=1)
    # The renderer's lysozyme-like crystal, smaller and with Gaussian spots (see CRYSTAL_CELLS).
    crystal = StillDatasetOptions().crystal.model_copy(update={"n_cells": CRYSTAL_CELLS, "shape": "gauss"})
    return StillDatasetOptions(events=events, seed=seed, beam_offset_max_mm=radius_mm / math.sqrt(2.0),
                               background_photons=background_photons, prefix=PREFIX, crystal=crystal,
                               beam=BeamOptions(fluence_photons_per_m2=FLUENCE_PHOTONS_PER_M2), detector=detector,
                               dtype="float32")


def make_dials_dataset(out_dir: str | os.PathLike[str], *, events: int = 24, seed: int = 2026,
                       radius_mm: float = 0.05, background_photons: float = 2.0,
                       panel_px: int = DETECTOR_PIXELS) -> DialsDataset:
    """Render (or reuse) ``events`` stills in ``out_dir`` and write their ICI truth; see the module docstring.

    Parameters
    ----------
    out_dir : folder of the dataset (``still_crystfel.h5``, ``still.geom``, ``cbf/still_#####.cbf``, truths).
    events : number of stills (each takes a few seconds to render).
    seed : seed of the orientations, offsets and noise.
    radius_mm : the ICI search radius (mm); true offsets are uniform in the square of half-side radius / √2.
    background_photons : flat background per pixel (photons) before Poisson noise.
    panel_px : pixels along each side of the panel; a smaller panel (tests) sits closer, same edge resolution.
    """
    from ptylib.diffraction.still_renderer import render_stills

    if events < 1:
        raise ValueError(f"events must be >= 1, got {events}")
    if not (math.isfinite(radius_mm) and radius_mm >= 0):
        raise ValueError(f"radius_mm must be a finite length >= 0 mm, got {radius_mm}")
    out = Path(out_dir).resolve()
    options = _still_options(events, seed, radius_mm, background_photons, panel_px)
    stills_truth_path = out / f"{PREFIX}_truth.json"
    stills_truth = _existing_truth(stills_truth_path, options.model_dump(mode="json"))
    if stills_truth is None:
        dataset = render_stills(options, out)
        stills_truth, stills_truth_path = dataset.truth, dataset.truth_json
    h5_path = out / stills_truth["files"]["crystfel_h5"]
    true_shift = np.array([[e["beam_offset_fast_mm"], e["beam_offset_slow_mm"]] for e in stills_truth["events"]])
    truth_path = truth_path_for(h5_path)
    atomic_write_json(truth_path, {"format": TRUTH_FORMAT, "seed": seed, "radius_mm": radius_mm,
                                   "true_offset_mm": true_shift.tolist(), "source": stills_truth_path.name})
    for event, shift in zip(stills_truth["events"], true_shift.tolist(), strict=True):
        atomic_write_json(truth_path_for(out / event["cbf"]), {
            "format": TRUTH_FORMAT, "seed": seed, "radius_mm": radius_mm, "true_offset_mm": [shift],
            "source": stills_truth_path.name})
    return DialsDataset(
        h5_path=h5_path, images=str(out / IMAGES_GLOB), geometry_path=out / stills_truth["files"]["crystfel_geom"], truth_path=truth_path,
        stills_truth_path=stills_truth_path, true_shift_mm=true_shift,
        dials_options={"unit_cell": ",".join(f"{v:g}" for v in stills_truth["cell_A_deg"]),
                       "space_group": LYSOZYME_SPACE_GROUP, "image_template": IMAGE_TEMPLATE,
                       "find_spots_args": FIND_SPOTS_ARGS, "max_rmsd_px": MAX_RMSD_PX},
    )


def _existing_truth(path: Path, options: dict[str, Any]) -> dict[str, Any] | None:
    """The renderer's truth at ``path`` when it was written with exactly ``options`` and its files exist."""
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(truth, dict) or truth.get("options") != options:
        return None
    files = [path.parent / truth["files"]["crystfel_h5"], *(path.parent / e["cbf"] for e in truth["events"])]
    return truth if all(f.is_file() for f in files) else None
