"""The forward model's inner kernel on a block of pixels, and its analytic gradient in the lattice rows.

For a block of pixels with sub-pixel scattering vectors S in 1/Å, weights w and the lattice rows
of every mosaic domain in Å, the kernel returns per pixel

    mean_{sub}[w * mean_{d}[(F(h0, k0, l0) * s(h, Na) s(k, Nb) s(l, Nc))^2]],   h = a_d . S (k, l alike)

with ``s`` the shape transform of ``lattice.shape_transform`` (sincg, or nanoBragg's gauss shape). ``ChunkedIntensity`` runs it over
all blocks and supplies the gradient itself instead of differentiating the block's graph: per
element the derivative of the pixel in the index h_j is

    w / (sub * domains) * 2 F^2 (s_a s_b s_c) (prod_{k != j} s_k) s'_j,

and one matrix product of those (the "Jacobian", (3, domains, elements)) weighted by the pixel
gradients with S gives the (domains, 3, 3) lattice gradient. The Jacobian is either kept from the
forward pass in a buffer the caller owns and reuses (when it fits the memory budget: the backward
pass is then one product per block) or recomputed block by block in the backward pass. The buffer
is reused because fresh memory costs: writing each block's Jacobian to newly allocated pages made
the forward pass 3x slower on a CPU. Scattering vectors are stored transposed, (3, pixels * sub),
so that both products run on contiguous rows (3x faster on a CPU than the (elements, 3) layout).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor

from ptylib.diffraction.lattice import StructureFactors, shape_transform

#: (scattering_t, weight, lattice, n_cells, shape, factors, jacobian) -> (intensity per pixel, Jacobian or None).
BlockKernel = Callable[[Tensor, Tensor, Tensor, tuple[float, float, float], str, StructureFactors, bool],
                       tuple[Tensor, Tensor | None]]


def block_intensity(scattering_t: Tensor, weight: Tensor, lattice: Tensor, n_cells: tuple[float, float, float],
                    shape: str, factors: StructureFactors, jacobian: bool) -> tuple[Tensor, Tensor | None]:
    """Weighted mean intensity per pixel (electrons^2), and with ``jacobian`` its derivatives in h, k, l.

    Parameters
    ----------
    scattering_t
        (3, pixels * sub) scattering vectors (1/Å), sub-pixels of a pixel adjacent.
    weight
        (pixels, sub) or (pixels, 1) solid angle times polarisation (sr).
    lattice
        (domains, 3, 3) rows a, b, c (Å) of every mosaic domain.
    n_cells
        Crystal size in cells along a, b, c.
    shape
        Lattice shape transform, ``square`` or ``gauss`` (``lattice.shape_transform``).
    factors
        Structure factors (``StructureFactors.to`` the kernel's device).
    jacobian
        Also return d intensity[pixel] / d (h, k, l)[domain, element], shape (3, domains, pixels * sub).

    Returns
    -------
    (pixels,) intensity, multiplied by r_e^2 * fluence it is photons; the Jacobian or None.
    """
    pixels = weight.shape[0]
    elements = scattering_t.shape[1]
    sub = elements // pixels
    domains = lattice.shape[0]
    # Rows (axis, domain): one (3 domains, 3) x (3, elements) product for all fractional indices.
    indices = (lattice.transpose(0, 1).reshape(-1, 3) @ scattering_t).view(3, domains, elements)
    structure = factors.lookup(*indices)  # before shape_transform overwrites the indices
    terms = [shape_transform(indices[axis], n, shape=shape, slope=jacobian) for axis, n in enumerate(n_cells)]
    (s_a, slope_a), (s_b, slope_b), (s_c, slope_c) = terms
    amplitude = s_a * s_b * s_c
    squared = (amplitude * structure).square_()
    per_sub = squared.mean(dim=0).view(pixels, sub)
    intensity = (per_sub * weight).mean(dim=-1)
    if not jacobian:
        return intensity, None
    scale = weight.expand(pixels, sub).reshape(1, elements) * (2.0 / (sub * domains))
    common = amplitude.mul_(scale).mul_(structure).mul_(structure)
    result = indices  # the indices' storage is free again: the shape transforms consumed them
    torch.mul(s_b, s_c, out=result[0]).mul_(slope_a).mul_(common)
    torch.mul(s_a, s_c, out=result[1]).mul_(slope_b).mul_(common)
    torch.mul(s_a, s_b, out=result[2]).mul_(slope_c).mul_(common)
    return intensity, result


def lattice_gradient(jacobian: Tensor, grad_pixels: Tensor, scattering_t: Tensor) -> Tensor:
    """(domains, 3, 3) gradient of sum(grad_pixels * intensity) from a block's (3, domains, elements) Jacobian."""
    axes, domains, elements = jacobian.shape
    sub = elements // grad_pixels.shape[0]
    grad_elements = grad_pixels.repeat_interleave(sub)
    weighted = (jacobian.view(axes * domains, elements) * grad_elements)
    # (3, elements) x (elements, 3 domains) is the faster order of this product on a CPU.
    return (scattering_t @ weighted.T).T.reshape(axes, domains, 3).transpose(0, 1)


@dataclass(frozen=True)
class KernelRun:
    """How ``ChunkedIntensity`` runs: the blocks, the CPU threads, the kernel and whether to keep Jacobians."""

    block_pixels: int
    """Pixels per block; every block has this size (the caller pads the pixels)."""
    threads: Callable[[], AbstractContextManager[None]]
    """Context-manager factory that holds the chosen intra-op thread count during a pass."""
    kernel: BlockKernel
    """``block_intensity`` or its compiled form."""
    jacobians: Tensor | None
    """(blocks, 3, domains, block elements) buffer for the forward pass's Jacobians, or None to
    recompute them in the backward pass. A later differentiable render overwrites it; the backward
    pass of an earlier one notices (the buffer's version changed) and recomputes."""


class ChunkedIntensity(torch.autograd.Function):
    """``block_intensity`` over all blocks of pixels, differentiable in the lattice rows only.

    ``scattering_t`` is (blocks, 3, block_pixels * sub) and ``weight`` (blocks * block_pixels, sub or 1).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, lattice: Tensor, scattering_t: Tensor, weight: Tensor,
                n_cells: tuple[float, float, float], shape: str, factors: StructureFactors, run: KernelRun) -> Tensor:
        kept = run.jacobians if ctx.needs_input_grad[0] else None
        step = run.block_pixels
        intensities = []
        with run.threads():
            for block, block_scattering in enumerate(scattering_t):
                intensity, jacobian = run.kernel(block_scattering, weight[block * step:(block + 1) * step], lattice,
                                                 n_cells, shape, factors, kept is not None)
                intensities.append(intensity)
                if kept is not None:
                    kept[block].copy_(jacobian)
        ctx.save_for_backward(lattice, scattering_t, weight)
        ctx.constants = (n_cells, shape, factors, run)
        ctx.kept = (kept, kept._version) if kept is not None else None
        return torch.cat(intensities)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        lattice, scattering_t, weight = ctx.saved_tensors
        n_cells, shape, factors, run = ctx.constants
        kept = ctx.kept[0] if ctx.kept is not None and ctx.kept[0]._version == ctx.kept[1] else None
        step = run.block_pixels
        total = torch.zeros_like(lattice)
        with run.threads():
            for block, block_scattering in enumerate(scattering_t):
                rows = slice(block * step, (block + 1) * step)
                jacobian = kept[block] if kept is not None else run.kernel(
                    block_scattering, weight[rows], lattice, n_cells, shape, factors, True)[1]
                total += lattice_gradient(jacobian, grad[rows], block_scattering)
        return total, None, None, None, None, None, None
