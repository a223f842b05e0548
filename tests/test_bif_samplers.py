"""Tests for SGLD / SGHMC, and for forgetting applied to the samples of the Gaussian mixture."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from unlearnkit import NotPositiveDefiniteError, SamplerInfo
from unlearnkit import datasets
from unlearnkit.bif import (
    SGHMC,
    SGLD,
    GaussianMixtureModel,
    forget_chains,
    forget_samples,
    influence_hessians,
    influence_unlearn,
    mixture,
    reweight_samples,
)

# Conjugate model: z_i ~ N(theta, I_2), theta ~ N(0, PRIOR_VAR I_2).
PRIOR_VAR = 4.0
RNG = np.random.default_rng(7)
POINTS = RNG.normal([1.0, -0.5], 1.0, size=(40, 2))
POST_PRECISION = len(POINTS) + 1.0 / PRIOR_VAR
POST_MEAN = POINTS.sum(0) / POST_PRECISION
POST_VAR = 1.0 / POST_PRECISION
NUM_CHAINS = 1000


def gaussian_h(theta, points):
    """-log N(z | theta, I) up to a constant: theta [C, 2], points [n, 2] or [C, b, 2]."""
    return 0.5 * tf.reduce_sum((points - theta[:, None, :]) ** 2, -1)


def gaussian_f(theta):
    return 0.5 * tf.reduce_sum(theta**2, -1) / PRIOR_VAR


def _check_posterior(samples, check_variance=True):
    samples = samples.numpy()
    mean_error = np.abs(samples.mean(0) - POST_MEAN)
    assert (mean_error < 4.0 * np.sqrt(POST_VAR / NUM_CHAINS)).all(), mean_error
    if check_variance:  # relative standard error of a variance from C draws: sqrt(2 / C)
        ratio = samples.var(0) / POST_VAR
        assert (np.abs(ratio - 1.0) < 4.0 * np.sqrt(2.0 / NUM_CHAINS) + 0.02).all(), ratio


SAMPLERS = {
    "sgld": lambda batch: SGLD(
        gaussian_h, gaussian_f, step_size=1e-3, batch_size=batch, num_steps=600, record_every=20
    ),
    "sghmc": lambda batch: SGHMC(
        gaussian_h,
        gaussian_f,
        learning_rate=1e-3,
        momentum_decay=0.3,
        batch_size=batch,
        num_steps=600,
        record_every=20,
    ),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_full_batch_sampler_reaches_the_conjugate_posterior(name):
    samples, info = SAMPLERS[name](None).sample(
        POINTS, np.zeros((NUM_CHAINS, 2)), seed=3, return_info=True
    )
    assert isinstance(info, SamplerInfo)
    assert samples.shape == (NUM_CHAINS, 2)
    assert info.trace.shape == (30, NUM_CHAINS, 2)
    np.testing.assert_array_equal(info.trace[-1], samples)
    _check_posterior(samples)


@pytest.mark.parametrize("name", SAMPLERS)
def test_minibatch_sampler_reaches_the_posterior_mean(name):
    # Minibatch noise inflates the variance a little (no noise correction); the mean is unbiased.
    samples = SAMPLERS[name](10).sample(POINTS, np.zeros((NUM_CHAINS, 2)), seed=4)
    _check_posterior(samples, check_variance=False)
    assert np.all(samples.numpy().var(0) < 2.0 * POST_VAR)


@pytest.mark.parametrize("name", SAMPLERS)
def test_seeds_reproduce_runs(name):
    sampler = SAMPLERS[name](10)
    initial = np.zeros((5, 2))
    a = sampler.sample(POINTS, initial, seed=1, return_info=True)[1].trace
    b = sampler.sample(POINTS, initial, seed=1, return_info=True)[1].trace
    np.testing.assert_array_equal(a, b)
    c = sampler.sample(POINTS, initial, seed=(1, 2))
    assert not np.allclose(a[-1], c)
    d = sampler.sample(POINTS, initial, seed=tf.constant([1, 2], tf.int32))
    np.testing.assert_array_equal(c, d)


def test_run_length_and_recording_can_change_per_call():
    sampler = SAMPLERS["sgld"](10)
    initial = np.zeros((3, 2))
    samples, info = sampler.sample(POINTS, initial, num_steps=7, record_every=1, seed=2, return_info=True)
    assert info.trace.shape == (7, 3, 2) and info.num_steps == 7
    np.testing.assert_array_equal(info.trace[-1], samples)
    # a longer run with the same seed starts with the same steps
    _, longer = sampler.sample(POINTS, initial, num_steps=14, record_every=1, seed=2, return_info=True)
    np.testing.assert_array_equal(longer.trace[:7], info.trace)
    with pytest.raises(ValueError, match="multiple"):
        sampler.sample(POINTS, initial, num_steps=7, record_every=2)
    with pytest.raises(ValueError, match="num_steps"):
        sampler.sample(POINTS, initial, num_steps=0)


def test_sampler_does_not_mutate_inputs():
    points, initial = POINTS.copy(), np.ones((4, 2))
    initial_copy = initial.copy()
    SAMPLERS["sgld"](10).sample(points, initial, seed=0)
    np.testing.assert_array_equal(points, POINTS)
    np.testing.assert_array_equal(initial, initial_copy)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: SGLD(gaussian_h, gaussian_f, step_size=0.0), ValueError, "step_size"),
        (lambda: SGLD(gaussian_h, gaussian_f, step_size=np.nan), ValueError, "step_size"),
        (lambda: SGLD("h", gaussian_f, step_size=1e-3), TypeError, "h must be callable"),
        (lambda: SGLD(gaussian_h, gaussian_f, step_size=1e-3, batch_size=0), ValueError, "batch_size"),
        (lambda: SGLD(gaussian_h, gaussian_f, step_size=1e-3, num_steps=15, record_every=10), ValueError, "multiple"),
        (lambda: SGHMC(gaussian_h, gaussian_f, learning_rate=1e-3, momentum_decay=1.5), ValueError, "momentum_decay"),
        (lambda: SGHMC(gaussian_h, gaussian_f, learning_rate=-1.0), ValueError, "learning_rate"),
    ],
)
def test_bad_sampler_settings(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_sampler_inputs():
    sampler = SAMPLERS["sgld"](10)
    with pytest.raises(ValueError, match="initial"):
        sampler.sample(POINTS, np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="initial"):
        sampler.sample(POINTS, np.zeros(2))
    with pytest.raises(ValueError, match="points"):
        sampler.sample(np.zeros((0, 2)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="seed"):
        sampler.sample(POINTS, np.zeros((3, 2)), seed=1.5)
    model = GaussianMixtureModel()
    mixture_sampler = SGLD(model.h, model.f, step_size=1e-3, num_steps=10, record_every=10)
    with pytest.raises(ValueError, match="theta"):
        mixture_sampler.sample(POINTS, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="f must return"):
        SGLD(gaussian_h, lambda t: t, step_size=1e-3, num_steps=10, record_every=10).sample(
            POINTS, np.zeros((3, 2))
        )
    with pytest.raises(ValueError, match="h must return"):  # [C, 1] instead of [C, b]
        SGLD(
            lambda t, z: tf.reduce_sum(gaussian_h(t, z), -1, keepdims=True),
            gaussian_f,
            step_size=1e-3,
            num_steps=10,
            record_every=10,
        ).sample(POINTS, np.zeros((3, 2)))
    diverging = SGLD(gaussian_h, gaussian_f, step_size=10.0, batch_size=None, num_steps=200)
    with pytest.raises(ValueError, match="diverged"):
        diverging.sample(POINTS, np.zeros((3, 2)))


# ------------------------------------------------------------------------------ forgetting

MODEL = GaussianMixtureModel()
MIXTURE = dict(log_likelihood=MODEL.log_likelihood, log_prior=MODEL.log_prior)
CLOSED_FORM = dict(log_likelihood_derivatives=MODEL.log_likelihood_derivatives)


def _forget(samples, points, erased, **options):
    return forget_samples(samples, MODEL.log_likelihood, MODEL.log_prior, points, erased, **options)


@pytest.fixture(scope="module")
def gmm_samples():
    data = datasets.make_gmm_data(400, seed=5)
    centres = mixture.kmeans_centres(data.points, 4, seed=0).reshape(-1)
    initial = centres + 0.1 * np.random.default_rng(0).standard_normal((64, 8))
    sampler = SGLD(MODEL.h, MODEL.f, step_size=1e-3, batch_size=50, num_steps=400, record_every=400)
    samples = sampler.sample(data.points, initial, seed=0)
    erased = np.random.default_rng(1).permutation(datasets.structured_removal(data, per_cluster=60))
    keep = datasets.remaining_indices(erased, len(data.points))
    retrained = sampler.sample(data.points[keep], samples, seed=9)
    return data, samples, erased, sampler, retrained


def test_closed_form_derivatives_give_the_autodiff_result(gmm_samples):
    data, samples, erased, _, _ = gmm_samples
    for method in ("newton", "transport"):
        auto = _forget(samples, data.points, erased, method=method)
        closed = _forget(samples, data.points, erased, method=method, **CLOSED_FORM)
        np.testing.assert_allclose(closed, auto, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("hessian", ["after", "before"])
def test_per_sample_newton_equals_influence_unlearn_per_sample(gmm_samples, hessian):
    data, samples, erased, _, _ = gmm_samples
    keep = datasets.remaining_indices(erased, len(data.points))
    energy_points = tf.constant(data.points[keep] if hessian == "after" else data.points)
    removed = tf.constant(data.points[erased])
    result = _forget(samples, data.points, erased, method="newton", hessian=hessian, **CLOSED_FORM)
    for j in range(0, 16, 5):
        expected = influence_unlearn(
            lambda t: MODEL.energy(t[None], energy_points)[0],
            lambda t: tf.reduce_sum(MODEL.h(t[None], removed)),
            samples[j],
        )
        np.testing.assert_allclose(result[j], expected, rtol=1e-9, atol=1e-9)


def test_transport_fixes_the_spread_that_the_newton_step_inflates(gmm_samples):
    data, samples, erased, _, retrained = gmm_samples
    newton = mixture.compare_samples(_forget(samples, data.points, erased, method="newton", **CLOSED_FORM),
                                     retrained, samples)
    transport = mixture.compare_samples(
        _forget(samples, data.points, erased, refine_steps=1, **CLOSED_FORM), retrained, samples
    )
    assert transport.distance_ratio < 0.2, transport
    assert np.all(np.abs(np.log(transport.sd_ratio)) < np.log(1.3)), transport.sd_ratio
    assert newton.sd_ratio.max() > 1.5, newton.sd_ratio  # clusters 0 and 2 lose 60 of 100 points
    assert transport.epsilon < 0.5 * newton.epsilon


def test_bif_chains_and_reweighting_on_the_mixture(gmm_samples):
    data, samples, erased, sampler, retrained = gmm_samples
    chains, info = forget_chains(
        samples, MODEL.log_likelihood, MODEL.log_prior, data.points, erased, sampler,
        num_chunks=4, expectation_steps=5, solver_iterations=8, hessian_batch_size=64, seed=3,
        return_info=True, **CLOSED_FORM,
    )
    assert info.sampler_steps == 4 * 5 * (1 + 8)
    assert mixture.compare_samples(chains, retrained, samples).distance_ratio < 0.5
    weights, importance = reweight_samples(samples, MODEL.log_likelihood, data.points, erased,
                                           return_info=True)
    assert importance.effective_sample_size < 5  # 120 points carry too much information
    comparison = mixture.compare_samples(samples, retrained, samples, weights=weights)
    assert comparison.epsilon == np.inf and np.isnan(comparison.epsilon_knn)


def test_inputs_not_mutated_and_chunks(gmm_samples):
    data, samples, erased, _, _ = gmm_samples
    samples_np, points, erased_copy = samples.numpy(), data.points.copy(), erased.copy()
    copy = samples_np.copy()
    once = _forget(samples_np, data.points, erased, method="newton", hessian="before", **CLOSED_FORM)
    chunked = _forget(samples_np, data.points, erased, method="newton", hessian="before", num_chunks=8,
                      **CLOSED_FORM)
    np.testing.assert_array_equal(samples_np, copy)
    np.testing.assert_array_equal(data.points, points)
    np.testing.assert_array_equal(erased, erased_copy)
    assert not np.allclose(once, chunked)


def test_indefinite_hessians_need_explicit_damping(gmm_samples):
    data, samples, _, _, _ = gmm_samples
    bad = samples.numpy().copy()
    bad[0, :2] = [0.0, 3.0]  # centre 0 of sample 0 midway between two clusters: a saddle
    hessians = influence_hessians(bad, MODEL.log_likelihood, MODEL.log_prior, data.points, np.arange(3),
                                  hessian="after", **CLOSED_FORM)
    eigenvalues = np.linalg.eigvalsh(hessians.numpy()).min(-1)
    assert eigenvalues[0] < 0 and (eigenvalues[1:] > 0).all()
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        _forget(bad, data.points, np.arange(3), method="newton", **CLOSED_FORM)
    damped = _forget(bad, data.points, np.arange(3), method="newton", damping=-eigenvalues[0] + 1.0,
                     **CLOSED_FORM)
    assert np.isfinite(damped.numpy()).all()
