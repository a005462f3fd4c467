"""Centre estimation kernels of the model policy, vectorised over events (lengths in mm, wRMSD in px).

**Cone fit (FIXED indexing).** An event's successful runs at centres ``c_i`` with wRMSD ``r_i`` are
fitted with the hyperbolic cone

    r(c)^2 = a^2 + k^2 |c - c*|^2

which is linear in ``theta = (A, B_x, B_y, C)`` after the change of variables
``u = (c - c0) / s`` (``c0`` the event's first centre, ``s`` a length scale, so every column is of
order one): ``r^2 = A |u|^2 + B.u + C``, with ``k^2 = A / s^2``, ``u* = -B / (2A)`` and
``a^2 = C - A |u*|^2``. One run's wRMSD has relative noise ``sigma`` (``r (1 + sigma N(0, 1))``), so
``r^2`` has standard deviation ``~ 2 sigma r^2``; the fit is weighted least squares in ``r^2`` with
those variances, made robust by iteratively reweighted least squares with Huber weights on the
standardised residuals ``z_i = (r_i^2 - r_hat_i^2) / (2 sigma r_hat_i^2)``. The covariance of
``theta`` is the inverse weighted normal matrix, scaled up when the scatter exceeds ``sigma``: by
``(nu0 + sum h z^2) / (nu0 + dof)`` (at least 1), the reduced chi^2 shrunk toward 1 with
``nu0 = 4`` prior degrees of freedom, since with one or two spare runs the plain reduced chi^2 would
swing the covariance by factors of several; the centre's covariance follows by the delta method.

**Refined-centre combination (REFINE indexing).** Each successful run with a refined offset gives
an estimate ``e_i = applied_i - (dx_i, dy_i)`` of the centre. They are combined by a Huber-weighted
mean (weights on ``|e_i - e_mean| / sigma0``); the standard error per axis is
``max(sigma0, s) / sqrt(n_eff)`` with ``s`` the weighted scatter (when there are two or more
estimates) and ``n_eff = (sum h)^2 / sum h^2``.

Every function works on a batch of events with the same number of trials (no padding), so an
event's result never depends on which other events share its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HUBER_K = 1.345  # Huber's constant: 95 % efficiency for Gaussian residuals
# 2-D residual norms in units of the per-axis sigma: 2.45 is the 95 % point of a chi distribution with 2 dof.
HUBER_K_2D = 2.45
_IRLS_STEPS = 10
_RANK_TOL = 1e-10  # smallest eigenvalue / largest of the column-scaled normal matrix
_RIDGE = 1e-12  # added to the unit diagonal while iterating: keeps singular systems solvable
PRIOR_DOF = 4.0  # weight, in degrees of freedom, of the known noise level in the covariance scale
N_PARAMETERS = 4


@dataclass(frozen=True)
class ConeFit:
    """Cone fits of E events: centre ``c*`` (E x 2, mm), ``a^2`` (px^2), ``k^2`` (px^2/mm^2), quality.

    ``centre_cov_mm2`` (E x 2 x 2) is the covariance of ``c*``; ``curvature_t`` the t-statistic of
    ``k^2`` (how significantly the surface is a bowl); ``chi`` the RMS Huber-weighted standardised
    residual (0 when there are no spare degrees of freedom); ``full_rank`` False when the trial
    centres cannot determine the four parameters (all on one line or one circle).
    """

    centre_mm: np.ndarray
    a2_px2: np.ndarray
    k2_px2_per_mm2: np.ndarray
    centre_cov_mm2: np.ndarray
    curvature_t: np.ndarray
    chi: np.ndarray
    full_rank: np.ndarray

    def centre_se_mm(self) -> np.ndarray:
        """Standard error (mm) of the centre along its worst direction (E,)."""
        return np.sqrt(np.maximum(np.linalg.eigvalsh(self.centre_cov_mm2)[:, -1], 0.0))

    def predict_px(self, xy_mm: np.ndarray) -> np.ndarray:
        """Model wRMSD (px) at centres ``xy_mm`` (E x M x 2); a negative fitted ``a^2`` counts as 0."""
        d2 = np.sum((xy_mm - self.centre_mm[:, None, :]) ** 2, axis=-1)
        return np.sqrt(np.maximum(self.a2_px2, 0.0)[:, None] + self.k2_px2_per_mm2[:, None] * d2)


def fit_cone(xy_mm: np.ndarray, wrmsd_px: np.ndarray, origin_mm: np.ndarray, scale_mm: float,
             noise_frac: float) -> ConeFit:
    """Robust cone fit (module docstring) of E events with K >= 4 successes each.

    ``xy_mm`` (E x K x 2) are the successful centres, ``wrmsd_px`` (E x K) their wRMSDs,
    ``origin_mm`` (E x 2) each event's first centre, ``scale_mm`` the length scale ``s`` and
    ``noise_frac`` the relative wRMSD noise ``sigma`` of one run.
    """
    n_events, n_trials = wrmsd_px.shape
    u = (xy_mm - origin_mm[:, None, :]) / scale_mm
    design = np.stack((np.sum(u * u, axis=-1), u[..., 0], u[..., 1], np.ones((n_events, n_trials))), axis=-1)
    y = wrmsd_px * wrmsd_px
    # Predictions can cross zero in a poor fit; a floor keeps the variance model finite.
    floor = 0.25 * np.min(y, axis=1, keepdims=True)
    y_hat = np.maximum(y, floor)
    huber = np.ones_like(y)
    for _ in range(_IRLS_STEPS):
        weight = huber / (2.0 * noise_frac * y_hat) ** 2
        normal, diag, theta = _weighted_solve(design, y, weight)
        y_hat = np.maximum(np.einsum("ekp,ep->ek", design, theta), floor)
        z = (y - y_hat) / (2.0 * noise_frac * y_hat)
        huber = np.minimum(1.0, HUBER_K / np.maximum(np.abs(z), 1e-300))
    inverse, full_rank = _inverse(normal, diag)
    dof = n_trials - N_PARAMETERS
    residual2 = np.sum(huber * z * z, axis=1)
    scale = (PRIOR_DOF + residual2) / (PRIOR_DOF + dof)
    cov = inverse * np.maximum(1.0, scale)[:, None, None]
    a, b = theta[:, 0], theta[:, 1:3]
    centre_u = -b / (2.0 * a[:, None])
    # Delta method: d(u*)/d(A, Bx, By, C).
    jac = np.zeros((n_events, 2, N_PARAMETERS))
    jac[:, :, 0] = b / (2.0 * a[:, None] ** 2)
    jac[:, 0, 1] = jac[:, 1, 2] = -1.0 / (2.0 * a)
    centre_cov = np.einsum("eip,epq,ejq->eij", jac, cov, jac) * scale_mm**2
    return ConeFit(
        centre_mm=origin_mm + centre_u * scale_mm,
        a2_px2=theta[:, 3] - a * np.sum(centre_u * centre_u, axis=1),
        k2_px2_per_mm2=a / scale_mm**2,
        centre_cov_mm2=centre_cov,
        curvature_t=a / np.sqrt(np.maximum(cov[:, 0, 0], 1e-300)),
        chi=np.sqrt(residual2 / dof) if dof > 0 else np.zeros(n_events),
        full_rank=full_rank,
    )


def _weighted_solve(design: np.ndarray, y: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """Weighted least squares per event: normal matrix (E x P x P), its column scales (E x P), parameters (E x P).

    The system is solved with unit diagonal plus a 1e-12 ridge, so a rank-deficient event (flagged
    by :func:`_inverse`) cannot stop the batch.
    """
    # Sums over the trial axis of (E x K x P x P) products: fixed order, independent of E.
    normal = np.sum(weight[:, :, None, None] * design[:, :, :, None] * design[:, :, None, :], axis=1)
    rhs = np.sum((weight * y)[:, :, None] * design, axis=1)
    diag = np.sqrt(np.einsum("epp->ep", normal))
    diag = np.where(diag > 0, diag, 1.0)
    scaled = normal / (diag[:, :, None] * diag[:, None, :]) + _RIDGE * np.eye(N_PARAMETERS)
    theta = np.linalg.solve(scaled, (rhs / diag)[:, :, None])[:, :, 0] / diag
    return normal, diag, theta


def _inverse(normal: np.ndarray, diag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse normal matrix (E x P x P; rank-deficient directions get no weight) and full rank (E,).

    The matrix is scaled to unit diagonal before its eigen-decomposition, so the rank test measures
    the geometry of the trials, not the units.
    """
    values, vectors = np.linalg.eigh(normal / (diag[:, :, None] * diag[:, None, :]))
    full_rank = values[:, 0] > _RANK_TOL * values[:, -1]
    inv_values = np.where(values > _RANK_TOL * values[:, -1:], 1.0 / np.where(values > 0, values, 1.0), 0.0)
    inverse = np.einsum("epk,ek,eqk->epq", vectors, inv_values, vectors) / (diag[:, :, None] * diag[:, None, :])
    return inverse, full_rank


def combine_estimates(estimates_mm: np.ndarray, sigma_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber-weighted mean (E x 2, mm) of E events' K refined-centre estimates (E x K x 2) and its standard error (E,).

    ``sigma_mm`` is the prior error of one estimate per axis; the standard error never falls below
    ``sigma_mm / sqrt(n_eff)`` (module docstring).
    """
    n_estimates = estimates_mm.shape[1]
    huber = np.ones(estimates_mm.shape[:2])
    mean = estimates_mm.mean(axis=1)
    for _ in range(_IRLS_STEPS):
        mean = np.sum(huber[:, :, None] * estimates_mm, axis=1) / np.sum(huber, axis=1)[:, None]
        distance = np.sqrt(np.sum((estimates_mm - mean[:, None, :]) ** 2, axis=-1)) / sigma_mm
        huber = np.minimum(1.0, HUBER_K_2D / np.maximum(distance, 1e-300))
    n_eff = np.sum(huber, axis=1) ** 2 / np.sum(huber * huber, axis=1)
    sigma = np.full(mean.shape[0], sigma_mm)
    if n_estimates > 1:
        scatter2 = np.sum(huber * (distance * sigma_mm) ** 2, axis=1) / (2.0 * (n_estimates - 1))
        sigma = np.maximum(sigma, np.sqrt(scatter2))
    return mean, sigma / np.sqrt(n_eff)
