"""Tests for unlearnkit.evidence_upper_bound: the EUBO and unlearning by minimising it."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given
from hypothesis import strategies as st
from problems import linear_problem, logistic_problem

from unlearnkit import eubo, unlearn_eubo
from unlearnkit import OptimizationInfo
from unlearnkit.metrics import gaussian_kl

tfd = tfp.distributions

def _gaussian(loc, scale) -> tfd.MultivariateNormalTriL:
    return tfd.MultivariateNormalTriL(loc=tf.constant(loc), scale_tril=tf.constant(scale))


# --- eubo ---------------------------------------------------------------------------


def test_eubo_at_the_exact_posterior_is_the_evidence_of_the_erased_data() -> None:
    # U = log p(D_e | D_r) + KL[q_u || p(theta | D_r)], and the KL vanishes at q_u = p(theta | D_r).
    q_full, q_remaining, erased, log_evidence = linear_problem()
    value = eubo(q_remaining, q_full, erased, num_samples=500, seed=0)
    assert float(value) == pytest.approx(log_evidence, abs=1e-9)


@given(
    shift=st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3),
    log_scales=st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3),
)
def test_eubo_minus_evidence_is_the_kl_to_the_exact_posterior(shift, log_scales) -> None:
    q_full, q_remaining, erased, log_evidence = linear_problem()
    scale = q_remaining.scale.to_dense().numpy() @ np.diag(np.exp(log_scales))
    q_u = _gaussian(q_remaining.loc.numpy() + 0.1 * np.array(shift), scale)
    # Moment-matched samples make the expectation of a quadratic exact.
    value = float(eubo(q_u, q_full, erased, num_samples=200, seed=1))
    assert value - log_evidence == pytest.approx(float(gaussian_kl(q_u, q_remaining)), abs=1e-8)


def test_eubo_with_lam_one_is_the_kl_to_q_full() -> None:
    q_full, erased = logistic_problem()
    q_u = _gaussian(q_full.loc.numpy() + 0.2, 0.3 * np.eye(3))
    value = eubo(q_u, q_full, erased, lam=1.0, seed=0)
    assert float(value) == pytest.approx(float(gaussian_kl(q_u, q_full)), rel=1e-12)


def test_eubo_is_reproducible_and_depends_on_the_seed() -> None:
    q_full, erased = logistic_problem()
    first = eubo(q_full, q_full, erased, lam=0.01, num_samples=300, seed=3)
    second = eubo(q_full, q_full, erased, lam=0.01, num_samples=300, seed=3)
    other = eubo(q_full, q_full, erased, lam=0.01, num_samples=300, seed=4)
    assert float(first) == float(second) != float(other)


def test_eubo_rejects_mismatched_beliefs() -> None:
    q_full, erased = logistic_problem()
    with pytest.raises(ValueError, match="event shape"):
        eubo(_gaussian(np.zeros(2), np.eye(2)), q_full, erased)
    with pytest.raises(TypeError, match="q_u"):
        eubo("q_u", q_full, erased)


# --- unlearn_eubo: correctness ------------------------------------------------------


def test_unlearn_eubo_recovers_the_exact_posterior_of_the_remaining_data() -> None:
    q_full, q_remaining, erased, _ = linear_problem()
    q_u, info = unlearn_eubo(q_full, erased, seed=0, return_info=True)
    assert float(gaussian_kl(q_u, q_remaining)) < 1e-9
    assert float(gaussian_kl(q_full, q_remaining)) > 0.1  # there was something to unlearn
    assert isinstance(info, OptimizationInfo) and info.converged


def test_unlearn_eubo_recovers_the_exact_posterior_in_20_dimensions() -> None:
    q_full, q_remaining, erased, _ = linear_problem(d=20, n=200, n_erased=40)
    q_u = unlearn_eubo(q_full, erased, seed=0)
    assert float(gaussian_kl(q_u, q_remaining)) < 1e-8


def test_lam_one_returns_q_full_unchanged() -> None:
    q_full, erased = logistic_problem()
    q_u = unlearn_eubo(q_full, erased, lam=1.0, seed=0)
    assert q_u is not q_full
    np.testing.assert_array_equal(q_u.loc, q_full.loc)
    np.testing.assert_array_equal(q_u.scale.to_dense(), q_full.scale.to_dense())


@pytest.mark.parametrize("lam", [0.0, 1e-3, 0.3])
def test_unlearned_belief_has_a_lower_eubo_than_q_full(lam: float) -> None:
    # Judged by an independent, larger Monte Carlo estimate of the (unsmoothed) EUBO.
    q_full, erased = logistic_problem()
    q_u = unlearn_eubo(q_full, erased, lam, seed=0, num_samples=4000)
    judge = dict(lam=lam, num_samples=50_000, seed=123)
    gain = float(eubo(q_full, q_full, erased, **judge) - eubo(q_u, q_full, erased, **judge))
    assert gain > 0.0


def test_tiny_lam_gives_the_plain_eubo_answer() -> None:
    # With lam = 1e-12 the region holds all of q_full's samples: nothing is adjusted.
    q_full, erased = logistic_problem()
    plain = unlearn_eubo(q_full, erased, 0.0, seed=0, num_samples=2000)
    tiny = unlearn_eubo(q_full, erased, 1e-12, seed=0, num_samples=2000)
    assert float(gaussian_kl(tiny, plain)) < 1e-6


def test_default_smoothing_agrees_with_a_sharper_one() -> None:
    # Both answers agree to within Monte Carlo error, a small fraction of the change
    # that unlearning makes.
    q_full, erased = logistic_problem()
    default = unlearn_eubo(q_full, erased, 0.1, seed=0)
    sharper = unlearn_eubo(q_full, erased, 0.1, seed=0, boundary_smoothing=0.005)
    assert float(gaussian_kl(sharper, default)) < 0.02 * float(gaussian_kl(default, q_full))


def test_non_traceable_likelihood_falls_back_to_eager() -> None:
    q_full, erased = logistic_problem()

    def eager_only(theta):  # Python control flow on a tensor's value: fails inside tf.function
        if float(tf.reduce_max(tf.abs(theta))) > 1e6:
            raise ValueError("unreachable")
        return erased(theta)

    q_a = unlearn_eubo(q_full, erased, 0.0, seed=0, num_samples=500)
    q_b = unlearn_eubo(q_full, eager_only, 0.0, seed=0, num_samples=500)
    np.testing.assert_allclose(q_b.covariance(), q_a.covariance(), rtol=1e-8)


def test_unlearn_eubo_with_a_numpy_likelihood_is_refused() -> None:
    q_full, erased = logistic_problem()

    def numpy_likelihood(theta):  # no gradient: the EUBO would silently return q_full
        return tf.constant(erased(theta).numpy())

    with pytest.raises(ValueError, match="no gradient"):
        unlearn_eubo(q_full, numpy_likelihood, 0.0, seed=0, num_samples=500)


# --- unlearn_eubo: reliability ------------------------------------------------------


def test_unlearn_eubo_is_reproducible_with_a_seed() -> None:
    q_full, erased = logistic_problem()
    first = unlearn_eubo(q_full, erased, 0.01, seed=7, num_samples=500)
    second = unlearn_eubo(q_full, erased, 0.01, seed=7, num_samples=500)
    other = unlearn_eubo(q_full, erased, 0.01, seed=8, num_samples=500)
    np.testing.assert_array_equal(first.loc, second.loc)
    np.testing.assert_array_equal(first.scale.to_dense(), second.scale.to_dense())
    assert not np.array_equal(first.loc, other.loc)


def test_unlearn_eubo_does_not_modify_its_inputs() -> None:
    q_full, erased = logistic_problem()
    loc, scale = q_full.loc.numpy().copy(), q_full.scale.to_dense().numpy().copy()
    q_u = unlearn_eubo(q_full, erased, 0.01, seed=0, num_samples=500)
    np.testing.assert_array_equal(q_full.loc, loc)
    np.testing.assert_array_equal(q_full.scale.to_dense(), scale)
    assert isinstance(q_u, tfd.MultivariateNormalTriL) and q_u.dtype == tf.float64


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(lam=-0.5), ValueError, "lam"),
        (dict(lam=2.0), ValueError, "lam"),
        (dict(num_samples=3), ValueError, "num_samples"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(num_samples=10.0), TypeError, "num_samples"),
        (dict(max_iterations=0), ValueError, "max_iterations"),
        (dict(tolerance=-1.0), ValueError, "tolerance"),
        (dict(boundary_smoothing=-0.1), ValueError, "boundary_smoothing"),
        (dict(seed="zero"), TypeError, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match) -> None:
    q_full, erased = logistic_problem()
    with pytest.raises(error, match=match):
        unlearn_eubo(q_full, erased, **kwargs)


def test_bad_beliefs_and_callables_raise() -> None:
    q_full, erased = logistic_problem()
    with pytest.raises(TypeError, match="q_full"):
        unlearn_eubo(tfd.Normal(tf.zeros(3, tf.float64), 1.0), erased)
    with pytest.raises(TypeError, match="q_full must have dtype float64"):
        unlearn_eubo(tfd.MultivariateNormalTriL(loc=tf.zeros(3), scale_tril=tf.eye(3)), erased)
    with pytest.raises(TypeError, match="erased_log_likelihood"):
        unlearn_eubo(q_full, "not a function")
    with pytest.raises(ValueError, match="shape"):
        unlearn_eubo(q_full, lambda t: tf.reduce_sum(t, axis=-1, keepdims=True))
    with pytest.raises(ValueError, match="NaN"):
        unlearn_eubo(q_full, lambda t: tf.math.log(-tf.ones([t.shape[0]], tf.float64)))


# --- likelihoods with a Gaussian expectation, and the lam grid -------------------------

from unlearnkit.variational.evidence_upper_bound import unlearn_eubo_grid  # noqa: E402
from unlearnkit.variational.linear_predictor import (  # noqa: E402
    LinearPredictorLogLikelihood,
    expected_log_sigmoid,
)


def _structured_logistic_problem(d: int = 3, n: int = 10, seed: int = 0):
    """The logistic problem with its likelihood as a LinearPredictorLogLikelihood, and the
    same likelihood as a plain callable (no gaussian_expectation)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    signs = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
    q_full = _gaussian(rng.normal(size=d) * 0.3, 0.4 * np.eye(d))
    structured = LinearPredictorLogLikelihood(
        X.T, np.zeros(n), lambda t: -tf.math.softplus(-signs * t), lambda m, v: expected_log_sigmoid(signs * m, v)
    )
    return q_full, structured, (lambda theta: structured(theta))


def test_closed_form_eubo_at_lam_zero_is_the_monte_carlo_eubo() -> None:
    q_full, structured, plain = _structured_logistic_problem()
    q_u = _gaussian(q_full.loc.numpy() + 0.3, 0.5 * np.eye(3))
    closed = float(eubo(q_u, q_full, structured, 0.0))  # quadrature: no samples
    sampled = [float(eubo(q_u, q_full, plain, 0.0, num_samples=50_000, seed=s)) for s in range(4)]
    assert closed == pytest.approx(np.mean(sampled), abs=3e-3)
    assert float(eubo(q_u, q_full, structured, 0.0, seed=1)) == closed  # the seed is irrelevant


@pytest.mark.parametrize("lam", [0.1, 1e-3, 1e-6])
def test_control_variate_estimates_the_same_eubo(lam: float) -> None:
    q_full, structured, plain = _structured_logistic_problem()
    q_u = _gaussian(q_full.loc.numpy() - 0.2, 0.35 * np.eye(3))
    controlled = [float(eubo(q_u, q_full, structured, lam, num_samples=20_000, seed=s)) for s in range(5)]
    reference = float(eubo(q_u, q_full, plain, lam, num_samples=400_000, seed=99))
    # standard errors measured at lam = 0.1 (the noisiest): 0.004 (mean of five) and
    # 0.003 (reference), so 0.02 is four standard deviations of the difference
    assert np.mean(controlled) == pytest.approx(reference, abs=0.02)


def test_closed_form_unlearning_agrees_with_monte_carlo_unlearning() -> None:
    q_full, structured, plain = _structured_logistic_problem()
    closed = unlearn_eubo(q_full, structured, 0.0, seed=0)
    sampled = unlearn_eubo(q_full, plain, 0.0, seed=0, num_samples=50_000)
    assert float(gaussian_kl(sampled, closed)) < 0.01 * float(gaussian_kl(closed, q_full))


@pytest.mark.parametrize("lam", [1e-2, 1e-5])
def test_sampled_unlearning_stops_once_iterations_gain_less_than_the_monte_carlo_noise(lam) -> None:
    from unlearnkit import optimize
    from unlearnkit.variational import evidence_upper_bound, gaussian
    from unlearnkit.variational.adjusted import AdjustedLogLikelihood

    q_full, _, plain = _structured_logistic_problem(n=30)
    problem = evidence_upper_bound._WhitenedEUBO(AdjustedLogLikelihood(plain, q_full, lam), 2000, 0, 0.02)
    noise = problem.standard_error(lam, 0.02)
    objective, _ = problem.compiled(lam, 0.02)
    x0 = tf.zeros([gaussian.num_parameters(3)], tf.float64)
    _, full = optimize.minimize_lbfgs(objective, x0, max_iterations=1000, tolerance=1e-6,
                                      returns_gradient=True)  # to L-BFGS's own tolerance
    belief, info = unlearn_eubo(q_full, plain, lam, seed=0, num_samples=2000, return_info=True)
    assert noise > 0 and info.converged
    assert info.num_evaluations <= full.num_evaluations
    # what the rule leaves on the table is far below the estimate's noise
    assert 0.0 <= info.objective - full.objective < 0.1 * noise


def test_grid_gives_what_single_calls_give() -> None:
    q_full, structured, _ = _structured_logistic_problem()
    lams = [0.3, 1e-4, 0.0, 1.0]
    beliefs, infos = unlearn_eubo_grid(q_full, structured, lams, seed=2, num_samples=1000, return_info=True)
    assert len(beliefs) == len(infos) == 4 and all(isinstance(i, OptimizationInfo) for i in infos)
    for lam, belief in zip(lams, beliefs):
        single = unlearn_eubo(q_full, structured, lam, seed=2, num_samples=1000)
        np.testing.assert_allclose(belief.loc, single.loc, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(belief.scale.to_dense(), single.scale.to_dense(), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(beliefs[3].loc, q_full.loc)  # lam = 1: nothing unlearned


def test_grid_works_for_plain_callables_too() -> None:
    q_full, erased = logistic_problem()
    beliefs = unlearn_eubo_grid(q_full, erased, [0.0, 0.01], seed=0, num_samples=500)
    single = unlearn_eubo(q_full, erased, 0.01, seed=0, num_samples=500)
    np.testing.assert_allclose(beliefs[1].covariance(), single.covariance(), rtol=1e-10)


@pytest.mark.parametrize(
    "lams, error",
    [([], ValueError), ([0.1, 2.0], ValueError), ("0.1", TypeError), (0.1, TypeError), ([None], TypeError)],
)
def test_grid_rejects_bad_lams(lams, error) -> None:
    q_full, erased = logistic_problem()
    with pytest.raises(error, match="lams"):
        unlearn_eubo_grid(q_full, erased, lams)


def test_compiled_objectives_are_reused_across_calls_without_changing_results() -> None:
    import gc

    from unlearnkit.variational import evidence_upper_bound as module

    q_full, structured, _ = _structured_logistic_problem()
    fresh = {  # each from a likelihood object of its own: traced afresh
        lam: unlearn_eubo(q_full, _structured_logistic_problem()[1], lam, seed=3, num_samples=500)
        for lam in (0.0, 1e-4)
    }
    other_q = _gaussian(q_full.loc.numpy() + 0.1, 0.5 * np.eye(3))
    for lam in (0.0, 1e-4, 0.0, 1e-4):  # the second pair reuses the first pair's functions
        again = unlearn_eubo(q_full, structured, lam, seed=3, num_samples=500)
        np.testing.assert_array_equal(again.loc, fresh[lam].loc)
        np.testing.assert_array_equal(again.scale.to_dense(), fresh[lam].scale.to_dense())
    assert len(module._COMPILED[structured]) == 2  # lam = 0 and lam > 0
    # a different q_full (same shapes) reuses them too, with its own mean and scale
    reused = unlearn_eubo(other_q, structured, 1e-4, seed=3, num_samples=500)
    own = unlearn_eubo(other_q, _structured_logistic_problem()[1], 1e-4, seed=3, num_samples=500)
    np.testing.assert_allclose(reused.loc, own.loc, rtol=1e-12, atol=1e-14)
    assert len(module._COMPILED[structured]) == 2
    # the cache never keeps a likelihood alive
    del structured
    gc.collect()
    size = len(module._COMPILED)
    temporary = _structured_logistic_problem()[1]
    unlearn_eubo(q_full, temporary, 0.0, seed=3)
    assert len(module._COMPILED) == size + 1
    del temporary
    gc.collect()
    assert len(module._COMPILED) == size
    # plain callables are not cached (they may change in place)
    unlearn_eubo(q_full, lambda theta: _structured_logistic_problem()[1](theta), 0.0, seed=3,
                 num_samples=200)
    assert len(module._COMPILED) == size
