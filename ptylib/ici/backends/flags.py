"""Command-line flags of the DIALS backend, generated from :class:`DialsOptions` (defaults and types live there).

Every field of :class:`~ptylib.ici.backends.dials.DialsOptions` (its scoring fields included) gets one
flag, ``--<field-name>`` with ``_`` -> ``-`` unless :data:`DIALS_FLAGS` renames it, stored under
``dials_<field>``; a field without help text here is an error at parser-build time, so a new option
cannot be forgotten.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
from pathlib import Path

from ptylib.ici.backends.dials import DialsMode, DialsOptions

#: field -> (flag, help). Units and meaning; the default is appended from the options class.
DIALS_FLAGS: dict[str, tuple[str, str]] = {
    "unit_cell": ("--unit-cell", "known unit cell a,b,c,alpha,beta,gamma (Å, degrees) given to dials.index"),
    "space_group": ("--space-group", "known space group given to dials.index, e.g. P43212"),
    "image_template": ("--image-template", "each HDF5 event's still: a path with {h5_dir} {h5_stem} {event} "
                                           "{frame} (= event + 1), e.g. '{h5_dir}/cbf/still_{frame:05d}.cbf'; "
                                           "not needed with --images"),
    "mode": ("--mode", "refine: DIALS refines the detector's in-plane position (Step-2 uses it); "
                       "fixed: detector fixed, the wRMSD alone guides the search"),
    "min_indexed_fraction": ("--min-indexed-fraction", "success gate: smallest fraction of strong spots indexed"),
    "max_rmsd_px": ("--max-rmsd-px", "success gate: largest DIALS positional RMSD (px)"),
    "find_spots_args": ("--find-spots-args", "extra dials.find_spots PHIL arguments, one shell-quoted string"),
    "index_args": ("--index-args", "extra dials.index PHIL arguments, one shell-quoted string"),
    "python": ("--dials-python", "DIALS' Python interpreter (default: the #! line of dials.import on PATH)"),
    "persistent": ("--dials-server", "hand stills to one per-user DIALS process that imports DIALS once "
                                     "(--no-dials-server: import DIALS per still)"),
    "match_radius_px": ("--match-radius-px", "wRMSD: a spot matches a predicted reflection within this (px)"),
    "outlier_k": ("--outlier-k", "wRMSD: drop matches beyond mean + k * std of the distances"),
}
_DEST = "dials_"


def add_dials_arguments(group: argparse._ActionsContainer) -> None:
    """Add one flag per :class:`DialsOptions` field to ``group`` (defaults shown; required ones marked)."""
    for field in dataclasses.fields(DialsOptions):
        if field.name not in DIALS_FLAGS:
            raise KeyError(f"DialsOptions.{field.name} has no command-line flag in DIALS_FLAGS")
        flag, text = DIALS_FLAGS[field.name]
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        default = None if required else field.default
        shown = "required with --backend dials" if required else f"default {_shown(default)}"
        kwargs: dict = {"dest": _DEST + field.name, "default": default, "help": f"{text} ({shown})"}
        if field.name == "mode":
            kwargs.update(choices=[m.value for m in DialsMode], default=DialsMode(default).value)
        elif isinstance(default, bool):
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif isinstance(default, float):
            kwargs.update(type=float, metavar="X")
        elif isinstance(default, tuple):
            kwargs.update(default=shlex.join(default), metavar="ARGS")
        else:
            kwargs.update(metavar=field.name.upper())
        group.add_argument(flag, **kwargs)


def dials_options_from_args(args: argparse.Namespace, *, cwd: str | os.PathLike[str] | None = None) -> DialsOptions:
    """The :class:`DialsOptions` of the command line; a relative image template is made absolute against ``cwd``.

    Raises ValueError naming a missing or bad option (the options class checks the values).
    """
    values = {f.name: getattr(args, _DEST + f.name) for f in dataclasses.fields(DialsOptions)}
    missing = [DIALS_FLAGS[name][0] for name in ("unit_cell", "space_group") if not values[name]]
    if missing:
        raise ValueError(f"--backend dials needs {' and '.join(missing)}")
    template = values["image_template"] = os.path.expanduser(values["image_template"] or "") or None
    if template and not template.startswith("{") and not os.path.isabs(os.path.expanduser(template)):
        values["image_template"] = str(Path(cwd or Path.cwd()) / template)
    return DialsOptions(**values)


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return repr(shlex.join(value)) if value else "none"
    return "none" if value is None else str(value)
