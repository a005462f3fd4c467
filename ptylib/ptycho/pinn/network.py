"""The encoder–decoder CNN: C diffraction amplitudes of a group → C object patches (amplitude and phase heads).

Three 2× downsamplings, a shared decoder of three upsamplings, two 3×3 convolutions per stage, then two
3×3 heads: amplitude through a sigmoid (transmission in (0, 1)), phase through π·tanh (radians). Plain
Keras layers only, so the model saves and loads in Keras' native format without custom code.
"""

from __future__ import annotations

import math
from typing import Any


def build_network(patch_size_px: int, channels: int, filters: int) -> Any:
    """A Keras model (B, N, N, C) → [amplitude (B, N, N, C), phase (B, N, N, C)]; N must be divisible by 8."""
    import keras
    from keras import layers

    if patch_size_px % 8:
        raise ValueError(f"the network needs a patch size divisible by 8, got N = {patch_size_px}")
    inputs = keras.Input((patch_size_px, patch_size_px, channels), name="amplitudes")
    x = inputs
    widths = [filters, 2 * filters, 4 * filters]
    for i, width in enumerate(widths):
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"enc{i}a")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"enc{i}b")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Conv2D(4 * filters, 3, padding="same", activation="relu", name="bottleneck")(x)
    for i, width in enumerate(reversed(widths)):
        x = layers.UpSampling2D(2, name=f"up{i}")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"dec{i}a")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"dec{i}b")(x)
    amplitude = layers.Conv2D(channels, 3, padding="same", activation="sigmoid", name="amplitude")(x)
    phase = layers.Conv2D(channels, 3, padding="same", activation="tanh", name="phase_tanh")(x)
    heads = [amplitude, layers.Rescaling(math.pi, name="phase")(phase)]
    return keras.Model(inputs, heads, name=f"ptycho_encoder_decoder_c{channels}")


def patches_from_outputs(amplitude: Any, phase: Any) -> Any:
    """Network outputs (B, N, N, C) ×2 → complex patches (B, C, N, N) complex64 (TensorFlow tensors)."""
    import tensorflow as tf

    amp = tf.transpose(amplitude, (0, 3, 1, 2))
    ph = tf.transpose(phase, (0, 3, 1, 2))
    return tf.complex(amp * tf.cos(ph), amp * tf.sin(ph))
