"""Tests of unlearnkit.bif.influence and unlearnkit.bif.map_energy."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from unlearnkit import ConvergenceWarning, NotPositiveDefiniteError, bif, likelihoods

# --------------------------------------------------------------------------------- fixtures


def _quadratic(A: np.ndarray, b: np.ndarray):
    """gamma -> 1/2 gamma^T A gamma - b^T gamma."""
    A_t, b_t = tf.constant(A), tf.constant(b)
    return lambda g: 0.5 * tf.tensordot(g, tf.linalg.matvec(A_t, g), 1) - tf.tensordot(b_t, g, 1)


def _random_spd(rng: np.random.Generator, d: int, scale: float = 1.0) -> np.ndarray:
    Q = rng.normal(size=(d, d))
    return scale * (Q @ Q.T / d + np.eye(d))


def _logistic_data(n: int = 200, d: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.normal(size=(n, d - 1)), np.ones(n)]
    theta = rng.normal(size=d)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-X @ theta))).astype(np.float64)
    return X, y


@pytest.fixture(scope="module")
def logistic():
    X, y = _logistic_data()
    erased = np.array([3, 17, 42])
    energy, erased_energy = bif.map_energies(
        likelihoods.logistic_log_likelihood, X, y, erased, prior_variance=2.0
    )
    params = bif.newton_minimize(energy, np.zeros(X.shape[1]))
    return X, y, erased, energy, erased_energy, params


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ------------------------------------------------------------------ correctness of the step


def test_quadratic_with_linear_erased_energy_is_exact():
    # h linear in gamma: the Hessian does not change, so the one-step removal is exact.
    rng = np.random.default_rng(1)
    A, b, c = _random_spd(rng, 4), rng.normal(size=4), rng.normal(size=4)
    energy = _quadratic(A, b)
    erased = lambda g: -tf.tensordot(tf.constant(c), g, 1)  # noqa: E731
    params = tf.constant(np.linalg.solve(A, b))
    result = bif.influence_unlearn(energy, erased, params)
    np.testing.assert_allclose(result.numpy(), np.linalg.solve(A, b - c), rtol=1e-10, atol=1e-12)


def test_quadratic_matches_hand_computed_newton_step():
    rng = np.random.default_rng(2)
    A, b = _random_spd(rng, 5, 10.0), rng.normal(size=5)
    B, c = _random_spd(rng, 5, 0.5), rng.normal(size=5)
    energy, erased = _quadratic(A, b), _quadratic(B, c)
    gamma_s = np.linalg.solve(A, b)
    expected = gamma_s + np.linalg.solve(A, B @ gamma_s - c)  # gamma_S + H^-1 grad h
    for solver in ("exact", "cg"):
        result = bif.influence_unlearn(energy, erased, tf.constant(gamma_s), solver=solver)
        np.testing.assert_allclose(result.numpy(), expected, rtol=1e-9, atol=1e-11)
    # With the Hessian of the remaining energy the step is Newton's method on a quadratic: exact.
    remaining = lambda g: energy(g) - erased(g)  # noqa: E731
    newton = bif.influence_unlearn(remaining, erased, tf.constant(gamma_s))
    np.testing.assert_allclose(newton.numpy(), np.linalg.solve(A - B, b - c), rtol=1e-9, atol=1e-11)


@given(
    d=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    solver=st.sampled_from(["exact", "cg"]),
)
def test_property_newton_step_on_random_quadratics_is_exact(d, seed, solver):
    rng = np.random.default_rng(seed)
    A, b = _random_spd(rng, d, 5.0), rng.normal(size=d)
    B, c = _random_spd(rng, d, 0.5), rng.normal(size=d)
    energy, erased = _quadratic(A, b), _quadratic(B, c)
    remaining = lambda g: energy(g) - erased(g)  # noqa: E731
    gamma_s = tf.constant(np.linalg.solve(A, b))
    result = bif.influence_unlearn(remaining, erased, gamma_s, solver=solver)
    np.testing.assert_allclose(result.numpy(), np.linalg.solve(A - B, b - c), rtol=1e-8, atol=1e-9)
    one_step = bif.influence_unlearn(energy, erased, gamma_s, solver=solver)
    expected = gamma_s.numpy() + np.linalg.solve(A, B @ gamma_s.numpy() - c)
    np.testing.assert_allclose(one_step.numpy(), expected, rtol=1e-8, atol=1e-9)


def test_logistic_matches_hand_computed_newton_step(logistic):
    X, y, erased, energy, erased_energy, params = logistic
    g = params.numpy()
    p = _sigmoid(X @ g)
    hessian = X.T @ (X * (p * (1 - p))[:, None]) + np.eye(X.shape[1]) / 2.0
    grad_h = X[erased].T @ (p[erased] - y[erased])  # grad of -log p(y | x, gamma)
    expected = g + np.linalg.solve(hessian, grad_h)
    result = bif.influence_unlearn(energy, erased_energy, params)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-10, atol=1e-12)
    # ... and it lands much closer to the retrained minimiser than the original did.
    retrained = bif.newton_minimize(lambda t: energy(t) - erased_energy(t), params)
    moved = np.linalg.norm(g - retrained.numpy())
    error = np.linalg.norm(result.numpy() - retrained.numpy())
    assert error < 0.05 * moved, (error, moved)


def test_exact_and_cg_agree_on_logistic():
    X, y = _logistic_data(n=300, d=30, seed=3)
    energy, erased_energy = bif.map_energies(
        likelihoods.logistic_log_likelihood, X, y, np.arange(10), prior_variance=1.0
    )
    params = bif.newton_minimize(energy, np.zeros(30))
    exact = bif.influence_unlearn(energy, erased_energy, params, solver="exact")
    cg = bif.influence_unlearn(energy, erased_energy, params, solver="cg", tolerance=1e-12)
    step = np.linalg.norm(exact.numpy() - params.numpy())
    assert np.linalg.norm(exact.numpy() - cg.numpy()) < 1e-9 * step


def test_hessian_vector_product_matches_dense_hessian(logistic):
    _, _, _, energy, _, params = logistic
    vector = tf.constant(np.random.default_rng(4).normal(size=params.shape[0]))
    dense = bif.energy_hessian(energy, params)
    np.testing.assert_allclose(
        bif.hessian_vector_product(energy, params, vector).numpy(),
        tf.linalg.matvec(dense, vector).numpy(),
        rtol=1e-10,
    )


def test_sequential_and_batch_agree_to_first_order():
    X, y = _logistic_data(n=400, d=4, seed=5)
    erased = np.arange(8)
    chunks = np.array_split(erased, 4)
    energy, erased_energy = bif.map_energies(
        likelihoods.logistic_log_likelihood, X, y, erased, prior_variance=1.0
    )
    chunk_energies = [
        bif.map_erased_energy(likelihoods.logistic_log_likelihood, X, y, chunk) for chunk in chunks
    ]
    params = bif.newton_minimize(energy, np.zeros(4))
    batch = bif.influence_unlearn(energy, erased_energy, params)
    _, info = bif.influence_unlearn_sequential(energy, chunk_energies, params, return_info=True)
    path = info.path
    assert len(path) == 4
    retrained = bif.newton_minimize(lambda t: energy(t) - erased_energy(t), params).numpy()
    moved = np.linalg.norm(params.numpy() - retrained)
    # Both are first-order approximations: they differ from each other, and from the
    # retrained minimiser, by a small fraction of how far the minimiser moved (about 1-3%
    # here, for 2% of the data removed).
    assert np.linalg.norm(path[-1] - batch.numpy()) < 0.05 * moved
    assert np.linalg.norm(path[-1] - retrained) < 0.05 * moved
    assert np.linalg.norm(batch.numpy() - retrained) < 0.05 * moved
    # One chunk is the batch step.
    single = bif.influence_unlearn_sequential(energy, [erased_energy], params)
    np.testing.assert_allclose(single.numpy(), batch.numpy(), rtol=0, atol=0)


def test_newton_minimize_and_laplace(logistic):
    _, _, _, energy, _, params = logistic
    assert np.linalg.norm(bif.energy_gradient(energy, params).numpy()) < 1e-8
    laplace = bif.laplace_approximation(energy, params)
    hessian = bif.energy_hessian(energy, params).numpy()
    np.testing.assert_allclose(laplace.covariance().numpy(), np.linalg.inv(hessian), rtol=1e-9)
    np.testing.assert_array_equal(laplace.mean().numpy(), params.numpy())


def test_map_energies_matches_linear_gaussian_posterior():
    rng = np.random.default_rng(6)
    X, noise, prior = rng.normal(size=(50, 3)), 0.3, 4.0
    y = X @ np.array([1.0, -2.0, 0.5]) + np.sqrt(noise) * rng.normal(size=50)
    energy, _ = bif.map_energies(
        lambda X_, y_: likelihoods.linear_gaussian_log_likelihood(X_, y_, noise),
        X, y, [0], prior_variance=prior,
    )
    precision = X.T @ X / noise + np.eye(3) / prior
    mean = np.linalg.solve(precision, X.T @ y / noise)
    laplace = bif.laplace_approximation(energy, bif.newton_minimize(energy, np.zeros(3)))
    np.testing.assert_allclose(laplace.mean().numpy(), mean, rtol=1e-10)
    np.testing.assert_allclose(laplace.covariance().numpy(), np.linalg.inv(precision), rtol=1e-9)


# --------------------------------------------------------------------- non-positive-definite


def _saddle(g):
    return g[0] ** 2 - 0.5 * g[1] ** 2 + 0.1 * g[0] * g[1]


def _linear_erased(g):
    return 0.3 * g[0] + 0.7 * g[1]


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_non_positive_definite_hessian_raises_without_damping(solver):
    params = tf.constant([0.2, -0.1], dtype=tf.float64)
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        bif.influence_unlearn(_saddle, _linear_erased, params, solver=solver)
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        bif.influence_unlearn(_saddle, _linear_erased, params, solver=solver, damping=0.5)
    result = bif.influence_unlearn(_saddle, _linear_erased, params, solver=solver, damping=2.0)
    H = np.array([[2.0, 0.1], [0.1, -1.0]]) + 2.0 * np.eye(2)
    np.testing.assert_allclose(result.numpy(), params.numpy() + np.linalg.solve(H, [0.3, 0.7]), rtol=1e-10)


def test_cg_non_convergence_warns_and_returns_the_last_iterate():
    rng = np.random.default_rng(7)
    A = _random_spd(rng, 8) + np.diag(np.logspace(0, 6, 8))
    params = tf.constant(np.linalg.solve(A, np.ones(8)))
    with pytest.warns(ConvergenceWarning, match="did not reach"):
        result = bif.influence_unlearn(
            _quadratic(A, np.ones(8)), _linear_erased, params, solver="cg", max_iterations=1
        )
    assert np.all(np.isfinite(result.numpy()))


# ---------------------------------------------------------------------------- bad input


def _energy(g):
    return tf.reduce_sum(g**2)


@pytest.mark.parametrize(
    "params, error",
    [
        (np.zeros((2, 2)), ValueError),
        (np.zeros(0), ValueError),
        (np.zeros(2, dtype=np.float32), TypeError),
        (tf.zeros(2, dtype=tf.float32), TypeError),
        (np.zeros(2, dtype=np.int64), TypeError),
        (np.array([0.0, np.nan]), ValueError),
        (np.array([np.inf, 0.0]), ValueError),
        ("ab", TypeError),
        (None, TypeError),
    ],
)
def test_bad_params_raise(params, error):
    with pytest.raises(error, match="params"):
        bif.influence_unlearn(_energy, _linear_erased, params)


@pytest.mark.parametrize(
    "energy, erased, error, match",
    [
        ("not callable", _linear_erased, TypeError, "energy"),
        (_energy, 3.0, TypeError, "erased_energy"),
        (lambda g: g**2, _linear_erased, ValueError, "scalar"),
        (_energy, lambda g: g, ValueError, "scalar"),
        (lambda g: tf.cast(tf.reduce_sum(g), tf.float32), _linear_erased, TypeError, "float64"),
        (lambda g: 1.0, _linear_erased, TypeError, "energy"),
        (lambda g: tf.reduce_sum(g) * np.nan, _linear_erased, ValueError, "NaN"),
        (lambda g: tf.constant(1.0, tf.float64), _linear_erased, ValueError, "does not depend"),
        (_energy, lambda g: tf.constant(1.0, tf.float64), ValueError, "does not depend"),
    ],
)
def test_bad_energies_raise(energy, erased, error, match):
    with pytest.raises(error, match=match):
        bif.influence_unlearn(energy, erased, np.array([0.1, 0.2]))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"solver": "neumann"}, ValueError),
        ({"damping": -1.0}, ValueError),
        ({"damping": np.nan}, ValueError),
        ({"damping": "a"}, TypeError),
        ({"tolerance": 0.0}, ValueError),
        ({"max_iterations": 0}, ValueError),
    ],
)
def test_bad_options_raise(kwargs, error):
    with pytest.raises(error):
        bif.influence_unlearn(_energy, _linear_erased, np.array([0.1, 0.2]), **kwargs)


def test_sequential_bad_chunks_raise():
    params = np.array([0.1, 0.2])
    with pytest.raises(ValueError, match="at least one"):
        bif.influence_unlearn_sequential(_energy, [], params)
    with pytest.raises(TypeError, match="sequence"):
        bif.influence_unlearn_sequential(_energy, _linear_erased, params)
    with pytest.raises(TypeError, match=r"erased_energies\[1\]"):
        bif.influence_unlearn_sequential(_energy, [_linear_erased, "x"], params)


@pytest.mark.parametrize(
    "erased, match",
    [
        (np.arange(11), "only 10"),
        ([3, 3], "more than once"),
        ([10], "index rows"),
        ([-1], "index rows"),
        ([], "at least one"),
        ([np.arange(6), np.arange(6, 10)], "1-D"),
    ],
)
def test_map_energies_bad_erased_sets_raise(erased, match):
    X, y = _logistic_data(n=10, d=2)
    with pytest.raises(ValueError, match=match):
        bif.map_energies(likelihoods.logistic_log_likelihood, X, y, erased, prior_variance=1.0)


def test_map_energies_bad_data_raise():
    X, y = _logistic_data(n=10, d=2)
    build = likelihoods.logistic_log_likelihood
    with pytest.raises(ValueError, match="y"):
        bif.map_energies(build, X, y[:-1], [0], prior_variance=1.0)
    with pytest.raises(ValueError, match="prior_variance"):
        bif.map_energies(build, X, y, [0], prior_variance=0.0)
    with pytest.raises(TypeError, match="integer"):
        bif.map_energies(build, X, y, [0.5], prior_variance=1.0)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="X"):
        bif.map_energies(build, X_nan, y, [0], prior_variance=1.0)


# ------------------------------------------------------------------------- no mutation


def test_inputs_are_not_mutated():
    X, y = _logistic_data(n=60, d=3)
    X_copy, y_copy, erased = X.copy(), y.copy(), np.array([1, 2])
    energy, erased_energy = bif.map_energies(
        likelihoods.logistic_log_likelihood, X, y, erased, prior_variance=1.0
    )
    params_np = bif.newton_minimize(energy, np.zeros(3)).numpy()
    params_before = params_np.copy()
    variable = tf.Variable(params_np)
    for solver in ("exact", "cg"):
        result = bif.influence_unlearn(energy, erased_energy, params_np, solver=solver)
        bif.influence_unlearn(energy, erased_energy, variable, solver=solver)
        assert not np.shares_memory(result.numpy(), params_np)
    bif.influence_unlearn_sequential(energy, [erased_energy, erased_energy], variable)
    np.testing.assert_array_equal(params_np, params_before)
    np.testing.assert_array_equal(variable.numpy(), params_before)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)
    np.testing.assert_array_equal(erased, [1, 2])


def test_cg_compiles_once_per_energy_and_does_not_keep_it_alive():
    import gc
    import weakref

    from unlearnkit.bif import influence

    rng = np.random.default_rng(8)
    A, b = _random_spd(rng, 3), rng.normal(size=3)
    energy = _quadratic(A, b)
    params = tf.constant(np.linalg.solve(A, b))
    first = bif.influence_unlearn(energy, _linear_erased_3, params, solver="cg")
    compiled = influence._COMPILED_CG[energy]
    second = bif.influence_unlearn(energy, _linear_erased_3, params + 0.1, solver="cg")
    assert influence._COMPILED_CG[energy] is compiled
    np.testing.assert_allclose(
        second.numpy() - (params.numpy() + 0.1), first.numpy() - params.numpy(), rtol=1e-9
    )
    alive = weakref.ref(energy)
    del energy, compiled
    gc.collect()
    assert alive() is None


def _linear_erased_3(g):
    return tf.tensordot(tf.constant([0.3, -0.2, 0.5], tf.float64), g, 1)


def test_newton_minimize_bad_input_raise():
    with pytest.raises(ValueError, match="solver"):
        bif.newton_minimize(_energy, np.array([0.1, 0.2]), solver="lbfgs")
    with pytest.raises(ValueError, match="max_iterations"):
        bif.newton_minimize(_energy, np.array([0.1, 0.2]), max_iterations=0)
    with pytest.raises(ValueError, match="scalar"):
        bif.newton_minimize(lambda g: g**2, np.array([0.1, 0.2]))
    with pytest.raises(TypeError, match="initial"):
        bif.newton_minimize(_energy, np.array([1, 2]))
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        bif.newton_minimize(
            lambda g: tf.reduce_sum(tf.exp(g) + tf.exp(-3.0 * g)), np.array([9.0]), max_iterations=2
        )
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        bif.newton_minimize(_saddle, np.array([0.2, -0.1]))


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_newton_minimize_reaches_the_minimum(solver):
    rng = np.random.default_rng(9)
    A, b = _random_spd(rng, 6), rng.normal(size=6)
    result = bif.newton_minimize(_quadratic(A, b), np.zeros(6), solver=solver)
    np.testing.assert_allclose(result.numpy(), np.linalg.solve(A, b), rtol=1e-9)
