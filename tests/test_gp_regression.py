"""Tests for unlearnkit.gp.regression: exact unlearning for GPflow GPR by Cholesky downdating.

Every downdated posterior is compared with ``gpflow.models.GPR`` trained on the remaining
data with the same kernel, likelihood and mean function (to 1e-8, relative to the scale of
the outputs), for random, structured, single-point and trailing removals, removals in
batches, several kernels and mean functions, and ill-conditioned kernel matrices.
"""

from __future__ import annotations

import warnings

import gpflow
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from unlearnkit.errors import FallbackWarning, NotPositiveDefiniteError
from unlearnkit.gp import GPRCholeskyPosterior, GPRUnlearnInfo, unlearn_gpr
from unlearnkit.gp import regression

TOLERANCE = 1e-8
RNG = np.random.default_rng(16)
X_TEST_1D = np.linspace(-4.0, 4.0, 23)[:, None]


def _data(n: int, input_dim: int = 1, num_outputs: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3.0, 3.0, size=(n, input_dim))
    f = np.sin(X.sum(axis=1, keepdims=True)) + 0.3 * X[:, :1]
    Y = np.concatenate([f * (p + 1) for p in range(num_outputs)], axis=1)
    return X, Y + 0.1 * rng.normal(size=Y.shape)


def _gpr(X, Y, *, kernel=None, mean_function=None, likelihood=None, noise_variance=0.05):
    if likelihood is None:
        likelihood = gpflow.likelihoods.Gaussian(noise_variance)
    return gpflow.models.GPR(
        (X, Y),
        kernel=kernel if kernel is not None else gpflow.kernels.SquaredExponential(),
        mean_function=mean_function,
        likelihood=likelihood,
    )


def _retrained(model: gpflow.models.GPR, keep: np.ndarray) -> gpflow.models.GPR:
    """GPR on the rows ``keep`` of the model's data, with copies of its hyperparameters."""
    X, Y = (np.asarray(t) for t in model.data)
    return gpflow.models.GPR(
        (X[keep], Y[keep]),
        kernel=gpflow.utilities.deepcopy(model.kernel),
        mean_function=gpflow.utilities.deepcopy(model.mean_function),
        likelihood=gpflow.utilities.deepcopy(model.likelihood),
    )


def _keep(n: int, erased) -> np.ndarray:
    return np.setdiff1d(np.arange(n), np.asarray(erased, dtype=int))


def _assert_predicts_like(posterior, reference, Xnew, tolerance=TOLERANCE):
    """Means, variances, covariances, log densities and evidence agree with ``reference``."""
    Y = np.asarray(reference.data[1])
    scale = max(1.0, float(np.max(np.abs(Y), initial=0.0)))
    for full_cov in (False, True):
        mean, var = posterior.predict_f(Xnew, full_cov=full_cov)
        ref_mean, ref_var = reference.predict_f(Xnew, full_cov=full_cov)
        assert mean.shape == ref_mean.shape and var.shape == ref_var.shape
        np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=tolerance * scale)
        np.testing.assert_allclose(var, ref_var, rtol=0, atol=tolerance)
    mean, var = posterior.predict_y(Xnew)
    ref_mean, ref_var = reference.predict_y(Xnew)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=tolerance * scale)
    np.testing.assert_allclose(var, ref_var, rtol=0, atol=tolerance)
    # one sd from the mean; an error d in the mean moves the log density by about d / sd
    smallest = float(np.min(ref_var))
    Ynew = np.asarray(ref_mean) + np.sqrt(np.asarray(ref_var))
    np.testing.assert_allclose(
        posterior.predict_log_density((Xnew, Ynew)),
        reference.predict_log_density((Xnew, Ynew)),
        rtol=0, atol=tolerance * (scale / np.sqrt(smallest) + 1.0 / smallest),
    )
    np.testing.assert_allclose(
        float(posterior.log_marginal_likelihood()),
        float(reference.log_marginal_likelihood()),
        rtol=tolerance, atol=tolerance,
    )


def _snapshot(model):
    return [v.numpy().copy() for v in model.variables] + [np.asarray(t).copy() for t in model.data]


MODELS = {
    "se-1d": dict(input_dim=1),
    "se-2d-ard-linear-mean": dict(
        input_dim=2,
        kernel=lambda: gpflow.kernels.SquaredExponential(lengthscales=[0.8, 1.7]),
        mean=lambda: gpflow.mean_functions.Linear(A=[[0.4], [-0.2]], b=[0.3]),
    ),
    "matern-plus-linear-two-outputs": dict(
        input_dim=1,
        num_outputs=2,
        kernel=lambda: gpflow.kernels.Matern52(variance=2.0, lengthscales=0.6)
        + gpflow.kernels.Linear(variance=0.3),
        mean=lambda: gpflow.mean_functions.Constant([1.5]),
    ),
    "heteroscedastic-noise": dict(
        input_dim=1,
        likelihood=lambda: gpflow.likelihoods.Gaussian(
            variance=gpflow.functions.Linear(A=[[0.02]], b=[0.08])
        ),
    ),
}


def _model(name: str, n: int = 90, seed: int = 0) -> gpflow.models.GPR:
    spec = MODELS[name]
    X, Y = _data(n, spec["input_dim"], spec.get("num_outputs", 1), seed)
    return _gpr(
        X, Y,
        kernel=spec["kernel"]() if "kernel" in spec else None,
        mean_function=spec["mean"]() if "mean" in spec else None,
        likelihood=spec["likelihood"]() if "likelihood" in spec else None,
    )


def _test_inputs(model) -> np.ndarray:
    input_dim = model.data[0].shape[1]
    return np.random.default_rng(1).uniform(-4.0, 4.0, size=(17, input_dim))


# --- agreement with retraining -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_random_removal_equals_retraining(name):
    model = _model(name)
    erased = RNG.choice(90, size=13, replace=False)
    posterior, info = unlearn_gpr(model, erased, method="downdate", return_info=True)
    assert isinstance(info, GPRUnlearnInfo) and info.method == "downdate"
    assert info.num_erased == 13 and info.backward_error < 1e-12
    assert info.rows_updated == 90 - 13 - int(np.min(erased))
    _assert_predicts_like(posterior, _retrained(model, _keep(90, erased)), _test_inputs(model))


def test_structured_removal_of_a_region_equals_retraining():
    X, Y = _data(150)
    order = np.argsort(X[:, 0])
    X, Y = X[order], Y[order]  # rows sorted by input: the region is a block in the middle
    erased = np.flatnonzero((X[:, 0] > -0.5) & (X[:, 0] < 1.0))
    model = _gpr(X, Y)
    posterior = unlearn_gpr(model, erased, method="downdate")
    _assert_predicts_like(posterior, _retrained(model, _keep(150, erased)), X_TEST_1D)
    # the same region when the rows are shuffled: scattered positions in the factor
    shuffle = np.random.default_rng(3).permutation(150)
    shuffled = _gpr(X[shuffle], Y[shuffle])
    scattered = np.flatnonzero(np.isin(shuffle, erased))
    posterior = unlearn_gpr(shuffled, scattered, method="downdate")
    _assert_predicts_like(posterior, _retrained(shuffled, _keep(150, scattered)), X_TEST_1D)


@pytest.mark.parametrize("index", [0, 1, 37, 88, 89])
def test_single_point_removal_equals_retraining(index):
    model = _model("se-1d")
    posterior, info = unlearn_gpr(model, [index], method="downdate", return_info=True)
    assert info.rows_updated == 89 - index
    _assert_predicts_like(posterior, _retrained(model, _keep(90, [index])), X_TEST_1D)


def test_removing_trailing_points_is_free_and_exact():
    model = _model("se-1d")
    full = GPRCholeskyPosterior(model)
    posterior, info = unlearn_gpr(full, np.arange(80, 90), return_info=True)
    assert info.method == "downdate" and info.rows_updated == 0
    np.testing.assert_array_equal(posterior.cholesky, full.cholesky[:80, :80])
    _assert_predicts_like(posterior, _retrained(model, np.arange(80)), X_TEST_1D)


def test_removals_in_batches_equal_retraining():
    model = _model("se-2d-ard-linear-mean", n=120)
    posterior = GPRCholeskyPosterior(model)
    batches = np.array_split(np.random.default_rng(5).permutation(120)[:60], [1, 11, 31])
    erased_so_far = np.array([], dtype=int)
    for batch in batches:  # indices always refer to the original data
        posterior = posterior.unlearn(batch, method="downdate")
        erased_so_far = np.union1d(erased_so_far, batch)
        np.testing.assert_array_equal(posterior.erased_indices, erased_so_far)
        np.testing.assert_array_equal(posterior.indices, _keep(120, erased_so_far))
        assert posterior.num_data == 120 - erased_so_far.size and posterior.num_original == 120
        _assert_predicts_like(posterior, _retrained(model, posterior.indices), _test_inputs(model))


def test_erasing_everything_leaves_the_prior():
    model = _model("matern-plus-linear-two-outputs", n=20)
    posterior = unlearn_gpr(model, np.arange(20))
    assert posterior.num_data == 0 and posterior.cholesky.shape == (0, 0)
    _assert_predicts_like(posterior, _retrained(model, np.array([], dtype=int)), X_TEST_1D)
    assert posterior.to_gpr().data[0].shape == (0, 1)


def test_erasing_nothing_returns_the_same_posterior():
    model = _model("se-1d")
    full = GPRCholeskyPosterior(model)
    same, info = unlearn_gpr(full, np.array([], dtype=int), return_info=True)
    assert info.method == "none" and same.num_data == 90
    _assert_predicts_like(same, model, X_TEST_1D, tolerance=1e-12)


def test_the_factor_is_the_cholesky_factor_of_the_remaining_data():
    model = _model("se-1d")
    erased = np.array([3, 4, 40, 41, 42, 77])
    posterior = unlearn_gpr(model, erased, method="downdate")
    keep = _keep(90, erased)
    X = np.asarray(model.data[0])[keep]
    A = model.kernel(X).numpy() + 0.05 * np.eye(keep.size)
    np.testing.assert_allclose(posterior.cholesky, np.linalg.cholesky(A), atol=1e-12)
    assert not posterior.cholesky.flags.writeable


@pytest.mark.parametrize("block", [1, 2, 5, 16, None])
@pytest.mark.parametrize("num_outputs", [1, 3])
def test_downdate_kernel_for_any_block_size(block, num_outputs):
    """The blocked rank-k update on a dense SPD matrix, including blocks that straddle erased
    columns, against NumPy's factorisation and triangular solve."""
    rng = np.random.default_rng(block or 0)
    n = 61
    B = rng.normal(size=(n, n))
    A = B @ B.T + n * np.eye(n)
    L = np.asfortranarray(np.linalg.cholesky(A))
    residual = rng.normal(size=(n, num_outputs))
    beta = np.linalg.solve(L, residual)
    for erased in ([0], [60], [7, 8, 9], [2, 19, 20, 33, 58], list(range(0, 61, 2))):
        erased = np.array(erased)
        new_L, new_beta = regression._downdate(L, beta, erased, block)
        keep = _keep(n, erased)
        expected = np.linalg.cholesky(A[np.ix_(keep, keep)])
        np.testing.assert_allclose(new_L, expected, atol=1e-12)
        np.testing.assert_allclose(new_beta, np.linalg.solve(expected, residual[keep]), atol=1e-12)
        assert new_L.flags.f_contiguous and np.all(np.triu(new_L, 1) == 0)
    np.testing.assert_array_equal(L, np.linalg.cholesky(A))  # the input is not written to


# --- laws ---------------------------------------------------------------------------

_LAW_MODEL = _model("se-2d-ard-linear-mean", n=40, seed=7)
_LAW_FULL = GPRCholeskyPosterior(_LAW_MODEL)
_LAW_X = _test_inputs(_LAW_MODEL)

subsets = st.lists(st.integers(0, 39), unique=True, max_size=12)


def _mean_and_var(posterior):
    mean, var = posterior.predict_f(_LAW_X)
    return np.asarray(mean), np.asarray(var)


@given(first=subsets, second=subsets)
def test_removing_a_then_b_equals_removing_their_union(first, second):
    second = [i for i in second if i not in first]
    in_two = _LAW_FULL.unlearn(first, method="downdate").unlearn(second, method="downdate")
    at_once = _LAW_FULL.unlearn(first + second, method="downdate")
    refit = _LAW_FULL.unlearn(first + second, method="refactorise")
    for posterior in (in_two, at_once):
        np.testing.assert_array_equal(posterior.indices, refit.indices)
        for got, want in zip(_mean_and_var(posterior), _mean_and_var(refit)):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@given(erased=subsets.filter(bool), seed=st.integers(0, 2**31 - 1))
def test_order_of_the_erased_indices_is_irrelevant(erased, seed):
    shuffled = list(np.random.default_rng(seed).permutation(erased))
    one = _LAW_FULL.unlearn(erased, method="downdate")
    two = _LAW_FULL.unlearn(shuffled, method="downdate")
    np.testing.assert_array_equal(one.cholesky, two.cholesky)
    for got, want in zip(_mean_and_var(one), _mean_and_var(two)):
        np.testing.assert_array_equal(got, want)


@given(erased=subsets)
def test_downdate_equals_gpr_on_the_remaining_data(erased):
    posterior = _LAW_FULL.unlearn(erased, method="downdate")
    reference = _retrained(_LAW_MODEL, _keep(40, erased))
    mean, var = reference.predict_f(_LAW_X)
    got_mean, got_var = _mean_and_var(posterior)
    np.testing.assert_allclose(got_mean, mean, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got_var, var, rtol=0, atol=TOLERANCE)


# --- conditioning ---------------------------------------------------------------------


@pytest.mark.parametrize("noise_variance", [1e-2, 1e-4, 1e-6])
def test_ill_conditioned_kernels_agree_to_1e8(noise_variance):
    """A smooth kernel on dense inputs with small noise: κ(K + σ²I) ≈ n / σ² up to 1e8."""
    X, Y = _data(80, seed=2)
    kernel = gpflow.kernels.SquaredExponential(lengthscales=3.0)
    likelihood = gpflow.likelihoods.Gaussian(noise_variance, variance_lower_bound=1e-12)
    model = _gpr(X, Y, kernel=kernel, likelihood=likelihood)
    erased = RNG.choice(80, size=9, replace=False)
    posterior, info = unlearn_gpr(model, erased, method="downdate", return_info=True)
    reference = _retrained(model, _keep(80, erased))
    A = kernel(X[_keep(80, erased)]).numpy() + noise_variance * np.eye(71)
    condition = np.linalg.cond(A)
    assert condition > 0.1 / noise_variance  # it is as ill-conditioned as intended
    assert info.condition_lower_bound <= condition * (1 + 1e-6)
    estimate = posterior.condition_number()  # 1-norm estimate, within a factor n of the 2-norm one
    assert condition / 80 <= estimate <= 80 * condition
    _assert_predicts_like(posterior, reference, X_TEST_1D)


def _long_double_mean(X, y, X_test, lengthscale, noise_variance):
    """Posterior mean of a squared-exponential GP computed in extended precision."""
    ld = np.longdouble
    sq = lambda a, b: ((a.astype(ld)[:, None] - b.astype(ld)[None, :]) / ld(lengthscale)) ** 2
    A = np.exp(-sq(X, X) / 2) + ld(noise_variance) * np.eye(X.size, dtype=ld)
    L = np.zeros_like(A)
    for j in range(X.size):
        L[j, j] = np.sqrt(A[j, j] - L[j, :j] @ L[j, :j])
        L[j + 1 :, j] = (A[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]) / L[j, j]
    alpha = np.zeros(X.size, dtype=ld)
    for i in range(X.size):  # forward, then backward substitution
        alpha[i] = (y[i] - L[i, :i] @ alpha[:i]) / L[i, i]
    for i in reversed(range(X.size)):
        alpha[i] = (alpha[i] - L[i + 1 :, i] @ alpha[i + 1 :]) / L[i, i]
    return (np.exp(-sq(X_test, X) / 2) @ alpha).astype(float)


@pytest.mark.parametrize("noise_variance", [1e-8, 1e-10, 1e-12])
def test_the_downdate_is_as_accurate_as_refactorising_when_ill_conditioned(noise_variance):
    """Beyond κ ≈ 1e9 neither route agrees with exact arithmetic to 1e-8, but the downdate's
    error stays of the size of refactorising's: the update is backward stable."""
    rng = np.random.default_rng(3)
    X = np.sort(rng.uniform(0.0, 1.0, 60))
    y = np.sin(6 * X) + 0.1 * rng.normal(size=60)
    likelihood = gpflow.likelihoods.Gaussian(noise_variance, variance_lower_bound=1e-16)
    kernel = gpflow.kernels.SquaredExponential(lengthscales=0.3)
    model = _gpr(X[:, None], y[:, None], kernel=kernel, likelihood=likelihood)
    erased = rng.choice(60, size=6, replace=False)
    keep = _keep(60, erased)
    X_test = np.linspace(0.0, 1.0, 25)
    exact = _long_double_mean(X[keep], y[keep], X_test, 0.3, noise_variance)
    full = GPRCholeskyPosterior(model)
    errors = {}
    for method in ("downdate", "refactorise"):
        mean = full.unlearn(erased, method=method).predict_f(X_test[:, None])[0].numpy()[:, 0]
        errors[method] = np.max(np.abs(mean - exact))
    condition = np.linalg.cond(model.kernel(X[keep, None]).numpy() + noise_variance * np.eye(54))
    assert condition > 1e9  # ill-conditioned enough that rounding errors show
    assert errors["downdate"] <= 10 * errors["refactorise"] + 1e-12, (errors, condition)


def test_near_duplicates_make_the_full_factor_ill_conditioned_not_the_downdate():
    """Erasing one of each pair of near-duplicate inputs: κ(A) ≈ 1e11 on all the data, but the
    downdate is as accurate as the well-conditioned remaining problem allows."""
    X0 = np.linspace(-3.0, 3.0, 40)[:, None]
    X = np.concatenate([X0, X0[:15] + 1e-7])
    Y = np.sin(X) + 0.1 * np.random.default_rng(0).normal(size=X.shape)
    kernel = gpflow.kernels.SquaredExponential(lengthscales=0.1)
    likelihood = gpflow.likelihoods.Gaussian(1e-10, variance_lower_bound=1e-14)
    model = _gpr(X, Y, kernel=kernel, likelihood=likelihood)
    assert np.linalg.cond(kernel(X).numpy() + 1e-10 * np.eye(55)) > 1e9
    erased = np.arange(40, 55)
    posterior = unlearn_gpr(model, erased, method="downdate")
    _assert_predicts_like(posterior, _retrained(model, np.arange(40)), X_TEST_1D, tolerance=1e-10)


# --- fallbacks --------------------------------------------------------------------------


def test_a_failed_check_falls_back_to_refactorising(monkeypatch):
    model = _model("se-1d")
    erased = np.array([10, 50])
    real = regression._downdate

    def corrupted(L, beta, positions, block=None):
        new_L, new_beta = real(L, beta, positions, block)
        new_L[-1, 0] += 1e-6  # an error in an updated row
        return new_L, new_beta

    monkeypatch.setattr(regression, "_downdate", corrupted)
    with pytest.warns(FallbackWarning, match="backward error"):
        posterior, info = unlearn_gpr(model, erased, method="downdate", return_info=True)
    assert info.method == "refactorise" and "backward error" in info.fallback_reason
    assert info.backward_error > 1e-10
    _assert_predicts_like(posterior, _retrained(model, _keep(90, erased)), X_TEST_1D)


def test_a_non_finite_factor_falls_back_to_refactorising(monkeypatch):
    model = _model("se-1d")
    real = regression._downdate

    def broken(L, beta, positions, block=None):
        new_L, new_beta = real(L, beta, positions, block)
        new_L[5, 5] = np.nan
        return new_L, new_beta

    monkeypatch.setattr(regression, "_downdate", broken)
    with pytest.warns(FallbackWarning, match="non-finite"):
        posterior = unlearn_gpr(model, [0], method="downdate")
    _assert_predicts_like(posterior, _retrained(model, _keep(90, [0])), X_TEST_1D)


def test_a_singular_full_problem_falls_back_to_refactorising_the_remaining_data():
    """Exact duplicate inputs and (almost) no noise: K + σ²I on all the data is numerically
    singular and has no Cholesky factor, but without the duplicates it is well-conditioned."""
    X0 = np.linspace(-3.0, 3.0, 30)[:, None]
    X = np.concatenate([X0, X0[:5]])
    Y = np.sin(X)
    likelihood = gpflow.likelihoods.Gaussian(1e-20, variance_lower_bound=1e-30)
    model = _gpr(
        X, Y, kernel=gpflow.kernels.SquaredExponential(lengthscales=1.0), likelihood=likelihood
    )
    with pytest.raises(NotPositiveDefiniteError):
        GPRCholeskyPosterior(model)
    with pytest.warns(FallbackWarning, match="factorisation"):
        posterior, info = unlearn_gpr(
            _gpr(X, Y, kernel=gpflow.kernels.SquaredExponential(lengthscales=0.05),
                 likelihood=gpflow.likelihoods.Gaussian(1e-20, variance_lower_bound=1e-30)),
            np.arange(30, 35), return_info=True,
        )
    assert info.method == "refactorise"
    reference = _gpr(X0, Y[:30], kernel=gpflow.kernels.SquaredExponential(lengthscales=0.05),
                     likelihood=gpflow.likelihoods.Gaussian(1e-20, variance_lower_bound=1e-30))
    _assert_predicts_like(posterior, reference, X_TEST_1D)
    with pytest.warns(FallbackWarning), pytest.raises(NotPositiveDefiniteError):
        unlearn_gpr(model, [0])  # the remaining data still hold duplicates


# --- GPflow posteriors as the source -----------------------------------------------------


def test_a_gpflow_posterior_cache_is_reused():
    model = _model("se-2d-ard-linear-mean")
    erased = [4, 60]
    for cache in ("tensor", "variable", None):
        gpflow_posterior = model.posterior(cache)
        with warnings.catch_warnings():
            warnings.simplefilter("error", FallbackWarning)
            posterior, info = unlearn_gpr(
                gpflow_posterior, erased, method="downdate", return_info=True
            )
        assert info.method == "downdate"
        _assert_predicts_like(posterior, _retrained(model, _keep(90, erased)), _test_inputs(model))


def test_a_stale_gpflow_posterior_cache_is_refused_or_replaced():
    model = _model("se-1d")
    gpflow_posterior = model.posterior()
    model.kernel.lengthscales.assign(1.3)  # the cache now belongs to other hyperparameters
    with pytest.raises(ValueError, match="stale"):
        GPRCholeskyPosterior.from_gpflow_posterior(gpflow_posterior)
    with pytest.warns(FallbackWarning, match="stale"):
        posterior = unlearn_gpr(gpflow_posterior, [3])
    _assert_predicts_like(posterior, _retrained(model, _keep(90, [3])), X_TEST_1D)


# --- the caller's objects ---------------------------------------------------------------


def test_the_model_is_not_modified_and_the_result_does_not_follow_it():
    model = _model("se-2d-ard-linear-mean")
    before = _snapshot(model)
    posterior = unlearn_gpr(model, [1, 2, 3])
    for was, now in zip(before, _snapshot(model)):
        np.testing.assert_array_equal(was, now)
    mean_before = posterior.predict_f(_test_inputs(model))[0].numpy()
    model.kernel.lengthscales.assign([5.0, 5.0])
    model.likelihood.variance.assign(1.0)
    np.testing.assert_array_equal(posterior.predict_f(_test_inputs(model))[0], mean_before)


def test_to_gpr_is_an_independent_gpr_on_the_remaining_data():
    model = _model("matern-plus-linear-two-outputs")
    posterior = unlearn_gpr(model, [0, 10, 20])
    gpr = posterior.to_gpr()
    assert isinstance(gpr, gpflow.models.GPR)
    np.testing.assert_array_equal(gpr.data[0], np.asarray(model.data[0])[posterior.indices])
    _assert_predicts_like(posterior, gpr, X_TEST_1D)
    gpr.likelihood.variance.assign(0.5)
    _assert_predicts_like(posterior, _retrained(model, posterior.indices), X_TEST_1D)


def test_predictions_are_differentiable_in_the_inputs():
    posterior = unlearn_gpr(_model("se-1d"), [5])
    Xnew = tf.Variable(X_TEST_1D)
    with tf.GradientTape() as tape:
        mean, var = posterior.predict_f(Xnew)
        total = tf.reduce_sum(mean) + tf.reduce_sum(var)
    gradient = tape.gradient(total, Xnew)
    assert gradient is not None and np.all(np.isfinite(gradient))


def test_auto_refactorises_when_that_is_cheaper():
    model = _model("se-1d", n=200)
    full = GPRCholeskyPosterior(model)
    assert unlearn_gpr(full, [0, 1], return_info=True)[1].method == "downdate"
    assert unlearn_gpr(full, [150, 190], return_info=True)[1].method == "downdate"
    posterior, info = unlearn_gpr(full, np.arange(0, 200, 2), return_info=True)
    assert info.method == "refactorise"
    _assert_predicts_like(posterior, _retrained(model, np.arange(1, 200, 2)), X_TEST_1D)
    forced = unlearn_gpr(full, np.arange(0, 200, 2), method="downdate", return_info=True)[1]
    assert forced.method == "downdate"


# --- bad input --------------------------------------------------------------------------


def test_bad_input_is_refused_with_clear_errors():
    model = _model("se-1d")
    posterior = unlearn_gpr(model, [5])
    with pytest.raises(TypeError, match="source"):
        unlearn_gpr(object(), [1])
    with pytest.raises(TypeError, match="source"):
        unlearn_gpr(gpflow.models.VGP((model.data[0], model.data[1]), gpflow.kernels.Matern12(),
                                      gpflow.likelihoods.Gaussian()), [1])
    with pytest.raises(ValueError, match="already erased"):
        posterior.unlearn([4, 5])
    with pytest.raises(ValueError, match="erased"):
        unlearn_gpr(model, [90])
    with pytest.raises(ValueError, match="repeated"):
        unlearn_gpr(model, [3, 3])
    with pytest.raises(TypeError, match="erased"):
        unlearn_gpr(model, [0.5])
    with pytest.raises(ValueError, match="method"):
        unlearn_gpr(model, [1], method="cholesky")
    with pytest.raises(ValueError, match="tolerance"):
        unlearn_gpr(model, [1], tolerance=0.0)
    with pytest.raises(ValueError, match="Xnew"):
        posterior.predict_f(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="Xnew"):
        posterior.predict_f(np.full((3, 1), np.nan))
    with pytest.raises(NotImplementedError):
        posterior.predict_f(X_TEST_1D, full_output_cov=True)
    with pytest.raises(NotImplementedError):
        posterior.predict_y(X_TEST_1D, full_cov=True)
    with pytest.raises(TypeError, match="model"):
        GPRCholeskyPosterior(object())
    X32 = np.asarray(model.data[0], dtype=np.float32)
    with pytest.raises(TypeError, match="float64"):
        GPRCholeskyPosterior(gpflow.models.GPR((X32, X32), gpflow.kernels.Matern12()))
