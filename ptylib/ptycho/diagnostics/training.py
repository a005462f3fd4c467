"""Training of a scenario through the PINN package, with a per-epoch history and NaN detection.

:func:`ptylib.ptycho.pinn.train.train_model` stops at the first non-finite tensor and raises
``NonFiniteTrainingError`` naming the epoch and the tensor; here the epochs finished before it come from
its ``on_epoch`` callback, and the failure is kept as a result (first NaN epoch, which tensor) instead
of an exception, so the report can show it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

NON_FINITE = re.compile(r"epoch (?P<epoch>\d+): (?P<tensor>.+?) became non-finite")


def first_nan(history: Sequence[Mapping[str, float]], error: str | None = None) -> dict[str, Any] | None:
    """First non-finite epoch of a training run: from a stopped run's error message, or the first epoch
    whose recorded ``loss`` is NaN/inf. None when every epoch is finite."""
    if error is not None:
        match = NON_FINITE.search(error)
        epoch = int(match["epoch"]) if match else len(history) + 1
        return {"epoch": epoch, "tensor": match["tensor"] if match else "unknown", "message": error}
    bad = next((h for h in history if not math.isfinite(h["loss"])), None)
    return None if bad is None else {"epoch": int(bad["epoch"]), "tensor": "loss", "message": None}


def train_scenario(train: Mapping[str, np.ndarray], gridsize: int, *, epochs: int, batch_size: int,
                   learning_rate: float, seed: int, source: str = "<train>",
                   on_epoch: Callable[[int, float], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train a PINN on the grouped train split; returns (TrainResult or None, history record).

    The record has ``history`` (per epoch: epoch, loss, seconds), ``nan`` (:func:`first_nan`),
    ``intensity_scale`` (the model's recorded input scale) and ``initial_loss``.
    """
    from ptylib.ptycho.pinn.options import ModelKind, TrainingOptions
    from ptylib.ptycho.pinn.train import NonFiniteTrainingError, train_model

    options = TrainingOptions(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed)
    history: list[dict[str, float]] = []

    def record(epoch: int, loss: float) -> None:
        history.append({"epoch": epoch, "loss": loss})
        if on_epoch is not None:
            on_epoch(epoch, loss)

    try:
        result = train_model(train, ModelKind.PINN, gridsize, options, source=source, on_epoch=record)
    except NonFiniteTrainingError as exc:
        return None, {"history": history, "nan": first_nan(history, str(exc)), "intensity_scale": None,
                      "initial_loss": None, "epochs_requested": epochs}
    return result, {"history": result.history, "nan": first_nan(result.history), "epochs_requested": epochs,
                    "intensity_scale": result.intensity_scale, "initial_loss": result.initial_loss}
