"""Tests for unlearnkit.variational.lambda_selection: choosing lam without retraining."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from problems import linear_problem

from unlearnkit import unlearn_reverse_kl
from unlearnkit.exact import LinearGaussian
from unlearnkit.likelihoods import linear_gaussian_log_likelihood
from unlearnkit.metrics import gaussian_kl
from unlearnkit.variational import elbo
from unlearnkit.variational.lambda_selection import (
    DEFAULT_LAMBDAS,
    LambdaSelection,
    select_lambda,
    select_lambda_by_ess,
    validation_elbo,
)

tfd = tfp.distributions
NOISE = 0.5


def _problem(n: int = 60, n_erased: int = 15, seed: int = 0):
    """Exact beliefs of linear regression, with the remaining data's log-likelihood."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = X @ rng.normal(size=3) + math.sqrt(NOISE) * rng.normal(size=n)
    prior = LinearGaussian(np.zeros(3), np.eye(3), NOISE)
    p_full = prior.observe(X, y).distribution
    p_remaining = prior.observe(X[n_erased:], y[n_erased:]).distribution
    remaining = linear_gaussian_log_likelihood(X[n_erased:], y[n_erased:], NOISE)
    erased = linear_gaussian_log_likelihood(X[:n_erased], y[:n_erased], NOISE)
    belief_prior = tfd.MultivariateNormalTriL(
        loc=tf.zeros(3, tf.float64), scale_tril=tf.eye(3, dtype=tf.float64)
    )
    return p_full, p_remaining, remaining, erased, belief_prior, (X, y)


def test_validation_elbo_is_the_elbo_of_the_remaining_data() -> None:
    p_full, p_remaining, remaining, _, prior, _ = _problem()
    for belief in (p_full, p_remaining):
        assert validation_elbo(belief, remaining, prior, seed=3) == pytest.approx(
            float(elbo(belief, remaining, prior, num_samples=2000, seed=3)), rel=1e-12
        )


def test_validation_elbo_of_a_subset_is_unbiased_up_to_the_subset() -> None:
    # For the exact Gaussian likelihood the moment-matched expectation is exact, so the
    # scaled subset estimate differs from the full one only by the data it left out.
    p_full, _, remaining, _, prior, (X, y) = _problem(n=200, n_erased=20)
    rows = np.arange(20, 200)
    subsets = [np.random.default_rng(k).choice(rows, 90, replace=False) for k in range(40)]
    estimates = [
        validation_elbo(p_full, linear_gaussian_log_likelihood(X[s], y[s], NOISE), prior,
                        scale=180 / 90, seed=0)
        for s in subsets
    ]
    full = validation_elbo(p_full, remaining, prior, seed=0)
    assert abs(np.mean(estimates) - full) < 3 * np.std(estimates) / np.sqrt(len(estimates))


def test_select_lambda_prefers_the_belief_closest_to_the_exact_posterior() -> None:
    p_full, p_remaining, remaining, _, prior, _ = _problem()
    shifted = tfd.MultivariateNormalTriL(
        loc=p_remaining.loc + 0.3, scale_tril=p_remaining.scale.to_dense()
    )
    beliefs = {0.5: p_full, 1e-3: shifted, 0.0: p_remaining, 0.1: None}
    chosen = select_lambda(beliefs, remaining, prior)
    assert isinstance(chosen, LambdaSelection) and chosen.rule == "validation ELBO"
    assert chosen.lam == 0.0
    assert chosen.scores[0.1] == -math.inf
    # The score differences are the differences of KL[q || p(theta | D_r)].
    for lam in (0.5, 1e-3):
        gap = chosen.scores[0.0] - chosen.scores[lam]
        assert gap == pytest.approx(float(gaussian_kl(beliefs[lam], p_remaining)), rel=1e-6)


def test_select_lambda_on_reverse_kl_beliefs() -> None:
    p_full, p_remaining, remaining, erased, prior, _ = _problem(n_erased=30)
    beliefs = {lam: unlearn_reverse_kl(p_full, erased, lam, seed=0, num_samples=20_000)
               for lam in DEFAULT_LAMBDAS}
    chosen = select_lambda(beliefs, remaining, prior)
    closest = min(DEFAULT_LAMBDAS, key=lambda lam: float(gaussian_kl(beliefs[lam], p_remaining)))
    assert chosen.lam == closest


def test_select_lambda_by_ess() -> None:
    q_full, _, erased, _ = linear_problem(n_erased=40)
    chosen = select_lambda_by_ess(q_full, erased, num_samples=20_000)
    assert chosen.rule == "ESS floor"
    ess = [chosen.scores[lam] for lam in DEFAULT_LAMBDAS]
    assert ess[-1] < 0.01 * 20_000 <= chosen.scores[chosen.lam]
    assert chosen.lam == min(lam for lam in DEFAULT_LAMBDAS if chosen.scores[lam] >= 200)
    # A floor no threshold passes falls back to the largest threshold.
    strict = select_lambda_by_ess(q_full, erased, (0.0, 1e-9), min_ess_fraction=1.0,
                                  num_samples=2_000)
    assert strict.lam == 1e-9
    # Few erased points: every threshold passes, and lam = 0 is chosen.
    q_easy, _, erased_easy, _ = linear_problem(n_erased=2)
    assert select_lambda_by_ess(q_easy, erased_easy, num_samples=5_000).lam == 0.0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda b, r, p: select_lambda({}, r, p), ValueError, "at least one"),
        (lambda b, r, p: select_lambda({0.0: None}, r, p), ValueError, "no belief"),
        (lambda b, r, p: select_lambda([b], r, p), TypeError, "mapping"),
        (lambda b, r, p: select_lambda({1.5: b}, r, p), ValueError, "lams"),
        (lambda b, r, p: select_lambda({0.0: b}, r, p, scale=0.0), ValueError, "scale"),
        (lambda b, r, p: select_lambda({0.0: b}, None, p), TypeError, "log_likelihood"),
        (lambda b, r, p: validation_elbo(b, r, "prior"), TypeError, "prior"),
        (lambda b, r, p: select_lambda_by_ess(b, r, (0.0, 0.0)), ValueError, "repeated"),
        (lambda b, r, p: select_lambda_by_ess(b, r, min_ess_fraction=0.0), ValueError,
         "min_ess_fraction"),
    ],
)
def test_bad_arguments_raise(call, error, match) -> None:
    p_full, _, remaining, _, prior, _ = _problem()
    with pytest.raises(error, match=match):
        call(p_full, remaining, prior)
