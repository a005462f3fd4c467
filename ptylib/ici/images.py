"""Image files as ICI events: one event per still (CBF or any format dxtbx reads), no HDF5, no geometry.

``--images`` takes a glob (``stills/*.cbf``) or a list file (one image path per line; blank lines and
lines starting with ``#`` or ``;`` are skipped; relative paths are relative to the list file); the
flow also takes a list of image paths (what a loop's manifest records, so ``ici-watch`` continues it
on the same images). Each image becomes the event ``EventKey(<absolute image path>, 0)``, written in
the ledger as the section line ``#<image path> event 0``. Paths are resolved against the caller's working directory and
checked before the first run: a missing or unreadable image is a one-line :class:`IciInputError`.

The beam centre of a miniCBF is read from its header with ``fabio`` (``Beam_xy`` in pixels,
``Pixel_size``); :func:`beam_centre_px` gives the centre a detector shift moves it to.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ptylib.ici.model import EventKey, IciInputError
from ptylib.io.minicbf import header_fields

#: Suffixes of multi-event HDF5 files (events are frames of ``/entry/data/data``); anything else is one image.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".cxi")
#: Suffixes read as one still each when ``--images`` names a single file instead of a glob or list.
IMAGE_SUFFIXES = (".cbf", ".img", ".mccd", ".tif", ".tiff", ".smv", ".sfrm", ".mar3450", ".mar2300")
_GLOB_CHARS = re.compile(r"[*?\[]")
_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def is_hdf5(path: str | os.PathLike[str]) -> bool:
    """True for a path with an HDF5 suffix (a multi-event file rather than one image)."""
    return str(path).lower().endswith(HDF5_SUFFIXES)


def resolve_images(spec: str | Sequence[str], *, cwd: str | os.PathLike[str] | None = None) -> list[EventKey]:
    """The events of ``--images``: a glob, a list file or one image, or a list of image paths; absolute, checked.

    A glob's matches are sorted; a list keeps its order (a loop's manifest records its images so).
    Raises :class:`IciInputError` naming the glob, list file or image that is missing, empty or unreadable.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    paths = _spec_paths(spec, base) if isinstance(spec, str) else [base / os.path.expanduser(p) for p in spec]
    keys = [EventKey(str(p.resolve()), 0) for p in paths]
    for key in keys:
        check_image(key.h5_path)
    return list(dict.fromkeys(keys))


def _spec_paths(spec: str, base: Path) -> list[Path]:
    """The images of a glob, a list file or one image named by ``spec`` (relative to ``base``)."""
    text = os.path.expanduser(spec.strip())
    if not text:
        raise IciInputError("--images", "empty: give a glob such as 'stills/*.cbf' or a list file")
    pattern = text if os.path.isabs(text) else str(base / text)
    if _GLOB_CHARS.search(text):
        paths = sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
        if not paths:
            raise IciInputError(spec, "the glob matches no file (relative to the working directory)",
                                field_name="--images")
        return paths
    path = Path(pattern)
    if not path.is_file():
        raise IciInputError(spec, "no such image or list file", field_name="--images")
    return [path] if path.name.lower().endswith(IMAGE_SUFFIXES) else _read_image_list(path)


def _read_image_list(path: Path) -> list[Path]:
    """Image paths of a list file, relative ones against the list file's folder."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise IciInputError(str(path), f"cannot be read as a list of image paths ({exc})") from None
    paths = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        image = Path(os.path.expanduser(line))
        image = image if image.is_absolute() else path.parent / image
        if not image.is_file():
            raise IciInputError(str(path), f"image '{line}' does not exist", line=lineno, field_name="image")
        paths.append(image)
    if not paths:
        raise IciInputError(str(path), "the list file names no image")
    return paths


def check_image(path: str | os.PathLike[str]) -> None:
    """Raise :class:`IciInputError` when ``path`` is missing or unreadable (a CBF must also decode)."""
    name = str(path)
    if not os.path.isfile(name):
        raise IciInputError(name, "image does not exist")
    if name.lower().endswith(".cbf"):
        fields = image_header(name)
        size = fields.get("X-Binary-Size", "")
        if size.isdigit() and os.path.getsize(name) < int(size):
            raise IciInputError(name, f"truncated CBF: {os.path.getsize(name)} bytes on disk, its binary section "
                                f"alone has {size}", field_name="X-Binary-Size")
        return
    try:
        with open(name, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise IciInputError(name, f"image cannot be read ({exc.strerror or exc})") from None


def image_header(path: str | os.PathLike[str]) -> dict[str, str]:
    """The header of a CBF read with ``fabio`` (its MIME fields and the miniCBF ``# ...`` lines as ``{keyword: value}``).

    Only the header is read (``fabio.openheader``), so checking a folder of stills stays fast.
    """
    import fabio

    name = str(path)
    try:
        header = dict(fabio.openheader(name).header)
    except Exception as exc:  # noqa: BLE001 - fabio raises many types for a bad file; all mean "unreadable"
        raise IciInputError(name, f"not a readable CBF image (fabio could not parse its header: "
                                  f"{type(exc).__name__})") from None
    return header_fields(header)


@dataclass(frozen=True)
class ImageGeometry:
    """A still's header beam centre (fast, slow; px) and how a detector shift (x, y) mm moves it.

    ``matrix`` (rows fast, slow; px per mm): centre = header + matrix · shift. For a miniCBF (fast along
    +x and slow along -y of imgCIF) it is diag(1 / pixel size), so the centre is ``header + shift / pixel``.
    """

    header_centre_px: tuple[float, float]
    matrix: tuple[tuple[float, float], tuple[float, float]]

    def beam_centre_px(self, shift_mm: tuple[float, float]) -> tuple[float, float]:
        """The beam centre (fast, slow; px) of the detector moved by ``shift_mm``."""
        (a, b), (c, d) = self.matrix
        x, y = shift_mm
        return self.header_centre_px[0] + a * x + b * y, self.header_centre_px[1] + c * x + d * y


def cbf_geometry(path: str | os.PathLike[str]) -> ImageGeometry:
    """:class:`ImageGeometry` of a miniCBF from its ``Beam_xy`` (px) and ``Pixel_size`` (m) header fields."""
    fields = image_header(path)
    beam = re.findall(_NUMBER, fields.get("Beam_xy", ""))
    pixel = re.findall(_NUMBER, fields.get("Pixel_size", ""))
    if len(beam) < 2 or len(pixel) < 2:
        raise IciInputError(str(path), "the CBF header has no 'Beam_xy (x, y) pixels' and 'Pixel_size x m x y m'",
                            field_name="Beam_xy")
    fast_mm, slow_mm = float(pixel[0]) * 1e3, float(pixel[1]) * 1e3
    return ImageGeometry((float(beam[0]), float(beam[1])), ((1.0 / fast_mm, 0.0), (0.0, 1.0 / slow_mm)))
