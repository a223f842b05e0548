"""Small problems with known answers, shared by the tests of the variational methods."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit.exact import LinearGaussian
from unlearnkit.likelihoods import (
    linear_gaussian_log_likelihood,
    logistic_log_likelihood,
)

tfd = tfp.distributions

NOISE = 0.5


def linear_problem(d: int = 3, n: int = 60, n_erased: int = 15, seed: int = 0):
    """Exact p(theta | D), p(theta | D_r), the erased log-likelihood and log p(D_e | D_r)
    of Bayesian linear regression; the first ``n_erased`` of ``n`` rows are erased."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + math.sqrt(NOISE) * rng.normal(size=n)
    prior = LinearGaussian(np.zeros(d), np.eye(d), NOISE)
    full, remaining = prior.observe(X, y), prior.observe(X[n_erased:], y[n_erased:])
    erased = linear_gaussian_log_likelihood(X[:n_erased], y[:n_erased], NOISE)
    log_evidence_erased = full.log_marginal_likelihood() - remaining.log_marginal_likelihood()
    return full.distribution, remaining.distribution, erased, log_evidence_erased


def logistic_problem(d: int = 3, n: int = 30, n_erased: int = 10, seed: int = 0):
    """A Gaussian belief and the logistic log-likelihood of the first ``n_erased`` of ``n``
    random points (no exact answer: for checks of shapes, inputs and reproducibility)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.uniform(size=n) < 0.5).astype(float)
    q_full = tfd.MultivariateNormalTriL(
        loc=tf.constant(rng.normal(size=d) * 0.3), scale_tril=tf.constant(0.4 * np.eye(d))
    )
    return q_full, logistic_log_likelihood(X[:n_erased], y[:n_erased])
