"""Tests for unlearnkit.variational.reference: exact Gaussian optima by quadrature on a grid."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special

from unlearnkit import adjusted_log_likelihood
from unlearnkit.exact import LinearGaussian
from unlearnkit.likelihoods import linear_gaussian_log_likelihood, logistic_log_likelihood
from unlearnkit.metrics import gaussian_kl
from unlearnkit.variational.reference import (
    GridDensity,
    adjusted_target,
    axes_around,
    gaussian_expectation,
    tabulate,
)

tfd = tfp.distributions


def _gaussian(mean, cov):
    return tfd.MultivariateNormalTriL(
        loc=tf.constant(mean, tf.float64), scale_tril=tf.constant(np.linalg.cholesky(cov))
    )


P = _gaussian([0.3, -1.0], [[1.0, 0.6], [0.6, 2.0]])
AXES = (np.linspace(-8.0, 8.0, 321), np.linspace(-12.0, 10.0, 441))


def _p_grid() -> GridDensity:
    return GridDensity.from_function(P.log_prob, AXES)


def test_moments_of_a_gaussian_on_a_grid_are_exact() -> None:
    density = _p_grid()
    np.testing.assert_allclose(density.mean, P.mean(), atol=1e-10)
    np.testing.assert_allclose(density.covariance, P.covariance(), atol=1e-9)
    assert density.log_normaliser == pytest.approx(0.0, abs=1e-9)
    assert float(np.exp(special.logsumexp(density.log_pmf))) == pytest.approx(1.0)
    matched = density.moment_matched()
    assert float(gaussian_kl(P, matched)) < 1e-12


def test_divergences_to_a_gaussian_match_the_closed_form() -> None:
    density = _p_grid()
    q = _gaussian([0.8, -0.5], [[0.7, -0.1], [-0.1, 1.1]])
    assert density.inclusive_kl(q) == pytest.approx(float(gaussian_kl(P, q)), rel=1e-8)
    assert density.exclusive_kl(q) == pytest.approx(float(gaussian_kl(q, P)), rel=1e-8)
    assert density.exclusive_kl(P) == pytest.approx(0.0, abs=1e-10)


def test_exclusive_fit_of_a_gaussian_is_the_gaussian() -> None:
    density = _p_grid()
    start = _gaussian([1.0, 0.0], [[0.5, 0.0], [0.0, 0.5]])
    fitted, info = density.fit_exclusive_gaussian(start, return_info=True)
    assert info.converged
    assert float(gaussian_kl(fitted, P)) < 1e-8


def test_exclusive_fit_is_mode_seeking_and_inclusive_is_mass_covering() -> None:
    # A mixture of two well-separated Gaussians in 1-D: the moment-matched Gaussian straddles
    # both, the KL[q || p] minimiser sits on one mode with about its variance.
    axis = np.linspace(-30.0, 30.0, 8001)
    log_p = np.logaddexp(np.log(0.7) - 0.5 * (axis - 4.0) ** 2, np.log(0.3) - 0.5 * (axis + 4.0) ** 2)
    density = GridDensity([axis], log_p)
    matched = density.moment_matched()
    start = _gaussian([3.0], [[1.0]])
    fitted = density.fit_exclusive_gaussian(start)
    assert float(matched.variance()[0]) > 10.0
    assert float(fitted.mean()[0]) == pytest.approx(4.0, abs=0.05)
    assert float(fitted.variance()[0]) == pytest.approx(1.0, abs=0.05)
    assert density.exclusive_kl(fitted) < density.exclusive_kl(matched)
    assert density.inclusive_kl(matched) < density.inclusive_kl(fitted)


def test_exclusive_fit_tabulates_again_when_the_optimum_is_too_narrow_for_the_grid() -> None:
    narrow = _gaussian([0.2, 0.1], [[0.01, 0.0], [0.0, 0.02]])
    coarse = GridDensity.from_function(narrow.log_prob, (np.linspace(-1, 1, 41), np.linspace(-1, 1, 41)))
    # Cells of 0.05 for a standard deviation of 0.1: tabulated again around q.
    assert coarse.exclusive_kl(narrow) == pytest.approx(0.0, abs=1e-9)
    fitted = coarse.fit_exclusive_gaussian()
    assert float(gaussian_kl(fitted, narrow)) < 1e-6
    tabulated_only = GridDensity(coarse.axes, coarse.log_pmf)
    with pytest.raises(ValueError, match="not resolved"):
        tabulated_only.fit_exclusive_gaussian()
    with pytest.raises(ValueError, match="not resolved"):
        tabulated_only.exclusive_kl(narrow)


def test_tabulate_zooms_onto_the_mass_and_warns_when_cut_off() -> None:
    density = tabulate(P.log_prob, (np.linspace(-30, 30, 121), np.linspace(-30, 30, 121)), num_points=151)
    assert density.shape == (151, 151)
    assert float(gaussian_kl(P, density.moment_matched())) < 1e-8
    widths = [axis[-1] - axis[0] for axis in density.axes]
    assert widths[0] < 30 and widths[1] < 40
    with pytest.warns(UserWarning, match="cuts the density off"):
        tabulate(P.log_prob, (np.linspace(-1, 1, 21), np.linspace(-1, 1, 21)))


def test_axes_around_hold_the_mass() -> None:
    density = _p_grid()
    axes = axes_around(density, (11, 21), tail=1e-6, padding=0.0)
    assert [len(axis) for axis in axes] == [11, 21]
    for i, axis in enumerate(axes):
        sd = float(np.sqrt(P.covariance()[i, i]))
        assert axis[0] < float(P.mean()[i]) - 4 * sd and axis[-1] > float(P.mean()[i]) + 4 * sd


def test_expectation_and_probability_by_quadrature() -> None:
    density = _p_grid()
    second = density.expectation(lambda t: tf.stack([t[:, 0] ** 2, t[:, 0] * t[:, 1]], -1))
    expected = P.covariance().numpy() + np.outer(P.mean(), P.mean())
    np.testing.assert_allclose(second, [expected[0, 0], expected[0, 1]], rtol=1e-8)
    assert density.probability(lambda t: t[:, 0] > 0.3) == pytest.approx(0.5, abs=1e-2)


def test_gaussian_expectation_is_exact_for_polynomials_and_matches_monte_carlo() -> None:
    q = _gaussian([0.3, -1.0, 2.0], np.diag([1.0, 0.5, 2.0]) + 0.2)
    moments = gaussian_expectation(q, lambda t: tf.einsum("si,sj->sij", t, t), num_points=5)
    np.testing.assert_allclose(moments, q.covariance() + np.outer(q.mean(), q.mean()), rtol=1e-12)
    x = np.array([[1.0, 2.0, -0.5], [0.0, 1.0, 1.0]])
    probs = gaussian_expectation(q, lambda t: tf.sigmoid(tf.matmul(t, x, transpose_b=True)))
    samples = q.sample(400_000, seed=(1, 2))
    monte_carlo = tf.reduce_mean(tf.sigmoid(tf.matmul(samples, x, transpose_b=True)), 0)
    np.testing.assert_allclose(probs, monte_carlo, atol=3e-3)


def test_adjusted_target_is_q_over_the_adjusted_likelihood() -> None:
    rng = np.random.default_rng(0)
    erased = logistic_log_likelihood(rng.normal(size=(5, 2)), np.array([0, 1, 1, 0, 1.0]))
    theta = P.sample(50, seed=(3, 4))
    for lam in (0.0, 0.2):
        expected = P.log_prob(theta) - adjusted_log_likelihood(erased, P, lam)(theta)
        np.testing.assert_allclose(adjusted_target(P, erased, lam)(theta), expected)


def test_grid_optima_of_a_gaussian_target_are_the_retrained_posterior() -> None:
    # Linear regression: q(theta | D) / p(D_e | theta) is the Gaussian p(theta | D_r), so both
    # Gaussian optima (reverse KL and EUBO) are p(theta | D_r) itself.
    rng = np.random.default_rng(1)
    X = np.column_stack([np.ones(80), rng.uniform(-2, 2, 80)])
    y = X @ [0.5, -1.0] + 0.5 * rng.normal(size=80)
    erase = X[:, 1] > 1.0
    model = LinearGaussian(np.zeros(2), np.eye(2), 0.25)
    p_full = model.observe(X, y).distribution
    p_remaining = model.observe(X[~erase], y[~erase]).distribution
    erased = linear_gaussian_log_likelihood(X[erase], y[erase], 0.25)
    target = tabulate(adjusted_target(p_full, erased, 0.0), (np.linspace(-5, 5, 101),) * 2)
    assert float(gaussian_kl(p_remaining, target.moment_matched())) < 1e-8
    assert float(gaussian_kl(target.fit_exclusive_gaussian(), p_remaining)) < 1e-8


@pytest.mark.parametrize(
    "axes, values, error, match",
    [
        ((np.linspace(0, 1, 5),), np.zeros(4), ValueError, "shape"),
        ((np.array([0.0, 1.0, 3.0]),), np.zeros(3), ValueError, "equally spaced"),
        ((np.array([1.0]),), np.zeros(1), ValueError, "at least 2"),
        ((np.linspace(0, 1, 3),) * 4, np.zeros(81), ValueError, "between 1 and 3"),
        ((np.linspace(0, 1, 3),), np.array([0.0, np.nan, 0.0]), ValueError, "NaN"),
        ((np.linspace(0, 1, 3),), np.full(3, -np.inf), ValueError, "no finite"),
        (("abc",), np.zeros(3), TypeError, "axes"),
    ],
)
def test_bad_grids_raise(axes, values, error, match) -> None:
    with pytest.raises(error, match=match):
        GridDensity(axes, values)


def test_bad_functions_and_beliefs_raise() -> None:
    with pytest.raises(TypeError, match="log_density"):
        GridDensity.from_function(None, AXES)
    with pytest.raises(ValueError, match="shape"):
        GridDensity.from_function(lambda t: t, AXES)
    density = _p_grid()
    with pytest.raises(ValueError, match="event shape"):
        density.inclusive_kl(_gaussian([0.0], [[1.0]]))
    with pytest.raises(ValueError, match="not resolved"):  # off a grid without a function
        GridDensity(density.axes, density.log_pmf).exclusive_kl(_gaussian([40.0, 0.0], np.eye(2)))
    with pytest.raises(ValueError, match="at most 3"):
        gaussian_expectation(_gaussian(np.zeros(4), np.eye(4)), lambda t: t)


def test_exclusive_kl_tabulates_again_around_a_narrow_q() -> None:
    density = GridDensity.from_function(P.log_prob, (np.linspace(-8, 8, 81), np.linspace(-12, 10, 111)))
    narrow = _gaussian([0.5, -0.5], [[0.01, 0.002], [0.002, 0.02]])
    assert density.exclusive_kl(narrow) == pytest.approx(float(gaussian_kl(narrow, P)), rel=1e-6)
