"""The adjusted likelihood of the erased data (Nguyen et al., 2020).

When only an approximation ``q(theta | D)`` of the posterior is known, dividing it by
``p(D_e | theta)`` goes wrong where ``q(theta | D)`` is nearly zero: there the
approximation is poor, and the division can put mass anywhere. The adjusted likelihood
only lets the erased data act where ``q(theta | D)`` is large:

    p_adj(D_e | theta; lam) = p(D_e | theta)  if q(theta | D) > lam * max q(theta' | D),
                              1               otherwise.

For a Gaussian ``q(theta | D) = N(mu, Sigma)`` the region is the ellipsoid
``(theta - mu)^T Sigma^{-1} (theta - mu) < -2 ln(lam)``. ``lam = 0`` keeps every
point (no adjustment); ``lam = 1`` keeps none (nothing is unlearned).
"""

from __future__ import annotations

import math
from typing import Optional

import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_gaussian_belief,
    check_callable,
    check_log_likelihood_values,
    check_nonnegative_number,
    check_theta,
    check_unit_interval,
)
from unlearnkit.likelihoods import LogLikelihood

tfd = tfp.distributions

__all__ = [
    "AdjustedLogLikelihood",
    "adjusted_log_likelihood",
    "adjusted_region_radius_squared",
]


def adjusted_region_radius_squared(lam: float) -> float:
    """Squared Mahalanobis radius ``-2 ln(lam)`` of the region where ``q > lam * max q``.

    Args:
        lam: the threshold ``lam`` in [0, 1].

    Returns:
        ``inf`` for ``lam = 0`` (every point is inside), ``0`` for ``lam = 1`` (none is).
    """
    lam = check_unit_interval(lam, "lam")
    return math.inf if lam == 0.0 else max(0.0, -2.0 * math.log(lam))


class AdjustedLogLikelihood:
    """``theta [S, d] -> log p_adj(D_e | theta; lam) [S]`` for a Gaussian ``q(theta | D)``.

    Build it with :func:`adjusted_log_likelihood`. Calling it checks ``theta`` and the
    output of the wrapped log-likelihood (shape ``[S]``, finite), eagerly or inside a
    ``tf.function``.

    Attributes:
        erased_log_likelihood: the wrapped ``log p(D_e | theta)``.
        q_full: the belief ``q(theta | D)`` that defines the region (a
            ``tfd.MultivariateNormalTriL``).
        lam: the threshold in [0, 1].
        radius_squared: ``-2 ln(lam)``, the squared Mahalanobis radius of the region.
        dim: ``d``.
    """

    def __init__(self, erased_log_likelihood: LogLikelihood, q_full: object, lam: float) -> None:
        self.erased_log_likelihood = check_callable(
            erased_log_likelihood, "erased_log_likelihood", "theta [S, d] -> [S]"
        )
        self.q_full = as_gaussian_belief(q_full, "q_full")
        self.lam = check_unit_interval(lam, "lam")
        self.radius_squared = adjusted_region_radius_squared(self.lam)
        self.dim = int(self.q_full.event_shape[0])

    def mahalanobis_squared(self, theta: tf.Tensor) -> tf.Tensor:
        """``(theta - mu)^T Sigma^{-1} (theta - mu)`` under ``q_full``; ``theta [S, d] -> [S]``."""
        theta = check_theta(theta, self.dim)
        z = tf.linalg.triangular_solve(
            self.q_full.scale.to_dense(), tf.transpose(theta - self.q_full.loc), lower=True
        )
        return tf.reduce_sum(z**2, axis=0)

    def inside(self, theta: tf.Tensor) -> tf.Tensor:
        """Boolean ``[S]``: whether ``q_full(theta) > lam * max q_full``."""
        return self.mahalanobis_squared(theta) < self.radius_squared

    def log_likelihood(self, theta: tf.Tensor) -> tf.Tensor:
        """The unadjusted ``log p(D_e | theta) [S]``, its output checked."""
        theta = check_theta(theta, self.dim)
        return check_log_likelihood_values(
            self.erased_log_likelihood(theta), theta.shape[0], "erased_log_likelihood"
        )

    def __call__(self, theta: tf.Tensor) -> tf.Tensor:
        return self.smoothed(theta, 0.0)

    def smoothed(
        self,
        theta: tf.Tensor,
        boundary_smoothing: float,
        mahalanobis_squared: Optional[tf.Tensor] = None,
    ) -> tf.Tensor:
        """The adjusted log-likelihood with the region's indicator replaced by a smooth step.

        Inside the region, ``log p(D_e | theta)`` is multiplied by
        ``sigmoid((1 - m / r) / boundary_smoothing)``, with ``m`` the Mahalanobis distance of
        ``theta`` and ``r = sqrt(-2 ln lam)`` the region's radius; as
        ``boundary_smoothing -> 0`` this tends to the adjusted log-likelihood, and
        ``boundary_smoothing = 0`` is the adjusted log-likelihood itself. The EUBO is
        minimised on the smoothed version, whose gradient sees the boundary.

        Args:
            theta: ``[S, d]`` float64.
            boundary_smoothing: width of the step relative to the radius, >= 0.
            mahalanobis_squared: ``[S]``, the squared Mahalanobis distances of ``theta``
                under ``q_full``, when the caller already has them (for example from
                samples drawn in coordinates whitened by ``q_full``); computed if omitted.

        Returns:
            ``[S]``.
        """
        values = self.log_likelihood(theta)
        if math.isinf(self.radius_squared):
            return values
        if self.radius_squared == 0.0:  # lam = 1: p_adj = 1 everywhere
            return tf.zeros_like(values)
        if mahalanobis_squared is None:
            mahalanobis_squared = self.mahalanobis_squared(theta)
        distance_squared = mahalanobis_squared
        if boundary_smoothing == 0.0:
            return tf.where(distance_squared < self.radius_squared, values, tf.zeros_like(values))
        return smooth_region_weight(distance_squared, self.radius_squared, boundary_smoothing) * values

    def __repr__(self) -> str:
        return f"AdjustedLogLikelihood(lam={self.lam}, radius_squared={self.radius_squared})"


def smooth_region_weight(
    distance_squared: tf.Tensor, radius_squared: object, boundary_smoothing: float
) -> tf.Tensor:
    """The smooth step ``sigmoid((1 - m / r) / boundary_smoothing)`` that replaces the
    region's indicator ``m < r``.

    Args:
        distance_squared: ``[S]`` float64, the squared Mahalanobis distances ``m^2`` under
            ``q_full`` (or the flow's equivalent).
        radius_squared: ``r^2``, a positive float or float64 scalar tensor.
        boundary_smoothing: the step's width relative to ``r``, > 0.

    Returns:
        ``[S]`` weights in (0, 1).
    """
    distance = tf.sqrt(tf.maximum(distance_squared, 1e-300))
    radius = tf.sqrt(tf.convert_to_tensor(radius_squared, tf.float64))
    return tf.sigmoid((1.0 - distance / radius) / boundary_smoothing)


def adjusted_log_likelihood(
    erased_log_likelihood: LogLikelihood, q_full: object, lam: float
) -> AdjustedLogLikelihood:
    """The adjusted log-likelihood ``log p_adj(D_e | theta; lam)`` of the erased data.

    Equal to ``log p(D_e | theta)`` inside the region where ``q_full(theta) > lam * max
    q_full`` (the Mahalanobis ball of squared radius ``-2 ln lam``) and to 0 outside.

    Args:
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        q_full: the approximate posterior ``q(theta | D)``, any float64
            ``tfd.MultivariateNormalLinearOperator`` with event shape ``[d]``.
        lam: threshold in [0, 1]; 0 means no adjustment, 1 means ``p_adj = 1``.

    Returns:
        A callable ``theta [S, d] -> [S]`` of the same form (an
        :class:`AdjustedLogLikelihood`).

    Raises:
        TypeError: ``erased_log_likelihood`` is not callable or ``q_full`` is not a float64
            multivariate normal.
        ValueError: ``lam`` is outside [0, 1].
        NotPositiveDefiniteError: ``q_full`` has a singular covariance.

    Example:
        >>> adjusted = adjusted_log_likelihood(log_lik_erased, q_full, lam=1e-3)
        >>> adjusted(q_full.sample(100))  # [100]
    """
    return AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)


def check_boundary_smoothing(value: object) -> float:
    """``boundary_smoothing`` as a float, checked to be a finite number >= 0."""
    return check_nonnegative_number(value, "boundary_smoothing")
