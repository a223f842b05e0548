"""Tests for unlearnkit.likelihoods: values against NumPy/SciPy, shapes, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st
from scipy import special, stats

from unlearnkit.likelihoods import (
    linear_gaussian_log_likelihood,
    logistic_log_likelihood,
)


def _data(n: int = 12, d: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = (rng.uniform(size=n) < 0.5).astype(float)
    theta = rng.normal(size=(5, d))
    return X, y, theta


# --- logistic -----------------------------------------------------------------------


def test_logistic_matches_hand_computation() -> None:
    X, y, theta = _data()
    logits = theta @ X.T  # [S, n]
    expected = np.sum(y * special.log_expit(logits) + (1 - y) * special.log_expit(-logits), axis=1)
    values = logistic_log_likelihood(X, y)(theta)
    assert values.dtype == tf.float64 and values.shape == (5,)
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-12)


def test_logistic_is_stable_for_large_logits() -> None:
    X = np.array([[1.0], [-1.0]])
    y = np.array([1.0, 1.0])
    values = logistic_log_likelihood(X, y)(np.array([[800.0]])).numpy()
    # log sigmoid(800) ~ 0, log sigmoid(-800) = -800 - log(1 + e^-800) ~ -800
    np.testing.assert_allclose(values, [-800.0], rtol=1e-12)


def test_logistic_gradient_matches_closed_form() -> None:
    X, y, theta = _data()
    theta = tf.constant(theta)
    with tf.GradientTape() as tape:
        tape.watch(theta)
        total = tf.reduce_sum(logistic_log_likelihood(X, y)(theta))
    expected = (y - special.expit(theta.numpy() @ X.T)) @ X  # [S, d]
    np.testing.assert_allclose(tape.gradient(total, theta).numpy(), expected, rtol=1e-10)


def test_logistic_accepts_integer_and_boolean_labels() -> None:
    X, y, theta = _data()
    reference = logistic_log_likelihood(X, y)(theta).numpy()
    np.testing.assert_allclose(logistic_log_likelihood(X, y.astype(int))(theta), reference)
    np.testing.assert_allclose(logistic_log_likelihood(X, y.astype(bool))(theta), reference)


@pytest.mark.parametrize("labels", [[0, 1, 2], [0, 0.5, 1], [-1, 1, 1]])
def test_logistic_rejects_labels_outside_zero_one(labels) -> None:
    with pytest.raises(ValueError, match="y"):
        logistic_log_likelihood(np.ones((3, 2)), labels)


def test_logistic_rejects_bad_shapes_and_values() -> None:
    with pytest.raises(ValueError, match="X"):
        logistic_log_likelihood(np.ones(3), [0, 1, 1])
    with pytest.raises(ValueError, match="y"):
        logistic_log_likelihood(np.ones((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="y"):
        logistic_log_likelihood(np.ones((3, 2)), [[0, 1, 1]])
    with pytest.raises(ValueError, match="X"):
        logistic_log_likelihood(np.array([[np.nan, 1.0]]), [1])
    with pytest.raises(TypeError, match="X"):
        logistic_log_likelihood("data", [1])
    log_lik = logistic_log_likelihood(np.ones((3, 2)), [0, 1, 1])
    with pytest.raises(ValueError, match="theta"):
        log_lik(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="theta"):
        log_lik(np.zeros(2))


def test_logistic_does_not_mutate_inputs() -> None:
    X, y, theta = _data()
    copies = X.copy(), y.copy(), theta.copy()
    logistic_log_likelihood(X, y)(theta)
    for original, copy in zip((X, y, theta), copies):
        np.testing.assert_array_equal(original, copy)


# --- linear Gaussian ----------------------------------------------------------------


def test_linear_gaussian_matches_scipy() -> None:
    X, _, theta = _data()
    y = np.random.default_rng(1).normal(size=X.shape[0])
    noise = 0.3
    expected = [np.sum(stats.norm.logpdf(y, X @ t, np.sqrt(noise))) for t in theta]
    values = linear_gaussian_log_likelihood(X, y, noise)(theta)
    assert values.dtype == tf.float64 and values.shape == (5,)
    np.testing.assert_allclose(values.numpy(), expected, rtol=1e-12)


def test_linear_gaussian_rejects_bad_input() -> None:
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match="noise_variance"):
        linear_gaussian_log_likelihood(X, np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="noise_variance"):
        linear_gaussian_log_likelihood(X, np.zeros(3), -1.0)
    with pytest.raises(ValueError, match="noise_variance"):
        linear_gaussian_log_likelihood(X, np.zeros(3), np.inf)
    with pytest.raises(ValueError, match="y"):
        linear_gaussian_log_likelihood(X, np.zeros(4), 1.0)
    with pytest.raises(ValueError, match="y"):
        linear_gaussian_log_likelihood(X, np.array([0.0, np.nan, 1.0]), 1.0)
    with pytest.raises(ValueError, match="X"):
        linear_gaussian_log_likelihood(np.ones((2, 3, 1)), np.zeros(2), 1.0)
    with pytest.raises(ValueError, match="theta"):
        linear_gaussian_log_likelihood(X, np.zeros(3), 1.0)(np.zeros((4, 5)))


# --- the property unlearning rests on: log-likelihoods add over disjoint data ----------


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 30), cut=st.floats(0.0, 1.0))
def test_log_likelihoods_add_over_a_split(seed: int, n: int, cut: float) -> None:
    X, y, theta = _data(n=n, seed=seed)
    keep = np.random.default_rng(seed + 1).uniform(size=n) < cut
    targets = np.random.default_rng(seed + 2).normal(size=n)
    for make, labels in (
        (lambda A, b: logistic_log_likelihood(A, b), y),
        (lambda A, b: linear_gaussian_log_likelihood(A, b, 0.7), targets),
    ):
        whole = make(X, labels)(theta).numpy()
        kept = make(X[keep], labels[keep])(theta).numpy()
        parts = kept + make(X[~keep], labels[~keep])(theta).numpy()
        np.testing.assert_allclose(whole, parts, rtol=1e-10, atol=1e-10)
