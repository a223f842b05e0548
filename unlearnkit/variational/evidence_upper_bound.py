"""Unlearning by minimising the evidence upper bound (EUBO) (Nguyen et al., 2020).

Given the belief ``q(theta | D)`` after training on all data and the log-likelihood of
the erased data, find the Gaussian ``q_u(theta | D_r)`` minimising

    U~(q_u) = E_{q_u}[log p_adj(D_e | theta; lam)] + KL[q_u || q(theta | D)].

When ``q(theta | D)`` is the exact posterior and ``lam = 0``,
``U = log p(D_e | D_r) + KL[q_u || p(theta | D_r)]``, so the minimiser is the best
Gaussian approximation of the posterior given the remaining data alone.

The expectation is estimated with *fixed* base samples ``eps`` (common random numbers):
``theta_s = mu + L eps_s``. The estimate is then a deterministic function of
``(mu, L)``, minimised by L-BFGS in a few dozen iterations instead of tens of thousands
of stochastic-gradient steps.

With ``lam > 0`` the adjusted likelihood has a jump at the region's boundary. With fixed
samples the estimate then jumps whenever a sample crosses the boundary, and its
reparameterisation gradient misses the boundary's contribution to the true gradient
altogether (so stochastic-gradient methods that use it, like Adam on fresh samples, do
not minimise ``U~``). During the optimisation we therefore replace the indicator of the
region ``|z| < r`` (``z`` the whitened sample, ``r^2 = -2 ln lam``) by the smooth step
``sigmoid((1 - |z| / r) / boundary_smoothing)``: the objective becomes smooth, its
gradient sees the boundary, and as ``boundary_smoothing -> 0`` it tends to ``U~``.
The default, 2% of the radius, changes ``U~`` far less than the Monte Carlo error.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit.variational import gaussian as _gaussian
from unlearnkit.variational.gaussian import OptimizationInfo, Seed
from unlearnkit._validation import (
    check_gaussian_belief,
    check_nonnegative_number,
    check_positive_int,
)
from unlearnkit.variational.adjusted import AdjustedLogLikelihood, adjust
from unlearnkit.likelihoods import LogLikelihood

tfd = tfp.distributions

__all__ = ["eubo", "unlearn_eubo", "OptimizationInfo"]


DEFAULT_NUM_SAMPLES = 2_000
"""Base samples for ``lam = 0``: the integrand is smooth, and moment matching makes its
quadratic part exact."""
DEFAULT_NUM_SAMPLES_ADJUSTED = 10_000
"""Base samples for ``lam > 0``: more, so that many lie near the region's boundary."""
DEFAULT_BOUNDARY_SMOOTHING = 0.02


class _WhitenedEUBO:
    """``U~`` as a function of the packed whitened parameters relative to ``q_full``."""

    def __init__(
        self,
        adjusted: AdjustedLogLikelihood,
        num_samples: int,
        seed: Seed,
        smoothing: float = DEFAULT_BOUNDARY_SMOOTHING,
    ) -> None:
        self.adjusted = adjusted
        self.smoothing = smoothing
        self.q_full = adjusted.q_full
        self.dim = adjusted.dim
        self.eps = _gaussian.moment_matched_normal(num_samples, self.dim, seed)  # [S, d]
        self.loc = self.q_full.loc
        self.scale = self.q_full.scale.to_dense()

    def _expected_log_likelihood(self, a: tf.Tensor, B: tf.Tensor, checked: bool) -> tf.Tensor:
        z = a + tf.matmul(self.eps, B, transpose_b=True)  # [S, d], whitened samples of q_u
        theta = self.loc + tf.matmul(z, self.scale, transpose_b=True)
        if checked:  # eager: validates theta, the output's shape and finiteness
            return tf.reduce_mean(self.adjusted(theta))
        # Inside tf.function: the region test in whitened coordinates, |z| < r.
        values = tf.cast(self.adjusted.erased_log_likelihood(theta), tf.float64)
        radius_squared = self.adjusted.radius_squared
        if math.isinf(radius_squared):
            return tf.reduce_mean(values)
        if radius_squared == 0.0:  # lam = 1: p_adj = 1 everywhere
            return tf.zeros([], dtype=tf.float64)
        if self.smoothing == 0.0:
            return tf.reduce_mean(adjust(values, tf.reduce_sum(z**2, axis=-1), radius_squared))
        distance = tf.sqrt(tf.maximum(tf.reduce_sum(z**2, axis=-1), 1e-300))
        inside = tf.sigmoid((1.0 - distance / math.sqrt(radius_squared)) / self.smoothing)
        return tf.reduce_mean(inside * values)

    def objective(self, x: tf.Tensor) -> tf.Tensor:
        a, B, log_diag = _gaussian.unpack(x, self.dim)
        return self._expected_log_likelihood(a, B, False) + _gaussian.whitened_kl_to_standard(
            a, B, log_diag
        )

    def checked_value(self, a: tf.Tensor, B: tf.Tensor) -> tf.Tensor:
        log_diag = tf.math.log(tf.linalg.diag_part(B))
        kl = _gaussian.whitened_kl_to_standard(a, B, log_diag)
        return self._expected_log_likelihood(a, B, True) + kl


def _num_samples(num_samples: Optional[int], lam: float) -> int:
    if num_samples is None:
        return DEFAULT_NUM_SAMPLES if lam == 0.0 else DEFAULT_NUM_SAMPLES_ADJUSTED
    return check_positive_int(num_samples, "num_samples")


def eubo(
    q_u: tfd.MultivariateNormalTriL,
    q_full: tfd.MultivariateNormalTriL,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    num_samples: Optional[int] = None,
    seed: Seed = None,
) -> tf.Tensor:
    """Monte Carlo estimate of ``U~ = E_{q_u}[log p_adj(D_e | theta; lam)] + KL[q_u || q_full]``.

    The expectation uses ``num_samples`` moment-matched base samples (sample mean 0,
    sample covariance I); with the same ``num_samples`` and ``seed`` this is exactly
    the objective that :func:`unlearn_eubo` minimises. The KL term is in closed form.

    Args:
        q_u: the candidate belief ``q_u(theta | D_r)``, float64 MultivariateNormalTriL [d].
        q_full: the belief after training on all data, ``q(theta | D)``, same form.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lam: adjusted-likelihood threshold in [0, 1] (0: no adjustment).
        num_samples: Monte Carlo samples ``S`` (must exceed ``d``); default 2,000 for
            ``lam = 0`` and 10,000 for ``lam > 0``.
        seed: an int or a pair of ints for the stateless sampler (``None``: drawn from
            NumPy's global generator, so ``np.random.seed`` makes runs repeatable).

    Returns:
        The estimate, a float64 scalar tensor.

    Raises:
        TypeError, ValueError: bad beliefs, callable, ``lam`` or ``num_samples``, or a
            callable that returns the wrong shape or non-finite values.
    """
    q_u = check_gaussian_belief(q_u, "q_u")
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
    if q_u.event_shape != q_full.event_shape:
        raise ValueError(
            f"q_u must have the event shape of q_full {q_full.event_shape}, got {q_u.event_shape}"
        )
    problem = _WhitenedEUBO(adjusted, _num_samples(num_samples, adjusted.lam), seed)
    a, B = _gaussian.whiten(q_u, q_full)
    return problem.checked_value(a, B)


def unlearn_eubo(
    q_full: tfd.MultivariateNormalTriL,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    seed: Seed = None,
    num_samples: Optional[int] = None,
    max_iterations: int = 1000,
    tolerance: float = 1e-6,
    boundary_smoothing: float = DEFAULT_BOUNDARY_SMOOTHING,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalTriL, Tuple[tfd.MultivariateNormalTriL, OptimizationInfo]]:
    """Unlearn ``D_e``: the Gaussian ``q_u(theta | D_r)`` that minimises the EUBO ``U~``.

    Starts at ``q_full`` and runs L-BFGS on the common-random-number estimate of
    :func:`eubo` (the same ``num_samples`` base samples at every iteration), in
    coordinates whitened by ``q_full``. The log-likelihood is evaluated once per
    iteration inside a ``tf.function`` (eagerly if it cannot be traced).

    Args:
        q_full: ``q(theta | D)``, float64 ``tfd.MultivariateNormalTriL`` with event shape [d].
            Not modified.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``, summed over the
            erased points; TensorFlow code (so that it can be differentiated).
        lam: adjusted-likelihood threshold in [0, 1]. 0: plain EUBO; 1: nothing is
            unlearned (returns a copy of ``q_full``).
        seed: an int or a pair of ints; fixes the base samples (``None``: drawn from
            NumPy's global generator).
        num_samples: Monte Carlo samples ``S`` (must exceed ``d``); default 2,000 for
            ``lam = 0`` and 10,000 for ``lam > 0``.
        max_iterations: L-BFGS iteration cap.
        tolerance: gradient tolerance of L-BFGS.
        boundary_smoothing: width of the smooth step that replaces the region's
            indicator during the optimisation, relative to the region's radius
            (see the module docstring); 0 uses the indicator itself, whose jumps
            stall L-BFGS. Irrelevant for ``lam = 0``.
        return_info: also return an :class:`OptimizationInfo`.

    Returns:
        A new float64 ``tfd.MultivariateNormalTriL`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad ``q_full``, callable, ``lam``, ``num_samples``; a
            callable returning the wrong shape or non-finite values; a non-finite result.
    """
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
    num_samples = _num_samples(num_samples, adjusted.lam)
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = _gaussian.check_tolerance(tolerance)
    smoothing = check_nonnegative_number(boundary_smoothing, "boundary_smoothing")
    problem = _WhitenedEUBO(adjusted, num_samples, seed, smoothing)
    identity = tf.eye(problem.dim, dtype=tf.float64)
    zero = tf.zeros([problem.dim], dtype=tf.float64)
    start_value = problem.checked_value(zero, identity)  # validates the callable's output
    if adjusted.lam == 1.0:  # p_adj = 1: the KL term alone, minimised by q_full itself
        info = OptimizationInfo(float(start_value), 0, 1, True, "lam = 1: nothing to unlearn", 0.0)
        result = _gaussian.copy_belief(q_full)
        return (result, info) if return_info else result
    x0 = tf.zeros([_gaussian.num_parameters(problem.dim)], dtype=tf.float64)
    x, info = _gaussian.minimize_lbfgs(
        problem.objective,
        x0,
        max_iterations=max_iterations,
        tolerance=tolerance,
        name="the EUBO",
    )
    a, B, _ = _gaussian.unpack(x, problem.dim)
    result = _gaussian.belief_from_whitened(q_full, a, B)
    return (result, info) if return_info else result
