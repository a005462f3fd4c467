"""Lattice shape transform (nanoBragg's ``sincg``) and structure factors (default_F or an hkl table)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def sincg(x: Tensor, n_cells: Tensor) -> Tensor:
    """Shape transform sin(N x) / sin(x) of a row of N cells, with its limit N where sin(x) = 0.

    Evaluated at ``x = pi * h``: nanoBragg's ``sincg(M_PI*h, Na)``. The inner ``where`` keeps the
    division (and its gradient) finite at sin(x) = 0, where the true derivative is 0.
    """
    sin_x = torch.sin(x)
    zero = sin_x == 0
    ratio = torch.sin(n_cells * x) / torch.where(zero, 1.0, sin_x)
    return torch.where(zero, n_cells, ratio)


def lattice_factor(hkl: Tensor, n_cells: Tensor, shape: str = "square") -> Tensor:
    """Lattice shape transform F_latt; ``hkl`` (..., 3) -> (...).

    ``square`` (nanoBragg's default, a parallelepiped crystal): sincg(pi h, Na) sincg(pi k, Nb)
    sincg(pi l, Nc). ``gauss`` (nanoBragg ``-gauss``): Na Nb Nc exp(-hrad^2 / 0.63) with
    hrad^2 = sum((h - h0)^2 N^2) to the nearest lattice point h0: spots without the sinc side lobes.
    """
    # |sincg| depends only on the fractional part, and the caller squares it. Reducing first keeps
    # sin(x) exact near x = 0, so sin(x) vanishes only there and the gradient stays accurate near
    # the peaks (sin(pi h) of a large h carries the rounding error of pi h).
    frac = hkl - torch.round(hkl)
    if shape == "gauss":
        return n_cells.prod() * torch.exp(-(frac * n_cells).square().sum(dim=-1) / 0.63)
    if shape != "square":
        raise ValueError(f"lattice shape must be 'square' or 'gauss', got {shape!r}")
    return sincg(torch.pi * frac, n_cells).prod(dim=-1)


@dataclass(frozen=True)
class StructureFactors:
    """Structure factors F(h, k, l) (electrons): a dense table over [hkl_min, hkl_max] or default_F.

    Lookup is nanoBragg's nearest-neighbour rule (``h0 = ceil(h - 0.5)``); indices outside the
    table, and table entries not listed in the file, take ``default_F`` (nanoBragg's behaviour
    without interpolation).
    """

    default_F: float
    hkl_min: tuple[int, int, int] | None = None
    table: np.ndarray | None = None

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

    def lookup(self, hkl: Tensor) -> Tensor | float:
        """F at the nearest reciprocal-lattice point of fractional indices ``hkl`` (..., 3)."""
        if self.table is None:
            return self.default_F
        table = torch.as_tensor(self.table, dtype=hkl.dtype, device=hkl.device)
        index = torch.ceil(hkl - 0.5).to(torch.int64) - torch.as_tensor(self.hkl_min, device=hkl.device)
        shape = torch.as_tensor(self.table.shape, device=hkl.device)
        inside = ((index >= 0) & (index < shape)).all(dim=-1)
        index = torch.where(inside[..., None], index, torch.zeros_like(index))
        flat = (index[..., 0] * shape[1] + index[..., 1]) * shape[2] + index[..., 2]
        return torch.where(inside, table.reshape(-1)[flat], self.default_F)
