"""The forward model: expected photons per pixel of a mosaic crystal, image laid out [slow, fast].

For every sub-pixel with scattering vector S (1/Å) and every mosaic domain d with lattice rows
a_d, b_d, c_d (Å), the fractional indices are h = a_d . S (and k, l alike) and

    I_pixel = r_e^2 * fluence * mean_{sub, d}[(F(h0, k0, l0) * sincg(pi h, Na) sincg(pi k, Nb) sincg(pi l, Nc))^2 * w]

with ``w`` the solid angle times the polarisation factor (per pixel, or per sub-pixel with the
``oversample_omega`` / ``oversample_polar`` flags). Everything is batched over sub-pixels and
domains; pixels are processed in chunks so a 1024 x 1024 image fits in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.utils.checkpoint
from torch import Tensor

from ptylib.diffraction.cell import oriented_real_vectors
from ptylib.diffraction.detector import PixelGeometry, auto_oversample, pixel_geometry
from ptylib.diffraction.lattice import StructureFactors, lattice_factor
from ptylib.diffraction.mosaic import mosaic_draws, mosaic_rotations
from ptylib.diffraction.options import SimulationOptions, check_cell_parameters

#: Classical electron radius squared (m^2), nanoBragg's ``r_e_sqr``.
R_E_SQR_M2 = 7.94079248018965e-30
#: Elements of one chunk's (sub-pixels x domains x 3) intermediates: 2 MiB in float64, small enough
#: to stay in cache and in the allocator's reused blocks (32 MiB chunks ran 2-4x slower here, fresh
#: pages from the OS every time) and large enough to keep the number of parallel regions low.
DEFAULT_CHUNK_ELEMENTS = 1 << 18
#: Above this many (sub-pixel x domain x axis) elements a differentiable render recomputes each
#: chunk in the backward pass instead of keeping its intermediates (about 1 GiB in float64).
CHECKPOINT_ELEMENTS = 1 << 24


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
        Bound on the elements of one chunk's (sub-pixels x domains x 3) intermediates.
    """

    def __init__(self, options: SimulationOptions, *, structure_factors: StructureFactors | None = None,
                 dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                 chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
        crystal = options.crystal
        self.options = options
        self.dtype = dtype
        self.device = torch.device(device)
        if structure_factors is None:
            structure_factors = (StructureFactors.from_hkl_file(crystal.hkl_path, crystal.default_F)
                                 if crystal.hkl_path is not None else StructureFactors(crystal.default_F))
        self.structure_factors = structure_factors
        self.oversample = auto_oversample(crystal, options.detector, options.beam)
        self.geometry: PixelGeometry = pixel_geometry(options.detector, options.beam, self.oversample,
                                                      dtype=dtype, device=self.device)
        axes, fraction = mosaic_draws(crystal.mosaic_domains, crystal.mosaic_seed)
        self._mosaic_axes = torch.as_tensor(axes, dtype=dtype, device=self.device)
        self._mosaic_fraction = torch.as_tensor(fraction, dtype=dtype, device=self.device)
        self._n_cells = torch.as_tensor(crystal.n_cells, dtype=dtype, device=self.device)
        self._scale = R_E_SQR_M2 * options.beam.fluence_photons_per_m2
        per_pixel = self.oversample**2 * 3 * crystal.mosaic_domains
        self._chunk_pixels = max(1, chunk_elements // per_pixel)
        self._checkpoint = per_pixel * self.geometry.scattering_A.shape[0] > CHECKPOINT_ELEMENTS

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
        # Rows (domain, a|b|c): nanoBragg's rotate_umat(a0, a, umat) for every domain at once.
        lattice = torch.einsum("dij,kj->dki", domains, real).reshape(-1, 3)
        scattering, weight = self.geometry.scattering_A, self.geometry.weight
        checkpoint = self._checkpoint and torch.is_grad_enabled() and lattice.requires_grad
        pixels = []
        for start in range(0, scattering.shape[0], self._chunk_pixels):
            chunk = (scattering[start:start + self._chunk_pixels], weight[start:start + self._chunk_pixels], lattice)
            if checkpoint:
                pixels.append(torch.utils.checkpoint.checkpoint(self._render_chunk, *chunk, use_reentrant=False))
            else:
                pixels.append(self._render_chunk(*chunk))
        image = torch.cat(pixels) * self._scale
        return image.reshape(self.geometry.shape)

    def _render_chunk(self, scattering: Tensor, weight: Tensor, lattice: Tensor) -> Tensor:
        """Photons per r_e^2 * fluence for a block of pixels: (pixels, sub, 3) -> (pixels,)."""
        hkl = (scattering @ lattice.T).unflatten(-1, (-1, 3))  # (pixels, sub, domains, 3)
        amplitude = lattice_factor(hkl, self._n_cells, self.options.crystal.shape)
        structure = self.structure_factors.lookup(hkl)
        intensity = (amplitude * structure).square().mean(dim=-1)  # mean over domains
        return (intensity * weight).mean(dim=-1)  # mean over sub-pixels

    def _parameter(self, name: str, value: Tensor | Sequence[float] | float) -> Tensor:
        """``value`` as a tensor of the simulator's dtype, refusing NaN and Inf with the parameter's name."""
        tensor = value.to(dtype=self.dtype, device=self.device) if isinstance(value, Tensor) else self.tensor(value)
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{name} must be finite, got {tensor.detach().cpu().tolist()}")
        return tensor

