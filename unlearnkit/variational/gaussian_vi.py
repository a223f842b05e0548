"""Gaussian variational inference: the beliefs ``q(theta | D)`` that unlearning starts from.

:func:`fit_gaussian_vi` finds the full-covariance Gaussian ``q`` maximising the evidence
lower bound

    ELBO(q) = E_q[log p(D | theta)] - KL[q || p(theta)].

It is used twice in the book: on all the data, to get ``q(theta | D)``; and on the
remaining data ``D_r``, to get the retrained ``q(theta | D_r)`` that unlearning is
measured against. Like :func:`unlearnkit.unlearn_eubo` it runs L-BFGS on a
common-random-number estimate (fixed, moment-matched base samples) in coordinates
whitened by the starting belief, which by default is the Laplace approximation
(:func:`unlearnkit.laplace.laplace_approximation` at the MAP estimate).
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_gaussian_belief,
    check_callable,
    check_differentiable,
    check_log_likelihood_values,
    check_positive_int,
)
from unlearnkit.derivatives import Energy
from unlearnkit.diagnostics import OptimizationInfo
from unlearnkit.laplace import laplace_approximation
from unlearnkit.likelihoods import LogLikelihood
from unlearnkit.linalg import check_tolerance
from unlearnkit.optimize import minimize_lbfgs
from unlearnkit.seeds import Seed
from unlearnkit.variational import gaussian

tfd = tfp.distributions

__all__ = ["fit_gaussian_vi", "elbo", "negative_log_joint"]


DEFAULT_NUM_SAMPLES = 2000


def _check_inputs(log_likelihood: object, prior: object) -> tfd.MultivariateNormalTriL:
    check_callable(log_likelihood, "log_likelihood", "theta [S, d] -> [S]")
    return as_gaussian_belief(prior, "prior")


def negative_log_joint(log_likelihood: LogLikelihood, prior: tfd.Distribution) -> Energy:
    """The energy ``theta [d] -> -(log p(D | theta) + log p(theta))`` (a float64 scalar)."""

    def energy(theta: tf.Tensor) -> tf.Tensor:
        values = check_log_likelihood_values(log_likelihood(theta[None, :]), 1, "log_likelihood")
        return -(values[0] + prior.log_prob(theta))

    return energy


def _laplace(log_likelihood: LogLikelihood, prior: tfd.MultivariateNormalTriL):
    energy = negative_log_joint(log_likelihood, prior)
    energy(prior.loc)  # eager checks of the callable's output
    mode, _ = minimize_lbfgs(
        energy, tf.identity(prior.loc), max_iterations=1000, tolerance=1e-8,
        name="the negative log joint density",
    )
    return laplace_approximation(energy, mode)


class _WhitenedELBO:
    """Negative ELBO as a function of the whitened parameters relative to ``reference``."""

    def __init__(
        self,
        log_likelihood: LogLikelihood,
        prior: tfd.MultivariateNormalTriL,
        reference: tfd.MultivariateNormalTriL,
        num_samples: int,
        seed: Seed,
    ) -> None:
        self.log_likelihood = log_likelihood
        self.prior = prior
        self.reference = reference
        self.dim = int(prior.event_shape[0])
        self.eps = gaussian.moment_matched_normal(num_samples, self.dim, seed)

    def negative_elbo(self, a: tf.Tensor, B: tf.Tensor) -> tf.Tensor:
        q = gaussian.belief_from_whitened(self.reference, a, B)
        theta = q.loc + tf.matmul(self.eps, q.scale.to_dense(), transpose_b=True)  # [S, d]
        values = check_log_likelihood_values(
            self.log_likelihood(theta), self.eps.shape[0], "log_likelihood"
        )
        return -tf.reduce_mean(values) + tfd.kl_divergence(q, self.prior)


def elbo(
    q: object,
    log_likelihood: LogLikelihood,
    prior: object,
    *,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: Seed = None,
) -> tf.Tensor:
    """Monte Carlo estimate of ``E_q[log p(D | theta)] - KL[q || p(theta)]``.

    Args:
        q: the belief, a float64 multivariate normal [d].
        log_likelihood: ``theta [S, d] -> log p(D | theta) [S]``.
        prior: ``p(theta)``, same form as ``q``.
        num_samples: moment-matched Monte Carlo samples (must exceed ``d``).
        seed: ``None``, an int or a stateless seed (see :mod:`unlearnkit.seeds`).

    Returns:
        A float64 scalar tensor; with the same samples and seed, the negative of the
        objective that :func:`fit_gaussian_vi` minimises.
    """
    prior = _check_inputs(log_likelihood, prior)
    q = as_gaussian_belief(q, "q")
    num_samples = check_positive_int(num_samples, "num_samples")
    problem = _WhitenedELBO(log_likelihood, prior, q, num_samples, seed)
    identity = tf.eye(problem.dim, dtype=tf.float64)
    return -problem.negative_elbo(tf.zeros([problem.dim], tf.float64), identity)


def fit_gaussian_vi(
    log_likelihood: LogLikelihood,
    prior: object,
    *,
    initial: Optional[object] = None,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    max_iterations: int = 1000,
    tolerance: float = 1e-6,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalTriL, Tuple[tfd.MultivariateNormalTriL, OptimizationInfo]]:
    """Fit a full-covariance Gaussian ``q(theta)`` by maximising the ELBO.

    Args:
        log_likelihood: ``theta [S, d] -> log p(D | theta) [S]`` (TensorFlow code).
        prior: ``p(theta)``, any float64 ``tfd.MultivariateNormalLinearOperator`` [d].
        initial: belief to start from (e.g. ``q(theta | D)`` when retraining on
            ``D_r``); default: the Laplace approximation. Not modified.
        seed: ``None``, an int or a stateless seed; fixes the base samples.
        num_samples: moment-matched Monte Carlo samples (must exceed ``d``).
        max_iterations: L-BFGS iteration cap.
        tolerance: L-BFGS tolerance (see :func:`unlearnkit.optimize.minimize_lbfgs`).
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Returns:
        A new float64 ``tfd.MultivariateNormalTriL`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad inputs, a callable returning the wrong shape or
            non-finite values or without a gradient, or a non-finite result.

    Warns:
        ConvergenceWarning: L-BFGS stopped before convergence.
    """
    prior = _check_inputs(log_likelihood, prior)
    dim = int(prior.event_shape[0])
    probe = prior.sample(2, seed=(0, 0))
    check_log_likelihood_values(log_likelihood(probe), 2, "log_likelihood")
    check_differentiable(log_likelihood, probe, "log_likelihood")
    num_samples = check_positive_int(num_samples, "num_samples")
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = check_tolerance(tolerance)
    if initial is None:
        initial = _laplace(log_likelihood, prior)
    else:
        initial = as_gaussian_belief(initial, "initial")
        if initial.event_shape != prior.event_shape:
            raise ValueError(
                f"initial must have the event shape of prior {prior.event_shape}, "
                f"got {initial.event_shape}"
            )
    problem = _WhitenedELBO(log_likelihood, prior, initial, num_samples, seed)
    problem.negative_elbo(tf.zeros([dim], tf.float64), tf.eye(dim, dtype=tf.float64))

    def objective(x: tf.Tensor) -> tf.Tensor:
        return problem.negative_elbo(*gaussian.unpack(x, dim))

    x, info = minimize_lbfgs(
        objective,
        tf.zeros([gaussian.num_parameters(dim)], dtype=tf.float64),
        max_iterations=max_iterations,
        tolerance=tolerance,
        name="the negative ELBO",
    )
    result = gaussian.belief_from_packed(initial, x)
    return (result, info) if return_info else result
