"""Tests for the Gaussian-mixture BIF pieces: data, energies, SVI fitting and SVI forgetting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given
from hypothesis import strategies as st

from unlearnkit import _validation
from unlearnkit import datasets
from unlearnkit.bif import (
    GaussianMixtureModel,
    fit_svi,
    forget_svi,
    influence_unlearn,
    mixture,
    svi_noise,
)

tfd = tfp.distributions
MODEL = GaussianMixtureModel()


@pytest.fixture(scope="module")
def data():
    return datasets.make_gmm_data(400, seed=3)


@pytest.fixture(scope="module")
def svi_setup(data):
    noise = svi_noise(MODEL, 8, seed=1)
    fit = fit_svi(MODEL, data.points, noise, return_info=True)
    erased = np.random.default_rng(0).permutation(datasets.structured_removal(data, per_cluster=80))
    return noise, fit, erased


def _thetas(num=3, seed=0):
    rng = np.random.default_rng(seed)
    return tf.constant(datasets.TRUE_CENTRES.reshape(1, -1) + rng.normal(0, 1.5, (num, 8)))


# ------------------------------------------------------------------------------------ data


def test_data_shapes_and_reproducibility():
    a, b = datasets.make_gmm_data(2000, seed=0), datasets.make_gmm_data(2000, seed=0)
    assert a.points.shape == (2000, 2) and a.labels.shape == (2000,)
    np.testing.assert_array_equal(a.points, b.points)
    assert not np.allclose(a.points, datasets.make_gmm_data(2000, seed=1).points)
    assert np.bincount(a.labels).tolist() == [500] * 4
    # clusters 0 and 2 are elongated along x and y respectively
    var0, var2 = a.points[a.labels == 0].var(0), a.points[a.labels == 2].var(0)
    assert var0[0] > 10 * var0[1] and var2[1] > 10 * var2[0]


def test_structured_removal_takes_the_extreme_points():
    data = datasets.make_gmm_data(2000, seed=0)
    erased = datasets.structured_removal(data)
    assert erased.shape == (800,) and np.unique(erased).size == 800
    kept = datasets.remaining_indices(erased, 2000)
    zero = data.labels == 0
    removed0 = np.intersect1d(erased, np.flatnonzero(zero))
    kept0 = np.intersect1d(kept, np.flatnonzero(zero))
    assert removed0.size == 400 and data.points[removed0, 0].min() >= data.points[kept0, 0].max()
    two = np.flatnonzero(data.labels == 2)
    removed2, kept2 = np.intersect1d(erased, two), np.intersect1d(kept, two)
    assert removed2.size == 400 and data.points[removed2, 1].max() <= data.points[kept2, 1].min()
    with pytest.raises(ValueError, match="per_cluster"):
        datasets.structured_removal(data, per_cluster=501)


@pytest.mark.parametrize(
    "erased, error, message",
    [
        (np.arange(401), ValueError, "only 400"),
        (np.array([1, 1]), ValueError, "repeated"),
        (np.array([400]), ValueError, "outside"),
        (np.array([-1]), ValueError, "outside"),
        (np.array([0.5]), TypeError, "integer"),
        (np.zeros((2, 2), int), ValueError, "1-D"),
    ],
)
def test_bad_erased_indices(erased, error, message):
    with pytest.raises(error, match=message):
        _validation.check_erased_indices(erased, 400, "erased")


def test_kmeans_and_matching():
    data = datasets.make_gmm_data(2000, seed=0)
    centres = mixture.kmeans_centres(data.points, 4, seed=0)
    matched = mixture.match_centres(centres, data.centres)
    assert np.abs(matched - data.centres).max() < 0.2
    perm = np.array([2, 0, 3, 1])
    np.testing.assert_array_equal(mixture.match_centres(data.centres[perm], data.centres), data.centres)
    assert mixture.centre_distance(data.centres[perm], data.centres) == 0.0


# -------------------------------------------------------------------------------- energies


def test_log_likelihood_matches_tfp_mixture(data):
    theta = _thetas()
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(logits=tf.zeros([3, 4], tf.float64)),
        tfd.MultivariateNormalDiag(loc=MODEL.centres(theta), scale_diag=tf.ones([3, 4, 2], tf.float64)),
    )
    expected = tf.transpose(mixture.log_prob(data.points[:, None, :]))  # [3, n]
    np.testing.assert_allclose(MODEL.log_likelihood(theta, data.points), expected, rtol=1e-12)
    prior = tfd.MultivariateNormalDiag(tf.zeros(8, tf.float64), 10.0 * tf.ones(8, tf.float64))
    np.testing.assert_allclose(MODEL.f(theta), -prior.log_prob(theta), rtol=1e-12)


def test_svi_kl_matches_tfp():
    gamma = MODEL.svi_gamma(np.linspace(-2, 2, 8), np.linspace(0.1, 2.0, 8))
    q = tfd.MultivariateNormalDiag(gamma[:8], MODEL.svi_scales(gamma))
    prior = tfd.MultivariateNormalDiag(tf.zeros(8, tf.float64), 10.0 * tf.ones(8, tf.float64))
    np.testing.assert_allclose(MODEL.svi_f(gamma), tfd.kl_divergence(q, prior), rtol=1e-12)
    np.testing.assert_allclose(MODEL.svi_scales(gamma), np.linspace(0.1, 2.0, 8), rtol=1e-12)


@given(mask=st.lists(st.booleans(), min_size=400, max_size=400), seed=st.integers(0, 10))
def test_energy_of_remaining_data_is_a_subtraction(mask, seed):
    data = datasets.make_gmm_data(400, seed=3)
    erased = np.array(mask)
    theta = _thetas(2, seed)
    full = MODEL.energy(theta, data.points)
    removed = tf.reduce_sum(MODEL.h(theta, data.points[erased]), -1)
    remaining = MODEL.energy(theta, data.points[~erased])
    np.testing.assert_allclose(remaining, full - removed, rtol=1e-12, atol=1e-9)
    noise = svi_noise(MODEL, 4, seed=seed)
    gamma = tf.concat([theta[0], -3.0 * tf.ones(8, tf.float64)], 0)
    full = MODEL.svi_energy(gamma, data.points, noise)
    removed = tf.reduce_sum(MODEL.svi_h(gamma, data.points[erased], noise))
    remaining = MODEL.svi_energy(gamma, data.points[~erased], noise)
    np.testing.assert_allclose(float(remaining), float(full - removed), rtol=1e-12, atol=1e-9)


def test_closed_form_derivatives_match_autodiff(data):
    theta = _thetas()
    gradient, hessian = MODEL.energy_derivatives(theta, data.points)
    with tf.GradientTape() as outer:
        outer.watch(theta)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            energy = tf.reduce_sum(MODEL.energy(theta, data.points))
        auto_gradient = inner.gradient(energy, theta)
    auto_hessian = outer.batch_jacobian(auto_gradient, theta)
    np.testing.assert_allclose(gradient, auto_gradient, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(hessian, auto_hessian, rtol=1e-10, atol=1e-8)

    noise = svi_noise(MODEL, 6, seed=2)
    gamma = tf.concat([theta[0], tf.constant(np.linspace(-4.0, 1.0, 8))], 0)
    g_h, h_h = MODEL.svi_h_derivatives(gamma, data.points, noise)
    g_f, h_f = MODEL.svi_f_derivatives(gamma)
    with tf.GradientTape() as outer:
        outer.watch(gamma)
        with tf.GradientTape() as inner:
            inner.watch(gamma)
            energy = MODEL.svi_energy(gamma, data.points, noise)
        auto_gradient = inner.gradient(energy, gamma)
    auto_hessian = outer.jacobian(auto_gradient, gamma)
    np.testing.assert_allclose(g_h + g_f, auto_gradient, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(h_h + h_f, auto_hessian, rtol=1e-10, atol=1e-8)


def test_svi_noise_is_antithetic_and_reproducible():
    noise = svi_noise(MODEL, 16, seed=4)
    assert noise.shape == (16, 8)
    np.testing.assert_allclose(tf.reduce_mean(noise, 0), 0.0, atol=1e-15)
    np.testing.assert_array_equal(noise, svi_noise(MODEL, 16, seed=4))
    with pytest.raises(ValueError, match="even"):
        svi_noise(MODEL, 5)
    with pytest.raises(TypeError, match="seed"):
        svi_noise(MODEL, 4, seed=1.5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda d: MODEL.energy(tf.zeros([2, 7], tf.float64), d.points), "theta"),
        (lambda d: MODEL.energy(tf.zeros([2, 8], tf.float64), d.points[:, :1]), "points"),
        (lambda d: MODEL.energy(tf.fill([2, 8], np.nan), d.points), "theta"),
        (lambda d: MODEL.energy(tf.zeros([2, 8], tf.float64), np.full((3, 2), np.inf)), "points"),
        (lambda d: MODEL.svi_energy(tf.zeros(15, tf.float64), d.points, svi_noise(MODEL, 2)), "gamma"),
        (lambda d: MODEL.svi_energy(tf.zeros(16, tf.float64), d.points, tf.zeros([0, 8], tf.float64)), "noise"),
        (lambda d: GaussianMixtureModel(prior_scale=0.0), "prior_scale"),
        (lambda d: MODEL.svi_gamma(np.zeros(8), -np.ones(8)), "scale"),
    ],
)
def test_energies_reject_bad_input(data, call, message):
    with pytest.raises(ValueError, match=message):
        call(data)


def test_energies_reject_wrong_types(data):
    with pytest.raises(TypeError, match="theta"):
        MODEL.energy("theta", data.points)
    with pytest.raises(TypeError, match="num_components"):
        GaussianMixtureModel(num_components=2.0)


# --------------------------------------------------------------------------------------- SVI


def test_fit_svi_reaches_a_stationary_point(data, svi_setup):
    noise, fit, _ = svi_setup
    with tf.GradientTape() as tape:
        gamma = tf.identity(fit[0])
        tape.watch(gamma)
        energy = MODEL.svi_energy(gamma, data.points, noise)
    assert float(tf.norm(tape.gradient(energy, gamma))) < 1e-8
    assert fit[1].path.shape[1] == 16 and fit[1].path.shape[0] >= 2
    assert fit[1].converged
    centres = mixture.match_centres(tf.reshape(fit[0][:8], [4, 2]), data.centres)
    assert np.abs(centres - data.centres).max() < 0.3
    again = fit_svi(MODEL, data.points, noise)
    np.testing.assert_array_equal(fit[0], again)  # deterministic


@pytest.mark.parametrize("hessian", ["after", "before"])
def test_forget_svi_equals_influence_unlearn(data, svi_setup, hessian):
    noise, fit, erased = svi_setup
    keep = datasets.remaining_indices(erased, 400)
    after = tf.constant(data.points[keep])
    removed = tf.constant(data.points[erased])
    energy_points = after if hessian == "after" else tf.constant(data.points)
    expected = influence_unlearn(
        lambda g: MODEL.svi_energy(g, energy_points, noise),
        lambda g: tf.reduce_sum(MODEL.svi_h(g, removed, noise)),
        fit[0],
    )
    result = forget_svi(MODEL, fit[0], data.points, erased, noise, hessian=hessian)
    np.testing.assert_allclose(result, expected, rtol=1e-9, atol=1e-9)


def test_forget_svi_single_point_is_second_order_accurate(data, svi_setup):
    noise, fit, _ = svi_setup
    erased = np.array([17])
    keep = datasets.remaining_indices(erased, 400)
    refit = fit_svi(MODEL, data.points[keep], noise, initial=fit[0])
    for hessian in ("after", "before"):
        processed = forget_svi(MODEL, fit[0], data.points, erased, noise, hessian=hessian)
        error = float(tf.norm(processed - refit))
        moved = float(tf.norm(fit[0] - refit))
        assert error < 0.02 * moved, (hessian, error, moved)


def test_forget_svi_batch_and_chunks(data, svi_setup):
    noise, fit, erased = svi_setup
    keep = datasets.remaining_indices(erased, 400)
    refit = fit_svi(MODEL, data.points[keep], noise)

    def ratio(gamma):
        target = tf.reshape(refit[:8], [4, 2])
        return mixture.centre_distance(tf.reshape(gamma[:8], [4, 2]), target) / mixture.centre_distance(
            tf.reshape(fit[0][:8], [4, 2]), target
        )

    after = ratio(forget_svi(MODEL, fit[0], data.points, erased, noise, hessian="after"))
    before_once = ratio(forget_svi(MODEL, fit[0], data.points, erased, noise, hessian="before"))
    before_chunks = ratio(
        forget_svi(MODEL, fit[0], data.points, erased, noise, hessian="before", num_chunks=16)
    )
    assert after < 0.15, after
    assert before_once > 0.5, before_once  # one tangent step covers only part of a 40% removal
    assert before_chunks < 0.6 * before_once, (before_chunks, before_once)


def test_forget_svi_does_not_mutate_inputs(data, svi_setup):
    noise, fit, erased = svi_setup
    points, erased_copy, gamma = data.points.copy(), erased.copy(), fit[0].numpy().copy()
    gamma_np = fit[0].numpy()
    forget_svi(MODEL, gamma_np, data.points, erased, noise, num_chunks=3)
    np.testing.assert_array_equal(data.points, points)
    np.testing.assert_array_equal(erased, erased_copy)
    np.testing.assert_array_equal(gamma_np, gamma)
    np.testing.assert_array_equal(fit[0], gamma)


def test_forget_nothing_changes_nothing(data, svi_setup):
    noise, fit, _ = svi_setup
    result = forget_svi(MODEL, fit[0], data.points, np.array([], dtype=int), noise)
    np.testing.assert_array_equal(result, fit[0])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"erased": np.arange(401)}, ValueError, "only 400"),
        ({"hessian": "middle"}, ValueError, "hessian"),
        ({"num_chunks": 0}, ValueError, "num_chunks"),
        ({"num_chunks": 1000}, ValueError, "num_chunks"),
        ({"damping": -1.0}, ValueError, "damping"),
        ({"gamma": np.full(16, np.nan)}, ValueError, "gamma"),
        ({"points": np.zeros((400, 3))}, ValueError, "points"),
    ],
)
def test_forget_svi_rejects_bad_input(data, svi_setup, kwargs, error, message):
    noise, fit, erased = svi_setup
    args = {"gamma": fit[0], "points": data.points, "erased": erased[:10]}
    args.update(kwargs)
    other = {k: v for k, v in kwargs.items() if k not in ("gamma", "points", "erased")}
    with pytest.raises(error, match=message):
        forget_svi(MODEL, args["gamma"], args["points"], args["erased"], noise, **other)


def test_fit_svi_rejects_bad_input(data):
    noise = svi_noise(MODEL, 4)
    with pytest.raises(ValueError, match="points"):
        fit_svi(MODEL, np.full((10, 2), np.nan), noise)
    with pytest.raises(ValueError, match="noise"):
        fit_svi(MODEL, data.points, tf.zeros([4, 3], tf.float64))
    with pytest.raises(ValueError, match="initial"):
        fit_svi(MODEL, data.points, noise, initial=np.zeros(3))
    with pytest.raises(ValueError, match="initial_scale"):
        fit_svi(MODEL, data.points, noise, initial_scale=0.0)
    with pytest.raises(ValueError, match="tolerance"):
        fit_svi(MODEL, data.points, noise, tolerance=-1.0)
    with pytest.raises(ValueError, match="newton_steps"):
        fit_svi(MODEL, data.points, noise, newton_steps=-1)


def test_non_positive_definite_hessian_needs_explicit_damping(data):
    """At a point that is not a minimiser, the SVI Hessian can be indefinite."""
    noise = svi_noise(MODEL, 4, seed=0)
    middle = np.zeros(8)  # every centre at the origin: a saddle of the mixture energy
    gamma = MODEL.svi_gamma(middle, np.full(8, 0.5))
    with pytest.raises(ValueError, match="not positive"):
        forget_svi(MODEL, gamma, data.points, np.arange(5), noise)
    result = forget_svi(MODEL, gamma, data.points, np.arange(5), noise, damping=1e3)
    assert np.isfinite(result.numpy()).all()
    assert math.isfinite(float(tf.norm(result)))
