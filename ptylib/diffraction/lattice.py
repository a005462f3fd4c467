"""Lattice shape transform (nanoBragg's ``sincg``) and structure factors (default_F or an hkl table)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


#: Lattice shape transforms: ``square`` (a parallelepiped crystal, nanoBragg's default) and ``gauss``.
SHAPES = ("square", "gauss")


def shape_transform(h: Tensor, n_cells: float, *, shape: str = "square",
                    slope: bool = False) -> tuple[Tensor, Tensor | None]:
    """One axis's factor of F_latt at fractional Miller index ``h`` and, with ``slope``, its derivative in h.

    ``square``: nanoBragg's ``sincg(M_PI*h, N)`` = sin(pi N h) / sin(pi h). ``gauss`` (nanoBragg
    ``-gauss``): N exp(-(N (h - h0))^2 / 0.63) to the nearest integer h0, so the product over the
    three axes is Na Nb Nc exp(-hrad^2 / 0.63), spots without the sinc side lobes.

    ``h`` (any shape) is overwritten (the kernels own it). Only the fractional part is used: |sincg|
    has period 1 in h and the caller squares it, and reducing first keeps sin(pi h) exact near the
    peaks (sin of a large pi h carries its rounding error), so values and slopes stay accurate
    there. At integer h, where sin(pi h) = 0 and only there, the sincg quotients are 0/0 = NaN and
    take their limits: N for the value, 0 for the slope.
    """
    frac = h.sub_(torch.round(h))
    if shape == "gauss":
        value = frac.mul(n_cells).square_().mul_(-1.0 / 0.63).exp_().mul_(n_cells)
        return value, (frac.mul(-2.0 * n_cells**2 / 0.63).mul_(value) if slope else None)
    if shape != "square":
        raise ValueError(f"lattice shape must be one of {SHAPES}, got {shape!r}")
    x = frac.mul_(torch.pi)
    sin_x = torch.sin(x)
    n_x = x.mul_(n_cells)
    value = torch.sin(n_x).div_(sin_x).nan_to_num_(nan=n_cells)
    if not slope:
        return value, None
    # d/dh sin(N x)/sin(x) = pi (N cos(N x) - value cos(x)) / sin(x); x lies in [-pi/2, pi/2], so
    # cos(x) = sqrt(1 - sin(x)^2) >= 0, which is cheaper than a second cosine.
    cos_x = sin_x.square().neg_().add_(1.0).sqrt_()
    derivative = torch.cos(n_x).mul_(n_cells).sub_(cos_x.mul_(value)).div_(sin_x).nan_to_num_(nan=0.0)
    return value, derivative.mul_(torch.pi)


def lattice_factor(hkl: Tensor, n_cells: Tensor, shape: str = "square") -> Tensor:
    """F_latt of fractional indices ``hkl`` (..., 3) for cell counts ``n_cells`` (3,): the product of the axes'
    ``shape_transform``s (what the simulator's kernel evaluates, axis by axis)."""
    factor = None
    for axis in range(3):
        value, _ = shape_transform(hkl[..., axis].clone(), float(n_cells[axis]), shape=shape)
        factor = value if factor is None else factor * value
    return factor


@dataclass(frozen=True)
class StructureFactors:
    """Structure factors F(h, k, l) (electrons): a dense table over [hkl_min, hkl_max] or default_F.

    Lookup is nanoBragg's nearest-neighbour rule (``h0 = ceil(h - 0.5)``); indices outside the
    table, and table entries not listed in the file, take ``default_F`` (nanoBragg's behaviour
    without interpolation).
    """

    default_F: float
    hkl_min: tuple[int, int, int] | None = None
    table: np.ndarray | Tensor | None = None

    @classmethod
    def from_reflections(cls, hkl: np.ndarray, amplitudes: np.ndarray, default_F: float) -> StructureFactors:
        """Build the dense table from integer indices (n, 3) and amplitudes (n,)."""
        hkl = np.asarray(hkl, dtype=np.int64).reshape(-1, 3)
        amplitudes = np.asarray(amplitudes, dtype=np.float64).reshape(-1)
        if len(hkl) != len(amplitudes):
            raise ValueError(f"{len(hkl)} hkl indices but {len(amplitudes)} amplitudes")
        if len(hkl) == 0:
            return cls(default_F=default_F)
        if not np.all(np.isfinite(amplitudes)):
            raise ValueError("structure factors must be finite")
        low = hkl.min(axis=0)
        shape = hkl.max(axis=0) - low + 1
        table = np.full(tuple(shape), float(default_F))
        table[tuple((hkl - low).T)] = amplitudes
        return cls(default_F=default_F, hkl_min=tuple(int(v) for v in low), table=table)

    @classmethod
    def from_hkl_file(cls, path: str | os.PathLike[str], default_F: float) -> StructureFactors:
        """Read nanoBragg's ``-hkl`` text format: one ``h k l F`` line per reflection."""
        try:
            data = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except ValueError as error:
            raise ValueError(f"{path}: expected lines of 'h k l F' numbers ({error})") from error
        if data.size and data.shape[1] != 4:
            raise ValueError(f"{path}: expected 4 columns (h k l F), found {data.shape[1]}")
        data = data.reshape(-1, 4)
        return cls.from_reflections(np.rint(data[:, :3]), data[:, 3], default_F)

    def to(self, dtype: torch.dtype, device: torch.device | str) -> StructureFactors:
        """The same factors with the table as a tensor on ``device`` (converted once, not per lookup)."""
        if self.table is None:
            return self
        return StructureFactors(self.default_F, self.hkl_min, torch.as_tensor(self.table, dtype=dtype, device=device))

    def lookup(self, h: Tensor, k: Tensor, l: Tensor) -> Tensor | float:  # noqa: E741 - Miller index
        """F at the nearest reciprocal-lattice point of fractional indices ``h``, ``k``, ``l`` (same shape)."""
        if self.table is None:
            return self.default_F
        table = torch.as_tensor(self.table, dtype=h.dtype, device=h.device)
        inside = None
        flat = None
        for axis, index in enumerate((h, k, l)):
            index = torch.ceil(index - 0.5).to(torch.int64) - self.hkl_min[axis]
            size = self.table.shape[axis]
            valid = (index >= 0) & (index < size)
            inside = valid if inside is None else inside & valid
            flat = index if flat is None else flat * size + index
        flat = torch.where(inside, flat, torch.zeros_like(flat))
        return torch.where(inside, table.reshape(-1)[flat], self.default_F)
