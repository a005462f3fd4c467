"""Training options of the PINN and of the supervised baseline (frozen, validated)."""

from __future__ import annotations

from enum import StrEnum, auto

from pydantic import BaseModel, ConfigDict, Field


class PINNLoss(StrEnum):
    """Data term of the PINN."""

    POISSON = auto()
    """Poisson negative log-likelihood of the counts, relative to the saturated model (≥ 0)."""
    MAE = auto()
    """Mean absolute error of the amplitudes (sqrt of counts)."""


class ModelKind(StrEnum):
    """What a network was trained as."""

    PINN = auto()
    """Unsupervised: diffraction → object patches → physics layer → predicted diffraction."""
    BASELINE = auto()
    """Supervised: diffraction → object patches, trained against the ground-truth patches ``Y``."""


class TrainingOptions(BaseModel):
    """How one network is trained; the same options serve the PINN and the supervised baseline."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    epochs: int = Field(40, ge=1)
    """Passes over the training groups."""
    min_steps: int = Field(0, ge=0)
    """At least this many gradient steps: a small training set (a sparse view's few groups) gets more epochs."""
    batch_size: int = Field(4, ge=1)
    """Groups per gradient step."""
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    """Adam learning rate."""
    filters: int = Field(16, ge=2, le=256)
    """Channels of the first encoder stage (doubled at each of the three downsamplings, capped at 4×)."""
    loss: PINNLoss = PINNLoss.POISSON
    """Data term of the PINN (the baseline always uses the complex-patch MAE)."""
    seed: int = Field(789, ge=0)
    """Seed of the weight initialisation and of the batch order."""
    threads: int | None = Field(2, ge=1)
    """TensorFlow intra-op threads (set once per process; None keeps TensorFlow's default)."""

    def epochs_for(self, n_groups: int) -> int:
        """Epochs for a training set of ``n_groups`` groups: ``epochs``, raised to reach ``min_steps`` steps."""
        steps_per_epoch = max(1, -(-n_groups // self.batch_size))
        return max(self.epochs, -(-self.min_steps // steps_per_epoch))
