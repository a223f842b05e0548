"""Forgetting for any model (forget_samples, forget_variational, forget_chains, reweight_samples,
fit_svi), tested on Bayesian linear regression, where p(theta | D_r) is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit import ImportanceInfo, NotPositiveDefiniteError
from unlearnkit.diagnostics import ForgettingInfo
from unlearnkit.bif import (
    SGLD,
    fit_svi,
    forget_chains,
    forget_samples,
    forget_variational,
    gaussian_transport_matrix,
    influence_hessians,
    reweight_samples,
)
from unlearnkit.exact import LinearGaussian

tfd = tfp.distributions

D, N, NOISE, PRIOR_VAR = 3, 300, 0.25, 4.0
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, D))
Y = X @ np.array([1.0, -1.0, 0.5]) + math.sqrt(NOISE) * RNG.normal(size=N)
ERASED = np.argsort(-X[:, 0])[:120]  # structured: the 40% with the largest x_0
KEEP = np.setdiff1d(np.arange(N), ERASED)
POINTS = (X, Y)
PACKED = np.c_[X, Y]  # one array [n, d + 1], for the samplers

FULL = LinearGaussian(np.zeros(D), PRIOR_VAR * np.eye(D), NOISE).observe(X, Y)
RETRAINED = FULL.unlearn(X[ERASED], Y[ERASED])
A = np.eye(D) / PRIOR_VAR + X.T @ X / NOISE  # posterior precisions
A_R = np.eye(D) / PRIOR_VAR + X[KEEP].T @ X[KEEP] / NOISE
MU, MU_R = FULL.posterior_mean, RETRAINED.posterior_mean
SIGMA_R = RETRAINED.posterior_covariance


def log_likelihood(theta, points):
    """Per datum: theta [S, d], points (X [n, d], y [n]) -> [S, n]."""
    x, y = points
    residuals = y[None, :] - tf.matmul(theta, x, transpose_b=True)
    return -0.5 * math.log(2.0 * math.pi * NOISE) - 0.5 * residuals**2 / NOISE


def packed_log_likelihood(theta, points):
    """Per datum for points [n, d + 1] (or [C, b, d + 1] minibatches, one per chain)."""
    x, y = points[..., :D], points[..., D]
    if points.shape.rank == 2:
        predictions = tf.matmul(theta, x, transpose_b=True)  # [S, n]
    else:
        predictions = tf.einsum("cbd,cd->cb", x, theta)
    return -0.5 * math.log(2.0 * math.pi * NOISE) - 0.5 * (y - predictions) ** 2 / NOISE


def log_prior(theta):
    return -0.5 * tf.reduce_sum(theta**2, -1) / PRIOR_VAR - 0.5 * D * math.log(2 * math.pi * PRIOR_VAR)


def exact_samples(num, seed=0):
    return FULL.distribution.sample(num, seed=tf.constant([seed, 1], tf.int32))


def linear_gradient_and_hessian(theta, points):
    """Closed-form derivatives of sum_i log p(z_i | theta) for the regression."""
    x, y = points
    residuals = y[None, :] - tf.matmul(theta, x, transpose_b=True)
    gradient = tf.matmul(residuals, x) / NOISE
    hessian = -tf.matmul(x, x, transpose_a=True) / NOISE
    return gradient, tf.broadcast_to(hessian, [tf.shape(theta)[0], D, D])


# ------------------------------------------------------------------------ the transport


def test_transport_matrix_carries_one_gaussian_onto_the_other():
    transport = gaussian_transport_matrix(A, A_R).numpy()
    np.testing.assert_allclose(transport, transport.T, atol=1e-12)
    assert np.linalg.eigvalsh(transport).min() > 0
    np.testing.assert_allclose(transport @ np.linalg.inv(A) @ transport.T, SIGMA_R, rtol=1e-9, atol=1e-12)
    # commuting precisions: the ratio of standard deviations
    np.testing.assert_allclose(gaussian_transport_matrix(np.diag([4.0, 9.0]), np.diag([1.0, 1.0])),
                               np.diag([2.0, 3.0]), atol=1e-12)
    diag = gaussian_transport_matrix(A, A_R, diagonal=True).numpy()
    np.testing.assert_allclose(np.diag(diag), np.sqrt(np.diag(A) / np.diag(A_R)), rtol=1e-12)
    with pytest.raises(NotPositiveDefiniteError, match="precision_to"):
        gaussian_transport_matrix(A, -np.eye(D))


def test_transported_samples_have_the_exact_retrained_mean_and_covariance():
    samples = exact_samples(4000)
    processed, info = forget_samples(samples, log_likelihood, log_prior, POINTS, ERASED, return_info=True)
    assert isinstance(info, ForgettingInfo) and info.method == "transport" and info.sampler_steps == 0
    processed = processed.numpy()
    # the mean is the retrained one exactly, whatever the samples
    np.testing.assert_allclose(processed.mean(0), MU_R, rtol=1e-9, atol=1e-12)
    # the deviations are mapped by T, which carries Sigma onto Sigma_r
    transport = gaussian_transport_matrix(A, A_R).numpy()
    centred = samples.numpy() - samples.numpy().mean(0)
    np.testing.assert_allclose(processed - MU_R, centred @ transport.T, rtol=1e-8, atol=1e-10)
    covariance = np.cov(processed.T, bias=True)
    assert np.linalg.norm(covariance - SIGMA_R) < 0.06 * np.linalg.norm(SIGMA_R)  # sampling error
    sd_ratio = np.sqrt(np.diag(covariance) / np.diag(SIGMA_R))
    assert np.all(np.abs(sd_ratio - 1.0) < 0.05), sd_ratio


def test_per_sample_newton_is_affine_and_too_wide():
    samples = exact_samples(4000).numpy()
    processed = forget_samples(samples, log_likelihood, log_prior, POINTS, ERASED, method="newton").numpy()
    expected = np.linalg.solve(A_R, A @ (samples - MU).T).T + MU_R  # mu_r + A_r^{-1} A (theta - mu)
    np.testing.assert_allclose(processed, expected, rtol=1e-8, atol=1e-10)
    sd_ratio = processed.std(0) / np.sqrt(np.diag(SIGMA_R))
    assert sd_ratio[0] > 1.15, sd_ratio  # the direction the removal weakened is inflated
    # the derivatives given in closed form give the same result
    closed = forget_samples(samples, log_likelihood, log_prior, POINTS, ERASED, method="newton",
                            log_likelihood_derivatives=linear_gradient_and_hessian)
    np.testing.assert_allclose(closed, processed, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("options", [dict(num_chunks=3), dict(num_chunks=3, refine_steps=2), dict(hessian="after", damping=0.0)])
def test_transport_stays_exact_in_chunks_and_with_refinement(options):
    samples = exact_samples(500, seed=2)
    processed = forget_samples(samples, log_likelihood, log_prior, POINTS, ERASED, **options).numpy()
    np.testing.assert_allclose(processed.mean(0), MU_R, rtol=1e-8, atol=1e-10)
    # the deviations are mapped linearly (a product of transports, one per chunk), and the
    # map carries the posterior covariance onto the retrained one
    centred = samples.numpy() - samples.numpy().mean(0)
    linear_map = np.linalg.lstsq(centred, processed - MU_R, rcond=None)[0].T
    np.testing.assert_allclose(centred @ linear_map.T, processed - MU_R, atol=1e-10)
    np.testing.assert_allclose(linear_map @ np.linalg.inv(A) @ linear_map.T, SIGMA_R, rtol=1e-7, atol=1e-12)


def test_tangent_hessian_moves_the_mean_only_part_of_the_way():
    samples = exact_samples(500, seed=3)
    processed = forget_samples(samples, log_likelihood, log_prior, POINTS, ERASED, hessian="before")
    moved = np.linalg.norm(processed.numpy().mean(0) - samples.numpy().mean(0))
    assert 0.2 < moved / np.linalg.norm(MU_R - samples.numpy().mean(0)) < 0.95


# -------------------------------------------------------------------------- variational


def test_variational_transport_is_exact_for_full_and_mean_field_fits():
    processed = forget_variational(FULL.distribution, log_likelihood, log_prior, POINTS, ERASED, seed=0)
    assert isinstance(processed, tfd.MultivariateNormalTriL)
    np.testing.assert_allclose(processed.mean(), MU_R, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(processed.covariance(), SIGMA_R, rtol=1e-8, atol=1e-12)
    # mean field: the optimum is N(mu, diag(1 / diag(A)))
    mean_field = tfd.MultivariateNormalDiag(tf.constant(MU), tf.constant(1.0 / np.sqrt(np.diag(A))))
    processed, info = forget_variational(
        mean_field, log_likelihood, log_prior, POINTS, ERASED, seed=0, return_info=True
    )
    assert info.method == "transport" and info.num_chunks == 1
    np.testing.assert_allclose(processed.mean(), MU_R, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(processed.stddev(), 1.0 / np.sqrt(np.diag(A_R)), rtol=1e-9)
    scale = processed.scale.to_dense().numpy()
    np.testing.assert_array_equal(scale, np.diag(np.diag(scale)))  # still mean field


def test_variational_influence_is_exact_in_the_mean_but_overshoots_the_scales():
    mean_field = tfd.MultivariateNormalDiag(tf.constant(MU), tf.constant(1.0 / np.sqrt(np.diag(A))))
    processed = forget_variational(
        mean_field, log_likelihood, log_prior, POINTS, ERASED, method="influence", num_samples=64, seed=1
    )
    np.testing.assert_allclose(processed.mean(), MU_R, rtol=1e-7, atol=1e-9)
    # With moment-matched noise the energy separates: in rho_i it is a s^2 / 2 - log s with
    # s = softplus(rho_i) and a = A_r,ii, and the step is one Newton step on it from the old
    # optimum s_0 = A_ii^{-1/2}; retraining would give a^{-1/2}.
    a, s0 = np.diag(A_R), 1.0 / np.sqrt(np.diag(A))
    rho = np.log(np.expm1(s0))
    d1, d2 = 1.0 / (1.0 + np.exp(-rho)), np.exp(-rho) / (1.0 + np.exp(-rho)) ** 2
    gradient = (a * s0 - 1.0 / s0) * d1
    curvature = (a + 1.0 / s0**2) * d1**2 + (a * s0 - 1.0 / s0) * d2
    newton = np.log1p(np.exp(rho - gradient / curvature))
    np.testing.assert_allclose(processed.stddev(), newton, rtol=1e-7)
    ratio = newton * np.sqrt(a)
    assert np.all(ratio > 1.01), ratio  # overshoots where the precision fell


def test_variational_inputs_are_not_mutated_and_seeds_reproduce():
    loc = tf.Variable(MU)
    belief = tfd.MultivariateNormalTriL(loc, tf.constant(np.linalg.cholesky(FULL.posterior_covariance)))
    a = forget_variational(belief, log_likelihood, log_prior, POINTS, ERASED, method="influence", seed=3, num_samples=16)
    b = forget_variational(belief, log_likelihood, log_prior, POINTS, ERASED, method="influence", seed=3, num_samples=16)
    np.testing.assert_array_equal(a.mean(), b.mean())
    np.testing.assert_array_equal(loc.numpy(), MU)


# -------------------------------------------------------------------------- reweighting


def test_reweighting_a_small_removal_recovers_the_posterior():
    samples = exact_samples(20000, seed=4).numpy()
    few = np.array([3, 50, 77])
    weights, info = reweight_samples(samples, log_likelihood, POINTS, few, return_info=True)
    assert isinstance(info, ImportanceInfo) and info.num_samples == 20000
    assert info.effective_sample_size > 1000
    np.testing.assert_allclose(weights.numpy().sum(), 1.0, rtol=1e-12)
    target = FULL.unlearn(X[few], Y[few])
    mean = weights.numpy() @ samples
    sd = np.sqrt(np.diag(target.posterior_covariance))
    assert np.all(np.abs(mean - target.posterior_mean) < 0.1 * sd)


def test_reweighting_loses_samples_as_more_is_erased():
    samples = exact_samples(2000, seed=5)
    _, few = reweight_samples(samples, log_likelihood, POINTS, ERASED[:5], return_info=True)
    _, many = reweight_samples(samples, log_likelihood, POINTS, ERASED, return_info=True)
    assert few.effective_sample_size > 0.5 * 2000
    assert many.effective_sample_size < 0.25 * 2000


# --------------------------------------------------------------- BIF's SG-MCMC forgetting


def _sampler(step_size=1e-4, batch_size=None):
    return SGLD(lambda t, z: -packed_log_likelihood(t, z), lambda t: -log_prior(t),
                step_size=step_size, batch_size=batch_size, num_steps=100, record_every=10)


def test_forget_chains_solvers_agree_and_count_sampler_steps():
    chains = exact_samples(200, seed=6)
    options = dict(num_chunks=2, expectation_steps=4, hessian="after", seed=7, return_info=True)
    exact, info = forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, _sampler(),
                                solver="exact", **options)
    by_cg, _ = forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, _sampler(),
                             solver="cg", tolerance=1e-12, **options)
    np.testing.assert_allclose(by_cg, exact, rtol=1e-8, atol=1e-9)
    assert info.sampler_steps == 8 and info.method == "continued sampling"
    _, info = forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, _sampler(),
                            solver="lissa", solver_iterations=3, continue_steps=10, **options)
    assert info.sampler_steps == 2 * 4 * (1 + 3) + 10


def test_forget_chains_without_sampling_is_the_per_sample_newton_step():
    """On a frozen chain the expectations are the chain's own state: BIF's SG-MCMC step is the
    per-sample Newton step, with its inflated spread."""
    chains = exact_samples(300, seed=8)
    frozen = _sampler(step_size=1e-16)
    processed = forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, frozen,
                              expectation_steps=2, solver="exact", hessian="after", seed=9)
    newton = forget_samples(chains, log_likelihood, log_prior, POINTS, ERASED, method="newton")
    np.testing.assert_allclose(processed, newton, rtol=1e-5, atol=1e-6)


def test_forget_chains_with_long_runs_shifts_every_chain_alike():
    """When each chain's expectation run mixes, every chain gets about the same shift: the
    processed chains keep the spread of p(theta | D), narrower than retraining's."""
    chains = exact_samples(200, seed=8)
    processed = forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED,
                              _sampler(step_size=2e-4), expectation_steps=600, solver="exact",
                              hessian="after", seed=9).numpy()
    sd_r = np.sqrt(np.diag(SIGMA_R))
    assert np.all(np.abs(processed.mean(0) - MU_R) < 0.3 * sd_r)
    newton = forget_samples(chains, log_likelihood, log_prior, POINTS, ERASED, method="newton").numpy()
    assert processed.std(0)[0] < sd_r[0] < newton.std(0)[0]


def test_lissa_converges_to_the_dense_solve_on_a_frozen_chain():
    chains = exact_samples(20, seed=10)
    frozen = _sampler(step_size=1e-14)
    options = dict(expectation_steps=2, hessian="after", seed=11)
    exact = forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, frozen, solver="exact", **options)
    largest = np.linalg.eigvalsh(A_R).max()
    lissa = forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, frozen, solver="lissa",
                          solver_iterations=400, lissa_scale=1.0 / largest, **options)
    np.testing.assert_allclose(lissa, exact, rtol=0, atol=3e-5)  # the chain drifts ~1e-7 a step
    with pytest.raises(ValueError, match="Neumann series"):
        forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, frozen, solver="lissa",
                      solver_iterations=250, lissa_scale=30.0 / largest, **options)


def test_forget_chains_rejects_bad_input():
    chains = exact_samples(4, seed=12)
    with pytest.raises(ValueError, match="solver"):
        forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, _sampler(), solver="newton")
    with pytest.raises(TypeError, match="sampler"):
        forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, object())
    with pytest.raises(TypeError, match="points"):
        forget_chains(chains, packed_log_likelihood, log_prior, POINTS, ERASED, _sampler())
    with pytest.raises(ValueError, match="lissa_scale"):
        forget_chains(chains, packed_log_likelihood, log_prior, PACKED, ERASED, _sampler(), lissa_scale=0.0)


# ------------------------------------------------------------------------- fit_svi


def test_stochastic_vi_fits_the_exact_posterior():
    initial = tfd.MultivariateNormalDiag(tf.zeros(D, tf.float64), tf.ones(D, tf.float64))
    options = dict(batch_size=50, num_samples=4, num_steps=3000, learning_rate=0.02, seed=0)
    q, info = fit_svi(log_likelihood, log_prior, POINTS, initial, family="full", return_info=True, **options)
    sd = np.sqrt(np.diag(FULL.posterior_covariance))
    assert np.all(np.abs(q.mean().numpy() - MU) < 0.3 * sd)
    assert np.all(np.abs(q.stddev().numpy() / sd - 1.0) < 0.15)
    assert info.path.shape == (301, D + D * (D + 1) // 2) and info.num_iterations == 3000
    again = fit_svi(log_likelihood, log_prior, POINTS, initial, family="full", **options)
    np.testing.assert_array_equal(q.mean(), again.mean())  # the seed fixes the run
    diagonal = fit_svi(log_likelihood, log_prior, POINTS, initial, **options)
    np.testing.assert_allclose(diagonal.stddev(), 1.0 / np.sqrt(np.diag(A)), rtol=0.15)


def test_fit_svi_rejects_bad_settings():
    initial = tfd.MultivariateNormalDiag(tf.zeros(D, tf.float64), tf.ones(D, tf.float64))
    with pytest.raises(ValueError, match="family"):
        fit_svi(log_likelihood, log_prior, POINTS, initial, family="blocks")
    with pytest.raises(ValueError, match="multiple"):
        fit_svi(log_likelihood, log_prior, POINTS, initial, num_steps=15, record_every=10)
    with pytest.raises(ValueError, match="learning_rate"):
        fit_svi(log_likelihood, log_prior, POINTS, initial, learning_rate=0.0)
    with pytest.raises(ValueError, match="diverged"):
        fit_svi(log_likelihood, log_prior, POINTS, initial, learning_rate=1e12, num_steps=50)
    with pytest.raises(TypeError, match="initial"):
        fit_svi(log_likelihood, log_prior, POINTS, "q")


# ---------------------------------------------------------------------- input checking


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"method": "affine"}, ValueError, "method"),
        ({"hessian": "during"}, ValueError, "hessian"),
        ({"damping": -1.0}, ValueError, "damping"),
        ({"num_chunks": 0}, ValueError, "num_chunks"),
        ({"num_chunks": 1000}, ValueError, "num_chunks"),
        ({"refine_steps": 1, "method": "newton"}, ValueError, "refine_steps"),
        ({"erased": np.array([0, 0])}, ValueError, "repeated"),
        ({"erased": np.array([N])}, ValueError, "outside"),
        ({"samples": np.zeros((4, D + 1))}, ValueError, "length of theta"),
        ({"samples": np.full((4, D), np.nan)}, ValueError, "samples"),
        ({"points": (X, Y[:-1])}, ValueError, "first dimension"),
        ({"points": (X, np.full(N, np.inf))}, ValueError, "points"),
        ({"log_likelihood": lambda t, z: tf.reduce_sum(log_likelihood(t, z), -1)}, ValueError, "log_likelihood must return"),
        ({"log_likelihood": lambda t, z: tf.constant(log_likelihood(t, z).numpy())}, ValueError, "no gradient"),
        ({"log_likelihood": "f"}, TypeError, "log_likelihood must be callable"),
        ({"log_prior": lambda t: tf.zeros([2, 2], tf.float64)}, ValueError, "log_prior must return"),
        ({"log_likelihood_derivatives": lambda t, z: linear_gradient_and_hessian(2.0 * t + 1.0, z)}, ValueError, "disagrees"),
    ],
)
def test_forget_samples_rejects_bad_input(kwargs, error, message):
    args = dict(samples=exact_samples(4, seed=13), log_likelihood=log_likelihood, log_prior=log_prior,
                points=POINTS, erased=ERASED)
    positional = {k: kwargs.pop(k) for k in list(kwargs) if k in args}
    args.update(positional)
    with pytest.raises(error, match=message):
        forget_samples(args["samples"], args["log_likelihood"], args["log_prior"], args["points"],
                       args["erased"], **kwargs)


def test_forget_variational_rejects_bad_input():
    belief = FULL.distribution
    with pytest.raises(ValueError, match="method"):
        forget_variational(belief, log_likelihood, log_prior, POINTS, ERASED, method="newton")
    with pytest.raises(ValueError, match="family"):
        forget_variational(belief, log_likelihood, log_prior, POINTS, ERASED, family="blocks")
    with pytest.raises(ValueError, match="diagonal"):
        forget_variational(belief, log_likelihood, log_prior, POINTS, ERASED, family="diagonal")
    with pytest.raises(ValueError, match="num_samples"):
        forget_variational(belief, log_likelihood, log_prior, POINTS, ERASED, num_samples=2)
    with pytest.raises(TypeError, match="belief"):
        forget_variational(MU, log_likelihood, log_prior, POINTS, ERASED)


def test_indefinite_average_hessian_needs_damping():
    def bumpy_prior(theta):  # strongly concave in theta_0: the remaining energy is not convex
        return 1000.0 * theta[:, 0] ** 2 - 0.5 * tf.reduce_sum(theta**2, -1)

    samples = exact_samples(50, seed=14)
    with pytest.raises(NotPositiveDefiniteError, match="damping"):
        forget_samples(samples, log_likelihood, bumpy_prior, POINTS, ERASED)
    hessians = influence_hessians(samples, log_likelihood, bumpy_prior, POINTS, ERASED, hessian="after")
    smallest = np.linalg.eigvalsh(hessians.numpy()).min()
    assert smallest < 0
    damped = forget_samples(samples, log_likelihood, bumpy_prior, POINTS, ERASED, damping=1.0 - smallest)
    assert np.isfinite(damped.numpy()).all()


def test_samples_and_data_are_not_mutated():
    samples = exact_samples(10, seed=15).numpy()
    copies = samples.copy(), X.copy(), Y.copy(), ERASED.copy()
    forget_samples(samples, log_likelihood, log_prior, POINTS, ERASED, num_chunks=2)
    reweight_samples(samples, log_likelihood, POINTS, ERASED)
    for after, before in zip((samples, X, Y, ERASED), copies):
        np.testing.assert_array_equal(after, before)
