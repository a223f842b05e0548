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
region by a smooth step (:meth:`AdjustedLogLikelihood.smoothed`, width 2% of the radius
by default): the objective becomes smooth, its gradient sees the boundary, and as the
width tends to 0 it tends to ``U~``. :func:`eubo` always evaluates the exact definition.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import as_gaussian_belief, check_differentiable, check_positive_int
from unlearnkit.diagnostics import OptimizationInfo
from unlearnkit.likelihoods import LogLikelihood
from unlearnkit.linalg import check_tolerance
from unlearnkit.optimize import minimize_lbfgs
from unlearnkit.seeds import Seed
from unlearnkit.variational import gaussian
from unlearnkit.variational.adjusted import AdjustedLogLikelihood, check_boundary_smoothing

tfd = tfp.distributions

__all__ = ["eubo", "unlearn_eubo"]


DEFAULT_NUM_SAMPLES = 2_000
"""Base samples for ``lam = 0``: the integrand is smooth, and moment matching makes its
quadratic part exact."""
DEFAULT_NUM_SAMPLES_ADJUSTED = 10_000
"""Base samples for ``lam > 0``: more, so that many lie near the region's boundary."""
DEFAULT_BOUNDARY_SMOOTHING = 0.02


class _WhitenedEUBO:
    """``U~`` as a function of the packed whitened parameters relative to ``q_full``."""

    def __init__(self, adjusted: AdjustedLogLikelihood, num_samples: int, seed: Seed) -> None:
        self.adjusted = adjusted
        self.q_full = adjusted.q_full
        self.dim = adjusted.dim
        self.eps = gaussian.moment_matched_normal(num_samples, self.dim, seed)  # [S, d]
        self.standard = tfd.MultivariateNormalDiag(loc=tf.zeros([self.dim], tf.float64))

    def value(self, a: tf.Tensor, B: tf.Tensor, smoothing: float) -> tf.Tensor:
        z = a + tf.matmul(self.eps, B, transpose_b=True)  # [S, d], whitened samples of q_u
        theta = self.q_full.loc + tf.matmul(z, self.q_full.scale.to_dense(), transpose_b=True)
        distance_squared = tf.reduce_sum(z**2, axis=-1)  # z is whitened by q_full
        expected = tf.reduce_mean(self.adjusted.smoothed(theta, smoothing, distance_squared))
        kl = tfd.kl_divergence(gaussian.whitened_belief(a, B), self.standard)
        return expected + kl


def _num_samples(num_samples: Optional[int], lam: float) -> int:
    if num_samples is None:
        return DEFAULT_NUM_SAMPLES if lam == 0.0 else DEFAULT_NUM_SAMPLES_ADJUSTED
    return check_positive_int(num_samples, "num_samples")


def eubo(
    q_u: object,
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    num_samples: Optional[int] = None,
    seed: Seed = None,
) -> tf.Tensor:
    """Monte Carlo estimate of ``U~ = E_{q_u}[log p_adj(D_e | theta; lam)] + KL[q_u || q_full]``.

    The expectation uses ``num_samples`` moment-matched base samples (sample mean 0,
    sample covariance I); with the same ``num_samples`` and ``seed`` this is exactly
    the objective that :func:`unlearn_eubo` minimises (without its boundary smoothing).
    The KL term is in closed form.

    Args:
        q_u: the candidate belief ``q_u(theta | D_r)``, a float64 multivariate normal [d].
        q_full: the belief after training on all data, ``q(theta | D)``, same form.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lam: adjusted-likelihood threshold in [0, 1] (0: no adjustment).
        num_samples: Monte Carlo samples ``S`` (must exceed ``d``); default 2,000 for
            ``lam = 0`` and 10,000 for ``lam > 0``.
        seed: ``None``, an int or a stateless seed (see :mod:`unlearnkit.seeds`).

    Returns:
        The estimate, a float64 scalar tensor.

    Raises:
        TypeError, ValueError: bad beliefs, callable, ``lam`` or ``num_samples``, or a
            callable that returns the wrong shape or non-finite values.
    """
    q_u = as_gaussian_belief(q_u, "q_u")
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
    if q_u.event_shape != adjusted.q_full.event_shape:
        raise ValueError(
            f"q_u must have the event shape of q_full {adjusted.q_full.event_shape}, "
            f"got {q_u.event_shape}"
        )
    problem = _WhitenedEUBO(adjusted, _num_samples(num_samples, adjusted.lam), seed)
    a, B = gaussian.whiten(q_u, adjusted.q_full)
    return problem.value(a, B, 0.0)


def unlearn_eubo(
    q_full: object,
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
        q_full: ``q(theta | D)``, any float64 ``tfd.MultivariateNormalLinearOperator`` with
            event shape [d]. Not modified.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``, summed over the
            erased points; TensorFlow code (so that it can be differentiated).
        lam: adjusted-likelihood threshold in [0, 1]. 0: plain EUBO; 1: nothing is
            unlearned (returns ``q_full``'s moments).
        seed: ``None``, an int or a stateless seed; fixes the base samples.
        num_samples: Monte Carlo samples ``S`` (must exceed ``d``); default 2,000 for
            ``lam = 0`` and 10,000 for ``lam > 0``.
        max_iterations: L-BFGS iteration cap.
        tolerance: L-BFGS tolerance (see :func:`unlearnkit.optimize.minimize_lbfgs`).
        boundary_smoothing: width of the smooth step that replaces the region's
            indicator during the optimisation, relative to the region's radius
            (see the module docstring); 0 uses the indicator itself, whose jumps
            stall L-BFGS. Irrelevant for ``lam = 0``.
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Returns:
        A new float64 ``tfd.MultivariateNormalTriL`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad ``q_full``, callable, ``lam``, ``num_samples``; a
            callable returning the wrong shape or non-finite values, or without a gradient;
            a non-finite result.

    Warns:
        ConvergenceWarning: L-BFGS stopped before convergence.
    """
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
    num_samples = _num_samples(num_samples, adjusted.lam)
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = check_tolerance(tolerance)
    smoothing = check_boundary_smoothing(boundary_smoothing)
    problem = _WhitenedEUBO(adjusted, num_samples, seed)
    dim = problem.dim
    start_value = problem.value(tf.zeros([dim], tf.float64), tf.eye(dim, dtype=tf.float64), 0.0)
    check_differentiable(adjusted.erased_log_likelihood, adjusted.q_full.sample(2, seed=(0, 0)))
    if adjusted.lam == 1.0:  # p_adj = 1: the KL term alone, minimised by q_full itself
        info = OptimizationInfo(float(start_value), 0, 1, True, "lam = 1: nothing to unlearn", 0.0)
        result = gaussian.copy_belief(adjusted.q_full)
        return (result, info) if return_info else result

    def objective(x: tf.Tensor) -> tf.Tensor:
        a, B = gaussian.unpack(x, dim)
        return problem.value(a, B, smoothing)

    x, info = minimize_lbfgs(
        objective,
        tf.zeros([gaussian.num_parameters(dim)], dtype=tf.float64),
        max_iterations=max_iterations,
        tolerance=tolerance,
        name="the EUBO",
    )
    a, B = gaussian.unpack(x, dim)
    result = gaussian.belief_from_whitened(adjusted.q_full, a, B)
    return (result, info) if return_info else result
