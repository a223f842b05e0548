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

import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    check_callable,
    check_gaussian_belief,
    check_log_likelihood_values,
    check_unit_interval,
    ensure_finite,
)
from unlearnkit.likelihoods import LogLikelihood

tfd = tfp.distributions

__all__ = ["AdjustedLogLikelihood", "adjusted_log_likelihood", "adjusted_region_radius_squared"]


def adjusted_region_radius_squared(lam: float) -> float:
    """Squared Mahalanobis radius ``-2 ln(lam)`` of the region where ``q > lam * max q``.

    Args:
        lam: the threshold ``lam`` in [0, 1].

    Returns:
        ``inf`` for ``lam = 0`` (every point is inside), ``0`` for ``lam = 1`` (none is).
    """
    lam = check_unit_interval(lam, "lam")
    return math.inf if lam == 0.0 else max(0.0, -2.0 * math.log(lam))


def check_theta(theta: object, dim: int, name: str = "theta") -> tf.Tensor:
    """Convert ``theta`` to a finite float64 tensor of shape ``[S, dim]``."""
    theta = tf.convert_to_tensor(theta)
    if not theta.dtype.is_floating:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {theta.dtype.name}")
    theta = tf.cast(theta, tf.float64)
    if theta.shape.rank != 2 or theta.shape[-1] != dim:
        raise ValueError(f"{name} must have shape [S, {dim}], got {theta.shape.as_list()}")
    return ensure_finite(theta, name)


class AdjustedLogLikelihood:
    """``theta [S, d] -> log p_adj(D_e | theta; lam) [S]`` for a Gaussian ``q(theta | D)``.

    Build it with :func:`adjusted_log_likelihood`. Calling it checks ``theta`` and the
    output of the wrapped log-likelihood (shape ``[S]``, finite), like the unadjusted one.

    Attributes:
        erased_log_likelihood: the wrapped ``log p(D_e | theta)``.
        q_full: the belief ``q(theta | D)`` that defines the region.
        lam: the threshold in [0, 1].
        radius_squared: ``-2 ln(lam)``, the squared Mahalanobis radius of the region.
    """

    def __init__(
        self, erased_log_likelihood: LogLikelihood, q_full: tfd.MultivariateNormalTriL, lam: float
    ) -> None:
        self.erased_log_likelihood = check_callable(
            erased_log_likelihood, "erased_log_likelihood", "theta [S, d] -> [S]"
        )
        self.q_full = check_gaussian_belief(q_full, "q_full")
        self.lam = check_unit_interval(lam, "lam")
        self.radius_squared = adjusted_region_radius_squared(self.lam)
        self.dim = int(q_full.event_shape[0])

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

    def __call__(self, theta: tf.Tensor) -> tf.Tensor:
        theta = check_theta(theta, self.dim)
        values = check_log_likelihood_values(
            self.erased_log_likelihood(theta), theta.shape[0], "erased_log_likelihood"
        )
        return adjust(values, self.mahalanobis_squared(theta), self.radius_squared)

    def __repr__(self) -> str:
        return f"AdjustedLogLikelihood(lam={self.lam}, radius_squared={self.radius_squared})"


def adjust(
    log_likelihood_values: tf.Tensor, mahalanobis_squared: tf.Tensor, radius_squared: float
) -> tf.Tensor:
    """Zero the log-likelihood outside the region (``p_adj = 1`` there).

    Args:
        log_likelihood_values: ``log p(D_e | theta_s)``, [S].
        mahalanobis_squared: squared Mahalanobis distances of ``theta_s`` under
            ``q(theta | D)``, [S].
        radius_squared: ``-2 ln(lam)``.

    Returns:
        ``log p_adj(D_e | theta_s; lam)``, [S].
    """
    if math.isinf(radius_squared):
        return log_likelihood_values
    inside = mahalanobis_squared < radius_squared
    return tf.where(inside, log_likelihood_values, tf.zeros_like(log_likelihood_values))


def adjusted_log_likelihood(
    erased_log_likelihood: LogLikelihood, q_full: tfd.MultivariateNormalTriL, lam: float
) -> AdjustedLogLikelihood:
    """The adjusted log-likelihood ``log p_adj(D_e | theta; lam)`` of the erased data.

    Equal to ``log p(D_e | theta)`` inside the region where ``q_full(theta) > lam * max
    q_full`` (the Mahalanobis ball of squared radius ``-2 ln lam``) and to 0 outside.

    Args:
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        q_full: the approximate posterior ``q(theta | D)``, a float64
            ``tfd.MultivariateNormalTriL`` with event shape ``[d]``.
        lam: threshold in [0, 1]; 0 means no adjustment, 1 means ``p_adj = 1``.

    Returns:
        A callable ``theta [S, d] -> [S]`` of the same form (an
        :class:`AdjustedLogLikelihood`).

    Raises:
        TypeError: ``erased_log_likelihood`` is not callable or ``q_full`` is not a
            float64 ``MultivariateNormalTriL``.
        ValueError: ``lam`` is outside [0, 1].

    Example:
        >>> adjusted = adjusted_log_likelihood(log_lik_erased, q_full, lam=1e-3)
        >>> adjusted(q_full.sample(100))  # [100]
    """
    return AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
