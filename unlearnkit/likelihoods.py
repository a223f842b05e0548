"""Log-likelihoods of common models, in the form every unlearning routine takes.

A log-likelihood here is a callable ``theta [S, d] -> log p(D | theta) [S]``: it scores a
batch of ``S`` parameter vectors at once, summed over the data points it was built with.
Build one for the erased data ``D_e`` and pass it to :func:`unlearnkit.unlearn_eubo`,
:func:`unlearnkit.unlearn_reverse_kl` or :func:`unlearnkit.exact.grid_unlearn`.
"""

from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf

from unlearnkit._validation import (
    as_float64,
    as_positive_scalar,
    check_binary_labels,
    check_theta,
    ensure_finite,
)

__all__ = ["LogLikelihood", "logistic_log_likelihood", "linear_gaussian_log_likelihood"]

LogLikelihood = Callable[[tf.Tensor], tf.Tensor]
"""``theta [S, d] -> log p(D | theta) [S]``."""

_OVERFLOW = "the log-likelihood of theta (theta, X or y too large for float64)"


def logistic_log_likelihood(X: object, y: object) -> LogLikelihood:
    """Bernoulli log-likelihood of logistic regression, p(y = 1 | x, theta) = sigmoid(x^T theta).

    Args:
        X: inputs, [n, d] (add a column of ones yourself for a bias).
        y: labels in {0, 1}, [n].

    Returns:
        A callable ``theta [S, d] -> sum_i log p(y_i | x_i, theta)  [S]``.
    """
    X = as_float64(X, "X", ndim=2)
    y = check_binary_labels(y, "y")
    if y.shape.rank != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape [{X.shape[0]}] to match X, got {y.shape.as_list()}")
    signs = 2.0 * y - 1.0  # log p(y | logit) = -softplus(-sign * logit)
    dim = X.shape[1]

    def log_likelihood(theta: tf.Tensor) -> tf.Tensor:
        logits = tf.matmul(check_theta(theta, dim), X, transpose_b=True)  # [S, n]
        values = -tf.reduce_sum(tf.math.softplus(-signs * logits), axis=-1)
        return ensure_finite(values, _OVERFLOW)

    return log_likelihood


def linear_gaussian_log_likelihood(X: object, y: object, noise_variance: float) -> LogLikelihood:
    """Gaussian log-likelihood of linear regression, y = x^T theta + N(0, noise_variance).

    Args:
        X: inputs, [n, d].
        y: targets, [n].
        noise_variance: positive observation-noise variance.

    Returns:
        A callable ``theta [S, d] -> sum_i log N(y_i | x_i^T theta, noise_variance)  [S]``.
    """
    X = as_float64(X, "X", ndim=2)
    y = as_float64(y, "y", ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape [{X.shape[0]}] to match X, got {y.shape.as_list()}")
    noise = as_positive_scalar(noise_variance, "noise_variance")
    if not math.isfinite(1.0 / noise):
        raise ValueError(f"noise_variance is too small (1 / noise_variance overflows), got {noise}")
    dim = X.shape[1]
    log_norm = -0.5 * X.shape[0] * math.log(2.0 * math.pi * noise)

    def log_likelihood(theta: tf.Tensor) -> tf.Tensor:
        residuals = y - tf.matmul(check_theta(theta, dim), X, transpose_b=True)  # [S, n]
        values = log_norm - 0.5 * tf.reduce_sum(residuals**2, axis=-1) / noise
        return ensure_finite(values, _OVERFLOW)

    return log_likelihood
