"""The package's conventions: seeds, typed errors, diagnostics, laziness, one copy of each routine."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from problems import linear_problem, logistic_problem

import unlearnkit
from unlearnkit import linalg, optimize, seeds
from unlearnkit.errors import ConvergenceWarning, DegenerateWeightsError, NotPositiveDefiniteError

tfd = tfp.distributions


# ------------------------------------------------------------------------------------ seeds


@pytest.mark.parametrize("seed", [0, 7, -3, 2**40, 2**63 - 1, (1, 2), [5, -6]])
def test_every_seed_form_gives_an_int32_pair_that_tfp_accepts(seed) -> None:
    pair = seeds.sanitize_seed(seed)
    assert pair.dtype == tf.int32 and pair.shape == (2,)
    tfd.Normal(tf.constant(0.0, tf.float64), 1.0).sample(3, seed=pair)  # TFP accepts it
    np.testing.assert_array_equal(pair, seeds.sanitize_seed(seed))  # the same every time


def test_tensor_seeds_and_none() -> None:
    for tensor in (tf.constant([3, 4], tf.int32), tf.constant([3, 4], tf.int64), np.array([3, 4])):
        np.testing.assert_array_equal(seeds.sanitize_seed(tensor), [3, 4])
    tf.random.set_seed(11)
    first = seeds.sanitize_seed(None)
    tf.random.set_seed(11)
    np.testing.assert_array_equal(first, seeds.sanitize_seed(None))  # reproducible after set_seed


def test_split_seed_gives_distinct_stateless_seeds() -> None:
    parts = seeds.split_seed(0, 3)
    assert len(parts) == 3 and all(p.dtype == tf.int32 for p in parts)
    assert len({tuple(p.numpy()) for p in parts}) == 3


@pytest.mark.parametrize(
    "seed, error",
    [(True, TypeError), (1.5, TypeError), ("0", TypeError), ((1, 2, 3), TypeError),
     ((1.0, 2.0), TypeError), (2**64, ValueError), ((2**40, 0), ValueError),
     (tf.constant([1.0, 2.0]), TypeError), (tf.constant([1, 2, 3]), ValueError)],
)
def test_bad_seeds_are_refused_by_name(seed, error) -> None:
    with pytest.raises(error, match="seed"):
        seeds.sanitize_seed(seed)


def test_the_same_seed_gives_bit_identical_results_across_functions() -> None:
    q_full, erased = logistic_problem()
    for seed in (3, (3, 4), tf.constant([3, 4], tf.int32)):
        a = unlearnkit.unlearn_reverse_kl(q_full, erased, 0.1, seed=seed, num_samples=2000)
        b = unlearnkit.unlearn_reverse_kl(q_full, erased, 0.1, seed=seed, num_samples=2000)
        np.testing.assert_array_equal(a.covariance(), b.covariance())


# ---------------------------------------------------------------------- beliefs and errors


def test_typed_errors_are_exported_and_subclass_the_builtins() -> None:
    assert issubclass(unlearnkit.DegenerateWeightsError, ValueError)
    assert issubclass(unlearnkit.NotPositiveDefiniteError, ValueError)
    assert issubclass(unlearnkit.ConvergenceWarning, UserWarning)
    for name in ("OptimizationInfo", "SolverInfo", "ImportanceInfo", "SamplerInfo", "InfluenceInfo"):
        assert hasattr(unlearnkit, name)


def test_diagonal_and_full_covariance_beliefs_are_accepted_and_agree() -> None:
    full, remaining, erased, _ = linear_problem(d=3)
    diag = tfd.MultivariateNormalDiag(full.mean(), tf.sqrt(tf.linalg.diag_part(full.covariance())))
    fullcov = tfd.MultivariateNormalFullCovariance(full.mean(), full.covariance())
    a = unlearnkit.unlearn_eubo(fullcov, erased, seed=0)
    b = unlearnkit.unlearn_eubo(full, erased, seed=0)
    assert isinstance(a, tfd.MultivariateNormalTriL)
    np.testing.assert_allclose(a.covariance(), b.covariance(), rtol=1e-6, atol=1e-12)
    result = unlearnkit.unlearn_reverse_kl(diag, erased, 0.1, seed=0, num_samples=5000)
    assert isinstance(result, tfd.MultivariateNormalTriL)


def test_float32_beliefs_are_told_to_cast() -> None:
    q = tfd.MultivariateNormalDiag(tf.zeros(2), tf.ones(2))
    with pytest.raises(TypeError, match="float64"):
        unlearnkit.unlearn_reverse_kl(q, lambda t: tf.zeros(t.shape[0], tf.float64))


def test_degenerate_weights_have_a_type() -> None:
    full, _, _, _ = linear_problem(d=2)
    sharp = lambda t: -1e6 * tf.reduce_sum((t - full.mean() - 5.0) ** 2, -1)  # noqa: E731
    with pytest.raises(DegenerateWeightsError):
        unlearnkit.unlearn_reverse_kl(full, sharp, 0.0, seed=0, num_samples=1000)


def test_a_likelihood_without_a_gradient_is_refused_not_returned_unchanged() -> None:
    q_full, _ = logistic_problem()

    def through_numpy(theta):
        return tf.constant(-np.sum(np.asarray(theta) ** 2, axis=-1))

    with pytest.raises(ValueError, match="no gradient"):
        unlearnkit.unlearn_eubo(q_full, through_numpy, seed=0)
    prior = tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64), 10 * tf.ones(3, tf.float64))
    with pytest.raises(ValueError, match="no gradient"):
        unlearnkit.fit_gaussian_vi(through_numpy, prior, initial=prior, seed=0)


# ---------------------------------------------------------------------------- optimize


def test_lbfgs_is_insensitive_to_a_constant_offset() -> None:
    target = tf.constant([1.0, -2.0, 0.5], tf.float64)
    for offset in (0.0, 1e12):
        x, info = optimize.minimize_lbfgs(
            lambda x: offset + tf.reduce_sum((x - target) ** 2 * [1.0, 10.0, 100.0]),
            tf.zeros(3, tf.float64), max_iterations=100, tolerance=1e-6,
        )
        assert info.num_iterations > 1
        # 1e12 leaves float64 about 1e-4 of absolute resolution in the objective, so the
        # minimiser is resolved to about sqrt(1e-4 / 100); without the offset, to 1e-6
        np.testing.assert_allclose(x, target, atol=1e-5 if offset == 0.0 else 1e-2)


def test_lbfgs_takes_a_compiled_value_and_gradient_as_it_is() -> None:
    target = tf.constant([1.0, -2.0, 0.5], tf.float64)
    weights = tf.constant([1.0, 10.0, 100.0], tf.float64)

    def objective(x):
        return tf.reduce_sum((x - target) ** 2 * weights)

    @tf.function
    def value_and_gradient(x):
        return objective(x), 2.0 * (x - target) * weights

    x0 = tf.zeros(3, tf.float64)
    plain, plain_info = optimize.minimize_lbfgs(
        objective, x0, max_iterations=100, tolerance=1e-8)
    given, given_info = optimize.minimize_lbfgs(
        value_and_gradient, x0, max_iterations=100, tolerance=1e-8, returns_gradient=True)
    np.testing.assert_allclose(given, plain, atol=1e-12)
    assert given_info.num_evaluations == plain_info.num_evaluations
    assert value_and_gradient.experimental_get_tracing_count() == 1  # not traced again


def test_lbfgs_evaluates_each_point_once() -> None:
    calls = []

    def value_and_gradient(x):  # counts its calls; L-BFGS-B asks for x0 and the end twice
        calls.append(x.numpy())
        return tf.reduce_sum((x - 1.0) ** 2 * [1.0, 10.0]), 2.0 * (x - 1.0) * [1.0, 10.0]

    x, info = optimize.minimize_lbfgs(
        value_and_gradient, tf.zeros(2, tf.float64), max_iterations=100, tolerance=1e-8,
        returns_gradient=True)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-8)
    assert len(calls) == info.num_evaluations
    assert len({c.tobytes() for c in calls}) == len(calls)


def test_lbfgs_rejects_non_finite_trial_points_and_never_calls_them_converged() -> None:
    def barrier(x):  # finite only for x < 1; the minimum of (x - 3)^2 lies outside
        return tf.reduce_sum((x - 3.0) ** 2 - tf.math.log(1.0 - x))

    x, info = optimize.minimize_lbfgs(
        barrier, tf.zeros(1, tf.float64), max_iterations=100, tolerance=1e-8
    )
    assert float(x[0]) < 1.0 and np.isfinite(info.objective)
    with pytest.warns(ConvergenceWarning):
        optimize.minimize_lbfgs(
            lambda x: tf.reduce_sum(tf.exp(x) - 3.0 * x), tf.constant([8.0], tf.float64),
            max_iterations=1, tolerance=1e-10,
        )


def _rosenbrock(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


def test_lbfgs_on_a_monte_carlo_objective_stops_when_iterations_gain_less_than_its_noise() -> None:
    x0 = tf.constant([-1.2, 1.0], tf.float64)
    exact, exact_info = optimize.minimize_lbfgs(
        _rosenbrock, x0, max_iterations=500, tolerance=1e-8, record_path=True)
    noise = 1.0  # a standard error of 1: decreases below 0.01 are negligible
    x, info = optimize.minimize_lbfgs(
        _rosenbrock, x0, max_iterations=500, tolerance=1e-8, record_path=True, noise=noise)
    assert info.converged and "Monte Carlo standard error" in info.message
    assert info.num_iterations < exact_info.num_iterations
    # the same iterates as without the rule, up to the stop
    np.testing.assert_array_equal(info.path, exact_info.path[: len(info.path)])
    decreases = -np.diff([float(_rosenbrock(p)) for p in info.path])
    negligible = decreases < optimize.NOISE_FRACTION * noise
    patience = optimize.NOISE_PATIENCE
    assert negligible[-patience:].all()  # it stopped after `patience` negligible iterations
    runs = [negligible[i : i + patience].all() for i in range(len(negligible) - patience)]
    assert not any(runs)  # and not before
    assert float(_rosenbrock(x)) - exact_info.objective < patience * optimize.NOISE_FRACTION * noise * 10


@pytest.mark.parametrize("noise, error", [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                          ("1", TypeError), (True, TypeError)])
def test_lbfgs_refuses_a_bad_noise_by_name(noise, error) -> None:
    with pytest.raises(error, match="noise"):
        optimize.minimize_lbfgs(_rosenbrock, tf.zeros(2, tf.float64), max_iterations=5, tolerance=1e-6,
                                noise=noise)


# ------------------------------------------------------------------------------ linalg


def test_cholesky_and_solve_refuse_indefinite_matrices_with_a_damping_hint() -> None:
    matrix = np.array([[2.0, 0.0], [0.0, -1.0]])
    with pytest.raises(NotPositiveDefiniteError, match="smallest eigenvalue -1"):
        linalg.cholesky(matrix)
    x = linalg.solve_positive_definite(matrix, np.ones(2), damping=2.0)
    np.testing.assert_allclose(x, [0.25, 1.0])
    with pytest.raises(NotPositiveDefiniteError):
        linalg.cholesky(np.array([[1.0, 1.0], [1.0, 1.0]]))  # singular


def test_batched_solves() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 4, 4))
    matrices = a @ np.transpose(a, (0, 2, 1)) + 4 * np.eye(4)
    rhs = rng.normal(size=(3, 4))
    x = linalg.solve_positive_definite(matrices, rhs)
    np.testing.assert_allclose(np.einsum("cij,cj->ci", matrices, x), rhs, atol=1e-12)


def test_conjugate_gradients_solve_report_and_fail_by_type() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 20))
    A = tf.constant(a @ a.T + 20 * np.eye(20))
    b = tf.constant(rng.normal(size=20))
    x, info = linalg.conjugate_gradient(lambda v: tf.linalg.matvec(A, v), b, return_info=True)
    assert info.converged and info.num_iterations <= 20
    np.testing.assert_allclose(tf.linalg.matvec(A, x), b, atol=1e-8)
    with pytest.raises(NotPositiveDefiniteError, match="curvature"):
        linalg.conjugate_gradient(lambda v: -v, b)
    with pytest.raises(ValueError, match="rhs contains NaN"):
        linalg.conjugate_gradient(lambda v: v, tf.constant([np.nan, 1.0], tf.float64))
    with pytest.warns(ConvergenceWarning):
        linalg.conjugate_gradient(lambda v: tf.linalg.matvec(A, v), b, max_iterations=2)
    with pytest.raises(TypeError, match="rhs"):
        linalg.conjugate_gradient(lambda v: v, tf.ones(3))  # float32


def test_conjugate_gradients_accept_a_numpy_matvec() -> None:
    A = np.diag([1.0, 2.0, 4.0])
    x = linalg.conjugate_gradient(lambda v: tf.constant(A @ np.asarray(v)), np.ones(3))
    np.testing.assert_allclose(x, [1.0, 0.5, 0.25])


# ------------------------------------------------------------------------------- layout


def test_import_does_not_load_gpflow() -> None:
    code = (
        "import sys, unlearnkit; assert 'gpflow' not in sys.modules; "
        "import unlearnkit.gp; assert 'gpflow' in sys.modules; "
        "assert unlearnkit.gp.inducing_posterior"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_no_module_imports_another_modules_private_names() -> None:
    import ast
    import pathlib

    root = pathlib.Path(unlearnkit.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("unlearnkit"):
                offenders += [
                    f"{path.name}: {alias.name}" for alias in node.names if alias.name.startswith("_")
                ]
    assert not offenders, offenders


def test_warnings_filter_turns_unconverged_results_into_errors() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning):
            optimize.minimize_lbfgs(
                lambda x: tf.reduce_sum(tf.exp(x) - 3.0 * x), tf.constant([8.0], tf.float64),
                max_iterations=1, tolerance=1e-10,
            )
