"""Mean-field (diagonal-covariance) Gaussian beliefs: fitting, and unlearning by EUBO / reverse KL.

A full-covariance Gaussian over ``d`` parameters has ``d (d + 3) / 2`` variational
parameters: about 2.9 million for a network with ``d = 2,410``, and every step of
:func:`~unlearnkit.variational.fit_gaussian_vi` or
:func:`~unlearnkit.variational.unlearn_eubo` multiplies ``[S, d] x [d, d]`` matrices (with
``S > d`` moment-matched samples). The mean-field family ``q = N(m, diag(s^2))`` has ``2 d``
parameters and costs ``O(S d)`` per evaluation besides the likelihood. What it changes:

- **Fitting** (:func:`fit_mean_field_vi`): the optimum of ``KL[q || p]`` in the diagonal
  family is mode seeking *and* under-dispersed: for a Gaussian posterior ``N(mu, Lambda^{-1})``
  it is ``N(mu, diag(Lambda)^{-1})`` -- the right mean, but the conditional variances
  ``1 / Lambda_ii``, smaller than the marginal variances ``(Lambda^{-1})_ii``.
- **EUBO** (:func:`unlearn_eubo_mean_field`): the same objective as
  :func:`~unlearnkit.variational.unlearn_eubo`, ``E_{q_u}[log p_adj(D_e | theta; lam)] +
  KL[q_u || q_full]`` with both beliefs diagonal; the KL is a sum over coordinates, and the
  minimiser inherits the fit's under-dispersion (an exact linear-Gaussian problem has the
  optimum ``N(mu_r, diag(Lambda_r)^{-1})`` of the remaining data when ``q_full`` is the
  mean-field optimum on all data).
- **Reverse KL** (:func:`unlearn_reverse_kl_mean_field`): minimising
  ``KL[p~_adj || q_v]`` over diagonal Gaussians matches the target's *marginal* means and
  variances, coordinate by coordinate; no covariance is estimated, so the estimate exists
  with as few as two effective samples. The importance weights are the same as in
  :func:`~unlearnkit.variational.unlearn_reverse_kl` (one-shot: samples of ``q_full``,
  weights ``1 / p_adj(D_e | theta)``), and in high dimension they degenerate: the
  log-weights ``-log p(D_e | theta_s)`` spread over many nats and one sample takes all the
  weight. The function then raises :class:`~unlearnkit.errors.DegenerateWeightsError`.

Every expectation uses fixed base samples (common random numbers), so that the objectives
are deterministic functions minimised by L-BFGS (:func:`~unlearnkit.optimize.minimize_lbfgs`).
"""

from __future__ import annotations

import time
from typing import Optional, Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_gaussian_belief,
    check_callable,
    check_log_likelihood_values,
    check_positive_int,
    check_positive_number,
    ensure_finite,
)
from unlearnkit.diagnostics import ImportanceInfo, OptimizationInfo
from unlearnkit.errors import DegenerateWeightsError
from unlearnkit.likelihoods import LogLikelihood
from unlearnkit.linalg import check_tolerance
from unlearnkit.optimize import minimize_lbfgs
from unlearnkit.seeds import Seed, sanitize_seed
from unlearnkit.variational.adjusted import AdjustedLogLikelihood, check_boundary_smoothing
from unlearnkit.variational.reverse_kl import importance_ess

tfd = tfp.distributions

__all__ = [
    "diagonal_gaussian",
    "diagonal_gaussian_kl",
    "fit_mean_field_vi",
    "unlearn_eubo_mean_field",
    "unlearn_reverse_kl_mean_field",
]

DEFAULT_NUM_SAMPLES = 8
"""Base samples of the mean-field fits: each evaluation costs ``S`` passes over the data."""
DEFAULT_NUM_SAMPLES_REVERSE_KL = 1_000
DEFAULT_BOUNDARY_SMOOTHING = 0.02


def diagonal_gaussian(belief: object, name: str = "belief") -> Tuple[tf.Tensor, tf.Tensor]:
    """Mean ``[d]`` and standard deviations ``[d]`` of a float64 Gaussian with diagonal covariance.

    Accepts any float64 ``tfd.MultivariateNormalLinearOperator`` whose scale is diagonal
    (``MultivariateNormalDiag``, or a triangular scale with zeros off the diagonal).

    Raises:
        TypeError: not a float64 multivariate normal.
        ValueError: a covariance that is not diagonal, NaN or infinite parameters.
    """
    if isinstance(belief, tfd.MultivariateNormalLinearOperator) and isinstance(
        belief.scale, tf.linalg.LinearOperatorDiag
    ):
        as_gaussian_belief(belief, name)  # dtype, shapes, finiteness: no dense copy is kept
        loc = tf.convert_to_tensor(belief.loc) if belief.loc is not None else None
        scale = tf.abs(tf.convert_to_tensor(belief.scale.diag))
        if loc is None:
            loc = tf.zeros_like(scale)
        return ensure_finite(loc, f"{name}'s mean"), ensure_finite(scale, f"{name}'s scale")
    belief = as_gaussian_belief(belief, name)
    dense = belief.scale.to_dense()
    diagonal = tf.linalg.diag_part(dense)
    if bool(tf.reduce_any(dense - tf.linalg.diag(diagonal) != 0.0)):
        raise ValueError(f"{name} must have a diagonal covariance (a mean-field belief)")
    return tf.convert_to_tensor(belief.loc), tf.abs(diagonal)


def _diag_belief(loc: tf.Tensor, scale: tf.Tensor) -> tfd.MultivariateNormalDiag:
    return tfd.MultivariateNormalDiag(tf.identity(loc), tf.identity(scale))


def diagonal_gaussian_kl(q: object, p: object) -> tf.Tensor:
    """``KL[q || p]`` between two Gaussians with diagonal covariances, in closed form, O(d).

    Args:
        q, p: float64 diagonal Gaussians [d] (see :func:`diagonal_gaussian`).

    Returns:
        A float64 scalar tensor.
    """
    mq, sq = diagonal_gaussian(q, "q")
    mp, sp = diagonal_gaussian(p, "p")
    if mq.shape != mp.shape:
        raise ValueError(f"q and p must have the same event shape, got {mq.shape} and {mp.shape}")
    ratio = (sq / sp) ** 2
    return 0.5 * tf.reduce_sum(ratio + ((mq - mp) / sp) ** 2 - 1.0 - tf.math.log(ratio))


def _base_samples(num_samples: int, dim: int, seed: Seed) -> tf.Tensor:
    return tf.random.stateless_normal([num_samples, dim], sanitize_seed(seed), dtype=tf.float64)


def _check_output(log_likelihood: LogLikelihood, theta: tf.Tensor, name: str) -> None:
    """Eagerly: the callable returns finite ``[S]`` values with a gradient at ``theta``."""
    with tf.GradientTape() as tape:
        tape.watch(theta)
        values = check_log_likelihood_values(log_likelihood(theta), int(theta.shape[0]), name)
        total = tf.reduce_sum(values)
    if tape.gradient(total, theta) is None:
        raise ValueError(
            f"{name} does not depend on theta through TensorFlow operations, so it has no "
            f"gradient (write it with TensorFlow operations)"
        )


def _optimisation_options(num_samples, max_iterations, tolerance) -> Tuple[int, int, float]:
    return (
        check_positive_int(num_samples, "num_samples"),
        check_positive_int(max_iterations, "max_iterations"),
        check_tolerance(tolerance),
    )


def fit_mean_field_vi(
    log_likelihood: LogLikelihood,
    prior: object,
    *,
    initial: Optional[object] = None,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    max_iterations: int = 500,
    tolerance: float = 1e-6,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalDiag, Tuple[tfd.MultivariateNormalDiag, OptimizationInfo]]:
    """Fit ``q(theta) = N(m, diag(s^2))`` by maximising the ELBO (minimising ``KL[q || p(theta | D)]``).

    The negative ELBO ``-E_q[log p(D | theta)] + KL[q || prior]`` is estimated with ``S``
    fixed standard-normal base samples ``eps_s`` (``theta_s = m + s * eps_s``, the
    reparameterisation), the KL in closed form, and minimised by L-BFGS over ``(m, log s)``.

    Args:
        log_likelihood: ``theta [S, d] -> log p(D | theta) [S]`` (TensorFlow code; compile it
            with ``tf.function`` for speed).
        prior: ``p(theta)``, a float64 Gaussian [d] with diagonal covariance.
        initial: a belief to start from (its mean, and its standard deviations if it is
            diagonal, else those of its diagonal), e.g. a point estimate with small spread;
            default: the prior's mean with ``1e-3`` times its standard deviations. Not modified.
        seed: ``None``, an int or a stateless seed; fixes the base samples.
        num_samples: base samples ``S`` (``S < d`` is fine: no covariance is estimated).
        max_iterations: L-BFGS iteration cap.
        tolerance: L-BFGS tolerance (see :func:`unlearnkit.optimize.minimize_lbfgs`).
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Returns:
        A new float64 ``tfd.MultivariateNormalDiag`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad inputs, a callable returning the wrong shape or non-finite
            values or without a gradient, a non-finite objective.

    Warns:
        ConvergenceWarning: L-BFGS stopped at ``max_iterations``.
    """
    check_callable(log_likelihood, "log_likelihood", "theta [S, d] -> [S]")
    prior_loc, prior_scale = diagonal_gaussian(prior, "prior")
    dim = int(prior_loc.shape[0])
    num_samples, max_iterations, tolerance = _optimisation_options(
        num_samples, max_iterations, tolerance
    )
    if initial is None:
        loc0, scale0 = prior_loc, 1e-3 * prior_scale
    else:
        belief = as_gaussian_belief(initial, "initial")
        if int(belief.event_shape[0]) != dim:
            raise ValueError(
                f"initial must have the prior's event shape [{dim}], got {belief.event_shape}"
            )
        loc0, scale0 = diagonal_gaussian(initial, "initial") if isinstance(
            initial.scale, tf.linalg.LinearOperatorDiag
        ) else (belief.loc, tf.sqrt(tf.linalg.diag_part(belief.covariance())))
    eps = _base_samples(num_samples, dim, seed)
    _check_output(log_likelihood, loc0 + scale0 * eps[:2], "log_likelihood")

    def negative_elbo(x: tf.Tensor) -> tf.Tensor:
        loc, log_scale = x[:dim], x[dim:]
        scale = tf.exp(log_scale)
        theta = loc + scale * eps
        expected = tf.reduce_mean(tf.cast(log_likelihood(theta), tf.float64))
        ratio = scale / prior_scale
        kl = 0.5 * tf.reduce_sum(
            ratio**2 + ((loc - prior_loc) / prior_scale) ** 2 - 1.0
        ) - tf.reduce_sum(tf.math.log(ratio))
        return kl - expected

    x0 = tf.concat([loc0, tf.math.log(scale0)], axis=0)
    x, info = minimize_lbfgs(
        negative_elbo, x0, max_iterations=max_iterations, tolerance=tolerance,
        name="the negative ELBO",
    )
    result = _diag_belief(x[:dim], tf.exp(x[dim:]))
    return (result, info) if return_info else result


class _MeanFieldEUBO:
    """``U~`` in coordinates whitened by the diagonal ``q_full``: ``m = mu + sigma a``,
    ``s = sigma exp(b)``; ``KL[q_u || q_full] = sum (exp(2b) + a^2 - 1 - 2b) / 2``."""

    def __init__(self, adjusted: AdjustedLogLikelihood, loc, scale, eps, smoothing: float) -> None:
        self.adjusted = adjusted
        self.loc, self.scale, self.eps = loc, scale, eps
        self.dim = int(loc.shape[0])
        self.smoothing = smoothing

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        a, b = x[: self.dim], x[self.dim :]
        kl = 0.5 * tf.reduce_sum(tf.exp(2.0 * b) + a**2 - 1.0 - 2.0 * b)
        z = a + tf.exp(b) * self.eps  # [S, d]
        theta = self.loc + self.scale * z
        if self.adjusted.lam == 0.0:
            values = tf.cast(self.adjusted.erased_log_likelihood(theta), tf.float64)
        else:
            values = self.adjusted.smoothed(
                theta, self.smoothing, mahalanobis_squared=tf.reduce_sum(z**2, axis=-1)
            )
        return tf.reduce_mean(values) + kl


def unlearn_eubo_mean_field(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    max_iterations: int = 500,
    tolerance: float = 1e-6,
    boundary_smoothing: float = DEFAULT_BOUNDARY_SMOOTHING,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalDiag, Tuple[tfd.MultivariateNormalDiag, OptimizationInfo]]:
    """Unlearn ``D_e`` from a mean-field belief: the diagonal Gaussian minimising the EUBO.

    Minimises ``U~(q_u) = E_{q_u}[log p_adj(D_e | theta; lam)] + KL[q_u || q_full]`` over
    ``q_u = N(m, diag(s^2))``, starting at ``q_full``, with ``S`` fixed base samples and
    the KL in closed form (see the module docstring). For ``lam > 0`` the region's
    indicator is smoothed during the optimisation, as in
    :func:`~unlearnkit.variational.unlearn_eubo`.

    Args:
        q_full: ``q(theta | D)``, a float64 Gaussian [d] with diagonal covariance
            (e.g. from :func:`fit_mean_field_vi`). Not modified.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lam: adjusted-likelihood threshold in [0, 1] (0: no adjustment; 1: nothing is
            unlearned).
        seed: ``None``, an int or a stateless seed; fixes the base samples.
        num_samples: base samples ``S``.
        max_iterations, tolerance: L-BFGS options.
        boundary_smoothing: relative width of the smoothed boundary (``lam > 0`` only).
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Returns:
        A new float64 ``tfd.MultivariateNormalDiag`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad inputs; a callable returning the wrong shape or
            non-finite values or without a gradient.

    Warns:
        ConvergenceWarning: L-BFGS stopped at ``max_iterations``.
    """
    start = time.perf_counter()
    loc, scale = diagonal_gaussian(q_full, "q_full")
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
    num_samples, max_iterations, tolerance = _optimisation_options(
        num_samples, max_iterations, tolerance
    )
    smoothing = check_boundary_smoothing(boundary_smoothing)
    dim = int(loc.shape[0])
    if adjusted.lam == 1.0:  # p_adj = 1: the minimiser is q_full itself
        result = _diag_belief(loc, scale)
        info = OptimizationInfo(0.0, 0, 0, True, "lam = 1: nothing to unlearn", time.perf_counter() - start)
        return (result, info) if return_info else result
    eps = _base_samples(num_samples, dim, seed)
    _check_output(erased_log_likelihood, loc + scale * eps[:2], "erased_log_likelihood")
    objective = _MeanFieldEUBO(adjusted, loc, scale, eps, smoothing)
    x, info = minimize_lbfgs(
        objective, tf.zeros([2 * dim], tf.float64), max_iterations=max_iterations,
        tolerance=tolerance, name="the EUBO",
    )
    result = _diag_belief(loc + scale * x[:dim], scale * tf.exp(x[dim:]))
    return (result, info) if return_info else result


def unlearn_reverse_kl_mean_field(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES_REVERSE_KL,
    target_ess: Optional[float] = None,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalDiag, Tuple[tfd.MultivariateNormalDiag, ImportanceInfo]]:
    """Unlearn ``D_e`` from a mean-field belief: the diagonal Gaussian minimising ``KL[p~_adj || q_v]``.

    Over diagonal Gaussians the minimiser matches the target's marginal means and
    variances. They are estimated by self-normalised importance sampling with ``S``
    samples of ``q_full`` and weights ``w_s ∝ 1 / p_adj(D_e | theta_s; lam)`` (in log
    space), as :func:`~unlearnkit.variational.unlearn_reverse_kl` does with
    ``sampler="one-shot"``.

    Args:
        q_full: ``q(theta | D)``, a float64 diagonal Gaussian [d]. Not modified.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lam: adjusted-likelihood threshold in [0, 1]; 1 returns ``q_full``'s moments.
        seed: ``None``, an int or a stateless seed.
        num_samples: importance samples ``S`` (at least 2).
        target_ess: the effective sample size the weights must reach; default
            ``max(2, S / 100)``.
        return_info: also return an :class:`~unlearnkit.diagnostics.ImportanceInfo`.

    Returns:
        A new float64 ``tfd.MultivariateNormalDiag`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad inputs, a callable returning the wrong shape or
            non-finite values.
        DegenerateWeightsError: the effective sample size is below ``target_ess``.
    """
    start = time.perf_counter()
    loc, scale = diagonal_gaussian(q_full, "q_full")
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
    num_samples = check_positive_int(num_samples, "num_samples")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    target = max(2.0, num_samples / 100.0) if target_ess is None else check_positive_number(
        target_ess, "target_ess"
    )
    z = _base_samples(num_samples, int(loc.shape[0]), seed)  # whitened samples of q_full
    theta = loc + scale * z
    if adjusted.lam == 1.0:  # p_adj = 1: equal weights
        log_weights = tf.fill([num_samples], tf.constant(-np.log(num_samples), tf.float64))
    else:
        values = adjusted.smoothed(theta, 0.0, mahalanobis_squared=tf.reduce_sum(z**2, axis=-1))
        log_weights = -values - tf.reduce_logsumexp(-values)
    ess = importance_ess(log_weights)
    if ess < target:
        raise DegenerateWeightsError(
            f"the importance weights are degenerate: effective sample size {ess:.3g} < "
            f"{target:.3g} needed, sampling from q_full alone, for d = {int(loc.shape[0])} and "
            f"num_samples = {num_samples} (log-weights spread over "
            f"{float(tf.reduce_max(log_weights) - tf.reduce_min(log_weights)):.3g} nats); "
            f"increase num_samples or lam"
        )
    weights = tf.exp(log_weights)[:, None]
    mean = tf.reduce_sum(weights * z, axis=0)
    variance = tf.reduce_sum(weights * (z - mean) ** 2, axis=0) / (1.0 - tf.reduce_sum(weights**2))
    variance = ensure_finite(tf.maximum(variance, np.finfo(np.float64).tiny), "the weighted variances")
    result = _diag_belief(loc + scale * mean, scale * tf.sqrt(variance))
    if not return_info:
        return result
    info = ImportanceInfo(
        effective_sample_size=ess,
        num_samples=num_samples,
        num_rounds=1,
        jitter=0.0,
        seconds=time.perf_counter() - start,
        ess_history=(ess,),
    )
    return result, info
