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
    DegenerateWeightsError,
    adjusted_log_likelihood,
    importance_ess,
    unlearn_reverse_kl,
)
from unlearnkit.exact import LinearGaussian
from unlearnkit.likelihoods import linear_gaussian_log_likelihood
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


@given(st.integers(1, 6), st.integers(0, 2**16))
def test_the_proposal_log_density_is_tfps(dim: int, seed: int) -> None:
    from unlearnkit.variational import reverse_kl

    rng = np.random.default_rng(seed)
    loc = tf.constant(rng.normal(size=dim))
    scale = tf.constant(np.tril(rng.normal(size=(dim, dim))) + 3.0 * np.eye(dim))
    z = tf.constant(5.0 * rng.normal(size=(9, dim)))
    expected = tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale).log_prob(z)
    np.testing.assert_allclose(reverse_kl._normal_log_density(z, loc, scale), expected, rtol=1e-12)


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
        float(gaussian_kl(q_remaining, unlearn_reverse_kl(
            q_full, erased, seed=0, num_samples=s, sampler="one-shot")))
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
    q_v = unlearn_reverse_kl(q_full, erased, lam, seed=seed, num_samples=num, sampler="one-shot")
    # Rebuild the same samples and weights by hand (round 0 uses the first split seed).
    from unlearnkit.seeds import split_seed
    from unlearnkit.variational.gaussian import moment_matched_normal

    z = moment_matched_normal(num, 3, split_seed(seed, 1)[0]).numpy()
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
        lam: unlearn_reverse_kl(
            q_full, erased, lam, seed=0, sampler="one-shot", return_info=True
        )[1].effective_sample_size
        for lam in (0.0, 1e-3, 0.1)
    }
    assert ess[0.0] < 100 < 10 * ess[0.0] < ess[1e-3] < ess[0.1]


def test_info_reports_the_importance_ess() -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    q_v, info = unlearn_reverse_kl(
        q_full, erased, seed=0, num_samples=5000, sampler="one-shot", return_info=True
    )
    assert isinstance(info, ReverseKLInfo)
    assert 1.0 < info.effective_sample_size < 5000 and info.num_samples == 5000
    assert info.jitter == 0.0 and info.seconds > 0.0
    assert info.num_rounds == 1 and info.ess_history == (info.effective_sample_size,)


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

    for sampler in ("one-shot", "adaptive"):
        with pytest.raises(DegenerateWeightsError, match="degenerate"):
            unlearn_reverse_kl(q_full, overwhelming, seed=0, num_samples=1000, sampler=sampler)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(lam=-1e-3), ValueError, "lam"),
        (dict(lam=1.01), ValueError, "lam"),
        (dict(num_samples=2), ValueError, "num_samples"),
        (dict(num_samples=1.5), TypeError, "num_samples"),
        (dict(seed=(1, 2, 3)), TypeError, "seed"),
        (dict(sampler="importance"), ValueError, "sampler"),
        (dict(target_ess=0.0), ValueError, "target_ess"),
        (dict(num_samples=1000, target_ess=2000), ValueError, "target_ess"),
        (dict(max_rounds=-1), ValueError, "max_rounds"),
        (dict(max_rounds=2.5), TypeError, "max_rounds"),
        (dict(stall_rounds=-1), ValueError, "stall_rounds"),
        (dict(widening=0.5), ValueError, "widening"),
        (dict(defensive_weight=1.0), ValueError, "defensive_weight"),
        (dict(defensive_weight=-0.1), ValueError, "defensive_weight"),
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


# --- the adaptive sampler -----------------------------------------------------------


def _quarter_erased(seed: int = 0, d: int = 5, n: int = 100, noise: float = 0.5):
    """Bayesian linear regression, d = 5: p(theta | D), p(theta | D_r) and log p(D_e | theta)
    when the quarter of the rows with the largest first feature is erased."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + np.sqrt(noise) * rng.normal(size=n)
    erase = X[:, 0] >= np.quantile(X[:, 0], 0.75)
    prior = LinearGaussian(np.zeros(d), np.eye(d), noise)
    return (
        prior.observe(X, y).distribution,
        prior.observe(X[~erase], y[~erase]).distribution,
        linear_gaussian_log_likelihood(X[erase], y[erase], noise),
    )


def test_adaptive_reaches_the_exact_posterior_when_a_quarter_is_erased() -> None:
    # The acceptance test of the adaptive sampler: lam = 0, where the target is the exact
    # Gaussian p(theta | D_r). Sampling from q(theta | D) alone starves.
    p_full, p_remaining, erased = _quarter_erased()
    q_v, info = unlearn_reverse_kl(p_full, erased, 0.0, seed=0, return_info=True)
    q_one, one = unlearn_reverse_kl(p_full, erased, 0.0, seed=0, sampler="one-shot",
                                    return_info=True)
    adaptive_kl = float(gaussian_kl(p_remaining, q_v))
    one_shot_kl = float(gaussian_kl(p_remaining, q_one))
    assert adaptive_kl < 0.01, adaptive_kl
    assert one_shot_kl > 0.03 > 0.01 > adaptive_kl, (one_shot_kl, adaptive_kl)
    assert info.num_rounds > 1 and info.effective_sample_size >= 10_000
    assert one.effective_sample_size < 1_000
    assert len(info.ess_history) == info.num_rounds
    assert info.ess_history[0] == pytest.approx(one.effective_sample_size)


def test_adaptive_returns_the_one_shot_estimate_when_it_is_healthy() -> None:
    q_full, erased = logistic_problem(n=10, n_erased=10)
    a, info = unlearn_reverse_kl(q_full, erased, seed=3, num_samples=2000, target_ess=100,
                                 return_info=True)
    b = unlearn_reverse_kl(q_full, erased, seed=3, num_samples=2000, sampler="one-shot")
    assert info.num_rounds == 1 and info.effective_sample_size > 100
    np.testing.assert_array_equal(a.loc, b.loc)
    np.testing.assert_array_equal(a.scale.to_dense(), b.scale.to_dense())


@pytest.mark.parametrize("dim", [1, 3])
def test_adaptive_follows_a_target_far_in_the_tails(dim) -> None:
    # log p(D_e | theta) = -c^T theta: the target q(theta) / p(D_e | theta) is N(c, I) for
    # q = N(0, I), here 12 standard deviations away, where q has no samples at all.
    shift = np.zeros(dim)
    shift[0] = 12.0
    q_full = tfd.MultivariateNormalTriL(
        loc=tf.zeros([dim], tf.float64), scale_tril=tf.eye(dim, dtype=tf.float64)
    )

    def erased(theta):
        return -tf.linalg.matvec(theta, tf.constant(shift))

    q_v, info = unlearn_reverse_kl(q_full, erased, seed=1, num_samples=20_000, return_info=True)
    np.testing.assert_allclose(q_v.loc, shift, atol=0.05)
    np.testing.assert_allclose(q_v.covariance(), np.eye(dim), atol=0.08)
    assert info.num_rounds > 2 and info.ess_history[0] < 10
    with pytest.raises(DegenerateWeightsError, match="one-shot"):
        unlearn_reverse_kl(q_full, erased, seed=1, num_samples=20_000, sampler="one-shot",
                           target_ess=100)
    with pytest.raises(DegenerateWeightsError, match="rounds"):
        unlearn_reverse_kl(q_full, erased, seed=1, num_samples=20_000, max_rounds=1)


def test_adaptive_is_reproducible_with_a_seed() -> None:
    p_full, _, erased = _quarter_erased()
    a = unlearn_reverse_kl(p_full, erased, seed=4, num_samples=5_000)
    b = unlearn_reverse_kl(p_full, erased, seed=4, num_samples=5_000)
    np.testing.assert_array_equal(a.loc, b.loc)
    np.testing.assert_array_equal(a.scale.to_dense(), b.scale.to_dense())


def test_target_ess_sets_when_the_adaptive_sampler_stops() -> None:
    p_full, _, erased = _quarter_erased()
    _, low = unlearn_reverse_kl(p_full, erased, seed=0, num_samples=5_000, target_ess=50,
                                return_info=True)
    _, high = unlearn_reverse_kl(p_full, erased, seed=0, num_samples=5_000,
                                 target_ess=4_000, return_info=True)
    assert low.num_rounds == 1 and low.effective_sample_size >= 50
    assert high.num_rounds > 1 and high.effective_sample_size >= 4_000


def test_adaptive_refuses_early_when_the_ess_stalls() -> None:
    # A spike far narrower than q_full: the proposals keep q_full's covariance (too few
    # effective samples to shrink it), so no round improves the effective sample size.
    q_full, _ = logistic_problem(n=10, n_erased=10)

    def overwhelming(theta):
        return 1e6 * tf.reduce_sum((theta - q_full.loc) ** 2, axis=-1)

    with pytest.raises(DegenerateWeightsError, match="stopped early") as early:
        unlearn_reverse_kl(q_full, overwhelming, seed=0, num_samples=1000, max_rounds=10)
    assert early.value.stalled and len(early.value.ess_history) == 3  # round 0 + 2 rounds
    with pytest.raises(DegenerateWeightsError) as every_round:
        unlearn_reverse_kl(q_full, overwhelming, seed=0, num_samples=1000, max_rounds=10,
                           stall_rounds=0)
    assert not every_round.value.stalled and len(every_round.value.ess_history) == 11
    assert "stopped early" not in str(every_round.value)
    # the rounds drawn before the stop are the same rounds
    assert every_round.value.ess_history[:3] == early.value.ess_history
    # never on the way to an answer: the pool grows each round, so the sampler does not stop
    p_full, _, erased = _quarter_erased()
    _, info = unlearn_reverse_kl(p_full, erased, seed=0, num_samples=5_000,
                                 target_ess=4_000, return_info=True)
    _, every = unlearn_reverse_kl(p_full, erased, seed=0, num_samples=5_000,
                                  target_ess=4_000, stall_rounds=0, return_info=True)
    assert info.ess_history == every.ess_history


def test_refuses_when_no_round_reaches_d_plus_one_effective_samples() -> None:
    # Rule (d), on the moons chapter's refusals (d = 20): every estimate jumps by more than
    # a standard deviation (so rule (b) never sees a stall), but no round ever had d + 1
    # effective samples; after 1 + 2 stall_rounds rounds the sampler gives up.
    from unlearnkit.variational.reverse_kl import _Pool, _stalled

    history, moves, pool = [3.4, 2.7, 10.3, 10.6], [5.0, 3.0, 4.0], _Pool(20)
    assert _stalled(history, moves, pool, 2000.0, 17, stall_rounds=2) is None
    reason = _stalled(history + [6.6], moves + [2.0], pool, 2000.0, 16, stall_rounds=2)
    assert "d + 1 = 21" in reason
    assert _stalled(history + [6.6], moves + [2.0], pool, 2000.0, 16, stall_rounds=0) is None
    # one round with d + 1 effective samples: the proposal may still be on its way
    assert _stalled(history + [25.0], moves + [2.0], pool, 2000.0, 16, stall_rounds=2) is None


def test_compiled_rounds_of_a_package_likelihood_match_the_eager_rounds() -> None:
    # A LinearPredictorLogLikelihood runs each round in one compiled graph; the same
    # function hidden behind a plain callable runs eagerly. Same samples, same belief.
    from unlearnkit.variational.linear_predictor import LinearPredictorLogLikelihood

    q_full, _ = logistic_problem(n=40, n_erased=10)
    dim = int(q_full.event_shape[0])
    rng = np.random.default_rng(0)
    projection = rng.normal(size=(dim, 10))
    signs = tf.constant(np.where(rng.random(10) < 0.5, -1.0, 1.0))
    package = LinearPredictorLogLikelihood(
        projection, np.zeros(10), lambda t: -tf.math.softplus(-signs * t)
    )
    # lam = 0.9999: no sample lies inside the region (the compiled round evaluates the
    # likelihood at the inside samples only: here at none), so q_full comes back
    for lam in (0.9999, 1e-3, 0.0):
        compiled, info_c = unlearn_reverse_kl(q_full, package, lam, seed=5,
                                              num_samples=4000, return_info=True)
        eager, info_e = unlearn_reverse_kl(q_full, lambda t: package(t), lam, seed=5,
                                           num_samples=4000, return_info=True)
        np.testing.assert_allclose(compiled.loc, eager.loc, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(compiled.scale.to_dense(), eager.scale.to_dense(),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(info_c.ess_history, info_e.ess_history, rtol=1e-9)
        if lam == 0.9999:
            np.testing.assert_allclose(compiled.loc, q_full.loc, atol=1e-12)
            np.testing.assert_allclose(compiled.covariance(), q_full.covariance(), atol=1e-12)
