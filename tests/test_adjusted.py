"""Tests for unlearnkit.adjusted: the adjusted likelihood of the erased data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given
from hypothesis import strategies as st

from unlearnkit import adjusted_log_likelihood
from unlearnkit.variational.adjusted import AdjustedLogLikelihood, adjusted_region_radius_squared
from unlearnkit.likelihoods import logistic_log_likelihood

tfd = tfp.distributions


def _belief(d: int = 3, seed: int = 0) -> tfd.MultivariateNormalTriL:
    rng = np.random.default_rng(seed)
    scale = np.tril(rng.normal(size=(d, d)) * 0.3) + np.diag(rng.uniform(0.5, 1.5, size=d))
    return tfd.MultivariateNormalTriL(
        loc=tf.constant(rng.normal(size=d)), scale_tril=tf.constant(scale)
    )


def _erased(d: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(8, d))
    y = (rng.uniform(size=8) < 0.5).astype(float)
    return logistic_log_likelihood(X, y)


def _theta(q: tfd.MultivariateNormalTriL, num: int = 200, spread: float = 2.0) -> tf.Tensor:
    eps = tf.random.stateless_normal([num, q.event_shape[0]], seed=[3, 4], dtype=tf.float64)
    return q.loc + spread * tf.matmul(eps, q.scale.to_dense(), transpose_b=True)


def test_radius_squared_at_the_ends_and_in_between() -> None:
    assert adjusted_region_radius_squared(0.0) == math.inf
    assert adjusted_region_radius_squared(1.0) == 0.0
    assert adjusted_region_radius_squared(math.exp(-2.0)) == pytest.approx(4.0)


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_radius_squared_decreases_with_lam(lam_a: float, lam_b: float) -> None:
    low, high = sorted([lam_a, lam_b])
    assert adjusted_region_radius_squared(low) >= adjusted_region_radius_squared(high)


def test_lam_zero_is_the_unadjusted_likelihood() -> None:
    q, ll = _belief(), _erased()
    theta = _theta(q)
    np.testing.assert_array_equal(adjusted_log_likelihood(ll, q, 0.0)(theta), ll(theta))


def test_lam_one_gives_log_p_adj_zero_everywhere() -> None:
    q, ll = _belief(), _erased()
    values = adjusted_log_likelihood(ll, q, 1.0)(_theta(q))
    np.testing.assert_array_equal(values, np.zeros(200))


@given(st.floats(1e-12, 1.0 - 1e-9))
def test_region_is_where_q_exceeds_lam_times_its_maximum(lam: float) -> None:
    q, ll = _belief(), _erased()
    theta = _theta(q)
    adjusted = adjusted_log_likelihood(ll, q, lam)
    inside = (q.log_prob(theta) - q.log_prob(q.loc[None, :])).numpy() > math.log(lam)
    # Points within 1e-9 of the boundary may fall either way by rounding.
    margin = np.abs(adjusted.mahalanobis_squared(theta).numpy() - adjusted.radius_squared)
    clear = margin > 1e-9
    np.testing.assert_array_equal(adjusted.inside(theta).numpy()[clear], inside[clear])
    expected = np.where(inside, ll(theta).numpy(), 0.0)
    np.testing.assert_allclose(adjusted(theta).numpy()[clear], expected[clear], rtol=1e-14)


def test_mahalanobis_matches_numpy() -> None:
    q, ll = _belief(), _erased()
    theta = _theta(q, num=10)
    cov = q.covariance().numpy()
    diff = theta.numpy() - q.loc.numpy()
    expected = np.einsum("si,ij,sj->s", diff, np.linalg.inv(cov), diff)
    got = adjusted_log_likelihood(ll, q, 0.5).mahalanobis_squared(theta)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_is_differentiable_inside_the_region() -> None:
    q, ll = _belief(), _erased()
    theta = tf.Variable(q.loc[None, :])
    with tf.GradientTape() as tape:
        value = adjusted_log_likelihood(ll, q, 0.1)(theta)
    gradient = tape.gradient(value, theta)
    with tf.GradientTape() as tape:
        base = ll(theta)
    np.testing.assert_allclose(gradient, tape.gradient(base, theta))


def test_returns_an_adjusted_callable_with_attributes() -> None:
    q, ll = _belief(), _erased()
    adjusted = adjusted_log_likelihood(ll, q, 0.25)
    assert isinstance(adjusted, AdjustedLogLikelihood)
    assert adjusted.lam == 0.25 and adjusted.q_full is q
    assert adjusted.radius_squared == pytest.approx(-2 * math.log(0.25))
    assert "0.25" in repr(adjusted)


def test_does_not_modify_q_full() -> None:
    q, ll = _belief(), _erased()
    loc, scale = q.loc.numpy().copy(), q.scale.to_dense().numpy().copy()
    adjusted_log_likelihood(ll, q, 0.3)(_theta(q))
    np.testing.assert_array_equal(q.loc, loc)
    np.testing.assert_array_equal(q.scale.to_dense(), scale)


@pytest.mark.parametrize("lam", [-0.1, 1.5, math.nan])
def test_lam_outside_unit_interval_raises(lam: float) -> None:
    with pytest.raises(ValueError, match="lam"):
        adjusted_log_likelihood(_erased(), _belief(), lam)


def test_lam_of_wrong_type_raises() -> None:
    with pytest.raises(TypeError, match="lam"):
        adjusted_log_likelihood(_erased(), _belief(), "0.5")


def test_bad_belief_raises() -> None:
    ll = _erased()
    with pytest.raises(TypeError, match="q_full"):
        adjusted_log_likelihood(ll, tfd.Normal(0.0, 1.0), 0.5)
    q32 = tfd.MultivariateNormalTriL(loc=tf.zeros(3), scale_tril=tf.eye(3))
    with pytest.raises(TypeError, match="q_full"):
        adjusted_log_likelihood(ll, q32, 0.5)


def test_not_callable_raises() -> None:
    with pytest.raises(TypeError, match="erased_log_likelihood"):
        adjusted_log_likelihood(np.zeros(3), _belief(), 0.5)


def test_wrong_output_shape_raises() -> None:
    q = _belief()
    adjusted = adjusted_log_likelihood(lambda t: tf.zeros([t.shape[0], 1], tf.float64), q, 0.5)
    with pytest.raises(ValueError, match="shape"):
        adjusted(_theta(q))


def test_non_finite_output_raises() -> None:
    q = _belief()
    adjusted = adjusted_log_likelihood(
        lambda t: tf.fill([t.shape[0]], tf.constant(np.nan, tf.float64)), q, 0.5
    )
    with pytest.raises(ValueError, match="NaN"):
        adjusted(_theta(q))


def test_wrong_theta_shape_raises() -> None:
    q = _belief()
    adjusted = adjusted_log_likelihood(_erased(), q, 0.5)
    with pytest.raises(ValueError, match="theta"):
        adjusted(tf.zeros([4, 2], tf.float64))
    with pytest.raises(ValueError, match="theta"):
        adjusted(tf.zeros([3], tf.float64))


def test_the_adjusted_target_lies_in_the_region_when_the_erased_data_are_unlikely() -> None:
    # p_adj <= 1 inside the region and = 1 outside, so 1 / p_adj boosts every trusted point:
    # with log p(D_e | theta) = -20 everywhere, the target q / p_adj keeps outside the region
    # only P_q(outside) / (P_q(outside) + e^20 P_q(inside)) of its mass. The threshold sets
    # where the target is truncated, not how much it trusts q.
    from scipy import stats

    from unlearnkit.variational.reference import GridDensity, adjusted_target

    q = tfd.MultivariateNormalTriL(loc=tf.zeros([1], tf.float64), scale_tril=tf.ones([1, 1], tf.float64))
    lam = 0.5
    flat = adjusted_target(q, lambda t: tf.fill([t.shape[0]], tf.constant(-20.0, tf.float64)), lam)
    density = GridDensity.from_function(flat, [np.linspace(-10.0, 10.0, 200_001)])
    adjusted = adjusted_log_likelihood(lambda t: tf.zeros([t.shape[0]], tf.float64), q, lam)
    outside = density.probability(lambda t: ~adjusted.inside(t))
    inside_q = stats.chi2.cdf(adjusted.radius_squared, 1)
    expected = (1 - inside_q) / ((1 - inside_q) + math.exp(20.0) * inside_q)
    assert outside == pytest.approx(expected, rel=1e-3)
    assert outside < 1e-9
