"""Gaussian variational inference: the beliefs ``q(theta | D)`` that unlearning starts from.

:func:`fit_gaussian_vi` finds the full-covariance Gaussian ``q`` maximising the evidence
lower bound

    ELBO(q) = E_q[log p(D | theta)] - KL[q || p(theta)].

It is used twice in the book: on all the data, to get ``q(theta | D)``; and on the
remaining data ``D_r``, to get the retrained ``q(theta | D_r)`` that unlearning is
measured against. Like :func:`unlearnkit.unlearn_eubo` it runs L-BFGS on a
common-random-number estimate (fixed, moment-matched base samples) in coordinates
whitened by the starting belief, which by default is the Laplace approximation.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import scipy.linalg
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit.variational import gaussian as _gaussian
from unlearnkit.variational.gaussian import OptimizationInfo, Seed
from unlearnkit._validation import (
    check_callable,
    check_gaussian_belief,
    check_log_likelihood_values,
    check_positive_int,
)
from unlearnkit.likelihoods import LogLikelihood

tfd = tfp.distributions

__all__ = ["fit_gaussian_vi", "laplace_approximation", "elbo"]


DEFAULT_NUM_SAMPLES = 2000


def _check_inputs(log_likelihood: object, prior: object) -> int:
    check_callable(log_likelihood, "log_likelihood", "theta [S, d] -> [S]")
    check_gaussian_belief(prior, "prior")
    return int(prior.event_shape[0])


def laplace_approximation(
    log_likelihood: LogLikelihood, prior: tfd.MultivariateNormalTriL
) -> tfd.MultivariateNormalTriL:
    """The Laplace approximation ``N(theta_MAP, H^{-1})`` of the posterior.

    ``theta_MAP`` maximises ``log p(D | theta) + log p(theta)`` (L-BFGS from the prior
    mean) and ``H`` is the Hessian of the negative log joint there (automatic
    differentiation).

    Args:
        log_likelihood: ``theta [S, d] -> log p(D | theta) [S]``.
        prior: ``p(theta)``, float64 ``tfd.MultivariateNormalTriL`` [d].

    Returns:
        A float64 ``tfd.MultivariateNormalTriL`` [d].

    Raises:
        ValueError: the Hessian at the mode is not positive definite.
    """
    dim = _check_inputs(log_likelihood, prior)

    def negative_log_joint(theta: tf.Tensor) -> tf.Tensor:
        return -(log_likelihood(theta[None, :])[0] + prior.log_prob(theta))

    check_log_likelihood_values(log_likelihood(prior.loc[None, :]), 1, "log_likelihood")
    mode, _ = _gaussian.minimize_lbfgs(
        negative_log_joint, tf.identity(prior.loc), max_iterations=1000, tolerance=1e-8,
        name="the log joint density",
    )
    with tf.GradientTape() as outer:
        outer.watch(mode)
        with tf.GradientTape() as inner:
            inner.watch(mode)
            value = negative_log_joint(mode)
        gradient = inner.gradient(value, mode)
    hessian = outer.jacobian(gradient, mode).numpy()
    try:
        precision_chol = np.linalg.cholesky(0.5 * (hessian + hessian.T))
    except np.linalg.LinAlgError as err:
        raise ValueError("the Hessian of the negative log joint is not positive definite") from err
    # Sigma = H^{-1} from the Cholesky factor of H, then Sigma's own Cholesky factor.
    cov = scipy.linalg.cho_solve((precision_chol, True), np.eye(dim))
    scale = np.linalg.cholesky(0.5 * (cov + cov.T))
    return tfd.MultivariateNormalTriL(
        loc=mode, scale_tril=tf.constant(scale, dtype=tf.float64)
    )


class _WhitenedELBO:
    """Negative ELBO as a function of the packed whitened parameters relative to ``reference``."""

    def __init__(
        self,
        log_likelihood: LogLikelihood,
        prior: tfd.MultivariateNormalTriL,
        reference: tfd.MultivariateNormalTriL,
        num_samples: int,
        seed: Seed,
    ) -> None:
        self.log_likelihood = log_likelihood
        self.dim = int(prior.event_shape[0])
        self.eps = _gaussian.moment_matched_normal(num_samples, self.dim, seed)
        self.ref_loc = reference.loc
        self.ref_scale = reference.scale.to_dense()
        self.prior_loc = prior.loc
        self.prior_scale = prior.scale.to_dense()

    def negative_elbo(self, a: tf.Tensor, B: tf.Tensor, checked: bool) -> tf.Tensor:
        loc = self.ref_loc + tf.linalg.matvec(self.ref_scale, a)
        scale = tf.matmul(self.ref_scale, B)
        theta = loc + tf.matmul(self.eps, scale, transpose_b=True)  # [S, d]
        values = self.log_likelihood(theta)
        if checked:
            values = check_log_likelihood_values(values, self.eps.shape[0], "log_likelihood")
        kl = _gaussian.gaussian_kl_tril(loc, scale, self.prior_loc, self.prior_scale)
        return -tf.reduce_mean(tf.cast(values, tf.float64)) + kl

    def objective(self, x: tf.Tensor) -> tf.Tensor:
        a, B, _ = _gaussian.unpack(x, self.dim)
        return self.negative_elbo(a, B, False)


def elbo(
    q: tfd.MultivariateNormalTriL,
    log_likelihood: LogLikelihood,
    prior: tfd.MultivariateNormalTriL,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: Seed = None,
) -> tf.Tensor:
    """Monte Carlo estimate of ``E_q[log p(D | theta)] - KL[q || p(theta)]``.

    Args:
        q: the belief, float64 ``tfd.MultivariateNormalTriL`` [d].
        log_likelihood: ``theta [S, d] -> log p(D | theta) [S]``.
        prior: ``p(theta)``, same form as ``q``.
        num_samples: moment-matched Monte Carlo samples (must exceed ``d``).
        seed: an int or a pair of ints (``None``: drawn from NumPy's global generator).

    Returns:
        A float64 scalar tensor; with the same samples and seed, the negative of the
        objective that :func:`fit_gaussian_vi` minimises.
    """
    _check_inputs(log_likelihood, prior)
    check_gaussian_belief(q, "q")
    num_samples = check_positive_int(num_samples, "num_samples")
    problem = _WhitenedELBO(log_likelihood, prior, q, num_samples, seed)
    identity = tf.eye(problem.dim, dtype=tf.float64)
    return -problem.negative_elbo(tf.zeros([problem.dim], tf.float64), identity, True)


def fit_gaussian_vi(
    log_likelihood: LogLikelihood,
    prior: tfd.MultivariateNormalTriL,
    *,
    initial: Optional[tfd.MultivariateNormalTriL] = None,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    max_iterations: int = 1000,
    tolerance: float = 1e-6,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalTriL, Tuple[tfd.MultivariateNormalTriL, OptimizationInfo]]:
    """Fit a full-covariance Gaussian ``q(theta)`` by maximising the ELBO.

    Args:
        log_likelihood: ``theta [S, d] -> log p(D | theta) [S]`` (TensorFlow code).
        prior: ``p(theta)``, float64 ``tfd.MultivariateNormalTriL`` [d].
        initial: belief to start from (e.g. ``q(theta | D)`` when retraining on
            ``D_r``); default: the :func:`laplace_approximation`. Not modified.
        seed: an int or a pair of ints; fixes the base samples (``None``: drawn from
            NumPy's global generator).
        num_samples: moment-matched Monte Carlo samples (must exceed ``d``).
        max_iterations: L-BFGS iteration cap.
        tolerance: gradient tolerance of L-BFGS.
        return_info: also return an :class:`~unlearnkit.evidence_upper_bound.OptimizationInfo`.

    Returns:
        A new float64 ``tfd.MultivariateNormalTriL`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad inputs, a callable returning the wrong shape or
            non-finite values, or a non-finite result.
    """
    dim = _check_inputs(log_likelihood, prior)
    num_samples = check_positive_int(num_samples, "num_samples")
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = _gaussian.check_tolerance(tolerance)
    if initial is None:
        initial = laplace_approximation(log_likelihood, prior)
    else:
        check_gaussian_belief(initial, "initial")
        if initial.event_shape != prior.event_shape:
            raise ValueError(
                f"initial must have the event shape of prior {prior.event_shape}, "
                f"got {initial.event_shape}"
            )
    problem = _WhitenedELBO(log_likelihood, prior, initial, num_samples, seed)
    problem.negative_elbo(tf.zeros([dim], tf.float64), tf.eye(dim, dtype=tf.float64), True)
    x, info = _gaussian.minimize_lbfgs(
        problem.objective,
        tf.zeros([_gaussian.num_parameters(dim)], dtype=tf.float64),
        max_iterations=max_iterations,
        tolerance=tolerance,
        name="the negative ELBO",
    )
    a, B, _ = _gaussian.unpack(x, dim)
    result = _gaussian.belief_from_whitened(initial, a, B)
    return (result, info) if return_info else result
