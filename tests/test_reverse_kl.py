"""Tests for unlearnkit.reverse_kl: importance-weighted (reverse-KL) unlearning."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given
from hypothesis import strategies as st
from problems import linear_problem, logistic_problem

from unlearnkit import (
    adjusted_log_likelihood,
    importance_ess,
    unlearn_reverse_kl,
)
from unlearnkit.likelihoods import logistic_log_likelihood
from unlearnkit.metrics import gaussian_kl
from unlearnkit import ImportanceInfo as ReverseKLInfo
from unlearnkit.variational import importance_log_weights

tfd = tfp.distributions


# --- effective sample size and weights ----------------------------------------------


def test_importance_ess_of_equal_and_one_hot_weights() -> None:
    assert importance_ess(np.zeros(50)) == pytest.approx(50.0)
    assert importance_ess(np.array([0.0, -800.0, -900.0])) == pytest.approx(1.0)


@given(
    st.lists(st.floats(-50.0, 50.0), min_size=1, max_size=40),
    st.floats(-1e3, 1e3),
)
def test_importance_ess_is_between_one_and_s_and_scale_free(log_w, shift) -> None:
    log_w = np.array(log_w)
    ess = importance_ess(log_w)
    assert 1.0 - 1e-9 <= ess <= len(log_w) + 1e-9
    assert importance_ess(log_w + shift) == pytest.approx(ess, rel=1e-9)


def test_importance_ess_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="log_weights"):
        importance_ess(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="log_weights"):
        importance_ess(np.array([0.0, np.nan]))


def test_importance_log_weights_are_normalised_and_inverse_to_the_likelihood() -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    theta = q_full.sample(100, seed=(1, 2))
    log_w = importance_log_weights(adjusted_log_likelihood(erased, q_full, 0.0), theta)
    assert float(tf.reduce_logsumexp(log_w)) == pytest.approx(0.0, abs=1e-12)
    # w_s p(D_e | theta_s) is the same for every sample.
    product = (log_w + erased(theta)).numpy()
    np.testing.assert_allclose(product, product[0], atol=1e-10)


# --- unlearn_reverse_kl: correctness ------------------------------------------------


def test_recovers_the_exact_posterior_of_the_remaining_data() -> None:
    # p(theta | D) / p(D_e | theta) is the Gaussian p(theta | D_r), so the weighted
    # moments converge to it as the number of samples grows.
    q_full, q_remaining, erased, _ = linear_problem(n_erased=8)
    kls = [
        float(gaussian_kl(q_remaining, unlearn_reverse_kl(q_full, erased, seed=0, num_samples=s)))
        for s in (1_000, 100_000)
    ]
    assert kls[1] < 2e-3 < float(gaussian_kl(q_remaining, q_full))
    assert kls[1] < kls[0]


def test_lam_one_returns_q_full_unchanged() -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    q_v, info = unlearn_reverse_kl(q_full, erased, lam=1.0, seed=0, return_info=True)
    assert q_v is not q_full
    np.testing.assert_array_equal(q_v.loc, q_full.loc)
    np.testing.assert_array_equal(q_v.scale.to_dense(), q_full.scale.to_dense())
    assert info.effective_sample_size == pytest.approx(info.num_samples)


def test_closed_form_matches_weighted_numpy_moments() -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    lam, seed, num = 0.05, 3, 2000
    q_v = unlearn_reverse_kl(q_full, erased, lam, seed=seed, num_samples=num)
    # Rebuild the same samples and weights by hand.
    from unlearnkit.variational.gaussian import moment_matched_normal

    z = moment_matched_normal(num, 3, seed).numpy()
    theta = q_full.loc.numpy() + z @ q_full.scale.to_dense().numpy().T
    log_p_adj = adjusted_log_likelihood(erased, q_full, lam)(theta).numpy()
    w = np.exp(-log_p_adj - np.max(-log_p_adj))
    w /= w.sum()
    mean = w @ theta
    cov = (theta - mean).T @ ((theta - mean) * w[:, None])
    np.testing.assert_allclose(q_v.loc, mean, rtol=1e-10)
    np.testing.assert_allclose(q_v.covariance(), cov, rtol=1e-8, atol=1e-14)


def _two_mode_problem():
    """q_full = N(0, 1) and two erased points at x = 2 with labels 0 and 1: the target
    p~(theta | D_r) ∝ N(theta; 0, 1) / (sigmoid(2 theta) sigmoid(-2 theta)) has two modes.
    Returns q_full, the erased log-likelihood and the target's mean and variance (grid)."""
    q_full = tfd.MultivariateNormalTriL(
        loc=tf.zeros([1], tf.float64), scale_tril=tf.ones([1, 1], tf.float64)
    )
    erased = logistic_log_likelihood(np.full((2, 1), 2.0), np.array([0.0, 1.0]))
    grid = np.linspace(-15.0, 15.0, 30001)
    log_target = -0.5 * grid**2 - erased(grid[:, None]).numpy()
    density = np.exp(log_target - log_target.max())
    density /= density.sum()
    mean = density @ grid
    return q_full, erased, mean, density @ (grid - mean) ** 2


def test_reverse_kl_matches_the_moments_of_the_target() -> None:
    q_full, erased, mean, variance = _two_mode_problem()
    q_v = unlearn_reverse_kl(q_full, erased, seed=0, num_samples=1_000_000)
    assert float(q_v.mean()[0]) == pytest.approx(mean, abs=2e-2)
    assert float(q_v.covariance()[0, 0]) == pytest.approx(variance, rel=2e-2)


def test_eubo_underestimates_the_variance_that_reverse_kl_matches() -> None:
    # Mode seeking (EUBO, KL[q || p~]) against mass covering (reverse KL, KL[p~ || q]).
    from unlearnkit import unlearn_eubo

    q_full, erased, _, variance = _two_mode_problem()
    q_u = unlearn_eubo(q_full, erased, seed=0)
    q_v = unlearn_reverse_kl(q_full, erased, seed=0)
    assert float(q_u.covariance()[0, 0]) < 0.9 * variance
    assert float(q_v.covariance()[0, 0]) == pytest.approx(variance, rel=0.05)


def test_lam_rescues_degenerate_weights_when_the_erased_data_are_informative() -> None:
    # Erasing 40 of 60 points: 1 / p(D_e | theta) varies over many orders of magnitude.
    q_full, _, erased, _ = linear_problem(n_erased=40)
    ess = {
        lam: unlearn_reverse_kl(q_full, erased, lam, seed=0, return_info=True)[1].effective_sample_size
        for lam in (0.0, 1e-3, 0.1)
    }
    assert ess[0.0] < 100 < 10 * ess[0.0] < ess[1e-3] < ess[0.1]


def test_info_reports_the_importance_ess() -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    q_v, info = unlearn_reverse_kl(q_full, erased, seed=0, num_samples=5000, return_info=True)
    assert isinstance(info, ReverseKLInfo)
    assert 1.0 < info.effective_sample_size < 5000 and info.num_samples == 5000
    assert info.jitter == 0.0 and info.seconds > 0.0


# --- unlearn_reverse_kl: reliability ------------------------------------------------


def test_is_reproducible_with_a_seed() -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    a = unlearn_reverse_kl(q_full, erased, 0.01, seed=5, num_samples=1000)
    b = unlearn_reverse_kl(q_full, erased, 0.01, seed=5, num_samples=1000)
    c = unlearn_reverse_kl(q_full, erased, 0.01, seed=6, num_samples=1000)
    np.testing.assert_array_equal(a.loc, b.loc)
    np.testing.assert_array_equal(a.scale.to_dense(), b.scale.to_dense())
    assert not np.array_equal(a.loc, c.loc)


def test_does_not_modify_q_full() -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    loc, scale = q_full.loc.numpy().copy(), q_full.scale.to_dense().numpy().copy()
    unlearn_reverse_kl(q_full, erased, 0.01, seed=0, num_samples=1000)
    np.testing.assert_array_equal(q_full.loc, loc)
    np.testing.assert_array_equal(q_full.scale.to_dense(), scale)


def test_degenerate_weights_raise() -> None:
    # An erased "likelihood" that pins theta far more tightly than q_full's samples resolve.
    q_full, _ = logistic_problem(n=10, n_erased=10)

    def overwhelming(theta):
        return 1e6 * tf.reduce_sum((theta - q_full.loc) ** 2, axis=-1)

    with pytest.raises(ValueError, match="degenerate"):
        unlearn_reverse_kl(q_full, overwhelming, seed=0, num_samples=1000)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(lam=-1e-3), ValueError, "lam"),
        (dict(lam=1.01), ValueError, "lam"),
        (dict(num_samples=2), ValueError, "num_samples"),
        (dict(num_samples=1.5), TypeError, "num_samples"),
        (dict(seed=(1, 2, 3)), TypeError, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match) -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    with pytest.raises(error, match=match):
        unlearn_reverse_kl(q_full, erased, **kwargs)


def test_bad_beliefs_and_callables_raise() -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    with pytest.raises(TypeError, match="q_full"):
        unlearn_reverse_kl(tfd.MultivariateNormalTriL(loc=tf.zeros(3), scale_tril=tf.eye(3)), erased)
    with pytest.raises(TypeError, match="erased_log_likelihood"):
        unlearn_reverse_kl(q_full, None)
    with pytest.raises(ValueError, match="shape"):
        unlearn_reverse_kl(q_full, lambda t: t)
    with pytest.raises(ValueError, match="NaN"):
        unlearn_reverse_kl(q_full, lambda t: tf.sqrt(-tf.ones([t.shape[0]], tf.float64)))
