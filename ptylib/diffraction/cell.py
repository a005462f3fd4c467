"""Unit cell -> reciprocal and real lattice vectors in nanoBragg's frame, and misset rotations.

All functions are torch expressions of their tensor inputs, so gradients flow to the cell
parameters and misset angles. Lattice vectors are returned as the rows of a (3, 3) tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor


def reciprocal_vectors(cell: Tensor) -> Tensor:
    """Rows a*, b*, c* (1/Å) of cell (a, b, c Å, alpha, beta, gamma deg) in nanoBragg's default frame.

    a* lies along lab x and b* in the x-y plane, as in nanoBragg's ``-cell`` set-up. Unlike
    nanoBragg, c*_z is the exact 1/c: nanoBragg writes sin(gamma) / (c sin(gamma*)), which is only
    equal for cells with alpha = beta = 90 or gamma* = gamma, so its triclinic cells come out with
    slightly different angles (see docs/diffraction.md).
    """
    a, b, c = cell[0], cell[1], cell[2]
    alpha, beta, gamma = torch.deg2rad(cell[3]), torch.deg2rad(cell[4]), torch.deg2rad(cell[5])
    cos_a, cos_b, cos_g = torch.cos(alpha), torch.cos(beta), torch.cos(gamma)
    sin_a, sin_b, sin_g = torch.sin(alpha), torch.sin(beta), torch.sin(gamma)
    volume = a * b * c * torch.sqrt(1 - cos_a**2 - cos_b**2 - cos_g**2 + 2 * cos_a * cos_b * cos_g)
    a_star = b * c * sin_a / volume
    b_star = c * a * sin_b / volume
    c_star = a * b * sin_g / volume
    cos_alpha_star = (cos_b * cos_g - cos_a) / (sin_b * sin_g)
    cos_beta_star = (cos_g * cos_a - cos_b) / (sin_g * sin_a)
    cos_gamma_star = (cos_a * cos_b - cos_g) / (sin_a * sin_b)
    sin_gamma_star = torch.sqrt(1 - cos_gamma_star**2)
    zero = torch.zeros_like(a)
    return torch.stack([
        torch.stack([a_star, zero, zero]),
        torch.stack([b_star * cos_gamma_star, b_star * sin_gamma_star, zero]),
        torch.stack([
            c_star * cos_beta_star,
            c_star * (cos_alpha_star - cos_beta_star * cos_gamma_star) / sin_gamma_star,
            1 / c,
        ]),
    ])


def real_from_reciprocal(reciprocal: Tensor) -> Tensor:
    """Rows a, b, c (Å) of the direct lattice whose reciprocal rows are ``reciprocal`` (1/Å)."""
    a_star, b_star, c_star = reciprocal[0], reciprocal[1], reciprocal[2]
    volume = 1 / torch.dot(a_star, torch.linalg.cross(b_star, c_star))
    return torch.stack([
        torch.linalg.cross(b_star, c_star) * volume,
        torch.linalg.cross(c_star, a_star) * volume,
        torch.linalg.cross(a_star, b_star) * volume,
    ])


def misset_rotation(misset_deg: Tensor) -> Tensor:
    """Rotation matrix (3, 3) of nanoBragg's ``-misset rx ry rz``: about x first, then y, then z."""
    rx, ry, rz = torch.deg2rad(misset_deg[0]), torch.deg2rad(misset_deg[1]), torch.deg2rad(misset_deg[2])
    one, zero = torch.ones_like(rx), torch.zeros_like(rx)
    rot_x = torch.stack([
        torch.stack([one, zero, zero]),
        torch.stack([zero, torch.cos(rx), -torch.sin(rx)]),
        torch.stack([zero, torch.sin(rx), torch.cos(rx)]),
    ])
    rot_y = torch.stack([
        torch.stack([torch.cos(ry), zero, torch.sin(ry)]),
        torch.stack([zero, one, zero]),
        torch.stack([-torch.sin(ry), zero, torch.cos(ry)]),
    ])
    rot_z = torch.stack([
        torch.stack([torch.cos(rz), -torch.sin(rz), zero]),
        torch.stack([torch.sin(rz), torch.cos(rz), zero]),
        torch.stack([zero, zero, one]),
    ])
    return rot_z @ rot_y @ rot_x


def oriented_real_vectors(cell: Tensor, misset_deg: Tensor, orientation: Tensor | None = None) -> Tensor:
    """Rows a, b, c (Å) in the lab frame: default frame, then the misset, then ``orientation`` (3, 3).

    nanoBragg rotates the reciprocal vectors; a rotation commutes with the cross products that
    turn them into direct vectors, so rotating the direct vectors is the same.
    """
    rotation = misset_rotation(misset_deg)
    if orientation is not None:
        rotation = orientation @ rotation
    return real_from_reciprocal(reciprocal_vectors(cell)) @ rotation.T
