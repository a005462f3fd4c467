"""miniCBF images (Dectris/Pilatus style): byte-offset codec in numpy and a header dxtbx (DIALS) reads.

The byte-offset scheme stores the difference of each pixel to the previous one: one signed byte
when it fits in [-127, 127], else the marker 0x80 and a little-endian int16 when it fits in
[-32767, 32767], else 0x80, the int16 marker -32768 and an int32. Encoding is fully vectorised.
Decoding walks only the 0x80 bytes (the escape markers and any 0x80 inside their payloads), then
assembles every delta in numpy.

The header follows dxtbx's ``FormatCBFMini`` / ``FormatCBFMiniPilatus`` readers: image sizes that are
whole Pilatus module arrays (487 x 195 modules, gaps of 7 and 17 pixels) get the ``PILATUS_1.2``
convention, any other size the ``GENERIC_MINI`` convention, which dxtbx reads without Pilatus
module masking.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptylib.io.atomic import atomic_write_bytes

_START = b"\x0c\x1a\x04\xd5"
_PADDING = 4095
_PILATUS_MODULE = (487, 195)
_PILATUS_GAP = (7, 17)


def byte_offset_encode(values: np.ndarray) -> bytes:
    """CBF byte-offset compression of an integer array (flattened in C order, int32 range)."""
    flat = np.asarray(values).reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < -(2**31) or flat.max() >= 2**31):
        raise ValueError("byte-offset CBF stores 32-bit integers; values out of int32 range")
    delta = np.diff(flat, prepend=0)
    magnitude = np.abs(delta)
    small = magnitude <= 127
    medium = ~small & (magnitude <= 32767)
    large = ~small & ~medium
    lengths = np.where(small, 1, np.where(medium, 3, 7))
    offsets = np.cumsum(lengths) - lengths
    out = np.zeros(int(lengths.sum()), dtype=np.uint8)
    out[offsets[small]] = delta[small].astype(np.int8).view(np.uint8)
    at = offsets[medium]
    out[at] = 0x80
    pairs = delta[medium].astype("<i2").view(np.uint8).reshape(-1, 2)
    out[at + 1], out[at + 2] = pairs[:, 0], pairs[:, 1]
    at = offsets[large]
    out[at], out[at + 1], out[at + 2] = 0x80, 0x00, 0x80
    # Differences of int32 values can exceed int32; readers add them modulo 2^32, so wrap them.
    quads = (delta[large] & 0xFFFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)
    for k in range(4):
        out[at + 3 + k] = quads[:, k]
    return out.tobytes()


def byte_offset_decode(data: bytes, count: int) -> np.ndarray:
    """Inverse of ``byte_offset_encode``: ``count`` int32 values from the packed bytes."""
    raw = np.frombuffer(data, dtype=np.uint8)
    medium, large = [], []
    payload_end = 0
    # A 0x80 byte is a marker unless it lies inside the payload of an earlier marker.
    for at in np.flatnonzero(raw == 0x80).tolist():
        if at < payload_end:
            continue
        if at + 2 >= raw.size:
            raise ValueError("byte-offset data ends inside an escape sequence")
        if raw[at + 1] == 0x00 and raw[at + 2] == 0x80:
            if at + 6 >= raw.size:
                raise ValueError("byte-offset data ends inside an escape sequence")
            if raw[at + 3 : at + 7].tobytes() == b"\x00\x00\x00\x80":
                raise ValueError("64-bit byte-offset deltas are not supported")
            large.append(at)
            payload_end = at + 7
        else:
            medium.append(at)
            payload_end = at + 3
    medium_at = np.asarray(medium, dtype=np.int64)
    large_at = np.asarray(large, dtype=np.int64)
    is_start = np.ones(raw.size, dtype=bool)
    for starts, width in ((medium_at, 2), (large_at, 6)):
        for k in range(1, width + 1):
            is_start[starts + k] = False
    starts = np.flatnonzero(is_start)
    if starts.size != count:
        raise ValueError(f"byte-offset data holds {starts.size} values, expected {count}")
    delta = raw[starts].view(np.int8).astype(np.int64)
    delta[np.searchsorted(starts, medium_at)] = _little_endian(raw, medium_at + 1, "<i2")
    delta[np.searchsorted(starts, large_at)] = _little_endian(raw, large_at + 3, "<i4")
    return np.cumsum(delta).astype(np.int64).astype(np.int32)


def _little_endian(raw: np.ndarray, at: np.ndarray, dtype: str) -> np.ndarray:
    """Signed little-endian integers of ``dtype`` whose bytes start at positions ``at`` of ``raw``."""
    width = np.dtype(dtype).itemsize
    columns = np.stack([raw[at + k] for k in range(width)], axis=1)
    return np.ascontiguousarray(columns).view(dtype).reshape(-1).astype(np.int64)


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


def minicbf_bytes(image: np.ndarray, header: MiniCbfHeader, name: str) -> bytes:
    """A complete miniCBF file (signed 32-bit pixels, byte-offset compressed) as bytes."""
    pixels = np.asarray(image)
    if pixels.ndim != 2:
        raise ValueError(f"a miniCBF image must be 2-D [slow, fast], got shape {pixels.shape}")
    if not np.issubdtype(pixels.dtype, np.integer):
        raise ValueError(f"miniCBF pixels must be integers (photon counts), got {pixels.dtype}")
    slow, fast = pixels.shape
    packed = byte_offset_encode(pixels)
    convention, header_block = _header_text(header, fast, slow)
    digest = base64.b64encode(hashlib.md5(packed).digest()).decode("ascii")
    text = "\r\n".join([
        "###CBF: VERSION 1.5, CBFlib v0.7.8 - PILATUS detectors", "", f"data_{name}", "",
        f'_array_data.header_convention "{convention}"', "_array_data.header_contents", ";",
        header_block, ";", "", "_array_data.data", ";", "--CIF-BINARY-FORMAT-SECTION--",
        "Content-Type: application/octet-stream;", '     conversions="x-CBF_BYTE_OFFSET"',
        "Content-Transfer-Encoding: BINARY", f"X-Binary-Size: {len(packed)}", "X-Binary-ID: 1",
        'X-Binary-Element-Type: "signed 32-bit integer"', "X-Binary-Element-Byte-Order: LITTLE_ENDIAN",
        f"Content-MD5: {digest}", f"X-Binary-Number-of-Elements: {pixels.size}",
        f"X-Binary-Size-Fastest-Dimension: {fast}", f"X-Binary-Size-Second-Dimension: {slow}",
        f"X-Binary-Size-Padding: {_PADDING}", "", "",
    ]).encode("ascii")
    tail = b"\r\n--CIF-BINARY-FORMAT-SECTION----\r\n;\r\n\r\n"
    return text + _START + packed + bytes(_PADDING) + tail


def write_minicbf(path: str | os.PathLike[str], image: np.ndarray, header: MiniCbfHeader) -> Path:
    """Write ``image`` (integer counts, [slow, fast]) as a miniCBF file atomically; returns the path."""
    target = Path(path)
    atomic_write_bytes(target, minicbf_bytes(image, header, target.stem))
    return target


def read_minicbf(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, str]]:
    """Read a byte-offset miniCBF: (int32 image [slow, fast], header fields by keyword)."""
    data = Path(path).read_bytes()
    start = data.find(_START)
    if start < 0:
        raise ValueError(f"{path}: no CBF binary section (start marker 0c 1a 04 d5 missing)")
    text = data[:start].decode("ascii", "replace")
    if 'conversions="x-CBF_BYTE_OFFSET"' not in text:
        raise ValueError(f"{path}: only byte-offset compressed CBF is supported")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# ") and len(line.split()) > 2:
            key, _, value = line[2:].partition(" ")
            fields[key.rstrip(":")] = value.strip()
        elif line.startswith("X-Binary-"):
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    try:
        size = int(fields["X-Binary-Size"])
        fast = int(fields["X-Binary-Size-Fastest-Dimension"])
        slow = int(fields["X-Binary-Size-Second-Dimension"])
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: missing or bad MIME size field ({error})") from error
    values = byte_offset_decode(data[start + 4 : start + 4 + size], fast * slow)
    return values.reshape(slow, fast), fields


def beam_xy_px(fields: dict[str, str]) -> tuple[float, float]:
    """(fast, slow) beam centre in pixels from a header's ``Beam_xy (x, y) pixels`` field."""
    numbers = re.findall(r"[-+0-9.eE]+", fields["Beam_xy"])
    return float(numbers[0]), float(numbers[1])
