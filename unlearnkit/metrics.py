"""How close an unlearned belief is to the retrained one.

- :func:`gaussian_kl`: the closed-form KL divergence between two Gaussian beliefs.
- :func:`predictive_probabilities`: the Monte Carlo predictive class probabilities of a
  belief, ``q(y | x) = E_q(theta)[p(y | x, theta)]``, at a set of inputs.
- :func:`averaged_kl`: the averaged KL of Nguyen et al. (2020): per input ``x``,
  ``KL[q_retrained(y | x) || q_other(y | x)]`` between the predictive distributions,
  then the mean and standard deviation over the inputs (for example over the inputs of
  ``D_e``, and separately over those of ``D_r``).

Predictive probabilities are given either as ``[N]`` probabilities of class 1
(Bernoulli) or as ``[N, C]`` rows that sum to 1 (categorical). Before taking logs, every
probability is clipped to ``[epsilon, 1 - epsilon]`` (categorical rows are then
renormalised), so that a predictive that puts no mass on a class gives a large but
finite KL.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_float64,
    as_gaussian_belief,
    check_callable,
    check_output_tensor,
    check_positive_int,
    ensure_finite,
)
from unlearnkit.seeds import Seed, sanitize_seed

tfd = tfp.distributions

__all__ = [
    "AveragedKL",
    "averaged_kl",
    "predictive_kl",
    "predictive_probabilities",
    "gaussian_kl",
    "DEFAULT_EPSILON",
]

DEFAULT_EPSILON = 1e-12


class AveragedKL(NamedTuple):
    """Mean and standard deviation (``ddof = 0``) over inputs of the per-input KL."""

    mean: float
    std: float


def gaussian_kl(q: object, p: object) -> tf.Tensor:
    """``KL[q || p]`` between two Gaussian beliefs, in closed form (``tfd.kl_divergence``).

    Args:
        q, p: float64 multivariate normals (any ``tfd.MultivariateNormalLinearOperator``) with
            the same event shape ``[d]``.

    Returns:
        A float64 scalar tensor (>= 0; 0 iff ``q == p``).
    """
    q = as_gaussian_belief(q, "q")
    p = as_gaussian_belief(p, "p")
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"q and p must have the same event shape, got {q.event_shape} and {p.event_shape}"
        )
    return tf.maximum(tfd.kl_divergence(q, p), 0.0)


def _as_categorical(probs: object, name: str, epsilon: float) -> tf.Tensor:
    """Clipped ``[N, C]`` class probabilities from ``[N]`` (Bernoulli) or ``[N, C]`` input."""
    probs = as_float64(probs, name)
    if probs.shape.rank == 1:
        probs = tf.stack([1.0 - probs, probs], axis=-1)
    elif probs.shape.rank != 2:
        raise ValueError(
            f"{name} must have shape [N] (Bernoulli) or [N, C] (categorical), "
            f"got {probs.shape.as_list()}"
        )
    if not bool(tf.reduce_all((probs >= 0.0) & (probs <= 1.0))):
        raise ValueError(f"{name} must contain probabilities in [0, 1]")
    if not bool(tf.reduce_all(tf.abs(tf.reduce_sum(probs, axis=-1) - 1.0) < 1e-6)):
        raise ValueError(f"{name} must have rows that sum to 1")
    clipped = tf.clip_by_value(probs, epsilon, 1.0 - epsilon)
    return clipped / tf.reduce_sum(clipped, axis=-1, keepdims=True)


def _check_epsilon(epsilon: float) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)):
        raise TypeError(f"epsilon must be a number in (0, 0.5), got {type(epsilon).__name__}")
    if not 0.0 < epsilon < 0.5:
        raise ValueError(f"epsilon must lie in (0, 0.5), got {epsilon}")
    return float(epsilon)


def predictive_kl(
    retrained_probs: object, other_probs: object, epsilon: float = DEFAULT_EPSILON
) -> tf.Tensor:
    """Per-input ``KL[q_retrained(y | x_n) || q_other(y | x_n)]``.

    Args:
        retrained_probs: predictive of the retrained belief, [N] (probability of class 1)
            or [N, C].
        other_probs: predictive of the belief being assessed, same shape.
        epsilon: probabilities are clipped to ``[epsilon, 1 - epsilon]`` first.

    Returns:
        The KL at each input, [N] float64 (>= 0).
    """
    epsilon = _check_epsilon(epsilon)
    p = _as_categorical(retrained_probs, "retrained_probs", epsilon)
    q = _as_categorical(other_probs, "other_probs", epsilon)
    if p.shape[0] == 0:
        raise ValueError("retrained_probs must hold at least one input (got N = 0)")
    if p.shape != q.shape:
        raise ValueError(
            f"retrained_probs and other_probs must have the same shape, got "
            f"{p.shape.as_list()} and {q.shape.as_list()}"
        )
    kl = tf.reduce_sum(p * (tf.math.log(p) - tf.math.log(q)), axis=-1)
    return tf.maximum(kl, 0.0)  # rounding can give -1e-17


def averaged_kl(
    retrained_probs: object, other_probs: object, epsilon: float = DEFAULT_EPSILON
) -> AveragedKL:
    """The averaged KL between predictive distributions (Nguyen et al., 2020).

    Args:
        retrained_probs: predictive of the belief retrained on ``D_r``, at N inputs:
            [N] probabilities of class 1, or [N, C] class probabilities.
        other_probs: predictive of the belief being assessed (unlearned, or the
            "full" belief ``q(theta | D)``), same shape.
        epsilon: probabilities are clipped to ``[epsilon, 1 - epsilon]`` first.

    Returns:
        ``AveragedKL(mean, std)`` of ``KL[retrained || other]`` over the N inputs.

    Example:
        >>> p_retrain = predictive_probabilities(q_retrain, probs_on_erased, seed=0)
        >>> p_unlearn = predictive_probabilities(q_unlearn, probs_on_erased, seed=0)
        >>> averaged_kl(p_retrain, p_unlearn).mean
    """
    kl = predictive_kl(retrained_probs, other_probs, epsilon).numpy()
    return AveragedKL(mean=float(np.mean(kl)), std=float(np.std(kl)))


def predictive_probabilities(
    belief: object,
    class_probabilities: Callable[[tf.Tensor], tf.Tensor],
    num_samples: int = 1000,
    *,
    seed: Seed = None,
) -> tf.Tensor:
    """Monte Carlo predictive ``q(y | x_n) = (1/S) sum_s p(y | x_n, theta_s)``, theta_s ~ belief.

    Args:
        belief: a float64 multivariate normal over ``theta`` [d].
        class_probabilities: ``theta [S, d] -> [S, N]`` probabilities of class 1, or
            ``[S, N, C]`` class probabilities, at the N inputs of interest (bind the
            inputs in the callable, e.g. ``lambda t: tf.sigmoid(t @ X.T)``).
        num_samples: Monte Carlo samples ``S``.
        seed: ``None``, an int or a stateless seed (see :mod:`unlearnkit.seeds`). Use the
            same seed for the beliefs you compare (common random numbers).

    Returns:
        [N] or [N, C] float64 predictive probabilities.
    """
    belief = as_gaussian_belief(belief, "belief")
    check_callable(
        class_probabilities, "class_probabilities", "theta [S, d] -> [S, N] or [S, N, C]"
    )
    num_samples = check_positive_int(num_samples, "num_samples")
    dim = int(belief.event_shape[0])
    eps = tf.random.stateless_normal([num_samples, dim], seed=sanitize_seed(seed), dtype=tf.float64)
    theta = belief.loc + tf.matmul(eps, belief.scale.to_dense(), transpose_b=True)
    expected = f"shape [{num_samples}, N] or [{num_samples}, N, C] for theta of shape [{num_samples}, {dim}]"
    probs = check_output_tensor(class_probabilities(theta), "class_probabilities", expected)
    if probs.shape.rank not in (2, 3) or probs.shape[0] != num_samples:
        raise ValueError(f"class_probabilities must return {expected}, got {probs.shape.as_list()}")
    probs = ensure_finite(tf.cast(probs, tf.float64), "the output of class_probabilities")
    if not bool(tf.reduce_all((probs >= 0.0) & (probs <= 1.0))):
        raise ValueError("class_probabilities must return probabilities in [0, 1]")
    if probs.shape.rank == 3 and not bool(
        tf.reduce_all(tf.abs(tf.reduce_sum(probs, axis=-1) - 1.0) < 1e-6)
    ):
        raise ValueError("class_probabilities must return [S, N, C] rows that sum to 1")
    return tf.reduce_mean(probs, axis=0)
