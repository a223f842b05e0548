"""Tests for unlearnkit.metrics: Gaussian KL, predictive probabilities, averaged KL."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from unlearnkit.metrics import (
    AveragedKL,
    averaged_kl,
    gaussian_kl,
    predictive_kl,
    predictive_probabilities,
)

tfd = tfp.distributions


def _gaussian(d: int, seed: int) -> tfd.MultivariateNormalTriL:
    rng = np.random.default_rng(seed)
    scale = np.tril(rng.normal(size=(d, d)) * 0.3) + np.diag(rng.uniform(0.5, 1.5, size=d))
    return tfd.MultivariateNormalTriL(loc=tf.constant(rng.normal(size=d)), scale_tril=tf.constant(scale))


# --- gaussian_kl --------------------------------------------------------------------


@given(st.integers(1, 6), st.integers(0, 1000))
def test_gaussian_kl_matches_tfp(d: int, seed: int) -> None:
    q, p = _gaussian(d, seed), _gaussian(d, seed + 1)
    expected = tfd.kl_divergence(q, p)
    assert float(gaussian_kl(q, p)) == pytest.approx(float(expected), rel=1e-10, abs=1e-12)
    assert float(gaussian_kl(q, p)) >= 0.0


def test_gaussian_kl_is_zero_for_equal_beliefs_and_asymmetric() -> None:
    q, p = _gaussian(3, 0), _gaussian(3, 1)
    assert float(gaussian_kl(q, q)) == pytest.approx(0.0, abs=1e-12)
    assert float(gaussian_kl(q, p)) != pytest.approx(float(gaussian_kl(p, q)))


def test_gaussian_kl_rejects_bad_beliefs() -> None:
    with pytest.raises(ValueError, match="event shape"):
        gaussian_kl(_gaussian(2, 0), _gaussian(3, 0))
    with pytest.raises(TypeError, match="p"):
        gaussian_kl(_gaussian(2, 0), tfd.Normal(0.0, 1.0))


# --- predictive_kl and averaged_kl --------------------------------------------------


def test_bernoulli_and_two_class_categorical_agree() -> None:
    rng = np.random.default_rng(0)
    p, q = rng.uniform(size=20), rng.uniform(size=20)
    bernoulli = predictive_kl(p, q)
    categorical = predictive_kl(np.stack([1 - p, p], -1), np.stack([1 - q, q], -1))
    np.testing.assert_allclose(bernoulli, categorical, rtol=1e-12)
    expected = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    np.testing.assert_allclose(bernoulli, expected, rtol=1e-9)


def test_categorical_kl_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.ones(4), size=10), rng.dirichlet(np.ones(4), size=10)
    expected = [stats.entropy(pi, qi) for pi, qi in zip(p, q)]
    np.testing.assert_allclose(predictive_kl(p, q), expected, rtol=1e-9)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_kl_of_a_predictive_with_itself_is_zero(probs) -> None:
    assert np.all(predictive_kl(probs, probs).numpy() < 1e-12)


def test_certain_but_wrong_predictions_give_a_large_finite_kl() -> None:
    kl = predictive_kl([1.0, 0.0], [0.0, 1.0], epsilon=1e-12)
    assert np.all(np.isfinite(kl)) and np.all(kl.numpy() > 20.0)


def test_averaged_kl_is_the_mean_and_std_over_inputs() -> None:
    rng = np.random.default_rng(2)
    p, q = rng.uniform(size=50), rng.uniform(size=50)
    per_input = predictive_kl(p, q).numpy()
    result = averaged_kl(p, q)
    assert isinstance(result, AveragedKL)
    assert result.mean == pytest.approx(per_input.mean()) and result.std == pytest.approx(per_input.std())
    mean, std = result  # unpacks like a tuple
    assert mean >= 0.0 and std >= 0.0


@pytest.mark.parametrize(
    "p, q, match",
    [
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "shape"),
        (np.array([0.5, 1.5]), np.array([0.5, 0.5]), "probabilities"),
        (np.array([[0.5, 0.6]]), np.array([[0.5, 0.5]]), "sum to 1"),
        (np.array([0.5, 0.5]), np.array([0.5, 0.5, 0.5]), "same shape"),
        (np.array([0.5, np.nan]), np.array([0.5, 0.5]), "NaN"),
    ],
)
def test_bad_probabilities_raise(p, q, match) -> None:
    with pytest.raises(ValueError, match=match):
        averaged_kl(p, q)


@pytest.mark.parametrize("epsilon", [0.0, 0.5, -1.0])
def test_bad_epsilon_raises(epsilon) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        averaged_kl([0.5], [0.5], epsilon=epsilon)


# --- predictive_probabilities -------------------------------------------------------


def _probit_belief(mean: float, sd: float) -> tfd.MultivariateNormalTriL:
    return tfd.MultivariateNormalTriL(
        loc=tf.constant([mean], tf.float64), scale_tril=tf.constant([[sd]], tf.float64)
    )


def test_predictive_probabilities_match_the_probit_integral() -> None:
    # E[Phi(x theta)] for theta ~ N(m, s^2) is Phi(x m / sqrt(1 + x^2 s^2)).
    x = np.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    belief = _probit_belief(0.7, 0.8)
    probs = predictive_probabilities(
        belief, lambda t: tfd.Normal(np.float64(0), np.float64(1)).cdf(t * x), 40_000, seed=0
    )
    expected = stats.norm.cdf(x * 0.7 / np.sqrt(1 + x**2 * 0.64))
    np.testing.assert_allclose(probs, expected, atol=5e-3)


def test_predictive_probabilities_categorical_shape_and_rows() -> None:
    belief = _gaussian(3, 0)
    X = np.random.default_rng(0).normal(size=(7, 3))

    def softmax_of_three_classes(theta):
        logits = tf.stack([theta @ X.T, -(theta @ X.T), tf.zeros([theta.shape[0], 7], tf.float64)], -1)
        return tf.nn.softmax(logits, axis=-1)

    probs = predictive_probabilities(belief, softmax_of_three_classes, 500, seed=1)
    assert probs.shape == (7, 3)
    np.testing.assert_allclose(tf.reduce_sum(probs, -1), np.ones(7), rtol=1e-12)


def test_predictive_probabilities_are_reproducible_with_a_seed() -> None:
    belief = _gaussian(2, 0)
    X = np.random.default_rng(0).normal(size=(4, 2))
    fn = lambda t: tf.sigmoid(t @ X.T)  # noqa: E731
    a = predictive_probabilities(belief, fn, 100, seed=3)
    b = predictive_probabilities(belief, fn, 100, seed=3)
    c = predictive_probabilities(belief, fn, 100, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_predictive_probabilities_reject_bad_callables() -> None:
    belief = _gaussian(2, 0)
    with pytest.raises(ValueError, match="shape"):
        predictive_probabilities(belief, lambda t: tf.reduce_sum(t, -1), 10, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        predictive_probabilities(belief, lambda t: 2.0 + 0.0 * t, 10, seed=0)
    with pytest.raises(TypeError, match="class_probabilities"):
        predictive_probabilities(belief, "sigmoid", 10, seed=0)
    with pytest.raises(TypeError, match="belief"):
        predictive_probabilities(tfd.Normal(0.0, 1.0), lambda t: t, 10, seed=0)
