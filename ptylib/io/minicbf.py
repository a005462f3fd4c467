"""miniCBF images (Dectris/Pilatus style) through ``fabio`` (ESRF's detector-image library), with a header dxtbx reads.

The byte-offset compression is fabio's; this module writes the ``_array_data.header_contents``
block DIALS needs (pixel size, distance, wavelength, ``Beam_xy``, ...) and parses it back. fabio's
codec replaced a numpy one of our own: on a 1000 x 1000 image it writes a file about 4x and reads
one about 6x faster (bench/RESULTS.md, ICI section), and dxtbx reads its files identically.

The header follows dxtbx's ``FormatCBFMini`` / ``FormatCBFMiniPilatus`` readers: image sizes that are
whole Pilatus module arrays (487 x 195 modules, gaps of 7 and 17 pixels) get the ``PILATUS_1.2``
convention, any other size the ``GENERIC_MINI`` convention, which dxtbx reads without Pilatus
module masking.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_PILATUS_MODULE = (487, 195)
_PILATUS_GAP = (7, 17)


def is_pilatus_size(fast: int, slow: int) -> bool:
    """True when a (fast, slow) image is a whole array of Pilatus modules with the standard gaps."""
    for size, module, gap in ((fast, _PILATUS_MODULE[0], _PILATUS_GAP[0]), (slow, _PILATUS_MODULE[1], _PILATUS_GAP[1])):
        count, remainder = divmod(size + gap, module + gap)
        if count < 1 or remainder != 0:
            return False
    return True


@dataclass(frozen=True)
class MiniCbfHeader:
    """The experiment fields of a miniCBF header (Pilatus conventions: Beam_xy in pixels from the corner)."""

    pixel_size_mm: float
    distance_mm: float
    wavelength_A: float
    beam_center_fast_px: float
    beam_center_slow_px: float
    exposure_s: float = 0.1
    sensor_thickness_mm: float = 0.32
    count_cutoff: int = 1048576
    start_angle_deg: float = 0.0
    angle_increment_deg: float = 0.0
    timestamp: str = "2026-01-01T00:00:00.000"


def _header_text(header: MiniCbfHeader, fast: int, slow: int) -> tuple[str, str]:
    """(header convention, the '# ...' block) for an image of (fast, slow) pixels."""
    pilatus = is_pilatus_size(fast, slow)
    convention = "PILATUS_1.2" if pilatus else "GENERIC_MINI"
    detector = "PILATUS simulated" if pilatus else "GENERIC simulated"
    energy_ev = 12398.4198 / header.wavelength_A
    pixel_m = header.pixel_size_mm * 1e-3
    lines = [
        f"# Detector: {detector}, S/N 00-0000",
        f"# {header.timestamp}",
        f"# Pixel_size {pixel_m:.6g} m x {pixel_m:.6g} m",
        f"# Silicon sensor, thickness {header.sensor_thickness_mm * 1e-3:.6f} m",
        f"# Exposure_time {header.exposure_s:.7f} s",
        f"# Exposure_period {header.exposure_s:.7f} s",
        "# Tau = 0 s",
        f"# Count_cutoff {header.count_cutoff} counts",
        f"# Threshold_setting: {energy_ev / 2:.0f} eV",
        "# Gain_setting: autog (vrf = 1.000)",
        "# N_excluded_pixels = 0",
        "# Excluded_pixels: (nil)",
        "# Flat_field: (nil)",
        "# Trim_file: (nil)",
        "# Image_path: (nil)",
        f"# Wavelength {header.wavelength_A:.6f} A",
        f"# Detector_distance {header.distance_mm * 1e-3:.6f} m",
        f"# Beam_xy ({header.beam_center_fast_px:.4f}, {header.beam_center_slow_px:.4f}) pixels",
        "# Flux 0.000000",
        "# Filter_transmission 1.0000",
        f"# Start_angle {header.start_angle_deg:.4f} deg.",
        f"# Angle_increment {header.angle_increment_deg:.4f} deg.",
        "# Detector_2theta 0.0000 deg.",
        "# Polarization 0.990",
        "# Alpha 0.0000 deg.",
        "# Kappa 0.0000 deg.",
        f"# Phi {header.start_angle_deg:.4f} deg.",
        "# Chi 0.0000 deg.",
        "# Oscillation_axis X.CW",
        "# N_oscillations 1",
    ]
    return convention, "\r\n".join(lines)


def write_minicbf(path: str | os.PathLike[str], image: np.ndarray, header: MiniCbfHeader) -> Path:
    """Write ``image`` (integer counts, [slow, fast]) as a byte-offset miniCBF atomically; returns the path."""
    from fabio.cbfimage import CbfImage

    pixels = np.asarray(image)
    if pixels.ndim != 2:
        raise ValueError(f"a miniCBF image must be 2-D [slow, fast], got shape {pixels.shape}")
    if not np.issubdtype(pixels.dtype, np.integer):
        raise ValueError(f"miniCBF pixels must be integers (photon counts), got {pixels.dtype}")
    slow, fast = pixels.shape
    convention, header_block = _header_text(header, fast, slow)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # fabio writes to a file name only: a temporary name beside the target, then an atomic rename.
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        CbfImage(data=pixels.astype(np.int32, copy=False),
                 header={"_array_data.header_convention": convention,
                         "_array_data.header_contents": header_block}).write(str(temporary))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def header_fields(header: Mapping[str, object]) -> dict[str, str]:
    """A fabio CBF header as ``{keyword: value}``: its MIME fields and the miniCBF ``# Keyword value`` lines."""
    fields = {str(k): str(v) for k, v in header.items()}
    for line in fields.get("_array_data.header_contents", "").splitlines():
        if line.startswith("# ") and len(line.split()) > 2:
            keyword, _, value = line[2:].partition(" ")
            fields[keyword.rstrip(":")] = value.strip()
    return fields


def read_minicbf(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, str]]:
    """Read a miniCBF with fabio: (int32 image [slow, fast], header fields by keyword, :func:`header_fields`).

    A missing or unreadable file raises ``OSError``; a file that is not a CBF image raises ``ValueError``
    naming it (fabio's own errors for a broken file range from ``AttributeError`` to ``IndexError``).
    """
    import fabio

    if not os.path.isfile(path):
        raise FileNotFoundError(2, "no such file", str(path))
    try:
        image = fabio.open(str(path))
        data = image.data
    except OSError:
        raise
    except Exception as exc:  # noqa: BLE001 - fabio's parser fails on a broken file with assorted types
        raise ValueError(f"{path}: not a readable CBF image ({type(exc).__name__}: {exc})") from None
    if data is None or np.ndim(data) != 2:
        raise ValueError(f"{path}: not a readable CBF image (no 2-D binary section)")
    return np.asarray(data, dtype=np.int32), header_fields(image.header)


def beam_xy_px(fields: dict[str, str]) -> tuple[float, float]:
    """(fast, slow) beam centre in pixels from a header's ``Beam_xy (x, y) pixels`` field."""
    numbers = re.findall(r"[-+0-9.eE]+", fields["Beam_xy"])
    return float(numbers[0]), float(numbers[1])
