"""The forward model: expected photons per pixel of a mosaic crystal, image laid out [slow, fast].

For every sub-pixel with scattering vector S (1/Å) and every mosaic domain d with lattice rows
a_d, b_d, c_d (Å), the fractional indices are h = a_d . S (and k, l alike) and

    I_pixel = r_e^2 * fluence * mean_{sub, d}[(F(h0, k0, l0) * sincg(pi h, Na) sincg(pi k, Nb) sincg(pi l, Nc))^2 * w]

with ``w`` the solid angle times the polarisation factor: those of the pixel's first sub-pixel by
default (nanoBragg's choice), or of every sub-pixel with the ``oversample_omega`` /
``oversample_polar`` flags. The sums over sub-pixels and domains run in ``kernel.py`` on blocks
of pixels sized for the device (``execution.py``), with an analytic backward pass.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ptylib.diffraction.cell import oriented_real_vectors
from ptylib.diffraction.detector import PixelGeometry, auto_oversample, pixel_geometry
from ptylib.diffraction.execution import (
    GuardedCompile,
    chunk_elements_for,
    intra_op_threads,
    keep_jacobian_for,
    measured_thread_count,
)
from ptylib.diffraction.kernel import ChunkedIntensity, KernelRun, block_intensity
from ptylib.diffraction.lattice import StructureFactors
from ptylib.diffraction.mosaic import mosaic_draws, mosaic_rotations
from ptylib.diffraction.options import SimulationOptions, check_cell_parameters

#: Classical electron radius squared (m^2), nanoBragg's ``r_e_sqr``.
R_E_SQR_M2 = 7.94079248018965e-30


class Simulator:
    """Precomputes the detector and the mosaic draws once; ``render`` then maps crystal parameters to an image.

    Parameters
    ----------
    options
        Crystal, detector and beam options; the crystal's cell, misset and mosaic spread are the
        defaults of ``render``.
    structure_factors
        F table; default: ``options.crystal.hkl_path`` if given, else ``default_F`` everywhere.
    dtype, device
        Floating type (float64 default, float32 allowed) and torch device of every tensor.
    chunk_elements
        Bound on the (sub-pixels x domains x 3) elements of one block of pixels; default: from the
        device (``execution.chunk_elements_for``).
    threads
        torch intra-op threads while rendering on a CPU; default: the fastest of 1, 2, 4, ... up to
        torch's count, measured on one block by the first render of that block shape in the process
        (``execution.measured_thread_count``).
    fused
        Run ``torch.compile``d kernels (Triton on CUDA); default: on CUDA only. The eager kernels
        are the fallback when compiling fails.

    Attributes
    ----------
    shape
        (spixels, fpixels) of the rendered image.
    oversample
        Sub-pixels per pixel edge.
    chunk_elements, threads, fused
        The block size, the CPU thread count (None until measured, and on CUDA) and the kernel used.
    keep_jacobian
        Whether a differentiable render keeps its Jacobians for the backward pass (``kernel.py``).
    """

    def __init__(self, options: SimulationOptions, *, structure_factors: StructureFactors | None = None,
                 dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                 chunk_elements: int | None = None, threads: int | None = None, fused: bool | None = None) -> None:
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        if chunk_elements is not None and chunk_elements < 1:
            raise ValueError(f"chunk_elements must be >= 1, got {chunk_elements}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        crystal = options.crystal
        self.options = options
        self.dtype = dtype
        self.device = torch.device(device)
        if structure_factors is None:
            structure_factors = (StructureFactors.from_hkl_file(crystal.hkl_path, crystal.default_F)
                                 if crystal.hkl_path is not None else StructureFactors(crystal.default_F))
        self.structure_factors = structure_factors
        self._factors = structure_factors.to(dtype, self.device)
        self.oversample = auto_oversample(crystal, options.detector, options.beam)
        geometry = pixel_geometry(options.detector, options.beam, self.oversample, dtype=dtype, device=self.device)
        self.shape = geometry.shape
        axes, fraction = mosaic_draws(crystal.mosaic_domains, crystal.mosaic_seed)
        self._mosaic_axes = torch.as_tensor(axes, dtype=dtype, device=self.device)
        self._mosaic_fraction = torch.as_tensor(fraction, dtype=dtype, device=self.device)
        self._n_cells = tuple(float(n) for n in crystal.n_cells)
        self._scale = R_E_SQR_M2 * options.beam.fluence_photons_per_m2
        self.chunk_elements = chunk_elements or chunk_elements_for(self.device, dtype)
        # Only the padded, transposed copy is kept: the geometry's own tensors are as large.
        self._scattering_t, self._weight, self._block_pixels = self._blocks(geometry, self.chunk_elements)
        blocks, _, elements = self._scattering_t.shape
        self._jacobian_shape = (blocks, 3, crystal.mosaic_domains, elements)
        jacobian_bytes = math.prod(self._jacobian_shape) * self._scattering_t.element_size()
        self.keep_jacobian = keep_jacobian_for(self.device, jacobian_bytes)
        self._jacobians: Tensor | None = None  # allocated by the first differentiable render
        self.threads = threads if self.device.type == "cpu" else None
        self._measure_threads = threads is None and self.device.type == "cpu"
        self.fused = self.device.type == "cuda" if fused is None else fused
        self._kernel = GuardedCompile(block_intensity) if self.fused else block_intensity

    @property
    def compile_failure(self) -> str | None:
        """Why the fused kernel fell back to the eager one (None when it did not, or is not used)."""
        return self._kernel.failure if isinstance(self._kernel, GuardedCompile) else None

    def _blocks(self, geometry: PixelGeometry, chunk_elements: int) -> tuple[Tensor, Tensor, int]:
        """Scattering vectors (blocks, 3, block * sub), weights padded with zero-weight pixels, block size."""
        scattering, weight = geometry.scattering_A, geometry.weight
        pixels, sub = scattering.shape[:2]
        per_pixel = sub * 3 * self.options.crystal.mosaic_domains
        blocks = math.ceil(pixels / max(1, chunk_elements // per_pixel))
        block = math.ceil(pixels / blocks)
        padding = blocks * block - pixels
        scattering = torch.cat([scattering, scattering.new_zeros((padding, sub, 3))])
        weight = torch.cat([weight, weight.new_zeros((padding, weight.shape[1]))])
        scattering_t = scattering.reshape(blocks, block * sub, 3).transpose(1, 2).contiguous()
        return scattering_t, weight, block

    def tensor(self, values: Sequence[float] | float | Tensor) -> Tensor:
        """``values`` as a tensor of the simulator's dtype and device (for parameters to refine)."""
        return torch.as_tensor(values, dtype=self.dtype, device=self.device)

    def render(self, *, cell: Tensor | Sequence[float] | None = None,
               misset_deg: Tensor | Sequence[float] | None = None,
               mosaic_spread_deg: Tensor | float | None = None, orientation: Tensor | None = None) -> Tensor:
        """Expected photons per pixel, shape (spixels, fpixels); differentiable in every tensor argument.

        Parameters
        ----------
        cell
            (6,) a, b, c (Å), alpha, beta, gamma (degrees); default: the options' cell.
        misset_deg
            (3,) rotations about x, y, z (degrees); default: the options' misset.
        mosaic_spread_deg
            Scalar mosaic spread (degrees); default: the options' spread.
        orientation
            Optional (3, 3) rotation applied after the misset (random orientations of stills).
        """
        crystal = self.options.crystal
        cell = self._parameter("cell", crystal.cell if cell is None else cell)
        misset_deg = self._parameter("misset_deg", crystal.misset_deg if misset_deg is None else misset_deg)
        mosaic_spread_deg = self._parameter(
            "mosaic_spread_deg", crystal.mosaic_spread_deg if mosaic_spread_deg is None else mosaic_spread_deg)
        check_cell_parameters(cell.detach().cpu().tolist())
        if mosaic_spread_deg.detach().item() < 0:
            raise ValueError(f"mosaic_spread_deg must be >= 0, got {mosaic_spread_deg.item()}")
        if orientation is not None:
            orientation = self._parameter("orientation", orientation)
        real = oriented_real_vectors(cell, misset_deg, orientation)
        domains = mosaic_rotations(mosaic_spread_deg, self._mosaic_axes, self._mosaic_fraction)
        # (domain, a|b|c, xyz): nanoBragg's rotate_umat(a0, a, umat) for every domain at once.
        lattice = torch.einsum("dij,kj->dki", domains, real)
        if self._measure_threads:
            self.threads = self._fastest_threads(lattice.detach())
            self._measure_threads = False
        if self.keep_jacobian and self._jacobians is None and lattice.requires_grad and torch.is_grad_enabled():
            self._jacobians = torch.empty(self._jacobian_shape, dtype=self.dtype, device=self.device)
        run = KernelRun(self._block_pixels, functools.partial(intra_op_threads, self.threads), self._kernel,
                        self._jacobians if self.keep_jacobian else None)
        image = ChunkedIntensity.apply(lattice, self._scattering_t, self._weight, self._n_cells,
                                       self.options.crystal.shape, self._factors, run)
        return (image[:math.prod(self.shape)] * self._scale).reshape(self.shape)

    def _fastest_threads(self, lattice: Tensor) -> int:
        """The CPU thread count that renders a block fastest, measured once per process and block shape."""
        scattering_t, weight = self._scattering_t[0], self._weight[:self._block_pixels]

        def work() -> None:
            with torch.no_grad():
                self._kernel(scattering_t, weight, lattice, self._n_cells, self.options.crystal.shape, self._factors,
                             False)

        key = ("simulator block", self.dtype, self.fused, self.options.crystal.shape, *self._jacobian_shape[1:])
        return measured_thread_count(key, work)

    def _parameter(self, name: str, value: Tensor | Sequence[float] | float) -> Tensor:
        """``value`` as a tensor of the simulator's dtype, refusing NaN and Inf with the parameter's name."""
        tensor = value.to(dtype=self.dtype, device=self.device) if isinstance(value, Tensor) else self.tensor(value)
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} must be finite, got {tensor.detach().cpu().tolist()}")
        return tensor

