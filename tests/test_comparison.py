"""Tests of unlearnkit.comparison: the head-to-head chapter's methods and measures."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit import comparison
from unlearnkit.errors import DegenerateWeightsError
from unlearnkit.likelihoods import linear_gaussian_log_likelihood
from unlearnkit.metrics import gaussian_kl

tfd = tfp.distributions


def _linear_gaussian(n=60, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ np.array([1.0, -0.5])[:d] + 0.5 * rng.normal(size=n)
    return X, y


def _belief(mean, covariance):
    mean = tf.constant(mean, tf.float64)
    return tfd.MultivariateNormalTriL(
        loc=mean, scale_tril=tf.linalg.cholesky(tf.constant(covariance, tf.float64))
    )


def test_newton_removal_is_exact_on_a_quadratic_energy():
    X, y = _linear_gaussian()
    noise, prior_variance = 0.25, 4.0
    erased = np.arange(10)

    def posterior(rows):
        precision = np.eye(2) / prior_variance + X[rows].T @ X[rows] / noise
        covariance = np.linalg.inv(precision)
        return _belief(covariance @ X[rows].T @ y[rows] / noise, covariance)

    log_lik_e = linear_gaussian_log_likelihood(X[erased], y[erased], noise)
    erased_energy = lambda g: -log_lik_e(g[None])[0]  # noqa: E731
    full = posterior(np.arange(60))
    result = comparison.newton_removal(full, erased_energy)
    exact = posterior(np.arange(10, 60))
    assert float(gaussian_kl(result, exact)) < 1e-10
    assert float(gaussian_kl(full, exact)) > 1e-3
    assert np.allclose(full.loc.numpy(), posterior(np.arange(60)).loc.numpy())  # not mutated


def test_weighted_gaussian_moments_and_degenerate_weights():
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(500, 3))
    weights = np.full(500, 1 / 500)
    belief = comparison.weighted_gaussian(samples, weights)
    assert np.allclose(belief.loc.numpy(), samples.mean(0))
    assert np.allclose(belief.covariance().numpy(), np.cov(samples.T, bias=True))
    one_hot = np.zeros(500)
    one_hot[3] = 1.0
    with pytest.raises(DegenerateWeightsError):
        comparison.weighted_gaussian(samples, one_hot)
    with pytest.raises(ValueError, match="weights"):
        comparison.weighted_gaussian(samples, weights[:10])


def _per_datum(theta, points):
    X, y = points
    return -tf.math.softplus(-(2 * y - 1) * tf.matmul(theta, X, transpose_b=True))


def test_run_methods_and_assess_on_a_small_logistic_task():
    from unlearnkit import fit_gaussian_vi
    from unlearnkit.bif.map_energy import map_energies
    from unlearnkit.likelihoods import logistic_log_likelihood

    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=(200, 2)), np.ones(200)])
    y = (rng.uniform(size=200) < 1 / (1 + np.exp(-X @ [1.5, -1.0, 0.3]))).astype(float)
    erase = np.zeros(200, bool)
    erase[rng.choice(200, 10, replace=False)] = True
    rows = np.flatnonzero(erase)
    prior = _belief(np.zeros(3), 4.0 * np.eye(3))
    q_full = fit_gaussian_vi(logistic_log_likelihood(X, y), prior, seed=0)
    before = q_full.loc.numpy().copy()
    energy, erased_energy = map_energies(logistic_log_likelihood, X, y, rows, prior_variance=4.0)
    outcomes = comparison.run_methods(
        q_full, _per_datum, prior.log_prob, (X, y), rows,
        lambda: fit_gaussian_vi(
            logistic_log_likelihood(X[~erase], y[~erase]), prior, initial=q_full, seed=1
        ),
        map_model=comparison.MapModel(energy, erased_energy),
        num_chunks=2, num_importance_samples=4000,
    )
    assert np.array_equal(q_full.loc.numpy(), before)
    assert list(outcomes)[0] == "retrain" and "Newton (Laplace)" in outcomes
    assert not outcomes["EUBO"].needs_remaining and outcomes["retrain"].needs_remaining
    retrained = outcomes["retrain"].belief
    full_kl = float(gaussian_kl(q_full, retrained))
    for name, outcome in outcomes.items():
        assert outcome.seconds >= 0.0
        if name in ("retrain", "Newton (Laplace)") or outcome.belief is None:
            continue
        # random removal of 10 of 200 points: every method ends closer than doing nothing
        assert float(gaussian_kl(outcome.belief, retrained)) < full_kl, name
    newton = outcomes["Newton (Laplace)"]
    assert float(gaussian_kl(newton.belief, newton.reference)) < 0.01
    probs = {"D_e": lambda t: tf.sigmoid(tf.matmul(t, X[erase], transpose_b=True))}
    member = lambda t: _per_datum(t, (X[erase], y[erase]))  # noqa: E731
    other = lambda t: _per_datum(t, (X[~erase][:50], y[~erase][:50]))  # noqa: E731
    measures = comparison.assess(q_full, retrained, probs, member, other, num_samples=200)
    assert set(measures) == {"KL", "avg KL D_e", "MIA AUC"}
    assert 0.0 <= measures["MIA AUC"] <= 1.0 and measures["avg KL D_e"] >= 0.0
    assert comparison.assess(retrained, retrained, probs, member, other)["KL"] < 1e-12


def test_run_methods_without_map_model_marks_newton_not_applicable():
    from unlearnkit import fit_gaussian_vi
    from unlearnkit.likelihoods import logistic_log_likelihood

    rng = np.random.default_rng(3)
    X = np.column_stack([rng.normal(size=(80, 1)), np.ones(80)])
    y = (rng.uniform(size=80) < 0.5).astype(float)
    prior = _belief(np.zeros(2), np.eye(2))
    q_full = fit_gaussian_vi(logistic_log_likelihood(X, y), prior, seed=0)
    outcomes = comparison.run_methods(
        q_full, _per_datum, prior.log_prob, (X, y), np.arange(5),
        lambda: q_full, num_chunks=2, num_importance_samples=2000,
    )
    newton = outcomes["Newton (Laplace)"]
    assert newton.belief is None and np.isnan(newton.seconds) and "n/a" in newton.note
    with pytest.raises(TypeError, match="retrain"):
        comparison.run_methods(q_full, _per_datum, prior.log_prob, (X, y), [0], None)


def test_synthetic_logistic_and_its_checks():
    X, y, erase = comparison.synthetic_logistic(500, 4, 20, seed=3)
    assert X.shape == (500, 4) and y.shape == (500,) and erase.sum() == 20
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert X[erase, 0].min() >= X[~erase, 0].max()  # the largest first features
    again = comparison.synthetic_logistic(500, 4, 20, seed=3)
    assert np.array_equal(X, again[0]) and np.array_equal(y, again[1])
    with pytest.raises(ValueError, match="num_erased"):
        comparison.synthetic_logistic(10, 2, 11)


def test_log_log_slopes_recovers_powers_and_skips_missing_times():
    sizes = [10, 100, 1000]
    times = [{"a": 2.0 * n, "b": 3.0 * n**0.5, "c": np.nan} for n in sizes]
    times[0]["b"] = np.nan
    slopes = comparison.log_log_slopes(sizes, times)
    assert abs(slopes["a"] - 1.0) < 1e-12 and abs(slopes["b"] - 0.5) < 1e-12
    assert "c" not in slopes
    with pytest.raises(ValueError, match="same length"):
        comparison.log_log_slopes([1, 2], times)


def test_logistic_scaling_times_times_every_method():
    seconds = comparison.logistic_scaling_times(300, 3, 10, run_bif=False, fit_samples=50)
    assert list(seconds) == list(comparison.SCALING_METHODS)
    assert np.isnan(seconds["BIF, one step, after"])
    assert all(t > 0 for name, t in seconds.items() if name != "BIF, one step, after")
