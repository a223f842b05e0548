"""Tests for unlearnkit.exact: conjugate unlearning and grid unlearning.

The laws of exact unlearning are checked as properties: for any split D = D_e + D_r,
observe(D).unlearn(D_e) equals observe(D_r); unlearning in one batch or several, in any
order, gives the same posterior; observing and then unlearning the same data changes
nothing.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from unlearnkit import exact
from unlearnkit.errors import NotPositiveDefiniteError
from unlearnkit.exact import BetaBernoulli, LinearGaussian, grid_unlearn
from unlearnkit.likelihoods import logistic_log_likelihood

tfd = tfp.distributions

bits = st.lists(st.integers(0, 1), max_size=40)
seeds = st.integers(0, 2**31 - 1)


# --- BetaBernoulli ------------------------------------------------------------------


def test_beta_bernoulli_posterior_adds_counts() -> None:
    model = BetaBernoulli(2.0, 3.0).observe(np.array([1, 0, 1, 1]))
    assert (model.num_ones, model.num_zeros, model.num_observations) == (3, 1, 4)
    posterior = model.distribution
    assert isinstance(posterior, tfd.Beta) and posterior.dtype == tf.float64
    assert float(posterior.concentration1) == 5.0
    assert float(posterior.concentration0) == 4.0


def test_beta_bernoulli_default_prior_is_uniform() -> None:
    prior = BetaBernoulli()
    assert (prior.concentration1, prior.concentration0, prior.num_observations) == (1.0, 1.0, 0)


def test_beta_bernoulli_unlearn_equals_retraining() -> None:
    data = np.array([1, 1, 0, 1, 0, 0, 1])
    prior = BetaBernoulli(0.5, 0.5)
    assert prior.observe(data).unlearn(data[:3]) == prior.observe(data[3:])


def test_beta_bernoulli_accepts_booleans_and_tensors() -> None:
    prior = BetaBernoulli()
    reference = prior.observe([1, 0, 1])
    assert prior.observe(np.array([True, False, True])) == reference
    assert prior.observe(tf.constant([1.0, 0.0, 1.0])) == reference
    assert prior.observe([]) == prior


def test_beta_bernoulli_refuses_to_unlearn_unseen_data() -> None:
    model = BetaBernoulli().observe([1, 0, 0])
    with pytest.raises(ValueError, match="only 1 ones"):
        model.unlearn([1, 1])
    with pytest.raises(ValueError, match="2 zeros"):
        model.unlearn([0, 0, 0])


@pytest.mark.parametrize("bad", [[0, 2], [0.5], [-1], [[0, 1]], [np.nan]])
def test_beta_bernoulli_rejects_bad_observations(bad) -> None:
    model = BetaBernoulli().observe([1, 1, 0])
    for method in (model.observe, model.unlearn):
        with pytest.raises(ValueError, match="x"):
            method(np.array(bad))
    with pytest.raises(TypeError, match="x"):
        model.observe("0101")


def test_beta_bernoulli_rejects_bad_prior() -> None:
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="concentration1"):
            BetaBernoulli(bad, 1.0)
    with pytest.raises(TypeError, match="concentration0"):
        BetaBernoulli(1.0, True)
    with pytest.raises(TypeError, match="concentration0"):
        BetaBernoulli(1.0, "1")
    with pytest.raises(ValueError, match="num_ones"):
        BetaBernoulli(num_ones=-1)
    with pytest.raises(TypeError, match="num_zeros"):
        BetaBernoulli(num_zeros=1.5)


def test_beta_bernoulli_is_immutable_and_leaves_inputs_alone() -> None:
    data = np.array([1, 0, 1])
    model = BetaBernoulli()
    posterior = model.observe(data)
    posterior.unlearn(data)
    np.testing.assert_array_equal(data, [1, 0, 1])
    assert model.num_observations == 0 and posterior.num_observations == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        posterior.num_ones = 0


def test_beta_bernoulli_log_marginal_likelihood_is_the_chain_rule() -> None:
    data = [1, 0, 0, 1, 1, 1]
    a, b = 2.0, 0.5
    model, expected = BetaBernoulli(a, b), 0.0
    for x in data:  # p(x_1..n) = prod_i p(x_i | x_<i), predictive = posterior mean
        p_one = (a + model.num_ones) / (a + b + model.num_observations)
        expected += np.log(p_one if x == 1 else 1.0 - p_one)
        model = model.observe([x])
    assert model.log_marginal_likelihood() == pytest.approx(expected, rel=1e-12)
    assert BetaBernoulli(a, b).log_marginal_likelihood() == 0.0


@given(data=bits, mask_seed=seeds)
def test_beta_bernoulli_unlearning_any_split_equals_retraining(data, mask_seed) -> None:
    data = np.array(data, dtype=int)
    erased = np.random.default_rng(mask_seed).uniform(size=data.size) < 0.5
    prior = BetaBernoulli(1.5, 0.7)
    assert prior.observe(data).unlearn(data[erased]) == prior.observe(data[~erased])


@given(data=bits, seed=seeds, batches=st.integers(1, 5))
def test_beta_bernoulli_unlearning_in_batches_in_any_order(data, seed, batches) -> None:
    rng = np.random.default_rng(seed)
    data = np.array(data, dtype=int)
    erased = rng.permutation(data)[: rng.integers(0, data.size + 1)]
    model = BetaBernoulli().observe(data)
    once = model.unlearn(erased)
    for chunk in np.array_split(rng.permutation(erased), batches):
        model = model.unlearn(chunk)
    assert model == once


@given(seen=bits, data=bits)
def test_beta_bernoulli_observe_then_unlearn_is_identity(seen, data) -> None:
    model = BetaBernoulli(3.0, 1.0).observe(np.array(seen, dtype=int))
    assert model.observe(np.array(data, dtype=int)).unlearn(np.array(data, dtype=int)) == model


def _exact_log_marginal(a: float, b: float, ones: int, zeros: int) -> float:
    """log p(ones, zeros) in exact rational arithmetic (floats are dyadic rationals),
    rounded once: the reference for log_marginal_likelihood."""
    A, B = Fraction(a), Fraction(b)
    numerator = denominator = Fraction(1)
    for i in range(ones):
        numerator *= A + i
    for j in range(zeros):
        numerator *= B + j
    for t in range(ones + zeros):
        denominator *= A + B + t
    ratio = numerator / denominator
    exponent = ratio.numerator.bit_length() - ratio.denominator.bit_length()
    mantissa = ratio / Fraction(2) ** exponent  # in [1/2, 2]
    return math.log(float(mantissa)) + exponent * math.log(2.0)


def test_log_marginal_likelihood_is_accurate_at_a_trillion_observations() -> None:
    # A difference of log-Gamma values near 2.6e13 lost about 13 of the 16 digits here.
    n = 10**12
    uniform = BetaBernoulli(1.0, 1.0)  # p(k ones of n) = 1 / ((n + 1) C(n, k))
    cases = [
        (uniform, n, 0, -math.log(n + 1)),
        (uniform, n - 1, 1, -math.log(n + 1) - math.log(n)),
        (uniform, 3, n - 3, -math.log(n + 1) - math.log(n * (n - 1) * (n - 2) / 6)),
        # a = 1, no ones: p = b / (b + z); a = 2: b (b + 1) / ((b + z) (b + z + 1))
        (BetaBernoulli(1.0, 7.5), 0, n, -math.log1p(n / 7.5)),
        (BetaBernoulli(2.0, 1e12), 0, n, math.log(1e12 * (1e12 + 1) / (2e12 * (2e12 + 1)))),
    ]
    for prior, ones, zeros, expected in cases:
        model = dataclasses.replace(prior, num_ones=ones, num_zeros=zeros)
        assert model.log_marginal_likelihood() == pytest.approx(expected, rel=1e-14)


def test_log_marginal_likelihood_with_huge_concentrations_is_the_point_mass_limit() -> None:
    # Beta(a, b) with a, b ~ 1e300 is a point mass at a / (a + b): each one costs
    # log(a / (a + b)) and each zero log(b / (a + b)). It used to return 0.0.
    for a, b in [(1e300, 1e300), (1e300, 3e300), (5e299, 1e295)]:
        for ones, zeros in [(1, 0), (1, 1), (7, 3), (10**12, 10**12 + 5)]:
            model = BetaBernoulli(a, b, num_ones=ones, num_zeros=zeros)
            expected = -ones * math.log1p(b / a) - zeros * math.log1p(a / b)
            assert model.log_marginal_likelihood() == pytest.approx(expected, rel=1e-14)


def test_log_marginal_likelihood_with_tiny_and_huge_concentrations() -> None:
    # Ratios such as b / a overflow float64 here; the exact reference does not.
    for a, b, ones, zeros in [
        (3.4e245, 7.9e-258, 33, 41),
        (1e-300, 1e300, 5, 7),
        (1e-300, 1e-300, 4, 0),
        (1e-300, 2.5, 0, 9),
    ]:
        model = BetaBernoulli(a, b, num_ones=ones, num_zeros=zeros)
        expected = _exact_log_marginal(a, b, ones, zeros)
        assert model.log_marginal_likelihood() == pytest.approx(expected, rel=1e-14, abs=1e-14)


concentrations = st.one_of(
    st.floats(1e-6, 1e8).filter(lambda v: v > 0),
    st.integers(1, 40).map(float),
    st.integers(1, 40).map(lambda v: v + 0.5),
)


@given(a=concentrations, b=concentrations, ones=st.integers(0, 150), zeros=st.integers(0, 150))
def test_beta_bernoulli_log_marginal_likelihood_matches_exact_rational_arithmetic(
    a, b, ones, zeros
) -> None:
    model = BetaBernoulli(a, b, num_ones=ones, num_zeros=zeros)
    expected = _exact_log_marginal(a, b, ones, zeros)
    assert abs(model.log_marginal_likelihood() - expected) <= 1e-14 * max(1.0, abs(expected))


@given(
    log_a=st.floats(-300.0, 300.0),
    log_b=st.floats(-300.0, 300.0),
    ones=st.integers(0, 40),
    zeros=st.integers(0, 40),
)
def test_beta_bernoulli_log_marginal_likelihood_at_extreme_concentrations(
    log_a, log_b, ones, zeros
) -> None:
    a, b = 10.0**log_a, 10.0**log_b
    model = BetaBernoulli(a, b, num_ones=ones, num_zeros=zeros)
    expected = _exact_log_marginal(a, b, ones, zeros)
    assert abs(model.log_marginal_likelihood() - expected) <= 1e-14 * max(1.0, abs(expected))


def test_beta_bernoulli_rejects_counts_beyond_float64_integers() -> None:
    assert BetaBernoulli(num_ones=2**53).num_ones == 2**53
    with pytest.raises(ValueError, match="num_ones must be at most 2\\*\\*53"):
        BetaBernoulli(num_ones=2**53 + 1)
    with pytest.raises(ValueError, match="num_zeros"):
        BetaBernoulli(num_zeros=10**400)
    with pytest.raises(ValueError, match="concentration1 \\+ concentration0 must be finite"):
        BetaBernoulli(1e308, 1e308)


# --- LinearGaussian -----------------------------------------------------------------


def _regression(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.5 * rng.normal(size=n)
    return X, y


def _prior(d: int, seed: int = 1) -> LinearGaussian:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    return LinearGaussian(rng.normal(size=d), A @ A.T + d * np.eye(d), noise_variance=0.25)


def _moments(model: LinearGaussian):
    return model.posterior_mean, model.posterior_covariance


def _assert_same_posterior(a: LinearGaussian, b: LinearGaussian, tol: float = 1e-9) -> None:
    assert a.num_observations == b.num_observations
    for x, y in zip(_moments(a), _moments(b)):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


def test_linear_gaussian_posterior_matches_textbook_formula() -> None:
    X, y = _regression(20, 3)
    prior = _prior(3)
    S0, m0, s2 = prior.prior_cov, prior.prior_mean, prior.noise_variance
    cov = np.linalg.inv(np.linalg.inv(S0) + X.T @ X / s2)
    mean = cov @ (np.linalg.solve(S0, m0) + X.T @ y / s2)
    posterior = prior.observe(X, y).distribution
    assert isinstance(posterior, tfd.MultivariateNormalTriL)
    assert posterior.dtype == tf.float64 and posterior.event_shape == [3]
    np.testing.assert_allclose(posterior.mean().numpy(), mean, rtol=1e-10)
    np.testing.assert_allclose(posterior.covariance().numpy(), cov, rtol=1e-10, atol=1e-14)
    model = prior.observe(X, y)
    np.testing.assert_allclose(model.posterior_mean, mean, rtol=1e-10)
    np.testing.assert_allclose(model.posterior_covariance, cov, rtol=1e-10, atol=1e-14)
    assert not model.posterior_mean.flags.writeable
    assert not model.posterior_covariance.flags.writeable


def test_linear_gaussian_without_data_is_the_prior() -> None:
    prior = _prior(2)
    mean, cov = _moments(prior)
    np.testing.assert_allclose(mean, prior.prior_mean, rtol=1e-12)
    np.testing.assert_allclose(cov, prior.prior_cov, rtol=1e-12)
    assert prior.num_observations == 0 and prior.dim == 2
    np.testing.assert_array_equal(prior.gram, np.zeros((3, 3)))


def test_linear_gaussian_keeps_sufficient_statistics() -> None:
    X, y = _regression(7, 2)
    model = _prior(2).observe(X, y)
    np.testing.assert_allclose(model.gram[:2, :2], X.T @ X)
    np.testing.assert_allclose(model.gram[:2, 2], X.T @ y)
    np.testing.assert_allclose(model.gram[2, 2], y @ y)
    assert not model.gram.flags.writeable
    assert "num_observations=7" in repr(model)


def test_linear_gaussian_unlearn_equals_retraining_on_many_rows() -> None:
    # More rows than the stacked fast path: exercises the large-n statistics.
    X, y = _regression(3 * exact._STACK_ROWS, 4)
    prior = _prior(4)
    unlearned = prior.observe(X, y).unlearn(X[:100], y[:100])
    _assert_same_posterior(unlearned, prior.observe(X[100:], y[100:]))


def test_linear_gaussian_log_marginal_likelihood_matches_scipy() -> None:
    X, y = _regression(6, 2)
    prior = _prior(2)
    marginal = stats.multivariate_normal(
        X @ prior.prior_mean, X @ prior.prior_cov @ X.T + prior.noise_variance * np.eye(6)
    )
    value = prior.observe(X, y).log_marginal_likelihood()
    assert value == pytest.approx(marginal.logpdf(y), rel=1e-10)
    assert prior.log_marginal_likelihood() == pytest.approx(0.0, abs=1e-12)


def test_linear_gaussian_accepts_tensors_and_integers() -> None:
    X, y = _regression(5, 2)
    prior = _prior(2)
    _assert_same_posterior(prior.observe(tf.constant(X), tf.constant(y)), prior.observe(X, y))
    Xi, yi = np.round(X * 10).astype(int), np.round(y * 10).astype(int)
    _assert_same_posterior(prior.observe(Xi, yi), prior.observe(Xi.astype(float), yi.astype(float)))


def test_linear_gaussian_refuses_to_unlearn_unseen_rows() -> None:
    X, y = _regression(30, 3)
    model = _prior(3).observe(X[:5], y[:5])
    with pytest.raises(ValueError, match="only 5 were observed"):
        model.unlearn(X[:6], y[:6])
    with pytest.raises(ValueError, match="not all observed"):
        model.unlearn(X[5:10], y[5:10])  # same count, other rows: statistics of no data set
    with pytest.raises(ValueError, match="not all observed"):
        model.unlearn(X[:2], y[:2] + 10.0)  # right inputs, wrong targets
    with pytest.raises(ValueError, match="not all observed"):
        model.unlearn(3.0 * X[:1], y[:1])


def test_linear_gaussian_unlearning_down_to_fewer_rows_than_parameters() -> None:
    # The remaining Gram matrix is singular: rounding must not be mistaken for bad data.
    X, y = _regression(1000, 4, seed=3)
    X = X + 100.0  # large offsets make the cancellation harder
    prior = _prior(4)
    model = prior.observe(X, y)
    for chunk in np.array_split(np.arange(2, 1000), 7):
        model = model.unlearn(X[chunk], y[chunk])
    _assert_same_posterior(model, prior.observe(X[:2], y[:2]), tol=1e-6)


def test_linear_gaussian_feature_that_is_always_zero() -> None:
    X, y = _regression(20, 3)
    X[:, 1] = 0.0
    prior = _prior(3)
    unlearned = prior.observe(X, y).unlearn(X[:15], y[:15])
    _assert_same_posterior(unlearned, prior.observe(X[15:], y[15:]))


@pytest.mark.parametrize("rows", [5, 3 * exact._STACK_ROWS])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e200])
def test_linear_gaussian_rejects_non_finite_data(rows: int, bad: float) -> None:
    X, y = _regression(rows, 2)
    prior = _prior(2)
    model = prior.observe(X, y)
    Xb, yb = X.copy(), y.copy()
    Xb[rows // 2, 1] = bad
    yb[rows // 2] = bad
    for method in (prior.observe, model.unlearn):
        with pytest.raises(ValueError, match="X contains NaN"):
            method(Xb, y)
        with pytest.raises(ValueError, match="y contains NaN"):
            method(X, yb)


def test_linear_gaussian_rejects_bad_shapes() -> None:
    X, y = _regression(5, 2)
    model = _prior(2)
    with pytest.raises(ValueError, match="X"):
        model.observe(X[:, :1], y)
    with pytest.raises(ValueError, match="X"):
        model.observe(X[0], y)
    with pytest.raises(ValueError, match="y"):
        model.observe(X, y[:4])
    with pytest.raises(ValueError, match="y"):
        model.unlearn(X, y[:, None])
    with pytest.raises(TypeError, match="X"):
        model.observe("rows", y)
    with pytest.raises(TypeError, match="y"):
        model.observe(X, None)


def test_linear_gaussian_rejects_bad_prior() -> None:
    with pytest.raises(ValueError, match="prior_mean"):
        LinearGaussian(np.zeros((2, 1)), np.eye(2), 1.0)
    with pytest.raises(ValueError, match="prior_mean"):
        LinearGaussian(np.zeros(0), np.eye(0), 1.0)
    with pytest.raises(ValueError, match="prior_cov"):
        LinearGaussian(np.zeros(2), np.eye(3), 1.0)
    with pytest.raises(ValueError, match="prior_cov must be symmetric"):
        LinearGaussian(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), 1.0)
    with pytest.raises(ValueError, match="prior_cov must be positive definite"):
        LinearGaussian(np.zeros(2), np.array([[1.0, 2.0], [2.0, 1.0]]), 1.0)
    with pytest.raises(ValueError, match="prior_cov"):
        LinearGaussian(np.zeros(2), np.full((2, 2), np.nan), 1.0)
    for bad in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError, match="noise_variance"):
            LinearGaussian(np.zeros(2), np.eye(2), bad)
    with pytest.raises(TypeError, match="noise_variance"):
        LinearGaussian(np.zeros(2), np.eye(2), True)


def test_linear_gaussian_is_immutable_and_leaves_inputs_alone() -> None:
    X, y = _regression(10, 2)
    mean, cov = np.zeros(2), np.eye(2)
    prior = LinearGaussian(mean, cov, 1.0)
    copies = [a.copy() for a in (X, y)]
    model = prior.observe(X, y)
    model.unlearn(X[:3], y[:3])
    mean[0], cov[0, 0] = 5.0, 9.0  # the caller changing its arrays does not change the model
    np.testing.assert_array_equal(prior.prior_mean, [0.0, 0.0])
    np.testing.assert_array_equal(prior.prior_cov, np.eye(2))
    for original, copy in zip((X, y), copies):
        np.testing.assert_array_equal(original, copy)
    assert prior.num_observations == 0 and model.num_observations == 10
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.noise_variance = 2.0
    with pytest.raises(ValueError):
        model.prior_mean[0] = 1.0


@given(seed=seeds, n=st.integers(0, 25), d=st.integers(1, 4), fraction=st.floats(0.0, 1.0))
def test_linear_gaussian_unlearning_any_split_equals_retraining(seed, n, d, fraction) -> None:
    X, y = _regression(n, d, seed)
    erased = np.random.default_rng(seed).uniform(size=n) < fraction
    prior = _prior(d, seed + 1)
    unlearned = prior.observe(X, y).unlearn(X[erased], y[erased])
    _assert_same_posterior(unlearned, prior.observe(X[~erased], y[~erased]))


@given(seed=seeds, n=st.integers(0, 25), batches=st.integers(1, 5))
def test_linear_gaussian_unlearning_in_batches_in_any_order(seed, n, batches) -> None:
    rng = np.random.default_rng(seed)
    X, y = _regression(n, 3, seed)
    erased = rng.permutation(n)[: rng.integers(0, n + 1)]
    model = _prior(3).observe(X, y)
    once = model.unlearn(X[erased], y[erased])
    for chunk in np.array_split(rng.permutation(erased), batches):
        model = model.unlearn(X[chunk], y[chunk])
    _assert_same_posterior(model, once)


@given(seed=seeds, seen=st.integers(0, 10), n=st.integers(0, 10))
def test_linear_gaussian_observe_then_unlearn_is_identity(seed, seen, n) -> None:
    X, y = _regression(seen + n, 2, seed)
    model = _prior(2).observe(X[:seen], y[:seen])
    again = model.observe(X[seen:], y[seen:]).unlearn(X[seen:], y[seen:])
    _assert_same_posterior(again, model)
    if seen == 0:  # nothing left: exactly the prior's statistics
        np.testing.assert_array_equal(again.gram, np.zeros((3, 3)))


# --- LinearGaussian: rounding in the statistics (issue 15) ---------------------------


def test_unlearn_after_cancellation_residue_is_accepted() -> None:
    # Removing rows 1 and 2 left X^T y = 2.8e-17 in a column that is zero in the only
    # remaining row; the check then refused every later request, even of zero rows.
    X = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    y = np.array([0.3, 0.1, 0.2])
    prior = LinearGaussian(np.zeros(2), np.eye(2), 1.0)
    model = prior.observe(X, y).unlearn(X[1:2], y[1:2]).unlearn(X[2:3], y[2:3])
    np.testing.assert_array_equal(model.gram[1], 0.0)  # exactly: the column is all zero
    np.testing.assert_array_equal(model.gram[:, 1], 0.0)
    assert model.unlearn(X[:0], y[:0]).num_observations == 1
    empty = model.unlearn(X[:1], y[:1])
    np.testing.assert_array_equal(empty.gram, np.zeros((3, 3)))
    np.testing.assert_array_equal(empty.posterior_mean, prior.posterior_mean)
    np.testing.assert_array_equal(empty.posterior_covariance, prior.posterior_covariance)


def test_unlearn_after_removing_an_outlier_is_accepted() -> None:
    # The residue of removing the outlier (about 1e-8) exceeded a tolerance relative to
    # what remained (1e-8 * 0.09); the tolerance is now relative to what was added.
    X, y = np.array([[1e4], [0.3]]), np.array([3700.0, 0.1])
    prior = LinearGaussian(np.zeros(1), np.eye(1), 1.0)
    model = prior.observe(X, y).unlearn(X[:1], y[:1])
    _assert_same_posterior(model, prior.observe(X[1:], y[1:]), tol=1e-6)
    empty = model.unlearn(X[1:], y[1:])
    np.testing.assert_array_equal(empty.gram, np.zeros((2, 2)))


def test_model_never_becomes_unusable() -> None:
    # After any valid sequence, observing and unlearning (even zero rows) still work.
    X = np.array([[1.0, 0.0, 5.0], [1.0, 1.0, 0.0], [1.0, 1.0, -2.0], [1e5, 0.0, 1.0]])
    y = np.array([0.3, 0.1, 0.2, 1e4])
    prior = LinearGaussian(np.zeros(3), np.eye(3), 0.5)
    model = prior.observe(X, y)
    for row in [3, 1, 2, 0]:
        model = model.unlearn(X[row : row + 1], y[row : row + 1])
        model.unlearn(X[:0], y[:0])
        again = model.observe(X[row : row + 1], y[row : row + 1]).unlearn(X[row : row + 1], y[row : row + 1])
        assert again.num_observations == model.num_observations
    np.testing.assert_array_equal(model.gram, np.zeros((4, 4)))
    _assert_same_posterior(model.observe(X, y), prior.observe(X, y), tol=1e-12)


def test_column_zero_in_every_remaining_row_has_exactly_zero_statistics() -> None:
    # With a nearly flat prior, a residue of 1e-17 in X^T y for an unidentified column
    # would move its posterior mean by 1e-17 * 1e12; snapping keeps it at the prior.
    X = np.array([[1.0, 0.1], [2.0, 0.7], [1.0, 0.0], [3.0, 0.0]])
    y = np.array([0.3, 0.1, 0.2, 0.7])
    prior = LinearGaussian(np.array([0.0, 2.0]), 1e12 * np.eye(2), 0.1)
    model = prior.observe(X, y).unlearn(X[:2], y[:2])
    assert model.posterior_mean[1] == 2.0
    assert model.posterior_covariance[1, 1] == 1e12
    assert model.posterior_covariance[0, 1] == 0.0


def test_unlearn_refuses_a_non_zero_value_where_no_observed_row_had_one() -> None:
    X, y = np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([1.0, 2.0])
    model = LinearGaussian(np.zeros(2), np.eye(2), 1.0).observe(X, y)
    with pytest.raises(ValueError, match="not all observed.*fewer than 0 rows"):
        model.unlearn(np.array([[1.0, 1e-9]]), np.array([1.0]))


def test_unlearn_refuses_more_non_zero_rows_than_remain() -> None:
    # One zero row was observed, two are unlearned: the remaining single row cannot
    # hold the two non-zero values that remain in the statistics.
    X, y = np.array([[1.0], [1.0], [0.0]]), np.array([1.0, 1.0, 0.0])
    model = LinearGaussian(np.zeros(1), np.eye(1), 1.0).observe(X, y)
    with pytest.raises(ValueError, match="not all observed.*more rows than remain"):
        model.unlearn(np.zeros((2, 1)), np.zeros(2))
    assert model.unlearn(np.zeros((1, 1)), np.zeros(1)).num_observations == 2


def test_unlearn_refuses_statistics_of_higher_rank_than_the_rows_left() -> None:
    # Three observed rows, two other rows unlearned: what remains is positive definite,
    # but one row has a rank-one Gram matrix.
    X = np.array([[10.0, 1.0], [1.0, 10.0], [1.0, 1.0]])
    y = np.array([1.0, 1.0, 10.0])
    model = LinearGaussian(np.zeros(2), np.eye(2), 1.0).observe(X, y)
    with pytest.raises(ValueError, match="not all observed"):
        model.unlearn(np.array([[1.0, 1.0], [2.0, 1.0]]), np.array([1.0, 1.0]))
    assert model.unlearn(X[:2], y[:2]).num_observations == 1


def test_observe_refuses_statistics_that_overflow() -> None:
    model = LinearGaussian(np.zeros(1), np.eye(1), 1.0).observe([[1e154]], [0.0])
    with pytest.raises(ValueError, match="too large"):
        model.observe([[1e154]], [0.0])
    assert model.num_observations == 1  # the model itself is unchanged and usable
    assert model.unlearn([[1e154]], [0.0]).num_observations == 0


def test_posterior_singular_to_working_precision_raises_not_positive_definite() -> None:
    # Two identical rows and a prior variance of 1e40: the posterior precision is
    # singular to working precision, so there is no float64 posterior covariance.
    X, y = np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([1.0, 1.0])
    model = LinearGaussian(np.zeros(2), 1e40 * np.eye(2), 1.0).observe(X, y)
    for attribute in ("posterior_mean", "posterior_covariance", "distribution"):
        with pytest.raises(NotPositiveDefiniteError, match="singular to working precision"):
            _ = getattr(model, attribute)
    model.unlearn(X, y)  # the statistics themselves are fine


def test_posterior_drops_negative_eigenvalues_that_are_rounding() -> None:
    # After removing a huge row, X^T X is within rounding of rank one but can be
    # slightly indefinite; with a weak prior the precision would not factorise.
    rng = np.random.default_rng(3)
    prior = LinearGaussian(np.zeros(3), 1e10 * np.eye(3), 1e-3)
    projected = 0
    for _ in range(200):
        outlier = rng.normal(size=(1, 3)) * 1e9
        row = rng.normal(size=(1, 3))
        X, y = np.vstack([outlier, row, 2.0 * row]), np.array([1e9, 0.3, 0.6])
        model = prior.observe(X, y).unlearn(X[:1], y[:1])
        gram = model.gram[:3, :3]
        if np.linalg.eigvalsh(model._prior_precision + gram / 1e-3)[0] < 0:
            projected += 1
        mean, cov = model.posterior_mean, model.posterior_covariance
        assert np.isfinite(mean).all() and np.isfinite(cov).all()
        assert np.linalg.eigvalsh(cov)[0] > 0
    assert projected > 0  # the fallback was exercised


def test_posterior_that_overflows_raises_value_error_naming_noise_variance() -> None:
    model = LinearGaussian(np.zeros(1), np.eye(1), 1e-300).observe([[1e10]], [1e10])
    with pytest.raises(ValueError, match="noise_variance"):
        _ = model.posterior_mean
    model = LinearGaussian(np.zeros(1), np.eye(1), 1e-300).observe([[0.0]], [1e10])
    with pytest.raises(ValueError, match="noise_variance"):
        model.log_marginal_likelihood()


def test_huge_values_raise_value_errors_without_warnings() -> None:
    # The overflow checks used to run sums that overflowed with a RuntimeWarning.
    import warnings

    model = LinearGaussian(np.zeros(2), np.eye(2), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="X contains NaN or infinite values"):
            model.observe([[1e200, 1.0]], [1.0])
        big = model.observe([[1e154, 1e154]], [1e154])
        with pytest.raises(ValueError, match="too large"):
            big.observe([[1e154, 1e154]], [1e154])
        assert big.unlearn([[1e154, 1e154]], [1e154]).num_observations == 0


def test_distribution_scale_is_a_lower_cholesky_factor_of_the_covariance() -> None:
    X, y = _regression(30, 4)
    model = _prior(4).observe(X, y)
    scale = model.distribution.scale.to_dense().numpy()
    np.testing.assert_array_equal(scale, np.tril(scale))
    assert (np.diag(scale) > 0).all()
    np.testing.assert_allclose(scale @ scale.T, model.posterior_covariance, rtol=1e-12, atol=1e-15)


def test_many_small_batches_do_not_accumulate_rounding() -> None:
    # 3,000 rows observed one at a time, then all but 10 unlearned one at a time: the
    # statistics stay within 4 eps of the scale of the data (plain float64 sums would
    # drift by about sqrt(number of calls) times that).
    rng = np.random.default_rng(5)
    X = np.column_stack([np.ones(3000), rng.integers(-3, 4, size=3000), rng.normal(size=3000)])
    y = np.round(rng.normal(size=3000), 1)
    model = LinearGaussian(np.zeros(3), np.eye(3), 1.0)
    for i in range(3000):
        model = model.observe(X[i : i + 1], y[i : i + 1])
    for i in range(2990):
        model = model.unlearn(X[i : i + 1], y[i : i + 1])
    Z = np.column_stack([X[2990:], y[2990:]])
    exact_gram = np.array([[math.fsum(Z[:, j] * Z[:, k]) for k in range(4)] for j in range(4)])
    squares = np.column_stack([X, y]) ** 2
    history = squares.sum(axis=0) + squares[:2990].sum(axis=0)  # observed + unlearned
    bound = 4 * 2.0**-53 * np.sqrt(np.outer(history, history))
    assert (np.abs(model.gram - exact_gram) <= bound).all()


# --- grid_unlearn -------------------------------------------------------------------


def _logistic_grid(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 2))
    y = (rng.uniform(size=40) < 1 / (1 + np.exp(-X @ [1.5, -1.0]))).astype(float)
    axis = np.linspace(-4.0, 4.0, 41)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)  # [41, 41, 2]
    theta = grid.reshape(-1, 2)
    log_prior = stats.multivariate_normal(np.zeros(2), 4.0 * np.eye(2)).logpdf(theta)

    def log_lik(rows):
        return logistic_log_likelihood(X[rows], y[rows])(theta).numpy().reshape(41, 41)

    return log_prior.reshape(41, 41), log_lik


def test_grid_unlearn_equals_grid_posterior_of_remaining_data() -> None:
    log_prior, log_lik = _logistic_grid()
    erased = np.arange(40) < 15
    log_post = log_prior + log_lik(np.arange(40)) + 123.0  # unnormalised is fine
    unlearned = grid_unlearn(log_post, log_lik(erased))
    retrained = log_prior + log_lik(~erased)
    retrained -= np.logaddexp.reduce(retrained.ravel())
    assert unlearned.dtype == tf.float64 and unlearned.shape == (41, 41)
    np.testing.assert_allclose(unlearned.numpy(), retrained, atol=1e-10, rtol=0)
    assert np.exp(unlearned.numpy()).sum() == pytest.approx(1.0, abs=1e-12)


def test_grid_unlearn_keeps_zero_mass_cells() -> None:
    log_post = np.array([[-np.inf, np.log(0.2)], [np.log(0.3), np.log(0.5)]])  # a zero-mass cell
    erased = np.array([[-1.0, -2.0], [-0.5, 0.0]])
    out = grid_unlearn(tf.constant(log_post), tf.constant(erased)).numpy()
    assert out[0, 0] == -np.inf
    expected = np.array([0.2 * np.e**2, 0.3 * np.e**0.5, 0.5])
    np.testing.assert_allclose(np.exp(out).ravel()[1:], expected / expected.sum(), rtol=1e-12)


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=seeds)
def test_grid_unlearn_is_a_probability_mass_function_of_any_shape(shape, seed) -> None:
    rng = np.random.default_rng(seed)
    log_post, erased = 50.0 * rng.normal(size=shape), 50.0 * rng.normal(size=shape)
    copies = log_post.copy(), erased.copy()
    out = grid_unlearn(log_post, erased).numpy()
    assert out.shape == tuple(shape)
    assert np.exp(out).sum() == pytest.approx(1.0, abs=1e-12)
    difference = log_post - erased  # the result is this, shifted by a constant
    np.testing.assert_allclose(out - out.ravel()[0], difference - difference.ravel()[0], atol=1e-9)
    np.testing.assert_array_equal(log_post, copies[0])
    np.testing.assert_array_equal(erased, copies[1])


def test_grid_unlearn_rejects_bad_input() -> None:
    ok = np.zeros((3, 3))
    with pytest.raises(ValueError, match="erased_log_likelihood must have the shape"):
        grid_unlearn(ok, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="log_posterior contains NaN"):
        grid_unlearn(np.where(np.eye(3) > 0, np.nan, 0.0), ok)
    with pytest.raises(ValueError, match="log_posterior contains NaN or \\+inf"):
        grid_unlearn(np.where(np.eye(3) > 0, np.inf, 0.0), ok)
    with pytest.raises(ValueError, match="log_posterior has no finite entry"):
        grid_unlearn(np.full((3, 3), -np.inf), ok)
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="erased_log_likelihood contains NaN"):
            grid_unlearn(ok, np.where(np.eye(3) > 0, bad, 0.0))
    with pytest.raises(TypeError, match="log_posterior"):
        grid_unlearn("posterior", ok)
    with pytest.raises(TypeError, match="erased_log_likelihood"):
        grid_unlearn(ok, None)


# --- the NumPy input check this module added to unlearnkit._validation ----------------


def test_as_float64_array_converts_and_checks() -> None:
    from unlearnkit._validation import as_float64_array

    array = np.arange(6.0).reshape(2, 3)
    assert as_float64_array(array, "a") is array  # no copy of float64 input
    converted = as_float64_array([[1, 2, 3]], "a", shape=[None, 3])
    assert converted.dtype == np.float64 and converted.shape == (1, 3)
    assert as_float64_array(tf.constant([True, False]), "a", ndim=1).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="a must have shape"):
        as_float64_array(array, "a", shape=[2, 2])
    with pytest.raises(ValueError, match="a must have 1 dimension"):
        as_float64_array(array, "a", ndim=1)
    with pytest.raises(ValueError, match="a contains NaN"):
        as_float64_array([1.0, np.inf], "a")
    assert np.isnan(as_float64_array([np.nan], "a", check_finite=False)[0])
    for bad in ("text", None, np.array(["x"]), np.array([1j])):
        with pytest.raises(TypeError, match="a must"):
            as_float64_array(bad, "a")
