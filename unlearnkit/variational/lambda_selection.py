"""Choosing the threshold ``lam`` of the adjusted likelihood without retraining.

The chapters judge a threshold by the averaged KL to the retrained model, which a user who
unlearns in order not to retrain does not have. Two rules that need no retraining:

- :func:`select_lambda` (validation ELBO): score each unlearned belief ``q_lam`` by the
  evidence lower bound of the remaining data,

      ELBO_r(q) = E_q[log p(D_r | theta)] - KL[q || p(theta)] = log p(D_r) - KL[q || p(theta | D_r)],

  and keep the best. The retrained belief is the maximiser of ``ELBO_r`` over all
  Gaussians; among the candidates, the best score is the smallest KL divergence to the
  exact posterior ``p(theta | D_r)``. It only *evaluates* the remaining data's likelihood
  (``num_samples`` times per candidate), it never optimises on it; a random validation
  subset ``V`` of ``D_r`` estimates the first term without bias with
  ``scale = |D_r| / |V|``.
- :func:`select_lambda_by_ess` (effective-sample-size floor): needs nothing but
  ``q(theta | D)`` and the erased data. Keep the smallest ``lam`` whose importance weights
  ``1 / p_adj(D_e | theta)`` under ``q(theta | D)`` still have an effective sample size of
  at least ``min_ess_fraction`` of the samples: the largest region in which the division
  stays within reach of ``q(theta | D)``'s own samples, so where ``q(theta | D)`` is
  trusted as an approximation.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Mapping, Optional, Sequence

import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_gaussian_belief,
    check_callable,
    check_log_likelihood_values,
    check_positive_int,
    check_positive_number,
    check_unit_interval,
)
from unlearnkit.likelihoods import LogLikelihood
from unlearnkit.seeds import Seed
from unlearnkit.variational import gaussian
from unlearnkit.variational.adjusted import AdjustedLogLikelihood, adjusted_region_radius_squared
from unlearnkit.variational.reverse_kl import importance_ess

tfd = tfp.distributions

__all__ = [
    "LambdaSelection",
    "select_lambda",
    "select_lambda_by_ess",
    "validation_elbo",
    "DEFAULT_LAMBDAS",
]

DEFAULT_LAMBDAS = (0.5, 0.1, 1e-3, 1e-5, 1e-9, 0.0)
"""The slides' grid of thresholds."""


@dataclasses.dataclass(frozen=True)
class LambdaSelection:
    """The threshold a rule chose, and the score of every candidate.

    Attributes:
        lam: the chosen threshold.
        scores: ``{lam: score}`` for every candidate (higher is better); ``-inf`` for a
            candidate that was not available (for example a failed unlearning).
        rule: ``"validation ELBO"`` or ``"ESS floor"``.
    """

    lam: float
    scores: Dict[float, float]
    rule: str


def _check_lams(lams: Sequence[object]) -> tuple:
    try:
        values = tuple(check_unit_interval(lam, "lams") for lam in lams)
    except TypeError as err:
        raise TypeError(f"lams must be a sequence of numbers in [0, 1]: {err}") from None
    if not values:
        raise ValueError("lams must hold at least one threshold")
    if len(set(values)) != len(values):
        raise ValueError("lams contains repeated thresholds")
    return values


def validation_elbo(
    belief: object,
    log_likelihood: LogLikelihood,
    prior: object,
    *,
    scale: float = 1.0,
    num_samples: int = 2_000,
    seed: Seed = None,
) -> float:
    """``scale * E_q[log p(V | theta)] - KL[q || p(theta)]``, the ELBO of the remaining data.

    With ``V = D_r`` and ``scale = 1`` this is the ELBO of ``D_r``, which retraining
    maximises; with a random subset ``V`` of ``D_r`` and ``scale = |D_r| / |V|`` it is an
    unbiased estimate of it. The expectation uses ``num_samples`` moment-matched samples
    (common random numbers: the same ``seed`` gives the same base samples for every
    belief).

    Args:
        belief: ``q(theta)``, a float64 multivariate normal [d].
        log_likelihood: ``theta [S, d] -> log p(V | theta) [S]``, summed over the
            validation points.
        prior: ``p(theta)``, a float64 multivariate normal [d].
        scale: positive factor on the expected log-likelihood.
        num_samples: Monte Carlo samples (must exceed ``d``).
        seed: ``None``, an int or a stateless seed.

    Returns:
        The estimate, a float.
    """
    belief = as_gaussian_belief(belief, "belief")
    prior = as_gaussian_belief(prior, "prior")
    if belief.event_shape != prior.event_shape:
        raise ValueError(
            f"belief and prior must have the same event shape, got {belief.event_shape} "
            f"and {prior.event_shape}"
        )
    check_callable(log_likelihood, "log_likelihood", "theta [S, d] -> [S]")
    scale = check_positive_number(scale, "scale")
    num_samples = check_positive_int(num_samples, "num_samples")
    dim = int(belief.event_shape[0])
    eps = gaussian.moment_matched_normal(num_samples, dim, seed)
    theta = belief.loc + tf.matmul(eps, belief.scale.to_dense(), transpose_b=True)
    values = check_log_likelihood_values(log_likelihood(theta), num_samples, "log_likelihood")
    return float(scale * tf.reduce_mean(values) - tfd.kl_divergence(belief, prior))


def select_lambda(
    beliefs: Mapping[float, Optional[object]],
    log_likelihood: LogLikelihood,
    prior: object,
    *,
    scale: float = 1.0,
    num_samples: int = 2_000,
    seed: Seed = 0,
) -> LambdaSelection:
    """The threshold whose unlearned belief has the largest validation ELBO.

    Args:
        beliefs: ``{lam: q_lam}``, the belief unlearned with each candidate threshold
            (``None`` for a candidate whose unlearning failed; it scores ``-inf``).
        log_likelihood: ``theta [S, d] -> log p(V | theta) [S]`` of validation data ``V``
            drawn from the remaining data ``D_r`` (``D_r`` itself, or a random subset).
        prior: the model's prior ``p(theta)``.
        scale: ``|D_r| / |V|`` (1 when ``V = D_r``).
        num_samples: Monte Carlo samples per candidate.
        seed: base-sample seed, shared by every candidate (default 0, so that the choice
            is reproducible).

    Returns:
        A :class:`LambdaSelection` (``rule = "validation ELBO"``).

    Raises:
        ValueError: no candidate, only failed candidates, or thresholds outside [0, 1].

    Example:
        >>> beliefs = {lam: unlearn_eubo(q_full, erased, lam) for lam in DEFAULT_LAMBDAS}
        >>> select_lambda(beliefs, logistic_log_likelihood(X_r, y_r), prior).lam
    """
    if not isinstance(beliefs, Mapping):
        raise TypeError(f"beliefs must be a mapping lam -> belief, got {type(beliefs).__name__}")
    lams = _check_lams(list(beliefs))
    scores = {}
    for lam, belief in zip(lams, beliefs.values()):
        if belief is None:
            scores[lam] = -math.inf
            continue
        scores[lam] = validation_elbo(
            belief, log_likelihood, prior, scale=scale, num_samples=num_samples, seed=seed
        )
    if all(score == -math.inf for score in scores.values()):
        raise ValueError("beliefs holds no belief to choose from (every candidate is None)")
    best = max(lams, key=lambda lam: scores[lam])
    return LambdaSelection(lam=best, scores=scores, rule="validation ELBO")


def select_lambda_by_ess(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lams: Sequence[float] = DEFAULT_LAMBDAS,
    *,
    min_ess_fraction: float = 0.01,
    num_samples: int = 100_000,
    seed: Seed = 0,
) -> LambdaSelection:
    """The smallest threshold whose one-shot importance weights keep an effective sample size
    of at least ``min_ess_fraction * num_samples``.

    The weights are ``w_s ∝ 1 / p_adj(D_e | theta_s; lam)`` for ``theta_s ~ q_full`` (the
    same samples for every threshold): their effective sample size measures how far the
    adjusted target lies from ``q_full``'s own samples. Needs neither retraining nor
    the remaining data.

    Args:
        q_full: ``q(theta | D)``, a float64 multivariate normal [d].
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lams: candidate thresholds.
        min_ess_fraction: the floor, as a fraction of ``num_samples``, in (0, 1].
        num_samples: samples of ``q_full``.
        seed: seed of the samples (default 0, so that the choice is reproducible).

    Returns:
        A :class:`LambdaSelection` (``rule = "ESS floor"``; the scores are the effective
        sample sizes). When no threshold passes, the largest one is chosen.
    """
    lams = _check_lams(lams)
    fraction = check_unit_interval(min_ess_fraction, "min_ess_fraction")
    if fraction == 0.0:
        raise ValueError("min_ess_fraction must be positive")
    num_samples = check_positive_int(num_samples, "num_samples")
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, 0.0)
    z = gaussian.moment_matched_normal(num_samples, adjusted.dim, seed)
    theta = adjusted.q_full.loc + tf.matmul(z, adjusted.q_full.scale.to_dense(), transpose_b=True)
    values = adjusted.log_likelihood(theta)  # log p(D_e | theta_s), computed once
    squared = tf.reduce_sum(z**2, axis=-1)  # Mahalanobis distances under q_full
    scores = {}
    for lam in lams:
        inside = squared < adjusted_region_radius_squared(lam)
        scores[lam] = importance_ess(-tf.where(inside, values, tf.zeros_like(values)))
    passing = [lam for lam in lams if scores[lam] >= fraction * num_samples]
    chosen = min(passing) if passing else max(lams)
    return LambdaSelection(lam=chosen, scores=scores, rule="ESS floor")
