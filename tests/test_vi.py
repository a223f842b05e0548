"""Tests for unlearnkit.vi: Gaussian variational inference and the Laplace start."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit import fit_gaussian_vi
from unlearnkit import OptimizationInfo
from unlearnkit.exact import LinearGaussian
from unlearnkit.likelihoods import (
    linear_gaussian_log_likelihood,
    logistic_log_likelihood,
)
from unlearnkit.metrics import gaussian_kl
from unlearnkit.bif import newton_minimize
from unlearnkit.laplace import laplace_approximation as laplace_at
from unlearnkit.variational.gaussian_vi import elbo, negative_log_joint


def laplace_approximation(log_likelihood, prior):
    """The Laplace approximation at the MAP estimate (Newton's method from the prior mean)."""
    energy = negative_log_joint(log_likelihood, prior)
    return laplace_at(energy, newton_minimize(energy, prior.loc))

tfd = tfp.distributions

NOISE = 0.3


def _prior(d: int, scale: float = 1.0) -> tfd.MultivariateNormalTriL:
    return tfd.MultivariateNormalTriL(
        loc=tf.zeros([d], tf.float64), scale_tril=scale * tf.eye(d, dtype=tf.float64)
    )


def _linear(d: int = 4, n: int = 50, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + math.sqrt(NOISE) * rng.normal(size=n)
    exact = LinearGaussian(np.zeros(d), np.eye(d), NOISE).observe(X, y)
    return linear_gaussian_log_likelihood(X, y, NOISE), exact


def _logistic(d: int = 3, n: int = 80, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.normal(size=(n, d - 1)), np.ones((n, 1))])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-X @ rng.normal(size=d)))).astype(float)
    return logistic_log_likelihood(X, y)


def test_vi_with_a_gaussian_likelihood_is_the_exact_posterior() -> None:
    # The Gaussian family contains the posterior, and moment-matched samples make the
    # expected log-likelihood exact: VI lands on the posterior.
    log_likelihood, exact = _linear()
    q, info = fit_gaussian_vi(log_likelihood, _prior(4), seed=0, return_info=True)
    assert float(gaussian_kl(q, exact.distribution)) < 1e-10
    assert isinstance(info, OptimizationInfo)


def test_laplace_with_a_gaussian_likelihood_is_the_exact_posterior() -> None:
    log_likelihood, exact = _linear()
    q = laplace_approximation(log_likelihood, _prior(4))
    assert float(gaussian_kl(q, exact.distribution)) < 1e-10


def test_elbo_is_the_evidence_minus_the_kl_to_the_posterior() -> None:
    log_likelihood, exact = _linear()
    q = tfd.MultivariateNormalTriL(
        loc=exact.distribution.loc + 0.05, scale_tril=0.8 * exact.distribution.scale.to_dense()
    )
    value = float(elbo(q, log_likelihood, _prior(4), num_samples=100, seed=0))
    expected = exact.log_marginal_likelihood() - float(gaussian_kl(q, exact.distribution))
    assert value == pytest.approx(expected, abs=1e-8)


def test_vi_beats_laplace_on_the_elbo_for_logistic_regression() -> None:
    log_likelihood, prior = _logistic(), _prior(3, 10.0)
    laplace = laplace_approximation(log_likelihood, prior)
    q = fit_gaussian_vi(log_likelihood, prior, seed=0)
    judge = dict(num_samples=50_000, seed=9)
    assert float(elbo(q, log_likelihood, prior, **judge)) > float(
        elbo(laplace, log_likelihood, prior, **judge)
    )


def test_vi_from_a_different_start_reaches_the_same_optimum() -> None:
    log_likelihood, prior = _logistic(), _prior(3, 10.0)
    from_laplace = fit_gaussian_vi(log_likelihood, prior, seed=0)
    from_prior = fit_gaussian_vi(log_likelihood, prior, initial=prior, seed=0)
    assert float(gaussian_kl(from_prior, from_laplace)) < 1e-3


def test_vi_is_reproducible_and_does_not_modify_inputs() -> None:
    log_likelihood, prior = _logistic(), _prior(3, 10.0)
    start = laplace_approximation(log_likelihood, prior)
    loc, scale = start.loc.numpy().copy(), start.scale.to_dense().numpy().copy()
    a = fit_gaussian_vi(log_likelihood, prior, initial=start, seed=1, num_samples=500)
    b = fit_gaussian_vi(log_likelihood, prior, initial=start, seed=1, num_samples=500)
    np.testing.assert_array_equal(a.loc, b.loc)
    np.testing.assert_array_equal(a.scale.to_dense(), b.scale.to_dense())
    np.testing.assert_array_equal(start.loc, loc)
    np.testing.assert_array_equal(start.scale.to_dense(), scale)


def test_bad_inputs_raise() -> None:
    log_likelihood, prior = _logistic(), _prior(3)
    with pytest.raises(TypeError, match="log_likelihood"):
        fit_gaussian_vi(None, prior)
    with pytest.raises(TypeError, match="prior"):
        fit_gaussian_vi(log_likelihood, tfd.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="initial"):
        fit_gaussian_vi(log_likelihood, prior, initial=_prior(2))
    with pytest.raises(ValueError, match="num_samples"):
        fit_gaussian_vi(log_likelihood, prior, num_samples=2)
    with pytest.raises(ValueError, match="shape"):
        fit_gaussian_vi(lambda t: t, prior, initial=prior)
    with pytest.raises(ValueError, match="NaN"):
        fit_gaussian_vi(lambda t: tf.math.log(-t[:, 0]), prior, initial=prior)


# ------------------------------------------------------------- the whitened parameterisation


@pytest.mark.parametrize("dim", [1, 2, 5, 20])
def test_numpy_unpacking_and_final_belief_match_the_tensorflow_ones(dim: int) -> None:
    from unlearnkit.variational import gaussian

    rng = np.random.default_rng(dim)
    x = rng.normal(size=gaussian.num_parameters(dim))
    a, B = gaussian.unpack(tf.constant(x), dim)
    a_np, B_np = gaussian.unpack_numpy(x, dim)
    np.testing.assert_array_equal(a_np, a.numpy())
    np.testing.assert_allclose(B_np, B.numpy(), rtol=1e-15, atol=0.0)  # exp: NumPy's vs TF's
    scale = np.tril(rng.normal(size=(dim, dim))) + 3.0 * np.eye(dim)
    reference = tfd.MultivariateNormalTriL(tf.constant(rng.normal(size=dim)), tf.constant(scale))
    slow = gaussian.belief_from_whitened(reference, a, B)
    fast = gaussian.belief_from_packed(reference, x)
    np.testing.assert_allclose(fast.loc, slow.loc, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(fast.scale.to_dense(), slow.scale.to_dense(), rtol=1e-14, atol=1e-14)
    x[dim] = np.inf  # exp(inf) on the scale's diagonal
    with pytest.raises(ValueError, match="unlearned scale"):
        gaussian.belief_from_packed(reference, x)
    with pytest.raises(ValueError, match="unlearned mean"):
        gaussian.final_belief(reference, np.full(dim, np.nan), np.eye(dim))


@pytest.mark.parametrize("seed", [0, 7, -3, 2**40])
def test_moment_matched_samples_of_an_int_seed_are_those_of_its_stateless_seed(seed: int) -> None:
    from unlearnkit.seeds import sanitize_seed
    from unlearnkit.variational.gaussian import moment_matched_normal

    first = moment_matched_normal(50, 3, seed)  # cached per (S, d, seed)
    np.testing.assert_array_equal(first, moment_matched_normal(50, 3, np.int64(seed)))
    np.testing.assert_array_equal(first, moment_matched_normal(50, 3, sanitize_seed(seed)))
    np.testing.assert_allclose(np.mean(first.numpy(), axis=0), 0.0, atol=1e-14)
    np.testing.assert_allclose(first.numpy().T @ first.numpy() / 50, np.eye(3), atol=1e-12)
    assert not np.array_equal(first, moment_matched_normal(50, 3, seed + 1))
    with pytest.raises(ValueError, match="num_samples"):
        moment_matched_normal(3, 3, seed)


def test_large_draws_of_an_int_seed_are_not_cached_but_equal() -> None:
    from unlearnkit.seeds import sanitize_seed
    from unlearnkit.variational import gaussian

    num_samples = gaussian._CACHED_SAMPLES_LIMIT // 16 + 1  # just over the cache's limit
    first = gaussian.moment_matched_normal(num_samples, 16, 3)
    np.testing.assert_array_equal(first, gaussian.moment_matched_normal(num_samples, 16, sanitize_seed(3)))
    assert first is not gaussian.moment_matched_normal(num_samples, 16, 3)
    small = gaussian.moment_matched_normal(40, 16, 3)
    assert small is gaussian.moment_matched_normal(40, 16, 3)  # cached


def test_moment_matched_draws_are_cached_by_the_seed_value_not_its_type() -> None:
    from unlearnkit.seeds import sanitize_seed, split_seed
    from unlearnkit.variational import gaussian

    derived = split_seed(5, 2)[1]  # an eager stateless seed, as the samplers pass them
    first = gaussian.moment_matched_normal(40, 4, derived)
    assert first is gaussian.moment_matched_normal(40, 4, tuple(int(s) for s in derived.numpy()))
    assert first is gaussian.moment_matched_normal(40, 4, derived.numpy())
    in_graph = tf.function(lambda seed: gaussian.moment_matched_normal(40, 4, seed))(derived)
    np.testing.assert_allclose(first, in_graph, rtol=0, atol=1e-14)  # a graph draws the same numbers
    fresh = gaussian.moment_matched_normal(40, 4, None)  # None: a new draw every time
    assert not np.array_equal(fresh, gaussian.moment_matched_normal(40, 4, None))
    assert not np.array_equal(first, gaussian.moment_matched_normal(40, 4, sanitize_seed(5)))
