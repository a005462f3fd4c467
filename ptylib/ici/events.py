"""Event selection: which (HDF5 file, event) pairs an ICI run processes, in a stable order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ptylib.ici.images import resolve_images
from ptylib.ici.model import EventKey, IciInputError
from ptylib.io.h5filters import h5py_with_filters
from ptylib.io.paths import reject_control_characters

DATA_PATH = "/entry/data/data"


def count_events(h5_path: str | os.PathLike[str], data_path: str = DATA_PATH) -> int:
    """Number of events (first axis of ``data_path``) in a CrystFEL-style multi-event HDF5 file."""
    h5py = h5py_with_filters()

    path = str(h5_path)
    try:
        with h5py.File(path, "r") as handle:
            if data_path not in handle:
                raise IciInputError(path, f"no dataset {data_path} (expected E x H x W images)", field_name=data_path)
            shape = handle[data_path].shape
    except OSError as exc:
        raise IciInputError(path, f"cannot be read as HDF5 ({exc})") from None
    if len(shape) != 3:
        raise IciInputError(path, f"dataset has shape {shape}, expected E x H x W", field_name=data_path)
    return int(shape[0])


def parse_selection(text: str, n_events: int, *, source: str = "--events") -> list[int]:
    """Parse an event selection such as ``all``, ``0-9,12,20-23`` (inclusive ranges) into sorted indices."""
    if text.strip().lower() in ("", "all"):
        return list(range(n_events))
    chosen: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise IciInputError(source, f"'{part}' is not an event index or range like 3-7") from None
        if first < 0 or last < first or last >= n_events:
            raise IciInputError(source, f"range '{part}' is outside 0..{n_events - 1}")
        chosen.update(range(first, last + 1))
    return sorted(chosen)


def read_event_list(list_path: str | os.PathLike[str]) -> list[EventKey]:
    """Read a CrystFEL-style list file: lines ``file.h5 //N`` (one event) or ``file.h5`` (all events)."""
    keys: list[EventKey] = []
    base = Path(list_path).resolve().parent
    for lineno, raw in enumerate(Path(list_path).read_text(encoding="utf-8-sig").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        name, _, event = line.partition(" ")
        h5 = (base / name).resolve()
        if not event.strip():
            keys += [EventKey(str(h5), i) for i in range(count_events(h5))]
            continue
        token = event.strip().removeprefix("//")
        if not token.isdigit():
            raise IciInputError(str(list_path), f"event '{event.strip()}' is not //N", line=lineno, field_name="event")
        keys.append(EventKey(str(h5), int(token)))
    return keys


def resolve_events(
    inputs: Sequence[str | os.PathLike[str]], selection: str = "all", event_list: str | None = None,
    *, images: str | Sequence[str] | None = None,
) -> list[EventKey]:
    """The ordered, de-duplicated events of a run: from a list file, ``selection`` applied to each input,
    and one event per image of ``images`` (a glob, a list file or a list of image paths,
    :func:`ptylib.ici.images.resolve_images`).

    Relative paths are relative to the working directory; keys hold absolute paths.
    """
    keys = read_event_list(event_list) if event_list else []
    for h5 in inputs:
        path = str(Path(h5).resolve())
        if not os.path.isfile(path):
            raise IciInputError(str(h5), "no such HDF5 file", field_name="--input")
        keys += [EventKey(path, i) for i in parse_selection(selection, count_events(path))]
    if images:
        keys += resolve_images(images)
    if not keys:
        raise IciInputError(event_list or "inputs", "no events selected: give --input, --event-list or --images")
    for name in dict.fromkeys(key.h5_path for key in keys):
        reject_control_characters(name, "input file")
    return list(dict.fromkeys(keys))
