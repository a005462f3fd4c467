"""pty-chi LSQML on a dataset: probe from the dataset, uniform object, positions in pty-chi's convention.

The reconstruction canvas is the bounding box of the scan's patches plus ``margin_px``; positions are
handed to pty-chi relative to the canvas origin that pty-chi itself uses (``round(shape/2) − 0.5``),
so pty-chi's rounding and sub-pixel probe shift coincide with :mod:`ptylib.ptycho.forward`. pty-chi
changes torch's (and numpy's) process-wide defaults; :func:`run_lsqml` restores them afterwards.

pty-chi 2.2.0 draws its random minibatches from a ``torch.Generator`` it never seeds (its
``random_seed`` seeds only the global generators), so every run used the same order whatever the
seed; :func:`build_task` seeds that generator with ``LSQMLOptions.seed``.
"""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum, auto
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ptylib.ptycho.compat import import_ptychi_api
from ptylib.ptycho.contract import check_reconstruction_inputs
from ptylib.ptycho.forward import snap_positions


class Device(StrEnum):
    """Where LSQML runs: ``auto`` picks CUDA when torch sees a CUDA device, else the CPU."""

    AUTO = auto()
    CPU = auto()
    CUDA = auto()


class LSQMLOptions(BaseModel):
    """Knobs of the LSQML baseline; defaults keep the dataset's probe fixed and the object unbiased."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    epochs: int = Field(100, ge=1)
    """Epochs (passes over all patterns)."""
    batch_size: int = Field(32, ge=1)
    """Patterns per minibatch. 32 rather than 96: at dose 1e5 batch 96 gave 1.5× the phase MAE of batch 32
    after 100 epochs, and 16 cost 2.4× the time per epoch for 0.8× (bench/lsqml_batch.py, bench/RESULTS.md)."""
    seed: int = Field(456, ge=0)
    """Seed of pty-chi's global generators and of its minibatch order."""
    device: Device = Device.AUTO
    """auto (CUDA when torch sees one, else CPU), cpu or cuda (an error when torch sees no CUDA device)."""
    optimize_probe: bool = False
    """Refine the probe too (off: at low dose probe power can collapse)."""
    noise_model: Literal["gaussian", "poisson"] = "gaussian"
    """LSQML noise model."""
    remove_object_probe_ambiguity: bool = False
    """pty-chi's object/probe rescaling (inflates amplitudes ~1.37× in a fixed-probe comparison)."""
    rescale_probe_intensity_in_first_epoch: bool = False
    """pty-chi's first-epoch probe rescaling (epoch 0 then makes no object update)."""
    margin_px: int = Field(2, ge=0)
    """Canvas border beyond the outermost patches (pixels)."""
    threads: int | None = Field(None, ge=1)
    """torch intra-op threads during the run (None: keep torch's setting); on a loaded machine 1 avoids
    OpenMP oversubscription, which slows pty-chi's many small kernels tenfold."""


@dataclass(frozen=True)
class LSQMLResult:
    """A reconstruction: object on its canvas, probe, per-epoch loss and where the canvas sits."""

    object: np.ndarray
    """(H, W) complex64 object on the reconstruction canvas."""
    probe: np.ndarray
    """(N, N) complex64 final probe."""
    loss: np.ndarray
    """(epochs,) pty-chi's displayed loss per epoch."""
    canvas_origin_yx: tuple[int, int]
    """Dataset-object pixel (row, col) of canvas pixel (0, 0)."""
    seconds: float
    """Wall time of the epochs (s)."""
    device: str
    """Torch device type the reconstruction ran on ("cpu" or "cuda")."""


def reconstruction_canvas(xcoords: np.ndarray, ycoords: np.ndarray, patch_size_px: int,
                          margin_px: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Origin (row, col) in object pixels and shape (H, W) of the canvas covering every patch plus a margin."""
    starts, _ = snap_positions(xcoords, ycoords, patch_size_px)
    low = starts.min(axis=0) - margin_px
    high = starts.max(axis=0) + patch_size_px + margin_px
    return (int(low[0]), int(low[1])), (int(high[0] - low[0]), int(high[1] - low[1]))


def ptychi_positions(xcoords: np.ndarray, ycoords: np.ndarray, origin_yx: tuple[int, int],
                     shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Positions (x, y) in pty-chi's convention: relative to its canvas origin round(shape/2) − 0.5 (pixels)."""
    centre = np.round(np.asarray(shape, np.float64) / 2.0) - 0.5
    return (np.asarray(xcoords, np.float64) - origin_yx[1] - centre[1],
            np.asarray(ycoords, np.float64) - origin_yx[0] - centre[0])


def resolve_device(device: Device) -> str:
    """The torch device type ("cpu" or "cuda") for ``device``; raises when CUDA is asked for but absent."""
    import torch

    if device is Device.CPU:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device is Device.CUDA:
        raise ValueError(f"LSQML device 'cuda' requested, but torch {torch.__version__} sees no CUDA device; "
                         "use device 'auto' or 'cpu'")
    return "cpu"


def build_task(diffraction: np.ndarray, probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
               options: LSQMLOptions) -> tuple[Any, tuple[int, int]]:
    """A ready pty-chi ``PtychographyTask`` for amplitudes ``diffraction`` (n, N, N) and its canvas origin.

    Inputs are checked first (:func:`ptylib.ptycho.contract.check_reconstruction_inputs`).
    """
    check_reconstruction_inputs(diffraction, probe, xcoords, ycoords, source="LSQML input")
    device = resolve_device(options.device)
    api = import_ptychi_api()
    from ptychi.api.task import PtychographyTask

    n_px = probe.shape[-1]
    origin, shape = reconstruction_canvas(xcoords, ycoords, n_px, options.margin_px)
    pos_x, pos_y = ptychi_positions(xcoords, ycoords, origin, shape)
    opts = api.LSQMLOptions()
    opts.data_options.fft_shift = True  # our patterns have the zero frequency at the centre
    opts.object_options.optimizable = True
    opts.object_options.remove_object_probe_ambiguity.enabled = options.remove_object_probe_ambiguity
    opts.probe_options.optimizable = options.optimize_probe
    opts.probe_position_options.optimizable = False
    rec = opts.reconstructor_options
    rec.num_epochs = options.epochs
    rec.batch_size = min(options.batch_size, len(xcoords))
    rec.default_device = {"cpu": api.Devices.CPU, "cuda": api.Devices.GPU}[device]
    rec.random_seed = options.seed
    rec.noise_model = api.NoiseModels(options.noise_model)
    rec.rescale_probe_intensity_in_first_epoch = options.rescale_probe_intensity_in_first_epoch
    intensities = np.square(diffraction, dtype=np.float32)
    with warnings.catch_warnings():
        # pty-chi's build reads a scalar from a grad-tracking tensor; harmless, and noisy in every log.
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
        task = PtychographyTask(
            opts,
            diffraction_data=intensities,
            object_data=np.ones((1, *shape), dtype=np.complex64),
            probe_data=np.asarray(probe, np.complex64)[None, None],
            probe_position_x_px=pos_x,
            probe_position_y_px=pos_y,
        )
    task.reconstructor.dataloader.generator.manual_seed(options.seed)
    return task, origin


@contextlib.contextmanager
def preserved_global_state(threads: int | None = None) -> Iterator[None]:
    """Restore torch's default dtype/device/threads and the torch/numpy/random RNG states on exit.

    ``threads`` sets torch's intra-op thread count inside the block.
    """
    import torch

    dtype = torch.get_default_dtype()
    device = torch.get_default_device()
    n_threads = torch.get_num_threads()
    np_state, py_state = np.random.get_state(), random.getstate()
    cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda_devices):
        try:
            if threads is not None:
                torch.set_num_threads(threads)
            yield
        finally:
            torch.set_num_threads(n_threads)
            torch.set_default_dtype(dtype)
            # None removes the default-device mode entirely (cheaper than pinning "cpu").
            torch.set_default_device(None if device.type == "cpu" else device)
            np.random.set_state(np_state)
            random.setstate(py_state)


def run_lsqml(diffraction: np.ndarray, probe: np.ndarray, xcoords: np.ndarray, ycoords: np.ndarray,
              options: LSQMLOptions | None = None, *,
              on_epoch: Callable[[int, float], None] | None = None) -> LSQMLResult:
    """Reconstruct with pty-chi LSQML from amplitudes (n, N, N), a probe (N, N) and centres (pixels).

    ``on_epoch(epoch, loss)`` is called after every epoch (progress reporting).
    """
    options = options or LSQMLOptions()
    with preserved_global_state(options.threads):
        task, origin = build_task(diffraction, probe, xcoords, ycoords, options)
        with task:
            start = time.perf_counter()
            for epoch in range(options.epochs):
                task.run(n_epochs=1)
                if on_epoch is not None:
                    on_epoch(epoch, float(task.reconstructor.loss_tracker.table["loss"].iloc[-1]))
            seconds = time.perf_counter() - start
            obj = task.get_data_to_cpu("object", as_numpy=True)[0].astype(np.complex64)
            final_probe = task.get_data_to_cpu("probe", as_numpy=True)[0, 0].astype(np.complex64)
            loss = task.reconstructor.loss_tracker.table["loss"].to_numpy(dtype=np.float64)
    return LSQMLResult(object=obj, probe=final_probe, loss=loss, canvas_origin_yx=origin, seconds=seconds,
                        device=resolve_device(options.device))
