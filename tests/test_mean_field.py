"""Tests of unlearnkit.variational.mean_field on linear-Gaussian problems with known optima.

Likelihood ``y = X theta + noise``, prior ``N(0, I)``: the posterior is ``N(mu, Lambda^{-1})``
with ``Lambda = I + X^T X / s^2``; the mean-field optimum of ``KL[q || p]`` is
``N(mu, diag(Lambda)^{-1})``.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit.diagnostics import ImportanceInfo, OptimizationInfo
from unlearnkit.errors import DegenerateWeightsError
from unlearnkit.variational.mean_field import (
    diagonal_gaussian,
    diagonal_gaussian_kl,
    fit_mean_field_vi,
    unlearn_eubo_mean_field,
    unlearn_reverse_kl_mean_field,
)

tfd = tfp.distributions
NOISE = 0.8


def _log_likelihood(X, y):
    X, y = tf.constant(X), tf.constant(y)

    def log_likelihood(theta):
        residual = y - tf.matmul(theta, X, transpose_b=True)  # [S, n]
        return -0.5 * tf.reduce_sum(residual**2, axis=-1) / NOISE**2

    return log_likelihood


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)) @ np.array([[1.0, 0.6, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    y = X @ np.array([0.5, -1.0, 0.8]) + NOISE * rng.normal(size=30)
    precision = np.eye(3) + X.T @ X / NOISE**2
    mean = np.linalg.solve(precision, X.T @ y / NOISE**2)
    prior = tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64), tf.ones(3, tf.float64))
    return X, y, precision, mean, prior


def _mean_field_optimum(precision, shift):
    """Mean-field optimum of KL[q || N(P^{-1} shift, P^{-1})]: N(P^{-1} shift, diag(P)^{-1})."""
    return np.linalg.solve(precision, shift), 1.0 / np.sqrt(np.diag(precision))


def test_fit_recovers_the_mean_field_optimum(problem):
    X, y, precision, mean, prior = problem
    q, info = fit_mean_field_vi(
        _log_likelihood(X, y), prior, num_samples=4000, seed=1, return_info=True
    )
    assert isinstance(q, tfd.MultivariateNormalDiag) and isinstance(info, OptimizationInfo)
    np.testing.assert_allclose(q.mean().numpy(), mean, atol=0.02)
    np.testing.assert_allclose(q.stddev().numpy(), 1 / np.sqrt(np.diag(precision)), rtol=0.03)
    # the marginal standard deviations are larger: the family is under-dispersed
    assert np.all(q.stddev().numpy() < np.sqrt(np.diag(np.linalg.inv(precision))))


def test_eubo_recovers_the_diagonal_optimum(problem):
    X, y, precision, mean, _ = problem
    loc, scale = _mean_field_optimum(precision, X.T @ y / NOISE**2)
    q_full = tfd.MultivariateNormalDiag(tf.constant(loc), tf.constant(scale))
    Xe, ye = X[:5], y[:5]
    # the target q_full / p(D_e | theta) in natural parameters
    target_precision = np.diag(1 / scale**2) - Xe.T @ Xe / NOISE**2
    target_shift = loc / scale**2 - Xe.T @ ye / NOISE**2
    expected_loc, expected_scale = _mean_field_optimum(target_precision, target_shift)
    q_u, info = unlearn_eubo_mean_field(
        q_full, _log_likelihood(Xe, ye), num_samples=4000, seed=2, return_info=True
    )
    assert isinstance(info, OptimizationInfo) and info.converged
    np.testing.assert_allclose(q_u.mean().numpy(), expected_loc, atol=0.03)
    np.testing.assert_allclose(q_u.stddev().numpy(), expected_scale, rtol=0.03)
    # the diagonal of the retrained precision, as the module docstring says
    np.testing.assert_allclose(
        1 / expected_scale**2, np.diag(precision - Xe.T @ Xe / NOISE**2), rtol=1e-12
    )


def test_reverse_kl_matches_the_target_marginals(problem):
    X, y, precision, mean, _ = problem
    loc, scale = _mean_field_optimum(precision, X.T @ y / NOISE**2)
    q_full = tfd.MultivariateNormalDiag(tf.constant(loc), tf.constant(scale))
    Xe, ye = X[:1], y[:1]
    target_precision = np.diag(1 / scale**2) - Xe.T @ Xe / NOISE**2
    target_mean = np.linalg.solve(target_precision, loc / scale**2 - Xe.T @ ye / NOISE**2)
    target_std = np.sqrt(np.diag(np.linalg.inv(target_precision)))
    q_v, info = unlearn_reverse_kl_mean_field(
        q_full, _log_likelihood(Xe, ye), num_samples=100_000, seed=3, return_info=True
    )
    assert isinstance(q_v, tfd.MultivariateNormalDiag) and isinstance(info, ImportanceInfo)
    assert info.effective_sample_size > 10_000
    np.testing.assert_allclose(q_v.mean().numpy(), target_mean, atol=0.02)
    np.testing.assert_allclose(q_v.stddev().numpy(), target_std, rtol=0.05)


def test_reverse_kl_refuses_degenerate_weights(problem):
    X, y, _, _, _ = problem
    q_full = tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64), tf.ones(3, tf.float64))
    with pytest.raises(DegenerateWeightsError, match="effective sample size"):
        unlearn_reverse_kl_mean_field(q_full, _log_likelihood(X, y), num_samples=500, seed=0)


def test_lam_one_returns_q_full(problem):
    X, y, _, _, _ = problem
    q_full = tfd.MultivariateNormalDiag(
        tf.constant([0.1, 0.2, 0.3], tf.float64), tf.constant([1.0, 2.0, 0.5], tf.float64)
    )
    q_u = unlearn_eubo_mean_field(q_full, _log_likelihood(X, y), 1.0)
    np.testing.assert_array_equal(q_u.stddev().numpy(), q_full.stddev().numpy())
    q_v = unlearn_reverse_kl_mean_field(q_full, _log_likelihood(X, y), 1.0, num_samples=200_000, seed=1)
    np.testing.assert_allclose(q_v.mean().numpy(), q_full.mean().numpy(), atol=0.02)


def test_seeds_and_no_mutation(problem):
    X, y, _, _, prior = problem
    ll = _log_likelihood(X[:3], y[:3])
    q_full = tfd.MultivariateNormalDiag(
        tf.constant([0.5, -1.0, 0.8], tf.float64), tf.constant([0.3, 0.2, 0.4], tf.float64)
    )
    before = (q_full.mean().numpy().copy(), q_full.stddev().numpy().copy())
    a = unlearn_eubo_mean_field(q_full, ll, num_samples=16, seed=5)
    b = unlearn_eubo_mean_field(q_full, ll, num_samples=16, seed=5)
    c = unlearn_eubo_mean_field(q_full, ll, num_samples=16, seed=6)
    np.testing.assert_array_equal(a.mean().numpy(), b.mean().numpy())
    assert not np.array_equal(a.mean().numpy(), c.mean().numpy())
    np.testing.assert_array_equal(q_full.mean().numpy(), before[0])
    np.testing.assert_array_equal(q_full.stddev().numpy(), before[1])
    r1 = unlearn_reverse_kl_mean_field(q_full, ll, num_samples=5000, seed=[1, 2])
    r2 = unlearn_reverse_kl_mean_field(q_full, ll, num_samples=5000, seed=[1, 2])
    np.testing.assert_array_equal(r1.stddev().numpy(), r2.stddev().numpy())


def test_diagonal_gaussian_kl_matches_tfp():
    q = tfd.MultivariateNormalDiag(tf.constant([0.1, 2.0], tf.float64), tf.constant([0.5, 1.5], tf.float64))
    p = tfd.MultivariateNormalDiag(tf.constant([-0.3, 1.0], tf.float64), tf.constant([1.0, 0.7], tf.float64))
    np.testing.assert_allclose(
        diagonal_gaussian_kl(q, p).numpy(), tfd.kl_divergence(q, p).numpy(), rtol=1e-12
    )
    tril = tfd.MultivariateNormalTriL(q.mean(), tf.linalg.diag(q.stddev()))
    np.testing.assert_allclose(diagonal_gaussian_kl(tril, p).numpy(), tfd.kl_divergence(q, p).numpy())


def test_bad_inputs(problem):
    X, y, _, _, prior = problem
    ll = _log_likelihood(X, y)
    full = tfd.MultivariateNormalTriL(
        tf.zeros(3, tf.float64), tf.constant([[1.0, 0, 0], [0.5, 1, 0], [0, 0, 1]], tf.float64)
    )
    with pytest.raises(ValueError, match="diagonal"):
        unlearn_eubo_mean_field(full, ll)
    with pytest.raises(ValueError, match="diagonal"):
        fit_mean_field_vi(ll, full)
    with pytest.raises(TypeError, match="log_likelihood"):
        fit_mean_field_vi("not callable", prior)
    with pytest.raises(TypeError, match="q_full"):
        unlearn_reverse_kl_mean_field(object(), ll)
    with pytest.raises(TypeError, match="num_samples"):
        fit_mean_field_vi(ll, prior, num_samples=2.5)
    with pytest.raises(ValueError, match="num_samples"):
        unlearn_reverse_kl_mean_field(prior, ll, num_samples=1)
    with pytest.raises(ValueError, match="lam"):
        unlearn_eubo_mean_field(prior, ll, 1.5)
    with pytest.raises(ValueError, match="initial"):
        fit_mean_field_vi(
            ll, prior, initial=tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64), tf.ones(2, tf.float64))
        )
    with pytest.raises(TypeError):
        diagonal_gaussian(tfd.Normal(0.0, 1.0))


def test_nan_raises(problem):
    _, _, _, _, prior = problem

    def nan_likelihood(theta):
        return tf.reduce_sum(theta, axis=-1) * np.nan

    with pytest.raises(ValueError):
        fit_mean_field_vi(nan_likelihood, prior, seed=0)
    with pytest.raises(ValueError):
        unlearn_eubo_mean_field(prior, nan_likelihood, seed=0)
    with pytest.raises(ValueError):
        unlearn_reverse_kl_mean_field(prior, nan_likelihood, seed=0)
