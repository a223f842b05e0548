"""The shared input checks: every bad input names the argument."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit import NotPositiveDefiniteError
from unlearnkit import _validation as v

tfd = tfp.distributions


def test_as_float64_converts_and_checks_shape() -> None:
    out = v.as_float64([[1, 2], [3, 4]], "X", ndim=2, shape=[None, 2])
    assert out.dtype == tf.float64 and out.shape == (2, 2)
    with pytest.raises(ValueError, match="X must have 1 dimension"):
        v.as_float64([[1.0]], "X", ndim=1)
    with pytest.raises(ValueError, match=r"X must have shape \['\?', 3\]"):
        v.as_float64(np.zeros((2, 2)), "X", shape=[None, 3])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_as_float64_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="y contains NaN or infinite"):
        v.as_float64([0.0, bad], "y")


@pytest.mark.parametrize("bad", ["abc", None, np.array(["a"]), tf.constant(["a"])])
def test_as_float64_rejects_non_numeric(bad: object) -> None:
    with pytest.raises(TypeError, match="y must be"):
        v.as_float64(bad, "y")


def test_as_float64_does_not_mutate_input() -> None:
    x = np.arange(3, dtype=np.float32)
    v.as_float64(x, "x")
    assert x.dtype == np.float32 and list(x) == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("lam", [0, 0.5, 1.0, np.float64(0.1)])
def test_unit_interval_accepts(lam: float) -> None:
    assert v.check_unit_interval(lam, "lam") == float(lam)


def test_unit_interval_rejects() -> None:
    with pytest.raises(ValueError, match="lam must lie in"):
        v.check_unit_interval(1.5, "lam")
    with pytest.raises(ValueError, match="lam must lie in"):
        v.check_unit_interval(float("nan"), "lam")
    with pytest.raises(TypeError, match="lam must be a number"):
        v.check_unit_interval("0.1", "lam")
    with pytest.raises(TypeError, match="lam must be a number"):
        v.check_unit_interval(True, "lam")


def test_positive_int() -> None:
    assert v.check_positive_int(3, "n") == 3
    with pytest.raises(ValueError, match="n must be a positive integer"):
        v.check_positive_int(0, "n")
    with pytest.raises(TypeError, match="n must be a positive integer"):
        v.check_positive_int(2.0, "n")


def test_binary_labels() -> None:
    assert v.check_binary_labels([0, 1, 1], "y").dtype == tf.float64
    with pytest.raises(ValueError, match="y must contain only the labels 0 and 1"):
        v.check_binary_labels([0, 2], "y")


def test_gaussian_belief() -> None:
    q = tfd.MultivariateNormalTriL(tf.zeros(2, tf.float64), tf.eye(2, dtype=tf.float64))
    assert v.as_gaussian_belief(q) is q
    with pytest.raises(TypeError, match="q_full must have dtype float64"):
        v.as_gaussian_belief(tfd.MultivariateNormalTriL(tf.zeros(2), tf.eye(2)))
    with pytest.raises(TypeError, match="q_full must be a multivariate normal"):
        v.as_gaussian_belief(tfd.Normal(0.0, 1.0))
    batched = tfd.MultivariateNormalTriL(tf.zeros([3, 2], tf.float64), tf.eye(2, dtype=tf.float64))
    with pytest.raises(ValueError, match="empty batch shape"):
        v.as_gaussian_belief(batched)


@pytest.mark.parametrize(
    "belief",
    [
        tfd.MultivariateNormalDiag(tf.constant([1.0, -2.0], tf.float64), tf.constant([0.5, 2.0], tf.float64)),
        tfd.MultivariateNormalTriL(
            tf.constant([1.0, -2.0], tf.float64), tf.constant([[-0.5, 0.0], [0.3, 2.0]], tf.float64)
        ),
        tfd.MultivariateNormalFullCovariance(
            tf.constant([1.0, -2.0], tf.float64), tf.constant([[0.25, 0.1], [0.1, 4.0]], tf.float64)
        ),
        tfd.MultivariateNormalLinearOperator(
            tf.constant([1.0, -2.0], tf.float64),
            tf.linalg.LinearOperatorFullMatrix(tf.constant([[0.5, 0.2], [0.1, 2.0]], tf.float64)),
        ),
    ],
    ids=["diag", "tril-negative-diagonal", "full-covariance", "full-matrix-scale"],
)
def test_any_multivariate_normal_becomes_a_tril_belief(belief) -> None:
    q = v.as_gaussian_belief(belief)
    assert isinstance(q, tfd.MultivariateNormalTriL)
    assert np.all(np.diag(q.scale.to_dense().numpy()) > 0)
    np.testing.assert_allclose(q.mean(), belief.mean(), rtol=1e-14)
    np.testing.assert_allclose(q.covariance(), belief.covariance(), rtol=1e-12, atol=1e-15)


def test_degenerate_beliefs_are_refused() -> None:
    singular = tfd.MultivariateNormalTriL(
        tf.zeros(2, tf.float64), tf.constant([[1.0, 0.0], [1.0, 0.0]], tf.float64)
    )
    with pytest.raises(NotPositiveDefiniteError, match="q_full is degenerate"):
        v.as_gaussian_belief(singular)
    with pytest.raises(ValueError, match="NaN"):
        v.as_gaussian_belief(tfd.MultivariateNormalDiag(tf.constant([np.nan, 0.0], tf.float64)))


def test_callable_and_values() -> None:
    with pytest.raises(TypeError, match="f must be callable"):
        v.check_callable(3, "f", "theta [S, d] -> [S]")
    with pytest.raises(ValueError, match=r"f must return shape \[4\]"):
        v.check_log_likelihood_values(tf.zeros([4, 1], tf.float64), 4, "f")
    with pytest.raises(ValueError, match="the output of f contains NaN"):
        v.check_log_likelihood_values(tf.constant([0.0, np.nan], tf.float64), 2, "f")


def test_nonnegative_and_positive_numbers() -> None:
    assert v.check_nonnegative_number(0, "damping") == 0.0
    assert v.check_positive_number(np.float64(2.5), "tolerance") == 2.5
    with pytest.raises(ValueError, match="damping must be a finite non-negative number"):
        v.check_nonnegative_number(-1e-3, "damping")
    with pytest.raises(ValueError, match="tolerance must be a positive finite number"):
        v.check_positive_number(0.0, "tolerance")
    with pytest.raises(ValueError, match="tolerance must be a positive finite number"):
        v.check_positive_number(float("inf"), "tolerance")
    with pytest.raises(TypeError, match="damping must be a non-negative number"):
        v.check_nonnegative_number(True, "damping")


def test_erased_indices() -> None:
    erased = np.array([3, 0], dtype=np.int32)
    out = v.check_erased_indices(erased, 5)
    assert out.dtype == np.int64 and list(out) == [3, 0]
    assert out is not erased and erased.dtype == np.int32
    assert v.check_erased_indices([], 5).size == 0
    with pytest.raises(ValueError, match="erased must name at least one"):
        v.check_erased_indices([], 5, allow_empty=False)
    with pytest.raises(ValueError, match="only 5 points"):
        v.check_erased_indices(np.arange(6), 5)
    with pytest.raises(ValueError, match="repeated"):
        v.check_erased_indices([1, 1], 5)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        v.check_erased_indices([5], 5)
    with pytest.raises(TypeError, match="integer indices"):
        v.check_erased_indices([0.5], 5)


def test_beliefs_are_checked_at_their_current_values_and_batched_scales_refused() -> None:
    loc = tf.Variable([0.0, 1.0], dtype=tf.float64)
    q = tfd.MultivariateNormalTriL(loc, tf.eye(2, dtype=tf.float64))
    assert v.as_gaussian_belief(q) is q
    loc.assign([np.nan, 1.0])  # a belief built on variables is read as it is now
    with pytest.raises(ValueError, match="q_full's mean contains NaN"):
        v.as_gaussian_belief(q)
    batched = tfd.MultivariateNormalTriL(tf.zeros(2, tf.float64), tf.eye(2, batch_shape=[3], dtype=tf.float64))
    with pytest.raises(ValueError, match="belief must have an empty batch shape"):
        v.as_gaussian_belief(batched, "belief")
    no_loc = v.as_gaussian_belief(tfd.MultivariateNormalDiag(scale_diag=tf.ones(3, tf.float64)))
    np.testing.assert_array_equal(no_loc.loc, np.zeros(3))


def test_ensure_finite_checks_numpy_arrays_in_numpy() -> None:
    array = np.array([1.0, 2.0])
    assert v.ensure_finite(array, "x") is array
    with pytest.raises(ValueError, match="x contains NaN or infinite values"):
        v.ensure_finite(np.array([1.0, np.inf]), "x")
