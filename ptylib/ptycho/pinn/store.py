"""A trained model on disk: ``model.keras`` (Keras' native format) and ``model.json`` (the sidecar).

The sidecar holds the kind, gridsize, patch size, intensity scale, training options, loss history,
training-data hashes and package versions; :func:`load_model` checks both files and names what is wrong.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ptylib.io.atomic import atomic_write_json
from ptylib.io.manifest import package_versions, sha256_file
from ptylib.ptycho.pinn.options import ModelKind
from ptylib.ptycho.pinn.train import TrainResult

MODEL_FILE = "model.keras"
SIDECAR_FILE = "model.json"
SIDECAR_KEYS = ("kind", "gridsize", "patch_size_px", "channels", "intensity_scale")


def _tensorflow_version() -> str:
    # The wheel may be tensorflow or tensorflow-cpu: ask the module, not the distribution.
    import tensorflow as tf

    return str(tf.__version__)


def save_model(out_dir: str | os.PathLike[str], result: TrainResult, **extra: Any) -> dict[str, Any]:
    """Write ``model.keras`` then ``model.json`` (both atomically); returns the sidecar (with the model's sha256)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Keras insists on the .keras suffix: save under a temporary name in the same folder, then rename.
    handle, tmp = tempfile.mkstemp(prefix=".model-", suffix=".keras", dir=out)
    os.close(handle)
    try:
        result.network.save(tmp)
        os.replace(tmp, out / MODEL_FILE)
    finally:
        Path(tmp).unlink(missing_ok=True)
    sidecar = {"kind": result.kind.value, "gridsize": result.gridsize, "patch_size_px": result.patch_size_px,
               "channels": result.gridsize**2, "intensity_scale": result.intensity_scale,
               "initial_loss": result.initial_loss, "final_loss": result.final_loss, "seconds": result.seconds, "history": result.history,
               "model_file": MODEL_FILE, "model_sha256": sha256_file(out / MODEL_FILE),
               "versions": package_versions(("ptyflows", "keras", "numpy")) | {"tensorflow": _tensorflow_version()},
               **extra}
    atomic_write_json(out / SIDECAR_FILE, sidecar)
    return sidecar


def load_sidecar(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated sidecar of a saved model."""
    path = Path(model_dir) / SIDECAR_FILE
    try:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no model sidecar (expected a folder written by the study's phase E or "
                         "save_model)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in SIDECAR_KEYS if k not in sidecar]
    if missing:
        raise ValueError(f"{path}: key {missing[0]!r}: expected in a model sidecar, got no such key")
    if sidecar["kind"] not in {k.value for k in ModelKind}:
        raise ValueError(f"{path}: key 'kind': expected one of {', '.join(k.value for k in ModelKind)}, "
                         f"got {sidecar['kind']!r}")
    return sidecar


def load_model(model_dir: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """(Keras model, sidecar) of a saved model; the model file must match the sidecar's sha256."""
    import keras

    sidecar = load_sidecar(model_dir)
    path = Path(model_dir) / sidecar.get("model_file", MODEL_FILE)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file (named by {Path(model_dir) / SIDECAR_FILE})")
    if "model_sha256" in sidecar and sha256_file(path) != sidecar["model_sha256"]:
        raise ValueError(f"{path}: sha256 differs from 'model_sha256' in {SIDECAR_FILE} (file replaced or damaged)")
    return keras.models.load_model(path, compile=False), sidecar
