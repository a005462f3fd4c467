"""Training of the PINN (Poisson NLL through the physics layer) and of the supervised baseline (patch MAE).

Deterministic for a seed: Keras' global seeds, TensorFlow op determinism, a seeded batch order. Every
step checks its named tensors (network heads, predicted amplitudes, loss, each gradient) and stops the
job at the first non-finite one, naming the epoch and the tensor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptylib.ptycho.contract import DatasetContractError
from ptylib.ptycho.pinn.data import Groups, intensity_scale, make_groups
from ptylib.ptycho.pinn.options import ModelKind, PINNLoss, TrainingOptions


class NonFiniteTrainingError(RuntimeError):
    """A tensor of a training step became NaN or infinite."""


@dataclass(frozen=True)
class TrainResult:
    """A trained network with what is needed to use and describe it."""

    network: Any
    kind: ModelKind
    gridsize: int
    patch_size_px: int
    intensity_scale: float
    """RMS amplitude per pixel of the training data (the network's input unit)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per epoch: ``epoch`` (1-based), ``loss``, ``seconds``."""
    initial_loss: float = float("nan")
    """Mean loss of the network before the first update."""
    seconds: float = 0.0

    @property
    def seconds_per_epoch(self) -> float:
        """Mean wall time of an epoch after the first (which also traces the TensorFlow graphs), seconds."""
        times = [h["seconds"] for h in self.history]
        return float(np.mean(times[1:] if len(times) > 1 else times)) if times else float("nan")

    @property
    def final_loss(self) -> float:
        """Mean loss of the last epoch."""
        return self.history[-1]["loss"] if self.history else float("nan")


def configure_tensorflow(options: TrainingOptions) -> None:
    """Seeds, op determinism and (when TensorFlow has not started yet) the thread count."""
    import keras
    import tensorflow as tf

    if options.threads is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(options.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already started in this process: its thread pools are fixed
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(options.seed)


def network_inputs(amplitudes: np.ndarray, scale: float) -> np.ndarray:
    """Group amplitudes (G, C, N, N) → network input (G, N, N, C) float32 in units of ``scale``."""
    return np.ascontiguousarray(np.transpose(amplitudes, (0, 2, 3, 1)) / np.float32(scale), dtype=np.float32)


def first_non_finite(flags: Mapping[str, bool]) -> str | None:
    """Name of the first tensor whose finiteness flag is False, or None."""
    return next((name for name, finite in flags.items() if not finite), None)


def _step_functions(network: Any, kind: ModelKind, options: TrainingOptions,
                    probe: np.ndarray) -> tuple[Callable[..., Any], Callable[..., Any]]:
    import keras
    import tensorflow as tf

    from ptylib.ptycho.pinn import physics
    from ptylib.ptycho.pinn.network import patches_from_outputs

    optimizer = keras.optimizers.Adam(options.learning_rate)
    probe_t = tf.constant(probe, tf.complex64)
    data_term = physics.poisson_nll if options.loss == PINNLoss.POISSON else physics.amplitude_mae

    def forward(x: Any, measured: Any, starts: Any, remainders: Any, truth: Any) -> tuple[Any, ...]:
        amplitude, phase = network(x, training=True)
        patches = patches_from_outputs(amplitude, phase)
        if kind == ModelKind.BASELINE:
            return amplitude, phase, tf.abs(patches), physics.complex_mae(patches, truth)
        patches = physics.overlap_constraint(patches, starts)
        predicted = physics.far_field_amplitudes(patches, physics.shift_probes(probe_t, remainders))
        return amplitude, phase, predicted, data_term(predicted, measured)

    @tf.function(reduce_retracing=True)
    def evaluate(*batch: Any) -> Any:
        return forward(*batch)[-1]

    @tf.function(reduce_retracing=True)
    def step(*batch: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            amplitude, phase, predicted, loss = forward(*batch)
        grads = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(grads, network.trainable_variables))
        finite = [tf.reduce_all(tf.math.is_finite(t)) for t in (amplitude, phase, predicted, loss)]
        finite += [tf.reduce_all(tf.math.is_finite(g)) for g in grads]
        return loss, tf.stack(finite)

    return step, evaluate


def train_model(arrays: Mapping[str, np.ndarray], kind: ModelKind, gridsize: int, options: TrainingOptions, *,
                source: str = "<arrays>", network: Any = None,
                on_epoch: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train a PINN (any gridsize) or the supervised baseline (gridsize 1, needs ``Y``) on a contract dataset.

    ``network`` continues training an existing model (same N and C); ``on_epoch(epoch, loss)`` reports
    progress. Raises :class:`NonFiniteTrainingError` naming the epoch and tensor that went non-finite.
    """
    from ptylib.ptycho.pinn.network import build_network

    if kind == ModelKind.BASELINE and "Y" not in arrays:
        raise DatasetContractError(f"{source}: key 'Y': expected ground-truth patches for the supervised baseline, "
                                   "got no such key")
    configure_tensorflow(options)
    groups: Groups = make_groups(arrays, gridsize, source=source)
    n_px, channels = groups.amplitudes.shape[-1], groups.amplitudes.shape[1]
    network = network if network is not None else build_network(n_px, channels, options.filters)
    scale = intensity_scale(arrays["diffraction"])
    x = network_inputs(groups.amplitudes, scale)
    starts = (groups.starts_yx - groups.starts_yx[:, :1]).astype(np.int32)  # only differences matter
    truth = groups.truth if groups.truth is not None else np.zeros((len(x), channels, 1, 1), np.complex64)
    step, evaluate = _step_functions(network, kind, options, np.asarray(arrays["probeGuess"]))
    batches = [np.arange(lo, min(lo + options.batch_size, len(x))) for lo in range(0, len(x), options.batch_size)]
    initial = sum(float(evaluate(x[b], groups.amplitudes[b], starts[b], groups.remainders_yx[b], truth[b])) * len(b)
                  for b in batches) / len(x)
    names = ["network output 'amplitude'", "network output 'phase'", "predicted amplitudes", "loss"]
    names += [f"gradient of '{v.path}'" for v in network.trainable_variables]
    order_rng = np.random.default_rng(options.seed)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    for epoch in range(1, options.epochs_for(len(x)) + 1):
        epoch_start, total = time.perf_counter(), 0.0
        order = order_rng.permutation(len(x))
        for batch in batches:  # each step is vectorised over its batch
            b = order[batch]
            loss, finite = step(x[b], groups.amplitudes[b], starts[b], groups.remainders_yx[b], truth[b])
            if (bad := first_non_finite(dict(zip(names, finite.numpy().tolist())))) is not None:
                raise NonFiniteTrainingError(f"{source}: {kind.value} gs{gridsize}: epoch {epoch}: {bad} became "
                                             "non-finite (NaN/inf); lower the learning rate or check the data")
            total += float(loss) * len(b)
        history.append({"epoch": epoch, "loss": total / len(x), "seconds": time.perf_counter() - epoch_start})
        if on_epoch is not None:
            on_epoch(epoch, history[-1]["loss"])
    return TrainResult(network, kind, gridsize, int(n_px), scale, history=history, initial_loss=initial,
                       seconds=time.perf_counter() - start)
