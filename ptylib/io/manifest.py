"""Run directories and their ``manifest.json``: parameters, versions, seeds, input hashes, outputs."""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ptylib.io.atomic import atomic_write_json

MANIFEST_NAME = "manifest.json"
_VERSIONED = ("ptyflows", "prefect", "numpy", "scipy", "h5py", "torch", "tensorflow", "ptychi")


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def package_versions(names: Iterable[str] = _VERSIONED) -> dict[str, str]:
    """Installed versions of the given distributions (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump(mode="json"))
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def write_manifest(
    run_dir: str | os.PathLike[str],
    *,
    pipeline: str,
    parameters: Mapping[str, Any],
    inputs: Iterable[str | os.PathLike[str]] = (),
    outputs: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write (atomically, replacing any previous one) ``<run_dir>/manifest.json``; returns its path.

    Input files are recorded with their SHA-256 so a run can be compared and reproduced.
    """
    run_dir = Path(run_dir)
    manifest = {
        "pipeline": pipeline,
        "written_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "versions": package_versions(),
        "parameters": _jsonable(parameters),
        "inputs": {str(p): sha256_file(p) for p in inputs if Path(p).is_file()},
        "outputs": _jsonable(outputs or {}),
        **_jsonable(extra or {}),
    }
    path = run_dir / MANIFEST_NAME
    atomic_write_json(path, manifest)
    return path


def read_manifest(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``<run_dir>/manifest.json``; a missing or corrupt file raises ValueError naming it."""
    path = Path(run_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no manifest (is this a run directory?)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt manifest JSON at line {exc.lineno}: {exc.msg}") from None
