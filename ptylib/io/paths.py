"""Checks on paths that end up inside generated job scripts and list files."""

from __future__ import annotations

import os
import re

# C0 controls, DEL and C1 controls: a line break would split a job-script or list-file line, and the
# others make names that no shell line or log shows faithfully.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def reject_control_characters(path: str | os.PathLike[str], field_name: str) -> str:
    """Return ``path`` as text; ValueError (one line, the name escaped) if it holds a control character.

    ``field_name`` says which input the path came from (e.g. ``--input``), for the message.
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    found = _CONTROL.search(text)
    if found:
        raise ValueError(f"{text!a}, field '{field_name}': holds the control character {found.group()!r}; "
                         "rename it (job scripts and list files cannot carry such names)")
    return text
