"""Tests for unlearnkit.variational.linear_predictor: likelihoods of linear predictors and
their Gaussian expectations, and the stable logistic expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from unlearnkit.variational.linear_predictor import (
    LinearPredictorLogLikelihood,
    expected_log_sigmoid,
    gauss_hermite,
    gauss_hermite_log_sigmoid,
    has_gaussian_expectation,
)


def _reference(mean: float, variance: float) -> float:
    """E[log sigmoid(f)], f ~ N(mean, variance), by adaptive quadrature."""
    if variance == 0.0:
        return -np.logaddexp(0.0, -mean)
    s = np.sqrt(variance)
    value, _ = integrate.quad(
        lambda f: -np.logaddexp(0.0, -f) * stats.norm.pdf(f, mean, s),
        mean - 40 * s,
        mean + 40 * s,
        points=[0.0] if abs(mean) < 40 * s else None,
        limit=800,
        epsabs=1e-14,
        epsrel=1e-13,
    )
    return value


# --- the logistic expectation --------------------------------------------------------


@pytest.mark.parametrize("variance", [0.0, 1e-4, 0.3, 0.99, 1.01, 4.0, 30.0, 1e3, 1e5])
def test_expected_log_sigmoid_is_accurate_for_any_variance(variance: float) -> None:
    means = np.linspace(-80.0, 80.0, 33)
    got = expected_log_sigmoid(tf.constant(means), tf.constant(np.full_like(means, variance))).numpy()
    expected = np.array([_reference(m, variance) for m in means])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_expected_log_sigmoid_has_finite_gradients_everywhere() -> None:
    mean = tf.Variable([0.0, 1.0, -50.0, 50.0, 3.0], dtype=tf.float64)
    variance = tf.Variable([0.0, 1.0, 100.0, 1e4, 1.0 + 1e-12], dtype=tf.float64)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(expected_log_sigmoid(mean, variance))
    grads = tape.gradient(total, [mean, variance])
    for grad in grads:
        assert np.all(np.isfinite(grad))
    # d/dmean E[log sigmoid] = E[sigmoid(-f)] in (0, 1); d/dvariance = E[(log sigmoid)''] / 2 <= 0
    assert np.all((grads[0].numpy() > 0) & (grads[0].numpy() < 1))
    assert np.all(grads[1].numpy()[1:] <= 0)


def test_gauss_hermite_rules() -> None:
    nodes, weights = gauss_hermite(7)
    assert weights.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.sum(weights * nodes**2) == pytest.approx(1.0, abs=1e-13)  # E[x^2] = 1
    assert np.sum(weights * nodes**6) == pytest.approx(15.0, abs=1e-11)  # E[x^6] = 15
    t = tf.constant([-3.0, 0.0, 40.0], tf.float64)
    one_node = gauss_hermite_log_sigmoid(t, tf.constant(0.5, tf.float64), 1)
    np.testing.assert_allclose(one_node, -np.logaddexp(0.0, -t.numpy()), rtol=1e-15)
    many = gauss_hermite_log_sigmoid(t, tf.constant([0.2, 0.2, 0.2], tf.float64), 20)
    np.testing.assert_allclose(many, [_reference(m, 0.2) for m in t.numpy()], atol=1e-10)
    with pytest.raises(ValueError, match="num_points"):
        gauss_hermite(0)


def test_gauss_hermite_rules_are_numpys_and_a_callers_edit_does_not_leak() -> None:
    nodes, weights = gauss_hermite(5)  # the rule is cached: each call returns its own copy
    numpy_nodes, numpy_weights = np.polynomial.hermite.hermgauss(5)
    np.testing.assert_array_equal(nodes, numpy_nodes * math.sqrt(2.0))
    np.testing.assert_array_equal(weights, numpy_weights / math.sqrt(math.pi))
    nodes[:] = 0.0
    weights[:] = 0.0
    again = gauss_hermite(5)
    np.testing.assert_array_equal(again[0], numpy_nodes * math.sqrt(2.0))
    np.testing.assert_array_equal(again[1], numpy_weights / math.sqrt(math.pi))


# --- LinearPredictorLogLikelihood ----------------------------------------------------

RNG = np.random.default_rng(3)
A = RNG.normal(size=(4, 6))
B_OFFSET = RNG.normal(size=6)
SIGNS = np.where(RNG.uniform(size=6) < 0.5, -1.0, 1.0)


def _logistic(**kwargs) -> LinearPredictorLogLikelihood:
    return LinearPredictorLogLikelihood(
        A, B_OFFSET, lambda t: -tf.math.softplus(-SIGNS * t), **kwargs
    )


def _gaussian_belief(seed: int):
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=4) * 0.5
    scale = np.tril(rng.normal(size=(4, 4)) * 0.2) + np.diag(rng.uniform(0.3, 0.8, size=4))
    return tf.constant(loc), tf.constant(scale)


def test_call_sums_the_per_point_values_eagerly_and_traced() -> None:
    log_lik = _logistic()
    theta = tf.constant(RNG.normal(size=(5, 4)))
    per_point = -np.logaddexp(0.0, -SIGNS * (theta.numpy() @ A + B_OFFSET))
    np.testing.assert_allclose(log_lik.per_point_values(theta), per_point, rtol=1e-13)
    np.testing.assert_allclose(log_lik(theta), per_point.sum(-1), rtol=1e-13)  # eager: compiled
    traced = tf.function(lambda t: log_lik(t))
    np.testing.assert_allclose(traced(theta), per_point.sum(-1), rtol=1e-13)
    with tf.GradientTape() as tape:
        tape.watch(theta)
        total = tf.reduce_sum(log_lik(theta))
    assert tape.gradient(total, theta).shape == (5, 4)
    assert has_gaussian_expectation(log_lik) and not has_gaussian_expectation(lambda t: t)


@settings(deadline=None, max_examples=10)
@given(st.integers(0, 2**16))
def test_gaussian_expectation_matches_monte_carlo(seed: int) -> None:
    log_lik = _logistic()
    loc, scale = _gaussian_belief(seed)
    theta = loc + tf.random.stateless_normal([200_000, 4], seed=[seed, 1], dtype=tf.float64) @ tf.transpose(scale)
    values = log_lik(theta).numpy()
    expected = float(log_lik.gaussian_expectation(loc, scale))
    assert abs(values.mean() - expected) < 5 * values.std() / np.sqrt(len(values))


def test_default_quadrature_and_a_closed_form_agree() -> None:
    """With h_i(t) = -t^2 / 2 the expectation is -(mean^2 + variance) / 2 exactly."""
    closed = LinearPredictorLogLikelihood(
        A, B_OFFSET, lambda t: -0.5 * t**2, lambda m, v: -0.5 * (m**2 + v)
    )
    quadrature = LinearPredictorLogLikelihood(A, B_OFFSET, lambda t: -0.5 * t**2, num_quadrature_points=3)
    loc, scale = _gaussian_belief(1)
    assert float(quadrature.gaussian_expectation(loc, scale)) == pytest.approx(
        float(closed.gaussian_expectation(loc, scale)), rel=1e-13
    )


def test_non_traceable_per_point_falls_back_to_eager() -> None:
    def eager_only(t):
        if float(tf.reduce_max(tf.abs(t))) > 1e9:  # Python control flow on a value
            raise AssertionError
        return -tf.math.softplus(-SIGNS * t)

    log_lik = LinearPredictorLogLikelihood(A, B_OFFSET, eager_only)
    theta = tf.constant(RNG.normal(size=(3, 4)))
    np.testing.assert_allclose(log_lik(theta), _logistic()(theta), rtol=1e-13)


def test_bad_input_is_refused_by_name() -> None:
    log_lik = _logistic(name="u")
    with pytest.raises(ValueError, match="u must have shape"):
        log_lik(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="offset"):
        LinearPredictorLogLikelihood(A, np.zeros(5), lambda t: t)
    with pytest.raises(ValueError, match="projection"):
        LinearPredictorLogLikelihood(np.zeros(4), np.zeros(4), lambda t: t)
    with pytest.raises(TypeError, match="per_point"):
        LinearPredictorLogLikelihood(A, B_OFFSET, "h")
    with pytest.raises(TypeError, match="expected_per_point"):
        LinearPredictorLogLikelihood(A, B_OFFSET, lambda t: t, "E h")
    with pytest.raises(ValueError, match="num_quadrature_points"):
        LinearPredictorLogLikelihood(A, B_OFFSET, lambda t: t, num_quadrature_points=0)
    with pytest.raises(ValueError, match="scale_tril"):
        log_lik.gaussian_expectation(tf.zeros(4, tf.float64), tf.eye(3, dtype=tf.float64))


def test_log_sigmoid_matches_softplus_with_its_first_and_second_derivatives() -> None:
    from unlearnkit.variational.linear_predictor import log_sigmoid

    grid = np.concatenate([
        np.linspace(-800.0, 800.0, 4001), np.logspace(-300, 3, 300), -np.logspace(-300, 3, 300), [0.0, -0.0]
    ])
    f = tf.constant(grid)
    results = []
    for function in (lambda f: -tf.math.softplus(-f), log_sigmoid):
        with tf.GradientTape() as outer:
            outer.watch(f)
            with tf.GradientTape() as inner:
                inner.watch(f)
                value = function(f)
            first = inner.gradient(value, f)
        results.append((value, first, outer.gradient(first, f)))
    for reference, fast in zip(results[0], results[1]):
        assert np.all(np.isfinite(fast))
        np.testing.assert_allclose(fast, reference, rtol=1e-13, atol=1e-14)
    assert np.all(results[1][0].numpy() <= 0.0)
