"""cctbx's B matrix of a unit cell in numpy (no torch), shared by the still renderer and the diffuse grid."""

from __future__ import annotations

import numpy as np


def cctbx_b_matrix(cell: tuple[float, ...]) -> np.ndarray:
    """cctbx/DIALS B matrix (1/Å): transpose of the fractionalisation matrix (a along x, b in x-y)."""
    a, b, c = cell[:3]
    alpha, beta, gamma = np.radians(cell[3:])
    volume = a * b * c * np.sqrt(1 - np.cos(alpha) ** 2 - np.cos(beta) ** 2 - np.cos(gamma) ** 2
                                 + 2 * np.cos(alpha) * np.cos(beta) * np.cos(gamma))
    orthogonalisation = np.array([
        [a, b * np.cos(gamma), c * np.cos(beta)],
        [0.0, b * np.sin(gamma), c * (np.cos(alpha) - np.cos(beta) * np.cos(gamma)) / np.sin(gamma)],
        [0.0, 0.0, volume / (a * b * np.sin(gamma))],
    ])
    return np.linalg.inv(orthogonalisation).T
