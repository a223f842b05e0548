"""Tests for unlearnkit.gp: reading, writing and scoring the inducing belief of a GPflow SVGP."""

from __future__ import annotations

import gpflow
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given
from hypothesis import strategies as st

from unlearnkit import gp

tfd = tfp.distributions

RNG = np.random.default_rng(1)
X = RNG.normal(size=(24, 2))
Y_CLASS = (X[:, :1] + 0.3 * RNG.normal(size=(24, 1)) > 0).astype(np.float64)
Y_REG = np.sin(X[:, :1]) + 0.1 * RNG.normal(size=(24, 1))


def _svgp(likelihood: str, *, whiten: bool, q_diag: bool = False, mean: bool = False):
    lik = gpflow.likelihoods.Bernoulli() if likelihood == "bernoulli" else gpflow.likelihoods.Gaussian(0.1)
    model = gpflow.models.SVGP(
        gpflow.kernels.SquaredExponential(lengthscales=1.2),
        lik,
        X[:5].copy(),
        whiten=whiten,
        q_diag=q_diag,
        mean_function=gpflow.mean_functions.Linear(A=[[0.3], [-0.2]], b=[0.1]) if mean else None,
    )
    Y = Y_CLASS if likelihood == "bernoulli" else Y_REG
    gpflow.optimizers.Scipy().minimize(
        model.training_loss_closure((X, Y)), model.trainable_variables, options={"maxiter": 30}
    )
    return model


_FIXED_MODEL = _svgp("bernoulli", whiten=True)  # shared by tests that only read it

MODELS = {
    "bernoulli-whitened": ("bernoulli", dict(whiten=True)),
    "bernoulli-unwhitened": ("bernoulli", dict(whiten=False)),
    "bernoulli-qdiag-whitened": ("bernoulli", dict(whiten=True, q_diag=True)),
    "gaussian-whitened-mean": ("gaussian", dict(whiten=True, mean=True)),
    "gaussian-unwhitened": ("gaussian", dict(whiten=False)),
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request):
    likelihood, options = MODELS[request.param]
    return _svgp(likelihood, **options)


def _labels(model):
    return Y_CLASS if isinstance(model.likelihood, gpflow.likelihoods.Bernoulli) else Y_REG


def _snapshot(model):
    return [v.numpy().copy() for v in model.variables]


def _assert_unchanged(model, snapshot):
    after = _snapshot(model)
    assert len(after) == len(snapshot)
    for before, now in zip(snapshot, after):
        np.testing.assert_array_equal(before, now)


def _random_belief(num_inducing: int, seed: int) -> tfd.MultivariateNormalTriL:
    rng = np.random.default_rng(seed)
    scale = np.tril(rng.normal(size=(num_inducing, num_inducing)) * 0.3)
    scale[np.diag_indices(num_inducing)] = rng.uniform(0.2, 1.0, size=num_inducing)
    return tfd.MultivariateNormalTriL(rng.normal(size=num_inducing), tf.constant(scale))


# --- inducing_posterior / with_inducing_posterior -------------------------------------


def test_round_trip_reproduces_predictions(model):
    snapshot = _snapshot(model)
    copy = gp.with_inducing_posterior(model, gp.inducing_posterior(model))
    assert copy is not model
    mean, var = model.predict_f(X)
    mean_copy, var_copy = copy.predict_f(X)
    np.testing.assert_allclose(mean_copy, mean, atol=1e-10)
    np.testing.assert_allclose(var_copy, var, atol=1e-10)
    np.testing.assert_allclose(copy.elbo((X, _labels(model))), model.elbo((X, _labels(model))), rtol=1e-10)
    _assert_unchanged(model, snapshot)


def test_inducing_posterior_is_in_u_space(model):
    q = gp.inducing_posterior(model)
    assert isinstance(q, tfd.MultivariateNormalTriL) and q.dtype == tf.float64
    assert q.event_shape.as_list() == [5]
    m = model.q_mu.numpy()[:, 0]
    q_sqrt = model.q_sqrt.numpy()
    S = np.diag(q_sqrt[:, 0] ** 2) if q_sqrt.ndim == 2 else q_sqrt[0] @ q_sqrt[0].T
    if model.whiten:  # u = L v
        kuu = model.kernel(model.inducing_variable.Z) + gpflow.config.default_jitter() * np.eye(5)
        L = np.linalg.cholesky(kuu)
        m, S = L @ m, L @ S @ L.T
    np.testing.assert_allclose(q.mean(), m, atol=1e-10)
    np.testing.assert_allclose(q.covariance(), S, atol=1e-10)


def test_with_inducing_posterior_sets_the_given_belief(model):
    q = _random_belief(5, seed=3)
    snapshot = _snapshot(model)
    new = gp.with_inducing_posterior(model, q)
    _assert_unchanged(model, snapshot)
    back = gp.inducing_posterior(new)
    np.testing.assert_allclose(back.mean(), q.mean(), atol=1e-9)
    np.testing.assert_allclose(back.covariance(), q.covariance(), atol=1e-9)
    # everything but q(u) is copied, not shared
    assert new.kernel is not model.kernel
    new.kernel.lengthscales.assign(3.0)
    _assert_unchanged(model, snapshot)


def test_qdiag_model_gets_a_full_triangular_q_sqrt():
    model = _svgp("bernoulli", whiten=False, q_diag=True)
    new = gp.with_inducing_posterior(model, _random_belief(5, seed=4))
    assert model.q_sqrt.shape.as_list() == [5, 1]
    assert new.q_sqrt.shape.as_list() == [1, 5, 5]
    assert new.q_sqrt.trainable == model.q_sqrt.trainable


def test_trainable_flags_are_kept():
    model = _svgp("bernoulli", whiten=True)
    gpflow.set_trainable(model.kernel, False)
    new = gp.with_inducing_posterior(model, gp.inducing_posterior(model))
    assert not new.kernel.lengthscales.trainable
    assert new.q_mu.trainable and new.q_sqrt.trainable


# --- erased_log_likelihood ------------------------------------------------------------


def test_predictive_kind_matches_predictive_density_by_monte_carlo(model):
    """log E_{q(u)} p(y_i | u) is the model's own predictive log density of point i."""
    snapshot = _snapshot(model)
    q = gp.inducing_posterior(model)
    u = q.sample(40_000, seed=(1, 2))
    Y = _labels(model)
    for i in range(4):
        log_lik = gp.erased_log_likelihood(model, X[i : i + 1], Y[i : i + 1], kind="predictive")
        values = log_lik(u).numpy()
        weights = np.exp(values - values.max())
        estimate = np.log(weights.mean()) + values.max()
        # delta method: sd(log mean) ≈ sd(w) / (sqrt(S) mean(w))
        tolerance = 5 * weights.std() / (np.sqrt(len(weights)) * weights.mean()) + 1e-6
        expected = model.predict_log_density((X[i : i + 1], Y[i : i + 1])).numpy()[0]
        assert abs(estimate - expected) < tolerance, (i, estimate, expected, tolerance)
    _assert_unchanged(model, snapshot)


def test_variational_kind_is_the_expected_log_likelihood_by_monte_carlo(model):
    """ℓ(u) = E_{p(f | x, u)} log p(y | f), checked by sampling f given u."""
    snapshot = _snapshot(model)
    u = gp.inducing_posterior(model).sample(3, seed=(3, 4))
    Y = _labels(model)
    log_lik = gp.erased_log_likelihood(model, X[:4], Y[:4])(u).numpy()  # default kind
    kuu = model.kernel(model.inducing_variable.Z) + gpflow.config.default_jitter() * np.eye(5)
    kuf = model.kernel(model.inducing_variable.Z, X[:4]).numpy()
    A = np.linalg.solve(kuu, kuf)
    mean = u.numpy() @ A + model.mean_function(X[:4]).numpy()[:, 0]  # [3, 4]
    var = model.kernel(X[:4], full_cov=False).numpy() - np.sum(kuf * A, 0)  # [4]
    f = mean[None] + np.sqrt(var) * np.random.default_rng(0).normal(size=(50_000, 3, 4))
    per_draw = model.likelihood.log_prob(X[:4], f[..., None], np.broadcast_to(Y[:4], (50_000, 3, 4, 1)))
    per_draw = tf.reshape(per_draw, (50_000, 3, 4)).numpy().sum(-1)  # [draws, 3]
    tolerance = 5 * per_draw.std(0) / np.sqrt(50_000) + 1e-6
    assert np.all(np.abs(per_draw.mean(0) - log_lik) < tolerance), (per_draw.mean(0), log_lik)
    _assert_unchanged(model, snapshot)


def test_erased_log_likelihood_gaussian_closed_form():
    model = _svgp("gaussian", whiten=True, mean=True)
    u = _random_belief(5, seed=5).sample(7, seed=(3, 4)).numpy()
    Z = model.inducing_variable.Z.numpy()
    k = lambda a, b: model.kernel(a, b).numpy()  # noqa: E731
    kuu = k(Z, Z) + gpflow.config.default_jitter() * np.eye(5)
    A = np.linalg.solve(kuu, k(Z, X[:6]))
    mean = u @ A + model.mean_function(X[:6]).numpy()[:, 0]
    var = np.diag(k(X[:6], X[:6])) - np.sum(k(Z, X[:6]) * A, 0)
    noise = model.likelihood.variance.numpy()
    y = Y_REG[:6, 0]
    predictive = np.sum(
        -0.5 * np.log(2 * np.pi * (var + noise)) - 0.5 * (y - mean) ** 2 / (var + noise), axis=1
    )
    variational = np.sum(-0.5 * np.log(2 * np.pi * noise) - 0.5 * ((y - mean) ** 2 + var) / noise, axis=1)
    got = gp.erased_log_likelihood(model, X[:6], y, kind="predictive")(u)
    np.testing.assert_allclose(got, predictive, rtol=1e-9)
    got = gp.erased_log_likelihood(model, X[:6], y, kind="variational")(u)
    np.testing.assert_allclose(got, variational, rtol=1e-9)


def test_dividing_by_the_variational_likelihood_gives_the_retrained_posterior():
    """Gaussian likelihood: q(u | D) / exp ℓ_e(u) ∝ q(u | D_r), the retrained SVGP's belief.

    With ℓ quadratic in u the SVGP's optimal q(u) is the exact posterior p(u) Π exp ℓ_i(u),
    so log q_full − ℓ_e − log q_retrained is the same for every u. The predictive
    likelihood does not have this property.
    """
    model = _svgp("gaussian", whiten=True)
    gpflow.set_trainable(model.likelihood, False)
    full = gp.fit_inducing_posterior(model, X, Y_REG, max_iterations=3000)
    erased = X[:, 0] > 0.5
    retrained = gp.fit_inducing_posterior(full, X[~erased], Y_REG[~erased], max_iterations=3000)
    q_full, q_retrained = gp.inducing_posterior(full), gp.inducing_posterior(retrained)
    u = q_full.sample(200, seed=(9, 9))
    reference = (q_full.log_prob(u) - q_retrained.log_prob(u)).numpy()
    for kind, exact in (("variational", True), ("predictive", False)):
        log_lik = gp.erased_log_likelihood(full, X[erased], Y_REG[erased], kind=kind)(u).numpy()
        spread = np.std(reference - log_lik)
        if exact:
            assert spread < 1e-3 * np.std(reference), spread
        else:
            assert spread > 0.05 * np.std(reference), spread


@given(st.integers(1, 8), st.integers(0, 2**16))
def test_erased_log_likelihood_adds_over_points(split, seed):
    model = _FIXED_MODEL
    u = _random_belief(5, seed).sample(3, seed=(seed, 0))
    whole = gp.erased_log_likelihood(model, X[:9], Y_CLASS[:9])(u)
    parts = gp.erased_log_likelihood(model, X[:split], Y_CLASS[:split])(u) + gp.erased_log_likelihood(
        model, X[split:9], Y_CLASS[split:9]
    )(u)
    np.testing.assert_allclose(whole, parts, rtol=1e-10)



def test_erased_log_likelihood_is_differentiable_and_traceable():
    model = _FIXED_MODEL
    log_lik = gp.erased_log_likelihood(model, X[:6], Y_CLASS[:6, 0])
    u = tf.Variable(gp.inducing_posterior(model).sample(4, seed=(5, 6)))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(log_lik(u))
    grad = tape.gradient(total, u)
    assert grad.shape == (4, 5) and np.all(np.isfinite(grad))
    # central finite difference along one coordinate
    eps = 1e-6
    shift = np.zeros((4, 5))
    shift[:, 2] = eps
    fd = (log_lik(u + shift) - log_lik(u - shift)) / (2 * eps)
    np.testing.assert_allclose(grad[:, 2], fd, rtol=1e-5, atol=1e-7)
    graph = tf.function(lambda v: log_lik(v))
    np.testing.assert_allclose(graph(u), log_lik(u), rtol=1e-12)


def test_conditional_predictive_mean_averages_to_predict_y(model):
    u = gp.inducing_posterior(model).sample(40_000, seed=(7, 8))
    per_sample = gp.conditional_predictive_mean(model, X[:5])(u).numpy()
    assert per_sample.shape == (40_000, 5)
    tolerance = 5 * per_sample.std(0) / np.sqrt(len(u)) + 1e-8
    expected = model.predict_y(X[:5])[0].numpy()[:, 0]
    assert np.all(np.abs(per_sample.mean(0) - expected) < tolerance)


# --- bad input ------------------------------------------------------------------------


def test_rejects_models_that_are_not_single_output_svgps():
    gpr = gpflow.models.GPR((X, Y_REG), gpflow.kernels.SquaredExponential())
    two = gpflow.models.SVGP(
        gpflow.kernels.SquaredExponential(), gpflow.likelihoods.Gaussian(), X[:4].copy(), num_latent_gps=2
    )
    q = _random_belief(4, seed=0)
    for bad, error in ((gpr, TypeError), ("model", TypeError), (two, ValueError)):
        with pytest.raises(error, match="model"):
            gp.inducing_posterior(bad)
        with pytest.raises(error, match="model"):
            gp.with_inducing_posterior(bad, q)
        with pytest.raises(error, match="model"):
            gp.erased_log_likelihood(bad, X[:2], Y_REG[:2])


def test_rejects_bad_erased_data():
    model = _FIXED_MODEL
    with pytest.raises(ValueError, match="X_e"):
        gp.erased_log_likelihood(model, X[:3, :1], Y_CLASS[:3])  # wrong input dimension
    with pytest.raises(ValueError, match="X_e"):
        gp.erased_log_likelihood(model, X[0], Y_CLASS[:1])  # not a matrix
    with pytest.raises(ValueError, match="X_e"):
        gp.erased_log_likelihood(model, np.full((2, 2), np.nan), Y_CLASS[:2])
    with pytest.raises(ValueError, match="y_e"):
        gp.erased_log_likelihood(model, X[:3], Y_CLASS[:4])  # mismatched length
    with pytest.raises(ValueError, match="y_e"):
        gp.erased_log_likelihood(model, X[:3], np.array([0.0, 2.0, 1.0]))  # not a label
    with pytest.raises(ValueError, match="y_e"):
        gp.erased_log_likelihood(model, X[:3], np.zeros((3, 2)))
    with pytest.raises(TypeError, match="y_e"):
        gp.erased_log_likelihood(model, X[:3], "yes")
    with pytest.raises(ValueError, match="kind"):
        gp.erased_log_likelihood(model, X[:3], Y_CLASS[:3], kind="marginal")
    log_lik = gp.erased_log_likelihood(model, X[:3], Y_CLASS[:3])
    with pytest.raises(ValueError, match="u"):
        log_lik(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="u"):
        log_lik(np.zeros(5))


def test_rejects_bad_beliefs():
    model = _FIXED_MODEL
    with pytest.raises(ValueError, match="event shape"):
        gp.with_inducing_posterior(model, _random_belief(4, seed=0))
    with pytest.raises(TypeError, match="q"):
        gp.with_inducing_posterior(model, tfd.Normal(np.zeros(5), np.ones(5)))
    with pytest.raises(TypeError, match="float64"):
        gp.with_inducing_posterior(
            model, tfd.MultivariateNormalTriL(np.zeros(5, np.float32), np.eye(5, dtype=np.float32))
        )


# --- fit_inducing_posterior -----------------------------------------------------------


def test_fit_inducing_posterior_trains_only_q_u():
    model = _svgp("bernoulli", whiten=True)
    gpflow.set_trainable(model.kernel, True)  # trainable flags must not matter
    model.num_data = 24
    snapshot = _snapshot(model)
    remaining = (X[6:], Y_CLASS[6:])
    new, info = gp.fit_inducing_posterior(model, *remaining, return_info=True)
    _assert_unchanged(model, snapshot)
    assert info.converged, info.message
    assert new.num_data == 18
    np.testing.assert_array_equal(new.kernel.lengthscales.numpy(), model.kernel.lengthscales.numpy())
    np.testing.assert_array_equal(new.inducing_variable.Z.numpy(), model.inducing_variable.Z.numpy())
    assert new.elbo(remaining) > model.elbo(remaining) + 1e-3
    # an optimum: refitting from it changes nothing and the ELBO's gradient in q(u) vanishes
    with tf.GradientTape() as tape:
        elbo = new.elbo(remaining)
    grads = tape.gradient(elbo, [new.q_mu.unconstrained_variable, new.q_sqrt.unconstrained_variable])
    assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) < 1e-3
    again = gp.fit_inducing_posterior(new, *remaining)
    np.testing.assert_allclose(again.elbo(remaining), new.elbo(remaining), atol=1e-8)


def test_fit_inducing_posterior_gaussian_matches_the_optimal_q_u():
    """For a Gaussian likelihood the optimal q(u) is known in closed form (Titsias, SGPR)."""
    model = _svgp("gaussian", whiten=False)
    new = gp.fit_inducing_posterior(model, X, Y_REG, max_iterations=2000)
    sgpr = gpflow.models.SGPR(
        (X, Y_REG), model.kernel, model.inducing_variable.Z.numpy(), noise_variance=model.likelihood.variance
    )
    np.testing.assert_allclose(new.elbo((X, Y_REG)), sgpr.elbo(), rtol=1e-6)
    mean, var = sgpr.predict_f(X[:5])
    mean_new, var_new = new.predict_f(X[:5])
    np.testing.assert_allclose(mean_new, mean, atol=1e-4)
    np.testing.assert_allclose(var_new, var, atol=1e-4)


def _fit_with_gpflow_defaults(model, X_fit, Y_fit):
    """What fit_inducing_posterior computes, with GPflow's default compilation (autograph)."""
    new = gpflow.utilities.deepcopy(model)
    new.num_data = len(X_fit)
    gpflow.optimizers.Scipy().minimize(
        new.training_loss_closure((X_fit, Y_fit)),
        [new.q_mu.unconstrained_variable, new.q_sqrt.unconstrained_variable],
        options={"maxiter": 1000},
    )
    return new


def test_fit_inducing_posterior_is_gpflows_fit_compiled_without_autograph():
    model = _svgp("gaussian", whiten=True, mean=True)
    model.num_data = 24
    new = gp.fit_inducing_posterior(model, X[4:], Y_REG[4:])
    expected = _fit_with_gpflow_defaults(model, X[4:], Y_REG[4:])
    # the same graph, so the same optimum up to rounding
    np.testing.assert_allclose(new.q_mu.numpy(), expected.q_mu.numpy(), atol=1e-9)
    np.testing.assert_allclose(new.q_sqrt.numpy(), expected.q_sqrt.numpy(), atol=1e-9)


class _ClippedLinear(gpflow.mean_functions.MeanFunction):
    """A mean function with Python control flow on a tensor: only autograph can trace it."""

    def __call__(self, X):
        if tf.reduce_max(X) > 100.0:
            return tf.zeros_like(X[:, :1])
        return 0.5 * X[:, :1]


def test_fit_inducing_posterior_falls_back_to_autograph_for_python_control_flow():
    model = _svgp("gaussian", whiten=True)
    model.mean_function = _ClippedLinear()
    model.num_data = 24
    with pytest.raises(TypeError):  # the premise: the model needs autograph
        tf.function(model.training_loss_closure((X, Y_REG), compile=False), autograph=False)()
    new = gp.fit_inducing_posterior(model, X, Y_REG)
    expected = _fit_with_gpflow_defaults(model, X, Y_REG)
    np.testing.assert_allclose(new.q_mu.numpy(), expected.q_mu.numpy(), atol=1e-10)
    assert new.elbo((X, Y_REG)) > model.elbo((X, Y_REG)) + 1e-3
    # the compiled conditionals fall back too: E[y | x, u] = m(x) + k_u(x)ᵀ K_uu⁻¹ u here
    u = RNG.normal(size=(3, 5))
    Z = new.inducing_variable.Z
    kuu = new.kernel(Z) + gpflow.config.default_jitter() * tf.eye(5, dtype=tf.float64)
    expected_mean = 0.5 * X[:4, :1].T + u @ np.linalg.solve(kuu, new.kernel(Z, X[:4]))
    np.testing.assert_allclose(gp.conditional_predictive_mean(new, X[:4])(u), expected_mean, atol=1e-8)


def test_fit_inducing_posterior_rejects_bad_input():
    with pytest.raises(ValueError, match="y"):
        gp.fit_inducing_posterior(_FIXED_MODEL, X[:5], Y_CLASS[:4])
    with pytest.raises(ValueError, match="max_iterations"):
        gp.fit_inducing_posterior(_FIXED_MODEL, X[:5], Y_CLASS[:5], max_iterations=0)
    with pytest.raises(TypeError, match="model"):
        gp.fit_inducing_posterior(None, X[:5], Y_CLASS[:5])


# --- the logistic link, kinds and Gaussian expectations --------------------------------

from unlearnkit.gp import svgp as _svgp_module  # noqa: E402
from unlearnkit.variational.linear_predictor import expected_log_sigmoid  # noqa: E402


def _logistic_svgp():
    model = gpflow.models.SVGP(
        gpflow.kernels.SquaredExponential(variance=3.0, lengthscales=0.8),
        gpflow.likelihoods.Bernoulli(invlink=tf.sigmoid),
        X[:6].copy(),
    )
    gpflow.set_trainable(model.kernel, False)
    gpflow.set_trainable(model.inducing_variable, False)
    return gp.fit_inducing_posterior(model, X, Y_CLASS)


_LOGISTIC = _logistic_svgp()


def test_the_stored_node_table_is_the_computed_one():
    computed = _svgp_module._compute_largest_variances(gp.LOGISTIC_TOLERANCE)
    np.testing.assert_allclose(np.array(computed), np.array(_svgp_module._DEFAULT_NODE_TABLE), rtol=1e-12)
    points = gp.logistic_gauss_hermite_points([0.0, 0.01, 0.3, 1.2, 50.0])
    assert list(points[:4]) == sorted(points[:4]) and points[0] == 1 and points[-1] == 0


def test_logistic_variational_kind_is_accurate_per_point():
    model = _LOGISTIC
    log_lik = gp.erased_log_likelihood(model, X[:8], Y_CLASS[:8])
    u = gp.inducing_posterior(model).sample(50, seed=(1, 1))
    t = log_lik.predictors(u)
    signs = 2.0 * Y_CLASS[:8, 0] - 1.0
    exact = expected_log_sigmoid(signs * t, log_lik.conditional_variance + 0.0 * t)
    assert np.max(np.abs(log_lik.per_point_values(u) - exact)) <= gp.LOGISTIC_TOLERANCE
    # GPflow's own 20-node rule agrees, where it is finite
    conditional = _svgp_module._LatentGivenInducing(model, tf.constant(X[:8]))
    mean = conditional.mean(u)
    gpflow_values = model.likelihood.variational_expectations(
        X[:8], mean, conditional.variance + 0.0 * mean, Y_CLASS[:8] + 0.0 * mean
    )
    np.testing.assert_allclose(log_lik.per_point_values(u), gpflow_values, atol=2 * gp.LOGISTIC_TOLERANCE)


def test_logistic_total_is_the_sum_over_points_with_its_gradient():
    # the direct total (projection folded into the nodes) against the per-point values,
    # with points of several node counts and points beyond 32 nodes (the accurate rule)
    model = gpflow.models.SVGP(
        gpflow.kernels.SquaredExponential(variance=30.0, lengthscales=0.8),
        gpflow.likelihoods.Bernoulli(invlink=tf.sigmoid),
        X[:4].copy(),
    )
    # near the inducing inputs few nodes, further away more, at 0.5 beyond 32 (variance > 10)
    X_e = np.concatenate([X[:4] + 0.02, X[:4] + 0.3, X[:4] + 0.5])
    y_e = Y_CLASS[:12]
    log_lik = gp.erased_log_likelihood(model, X_e, y_e)
    points = log_lik.quadrature_points_per_sample
    assert 0 in points and len(set(points) - {0}) >= 2, points
    u = tf.Variable(_random_belief(4, seed=3).sample(7, seed=(2, 9)))
    with tf.GradientTape(persistent=True) as tape:
        direct = log_lik(u)
        summed = tf.reduce_sum(log_lik.per_point_values(u), axis=-1)
    np.testing.assert_allclose(direct, summed, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(tape.gradient(direct, u), tape.gradient(summed, u), rtol=1e-12, atol=1e-12)


def test_logistic_likelihood_is_finite_where_gpflows_is_not():
    model = _LOGISTIC
    far = tf.constant([[40.0]], tf.float64)
    assert np.isinf(model.likelihood.log_prob(None, far, tf.zeros_like(far)).numpy()[0])  # the trap
    q = gp.inducing_posterior(model)
    u = tf.Variable(-30.0 * q.mean()[None])  # every label far on the wrong side
    for kind in gp.KINDS:
        log_lik = gp.erased_log_likelihood(model, X, Y_CLASS, kind=kind)
        with tf.GradientTape() as tape:
            value = log_lik(u)
        assert np.isfinite(value.numpy()).all() and np.isfinite(tape.gradient(value, u).numpy()).all()


def test_retraining_from_where_gpflows_elbo_is_infinite():
    """fit_inducing_posterior evaluates the logistic ELBO stably: from a start where GPflow's
    own ELBO is -inf it reaches the same q(u) as from a good start."""
    model = _LOGISTIC
    q = gp.inducing_posterior(model)
    far = gp.with_inducing_posterior(model, tfd.MultivariateNormalTriL(-30.0 * q.mean(), q.scale.to_dense()))
    assert not np.isfinite(far.elbo((X, Y_CLASS)).numpy())
    refitted, info = gp.fit_inducing_posterior(far, X, Y_CLASS, return_info=True)
    assert info.converged
    assert refitted.likelihood.invlink is tf.sigmoid  # the model keeps its own likelihood
    np.testing.assert_allclose(refitted.elbo((X, Y_CLASS)), model.elbo((X, Y_CLASS)), atol=1e-5)


@pytest.mark.parametrize("kind", ["variational", "predictive", "conditional_mean"])
@pytest.mark.parametrize("likelihood", ["logistic", "gaussian"])
def test_gaussian_expectation_matches_monte_carlo(kind, likelihood):
    model = _LOGISTIC if likelihood == "logistic" else _svgp("gaussian", whiten=True)
    Y = Y_CLASS if likelihood == "logistic" else Y_REG
    log_lik = gp.erased_log_likelihood(model, X[:10], Y[:10], kind=kind)
    q = gp.inducing_posterior(model)
    values = log_lik(q.sample(100_000, seed=(5, 6))).numpy()
    expected = float(log_lik.gaussian_expectation(q.loc, q.scale.to_dense()))
    assert abs(values.mean() - expected) < 5 * values.std() / np.sqrt(len(values)) + 1e-6


def test_conditional_mean_kind_is_the_reference_models_likelihood():
    model = _LOGISTIC
    u = gp.inducing_posterior(model).sample(7, seed=(2, 2))
    log_lik = gp.erased_log_likelihood(model, X[:5], Y_CLASS[:5], kind="conditional_mean")
    t = log_lik.predictors(u).numpy()
    signs = 2.0 * Y_CLASS[:5, 0] - 1.0
    np.testing.assert_allclose(log_lik(u), -np.logaddexp(0.0, -signs * t).sum(-1), rtol=1e-12)
    probabilities = gp.conditional_predictive_mean(model, X[:5], kind="conditional_mean")(u)
    np.testing.assert_allclose(probabilities, 1.0 / (1.0 + np.exp(-t)), rtol=1e-12)


def test_fit_inducing_posterior_conditional_mean_kind_is_an_optimum():
    model = _LOGISTIC
    refitted = gp.fit_inducing_posterior(model, X, Y_CLASS, kind="conditional_mean")
    q = gp.inducing_posterior(refitted)
    log_lik = gp.erased_log_likelihood(refitted, X, Y_CLASS, kind="conditional_mean")
    prior = tfd.MultivariateNormalTriL(
        tf.zeros(6, tf.float64),
        tf.linalg.cholesky(model.kernel(model.inducing_variable.Z) + gpflow.config.default_jitter() * tf.eye(6, dtype=tf.float64)),
    )
    loc, scale = tf.Variable(q.loc), tf.Variable(q.scale.to_dense())
    with tf.GradientTape() as tape:
        elbo = log_lik.gaussian_expectation(loc, scale) - tfd.kl_divergence(
            tfd.MultivariateNormalTriL(loc, tf.linalg.band_part(scale, -1, 0)), prior
        )
    assert float(tf.reduce_max(tf.abs(tape.gradient(elbo, loc)))) < 1e-3
    assert float(tf.reduce_max(tf.abs(gp.inducing_posterior(model).mean() - q.mean()))) > 1e-3  # it moved


def test_new_arguments_are_checked():
    with pytest.raises(ValueError, match="kind"):
        gp.fit_inducing_posterior(_LOGISTIC, X, Y_CLASS, kind="predictive")
    with pytest.raises(ValueError, match="kind"):
        gp.conditional_predictive_mean(_LOGISTIC, X, kind="mean")
    with pytest.raises(ValueError, match="num_quadrature_points"):
        gp.erased_log_likelihood(_LOGISTIC, X[:3], Y_CLASS[:3], num_quadrature_points=0)
    log_lik = gp.erased_log_likelihood(_LOGISTIC, X[:3], Y_CLASS[:3], num_quadrature_points=4)
    assert list(log_lik.quadrature_points_per_sample) == [4, 4, 4]


def test_erased_log_likelihood_follows_changed_and_replaced_hyperparameters():
    # The conditional K_uu^-1 K_uf is computed by a graph kept per model: it must follow an
    # assigned parameter and a replaced kernel, as GPflow's eager code would.
    from unlearnkit.gp.svgp import _conditional_moments

    model = gpflow.utilities.deepcopy(_FIXED_MODEL)
    X_e = tf.constant(X[:4])

    def check():
        built = gp.erased_log_likelihood(model, X_e, Y_CLASS[:4])
        projection, variance, _ = _conditional_moments(model, X_e)  # eager GPflow
        np.testing.assert_allclose(built.projection, projection, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(built.conditional_variance, tf.maximum(variance, 0.0),
                                   rtol=1e-10, atol=1e-12)
        return built.projection.numpy()

    first = check()
    model.kernel.lengthscales.assign(0.5)
    second = check()
    model.kernel = gpflow.kernels.Matern32(lengthscales=0.8)
    third = check()
    assert not np.allclose(first, second) and not np.allclose(second, third)
