"""Mosaic domains drawn exactly as nanoBragg draws them, as differentiable functions of the spread.

nanoBragg draws each domain's rotation from Numerical Recipes' ``ran1`` seeded with
``-mosaic_seed`` (``mosaic_rotation_umat``): a random axis and an angle ``spread * (1 - r3^2)^(1/3)``
inside a spherical cap whose diameter is the mosaic spread. Domain 0 is then reset to the identity.
We replay the same generator, so a given seed gives the same domains as the C program, and keep
the random axis and the cap fraction fixed: the rotation angle is then linear in the spread and
the gradient flows through it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

_IA, _IM, _IQ, _IR, _NTAB = 16807, 2147483647, 127773, 2836, 32
_NDIV = 1 + (_IM - 1) // _NTAB
_RNMX = np.float32(1.0 - 1.2e-7)


class Ran1:
    """Numerical Recipes ``ran1`` (Park-Miller with a Bays-Durham shuffle) as compiled in nanoBragg.

    ``Ran1(seed)`` behaves like nanoBragg after ``-mosaic_seed seed``: the C code stores the
    negated seed, which makes the first call load the shuffle table.
    """

    def __init__(self, seed: int) -> None:
        idum = max(int(seed), 1)
        self._table = [0] * _NTAB
        for j in range(_NTAB + 7, -1, -1):
            idum = self._step(idum)
            if j < _NTAB:
                self._table[j] = idum
        self._idum = idum
        self._iy = self._table[0]

    @staticmethod
    def _step(idum: int) -> int:
        # Schrage's multiplication modulo 2^31 - 1, identical to the C integer arithmetic.
        k = idum // _IQ
        idum = _IA * (idum - k * _IQ) - _IR * k
        return idum + _IM if idum < 0 else idum

    def draw(self, count: int) -> np.ndarray:
        """The next ``count`` uniform deviates in (0, 1), float32 like the C function returns."""
        values = np.empty(count, dtype=np.float32)
        for n in range(count):
            self._idum = self._step(self._idum)
            j = self._iy // _NDIV
            self._iy = self._table[j]
            self._table[j] = self._idum
            values[n] = min(np.float32(self._iy * (1.0 / _IM)), _RNMX)
        return values


def mosaic_draws(domains: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit rotation axes (domains, 3) and cap fractions (domains,) of nanoBragg's mosaic domains.

    The rotation angle of domain ``d`` is ``spread_rad * fraction[d]``; domain 0 has fraction 0
    (nanoBragg forces the first domain to the identity after drawing it).
    """
    if domains < 1:
        raise ValueError(f"mosaic_domains must be >= 1, got {domains}")
    uniform = Ran1(seed).draw(3 * domains).reshape(domains, 3).astype(np.float64)
    r1, r2, r3 = (2.0 * uniform[:, i] - 1.0 for i in range(3))
    xy_radius = np.sqrt(1.0 - r2 * r2)
    axes = np.stack([xy_radius * np.sin(math.pi * r1), xy_radius * np.cos(math.pi * r1), r2], axis=1)
    # nanoBragg evaluates this power with powf in single precision.
    fraction = np.power(np.float32(1.0) - (r3 * r3).astype(np.float32), np.float32(1.0 / 3.0)).astype(np.float64)
    fraction[0] = 0.0
    return axes, fraction


def mosaic_rotations(spread_deg: Tensor, axes: Tensor, fraction: Tensor) -> Tensor:
    """Rotation matrices (domains, 3, 3) for mosaic spread ``spread_deg`` (degrees, scalar tensor).

    Rodrigues' formula for the angle ``spread * fraction`` about each axis: the same matrix
    nanoBragg's ``mosaic_rotation_umat`` writes out term by term.
    """
    angle = torch.deg2rad(spread_deg) * fraction
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    x, y, z = axes[:, 0], axes[:, 1], axes[:, 2]
    zero = torch.zeros_like(x)
    cross = torch.stack([
        torch.stack([zero, -z, y], dim=-1),
        torch.stack([z, zero, -x], dim=-1),
        torch.stack([-y, x, zero], dim=-1),
    ], dim=-2)
    outer = axes[:, :, None] * axes[:, None, :]
    identity = torch.eye(3, dtype=axes.dtype, device=axes.device)
    return cos * identity + (1 - cos) * outer + sin * cross
