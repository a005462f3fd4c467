"""Checks of a backend against its events before the first run: one-line errors instead of a failed loop."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from ptylib.ici.backends.base import IndexerBackend
from ptylib.ici.backends.crystfel import CrystfelBackend
from ptylib.ici.backends.dials import DialsBackend, DialsOptions, event_image_path
from ptylib.ici.images import check_image, is_hdf5
from ptylib.ici.model import EventKey, IciInputError

# Run with DIALS' interpreter: cctbx knows every space-group symbol DIALS accepts.
_SPACE_GROUP_CHECK = "import sys\nfrom cctbx import sgtbx\nsgtbx.space_group_info(sys.argv[1])\n"
_CHECK_TIMEOUT_S = 60


def image_template(options: object) -> str | None:
    """The DIALS image template of backend options (None for other backends or image-file events)."""
    return options.image_template if isinstance(options, DialsOptions) else None


def check_backend_inputs(keys: Sequence[EventKey], backend: IndexerBackend) -> None:
    """Raise :class:`IciInputError` when ``backend`` cannot index ``keys`` as given.

    DIALS: every event's still must exist and be readable (an HDF5 event needs an image template)
    and the space group must be one cctbx knows. CrystFEL reads events of HDF5 files only.
    """
    if isinstance(backend, DialsBackend):
        template = backend.options.image_template
        for key in keys:
            if is_hdf5(key.h5_path) and not template:
                raise IciInputError(key.h5_path, "the dials backend needs --image-template to find each HDF5 "
                                    "event's still (or give the stills with --images)", field_name="image_template")
            check_image(event_image_path(template, key))
        check_space_group(backend.interpreter, backend.options.space_group)
    elif isinstance(backend, CrystfelBackend):
        images = [key.h5_path for key in keys if not is_hdf5(key.h5_path)]
        if images:
            raise IciInputError(images[0], "the crystfel backend reads events of HDF5 files; index image files "
                                "with --backend dials", field_name="--images")


def check_space_group(interpreter: Sequence[str], symbol: str) -> None:
    """Raise :class:`IciInputError` naming ``symbol`` when DIALS' cctbx does not know it."""
    done = subprocess.run([*interpreter, "-I", "-c", _SPACE_GROUP_CHECK, symbol], capture_output=True, text=True,
                          timeout=_CHECK_TIMEOUT_S, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        why = lines[-1].rsplit("Error: ", 1)[-1] if lines else f"exit code {done.returncode}"
        raise IciInputError("--space-group", f"'{symbol}' is not a space group DIALS knows ({why})",
                            field_name="space_group")
