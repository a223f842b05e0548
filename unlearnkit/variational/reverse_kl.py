"""Unlearning by minimising the reverse KL divergence (Nguyen et al., 2020).

The target is the adjusted unlearned posterior

    p~_adj(theta | D_r) ∝ q(theta | D) / p_adj(D_e | theta; lam),

and the unlearned belief ``q_v`` minimises ``KL[p~_adj || q_v]`` (the paper's "reverse KL";
in TFP's terms the *forward* direction, ``tfp.vi.kl_forward``: the expectation is under the
target), i.e. maximises ``E_{p~_adj}[log q_v(theta)]``. With samples
``theta_s ~ q(theta | D)`` and self-normalised importance weights
``w_s ∝ 1 / p_adj(D_e | theta_s)``, that expectation is ``sum_s w_s log q_v(theta_s)``; for a
Gaussian ``q_v`` its maximiser is the weighted mean and the weighted covariance of the
samples. No optimisation is needed.

The weights degenerate when the erased data carry much information (``p(D_e | theta)``
varies by many orders of magnitude over ``q(theta | D)``): a few samples then carry
nearly all the weight. :func:`importance_ess` measures this; ``lam > 0`` helps by
capping the weights outside the region where ``q(theta | D)`` is large. Weights too
degenerate to estimate a covariance from raise
:class:`~unlearnkit.errors.DegenerateWeightsError`.
"""

from __future__ import annotations

import time
from typing import Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit import linalg
from unlearnkit._validation import check_positive_int, ensure_finite
from unlearnkit.diagnostics import ImportanceInfo
from unlearnkit.errors import DegenerateWeightsError, NotPositiveDefiniteError
from unlearnkit.likelihoods import LogLikelihood
from unlearnkit.seeds import Seed
from unlearnkit.variational import gaussian
from unlearnkit.variational.adjusted import AdjustedLogLikelihood

tfd = tfp.distributions

__all__ = ["unlearn_reverse_kl", "importance_log_weights", "importance_ess"]


DEFAULT_NUM_SAMPLES = 100_000
_JITTERS = (0.0, 1e-12, 1e-10, 1e-8, 1e-6)


def importance_log_weights(adjusted: AdjustedLogLikelihood, theta: tf.Tensor) -> tf.Tensor:
    """Self-normalised log importance weights ``log w_s``, ``w_s ∝ 1 / p_adj(D_e | theta_s)``.

    Args:
        adjusted: the adjusted log-likelihood (see :func:`unlearnkit.adjusted_log_likelihood`).
        theta: samples from ``q(theta | D)``, [S, d].

    Returns:
        ``log w_s`` with ``logsumexp_s log w_s = 0``, [S].
    """
    log_unnormalised = -adjusted(theta)
    return log_unnormalised - tf.reduce_logsumexp(log_unnormalised)


def importance_ess(log_weights: object) -> float:
    """Kish's effective sample size ``(sum_s w_s)^2 / sum_s w_s^2`` of importance weights.

    Not to be confused with ``tfp.mcmc.effective_sample_size``, the effective sample size of
    an autocorrelated Markov chain. Computed after subtracting the largest log-weight, so
    that equal weights give exactly ``S`` whatever their magnitude.

    Args:
        log_weights: log importance weights, normalised or not, [S].

    Returns:
        A number between 1 (degenerate weights) and ``S`` (equal weights).
    """
    if log_weights is None or isinstance(log_weights, (str, bytes)):
        raise TypeError(f"log_weights must be a float tensor [S], got {type(log_weights).__name__}")
    try:
        log_weights = tf.convert_to_tensor(log_weights)
    except (TypeError, ValueError) as err:
        raise TypeError(f"log_weights must be a float tensor [S]: {err}") from None
    if not log_weights.dtype.is_floating:
        raise TypeError(f"log_weights must be floating point, got dtype {log_weights.dtype.name}")
    log_weights = tf.cast(log_weights, tf.float64)
    if log_weights.shape.rank != 1 or log_weights.shape[0] == 0:
        raise ValueError(f"log_weights must have shape [S], got {log_weights.shape.as_list()}")
    ensure_finite(log_weights, "log_weights")
    shifted = log_weights - tf.reduce_max(log_weights)
    return float(
        tf.exp(2.0 * tf.reduce_logsumexp(shifted) - tf.reduce_logsumexp(2.0 * shifted))
    )


def _weighted_moments(z: tf.Tensor, log_weights: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Weighted mean [d] and covariance [d, d] of the rows of ``z`` [S, d]."""
    weights = tf.exp(log_weights)
    mean = tf.linalg.matvec(z, weights, transpose_a=True)
    centred = z - mean
    cov = tf.matmul(centred * weights[:, None], centred, transpose_a=True)
    return mean, cov


def _cholesky_with_jitter(cov: tf.Tensor, ess: float) -> Tuple[tf.Tensor, float]:
    eye = tf.eye(int(cov.shape[0]), dtype=tf.float64)
    for jitter in _JITTERS:
        try:
            return linalg.cholesky(cov + jitter * eye, "the weighted covariance"), jitter
        except NotPositiveDefiniteError:
            continue
    raise DegenerateWeightsError(
        f"the importance-weighted covariance is singular (effective sample size {ess:.3g}): "
        f"the weights are degenerate; increase num_samples or lam"
    )


def unlearn_reverse_kl(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalTriL, Tuple[tfd.MultivariateNormalTriL, ImportanceInfo]]:
    """Unlearn ``D_e``: the Gaussian ``q_v`` minimising ``KL[p~_adj(theta | D_r) || q_v]``.

    This is the paper's "reverse KL", ``KL[target || q_v]`` (TFP's ``kl_forward`` direction):
    mass covering, not mode seeking. Closed form: the self-normalised importance-weighted
    mean and covariance of samples ``theta_s ~ q_full`` with weights
    ``w_s ∝ 1 / p_adj(D_e | theta_s; lam)`` (computed in log space). The samples are moment
    matched (their plain mean and covariance are exactly those of ``q_full``), so
    ``lam = 1`` returns ``q_full``.

    Args:
        q_full: ``q(theta | D)``, any float64 ``tfd.MultivariateNormalLinearOperator`` [d].
            Not modified.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lam: adjusted-likelihood threshold in [0, 1]; 1 returns ``q_full``'s moments.
        seed: ``None``, an int or a stateless seed (see :mod:`unlearnkit.seeds`).
        num_samples: samples ``S`` from ``q_full`` (must exceed ``d``).
        return_info: also return an :class:`~unlearnkit.diagnostics.ImportanceInfo`
            (effective sample size).

    Returns:
        A new float64 ``tfd.MultivariateNormalTriL`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad ``q_full``, callable, ``lam`` or ``num_samples``; a
            callable returning the wrong shape or non-finite values.
        DegenerateWeightsError: weights so degenerate (effective sample size below
            ``d + 1``) that the weighted covariance would be singular.
    """
    start = time.perf_counter()
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
    q_full = adjusted.q_full
    num_samples = check_positive_int(num_samples, "num_samples")
    z = gaussian.moment_matched_normal(num_samples, adjusted.dim, seed)  # whitened samples
    theta = q_full.loc + tf.matmul(z, q_full.scale.to_dense(), transpose_b=True)
    log_weights = importance_log_weights(adjusted, theta)  # validates the callable's output
    ess = importance_ess(log_weights)
    if ess < adjusted.dim + 1:
        raise DegenerateWeightsError(
            f"the importance weights are degenerate (effective sample size {ess:.3g} for "
            f"d = {adjusted.dim}): the erased data carry too much information for "
            f"num_samples = {num_samples}; increase num_samples or lam"
        )
    if adjusted.lam == 1.0:  # equal weights: the moments of q_full itself
        result, jitter = gaussian.copy_belief(q_full), 0.0
    else:
        mean, cov = _weighted_moments(z, log_weights)
        scale, jitter = _cholesky_with_jitter(cov, ess)
        result = gaussian.belief_from_whitened(q_full, mean, scale)
    if not return_info:
        return result
    info = ImportanceInfo(
        effective_sample_size=ess,
        num_samples=num_samples,
        num_rounds=1,
        jitter=jitter,
        seconds=time.perf_counter() - start,
    )
    return result, info
