"""Reading the pipeline's JSON files with one-line errors naming the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_json_document(path: str | os.PathLike[str], what: str) -> Any:
    """The parsed JSON of ``path``; a missing, unreadable or malformed file raises a one-line ``ValueError``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ValueError(f"{path}: {what} is not JSON ({where})") from None
