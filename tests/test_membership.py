"""Membership inference: the AUC of a per-point score, and the scores of a belief."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from unlearnkit.exact import LinearGaussian
from unlearnkit.metrics import membership_inference_auc, membership_scores

tfd = tfp.distributions


def per_point_gaussian(X: np.ndarray, y: np.ndarray, noise: float):
    """theta [S, d] -> [S, N] log N(y_n | x_n^T theta, noise)."""
    X, y = tf.constant(X), tf.constant(y)

    def log_likelihood(theta):
        mean = tf.matmul(theta, X, transpose_b=True)
        return tfd.Normal(mean, np.sqrt(noise)).log_prob(y)

    return log_likelihood


def test_two_samples_of_one_distribution_give_about_one_half() -> None:
    rng = np.random.default_rng(0)
    auc = membership_inference_auc(rng.normal(size=4000), rng.normal(size=4000))
    assert abs(auc - 0.5) < 0.03  # sd of the AUC here is about 0.0065


def test_separated_scores_give_one_and_reversed_give_zero() -> None:
    assert membership_inference_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert membership_inference_auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert membership_inference_auc([1.0], [1.0]) == 0.5  # a tie counts one half


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e6, 1e6)),
    hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e6, 1e6)),
)
def test_swapping_members_and_nonmembers_reflects_the_auc(a, b) -> None:
    forward, backward = membership_inference_auc(a, b), membership_inference_auc(b, a)
    assert 0.0 <= forward <= 1.0
    assert forward + backward == pytest.approx(1.0, abs=1e-12)


def regression(n: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.5 * rng.normal(size=n)
    return X, y


def test_a_model_that_memorised_its_points_is_found_out_and_retraining_hides_them() -> None:
    # 60 features, 40 training points, small assumed noise: the posterior fits its own
    # points far better than fresh ones from the same distribution.
    d, noise = 60, 0.05
    X, y = regression(480, d, seed=1)
    members, held_out, erased = slice(0, 40), slice(40, 440), slice(440, 480)
    prior = LinearGaussian(np.zeros(d), np.eye(d), noise)
    trained = prior.observe(X[members], y[members]).distribution
    scores_in = membership_scores(
        trained, per_point_gaussian(X[members], y[members], noise), seed=0
    )
    scores_out = membership_scores(
        trained, per_point_gaussian(X[held_out], y[held_out], noise), seed=0
    )
    assert membership_inference_auc(scores_in, scores_out) > 0.9

    # Train on members + erased, unlearn the erased exactly: erased points now score like
    # points never seen.
    full = prior.observe(X[np.r_[members, erased]], y[np.r_[members, erased]])
    unlearned = full.unlearn(X[erased], y[erased]).distribution
    scores_erased = membership_scores(
        unlearned, per_point_gaussian(X[erased], y[erased], noise), seed=0
    )
    scores_fresh = membership_scores(
        unlearned, per_point_gaussian(X[held_out], y[held_out], noise), seed=0
    )
    full_scores_erased = membership_scores(
        full.distribution, per_point_gaussian(X[erased], y[erased], noise), seed=0
    )
    full_scores_fresh = membership_scores(
        full.distribution, per_point_gaussian(X[held_out], y[held_out], noise), seed=0
    )
    auc_full = membership_inference_auc(full_scores_erased, full_scores_fresh)
    auc_unlearned = membership_inference_auc(scores_erased, scores_fresh)
    assert auc_full > 0.75 and abs(auc_unlearned - 0.5) < 0.1, (auc_full, auc_unlearned)


def test_the_likelihood_ratio_score_against_itself_is_zero() -> None:
    X, y = regression(50, 3, seed=2)
    q = LinearGaussian(np.zeros(3), np.eye(3), 0.25).observe(X, y).distribution
    scores = membership_scores(q, per_point_gaussian(X, y, 0.25), 200, reference=q, seed=3)
    np.testing.assert_allclose(scores, 0.0, atol=1e-12)


def test_scores_are_reproducible_and_match_the_predictive_density() -> None:
    X, y = regression(5, 2, seed=4)
    q = tfd.MultivariateNormalDiag(tf.constant([0.3, -0.2], tf.float64), [0.1, 0.2])
    first = membership_scores(q, per_point_gaussian(X, y, 0.5), 20_000, seed=5)
    again = membership_scores(q, per_point_gaussian(X, y, 0.5), 20_000, seed=5)
    np.testing.assert_array_equal(first, again)
    # The predictive of a linear-Gaussian model is N(x^T m, x^T S x + noise).
    variance = np.einsum("ni,i,ni->n", X, np.array([0.1, 0.2]) ** 2, X) + 0.5
    exact = tfd.Normal(X @ np.array([0.3, -0.2]), np.sqrt(variance)).log_prob(y).numpy()
    np.testing.assert_allclose(first, exact, atol=5e-3)


@pytest.mark.parametrize(
    "members, nonmembers, error, name",
    [
        ([], [1.0], ValueError, "member_scores"),
        ([1.0], [[1.0]], ValueError, "nonmember_scores"),
        ([np.nan], [1.0], ValueError, "member_scores"),
        ([True, False], [1.0], TypeError, "member_scores"),
        ("abc", [1.0], TypeError, "member_scores"),
        ([1.0], [1 + 2j], TypeError, "nonmember_scores"),
        (None, [1.0], TypeError, "member_scores"),
    ],
)
def test_bad_scores_are_refused_by_name(members, nonmembers, error, name) -> None:
    with pytest.raises(error, match=name):
        membership_inference_auc(members, nonmembers)


def test_bad_arguments_to_membership_scores_are_refused_by_name() -> None:
    X, y = regression(5, 2, seed=6)
    q = tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64), tf.ones(2, tf.float64))
    log_likelihood = per_point_gaussian(X, y, 0.5)
    with pytest.raises(TypeError, match="log_likelihood"):
        membership_scores(q, "not callable")
    with pytest.raises(ValueError, match="log_likelihood must return shape"):
        membership_scores(q, lambda theta: tf.reduce_sum(theta, axis=1), seed=0)
    with pytest.raises(ValueError, match="reference"):
        membership_scores(
            q, log_likelihood, reference=tfd.MultivariateNormalDiag(tf.zeros(3, tf.float64))
        )
    with pytest.raises(TypeError, match="float64"):
        membership_scores(tfd.MultivariateNormalDiag(tf.zeros(2)), log_likelihood)
    with pytest.raises(ValueError, match="NaN"):
        membership_scores(q, lambda theta: np.nan * log_likelihood(theta), seed=0)
    with pytest.raises(ValueError, match="not finite"):
        membership_scores(q, lambda theta: -np.inf * tf.ones([tf.shape(theta)[0], 5]))
