"""Fuzz suite: the package's contract for hostile inputs, across the public API (issue 15).

For any input, every public function either

- raises a ``ValueError`` or ``TypeError`` (the typed errors of :mod:`unlearnkit.errors`
  are ``ValueError``\\ s) whose message names one of the arguments it was given, or
- returns a finite result;

it never changes its inputs, and the same seed gives the same result. A raw TensorFlow or
NumPy error, a NaN or infinite result, a NumPy ``RuntimeWarning`` (overflow, invalid
value) or a changed input fails the property.

The strategies draw shapes (empty, single point, mismatched), NaN / inf, dtypes (float32,
integers, booleans, complex, strings, ``None``), extreme magnitudes (1e-300 .. 1e300),
singular and indefinite covariances, callables that go wrong in every way (NumPy code
without a gradient, ``None``, strings, complex or float32 outputs, wrong shapes, NaN), and
seeds (``None``, ints across and beyond the int64 range, pairs, booleans, floats).

Budget: the default profile runs a few examples per property (the whole file in well under
a minute); ``--hypothesis-profile=long`` multiplies every budget by 33 (capped at 1,000
examples). The end of the file has one regression test per defect the issue lists.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Callable, Iterable

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import unlearnkit as uk
from unlearnkit import (
    bif,
    datasets,
    derivatives,
    exact,
    laplace,
    likelihoods,
    linalg,
    metrics,
)
from unlearnkit.bif import mixture
from unlearnkit.errors import ConvergenceWarning, NotPositiveDefiniteError
from unlearnkit.seeds import numpy_seed, sanitize_seed

tfd = tfp.distributions

pytestmark = pytest.mark.filterwarnings("ignore::unlearnkit.errors.ConvergenceWarning")

# ---------------------------------------------------------------------------- budget

_PROFILE_EXAMPLES = settings.default.max_examples  # 30 by default, 1,000 under "long"
_SCALE = 1 if _PROFILE_EXAMPLES <= 30 else 33


def fuzz(examples: int):
    """Hypothesis settings: ``examples`` in the default profile, 33 times more (at most
    1,000) under ``--hypothesis-profile=long``."""
    return settings(
        max_examples=min(examples * _SCALE, 1000),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# ---------------------------------------------------------------------------- the contract


def outcome(call: Callable[[], object], names: Iterable[str]) -> object:
    """Run ``call``; return its result, or ``None`` after a clear, named error.

    Fails the test on: any exception other than ``ValueError`` / ``TypeError`` (raw
    TensorFlow errors, ``ZeroDivisionError``, ...), an error message that names none of
    ``names``, and a ``RuntimeWarning`` (NumPy's overflow / invalid-value warnings).
    ``ConvergenceWarning`` is allowed: the result is still returned and checked.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("error", RuntimeWarning)
        try:
            return call()
        except (ValueError, TypeError) as err:
            if isinstance(err, tf.errors.OpError):  # pragma: no cover - OpError is neither
                raise
            message = str(err)
            pattern = "|".join(rf"(?<![\w]){re.escape(name)}(?![\w])" for name in names)
            assert re.search(pattern, message), (
                f"{type(err).__name__} names none of {list(names)}: {message}"
            )
            return None


def assert_finite(value: object) -> None:
    """Every number in ``value`` (tensors, arrays, tuples, beliefs, models) is finite."""
    if value is None:
        return
    if isinstance(value, tfd.Distribution):
        for part in (value.mean(), value.covariance() if hasattr(value, "covariance") else None):
            if part is not None:
                assert_finite(part)
        return
    if isinstance(value, exact.LinearGaussian):
        assert_finite(value.posterior_mean)
        assert_finite(value.posterior_covariance)
        return
    if isinstance(value, exact.BetaBernoulli):
        assert math.isfinite(value.log_marginal_likelihood())
        return
    if isinstance(value, (tuple, list)):
        for item in value:
            assert_finite(item)
        return
    if hasattr(value, "_asdict"):
        assert_finite(tuple(value))
        return
    if callable(value):
        return
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    if array.dtype.kind in "fc":
        assert np.all(np.isfinite(array)), f"non-finite result: {array}"


def snapshot(value: object) -> object:
    """A copy of what ``value`` holds now, to check later that nothing changed it."""
    if isinstance(value, tfd.Distribution):
        return ("belief", snapshot(value.mean()), snapshot(value.stddev()))
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return ("tensor", value.dtype, value.numpy().tobytes())
    if isinstance(value, np.ndarray):
        return ("array", value.dtype, value.shape, value.tobytes())
    if isinstance(value, list):
        return ("list", [snapshot(item) for item in value])
    return ("other", repr(value))


def unchanged(*values: object) -> Callable[[], None]:
    """Snapshot ``values`` now; the returned function asserts they still hold the same."""
    before = [snapshot(value) for value in values]

    def check() -> None:
        after = [snapshot(value) for value in values]
        assert after == before, "an input was modified"

    return check


def same(a: object, b: object) -> None:
    """Bit-identical results (the same seed gives the same result)."""
    if isinstance(a, tfd.Distribution):
        same(a.mean(), b.mean())
        same(a.covariance(), b.covariance())
        return
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, z in zip(a, b):
            same(x, z)
        return
    x = np.asarray(a.numpy() if hasattr(a, "numpy") else a)
    z = np.asarray(b.numpy() if hasattr(b, "numpy") else b)
    assert x.shape == z.shape and x.tobytes() == z.tobytes(), "same seed, different results"


# ---------------------------------------------------------------------------- strategies

EXTREMES = [0.0, -0.0, 1e-300, -1e-300, 5e-324, 1e300, -1e300, 1e16, -1e16, 1e154]
NON_FINITE = [np.nan, np.inf, -np.inf]


@st.composite
def hostile_array(draw, shape, *, low=-3.0, high=3.0, corrupt=0.5):
    """An array of ``shape`` with moderate values, corrupted with probability ``corrupt``:
    NaN / inf entries, extreme magnitudes, another dtype, a list, a string or None."""
    shape = tuple(shape)
    size = int(np.prod(shape)) if shape else 1
    values = np.array(
        draw(st.lists(st.floats(low, high), min_size=size, max_size=size)), dtype=np.float64
    ).reshape(shape)
    if not draw(st.booleans()) or draw(st.floats(0, 1)) > corrupt:
        return values
    kind = draw(
        st.sampled_from(
            ["nan", "extreme", "float32", "int", "bool", "complex", "list", "tensor",
             "tensor32", "string", "none", "object"]
        )
    )
    if kind in ("nan", "extreme") and size:
        index = tuple(draw(st.integers(0, s - 1)) for s in shape) if shape else ()
        values = values.copy()
        values[index] = draw(st.sampled_from(NON_FINITE if kind == "nan" else EXTREMES))
        return values
    if kind == "float32":
        return values.astype(np.float32)
    if kind == "int":
        return np.round(values).astype(np.int64)
    if kind == "bool":
        return values > 0
    if kind == "complex":
        return values + 1j
    if kind == "list":
        return values.tolist()
    if kind == "tensor":
        return tf.constant(values)
    if kind == "tensor32":
        return tf.constant(values, tf.float32)
    if kind == "string":
        return "1.0"
    if kind == "object":
        return np.array([object()] * max(size, 1), dtype=object)
    return None


@st.composite
def shape_of(draw, rank, *, low=0, high=4):
    return tuple(draw(st.integers(low, high)) for _ in range(rank))


@st.composite
def hostile_number(draw, *, low=1e-3, high=10.0):
    """A positive number, or a hostile stand-in for one."""
    return draw(
        st.one_of(
            st.floats(low, high),
            st.floats(low, high),
            st.sampled_from(EXTREMES + NON_FINITE + [-1.0, True, False, np.True_]),
            st.integers(-2, 5),
            st.sampled_from(["1", None, [1.0], np.array([1.0, 2.0]), 1 + 1j, np.float32(2.0)]),
        )
    )


SEEDS = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(2**63, 2**70),
    st.integers(-(2**70), -(2**63) - 1),
    st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.integers(2**31, 2**40), st.integers(0, 3)),
    st.sampled_from([True, 1.5, "0", (1, 2, 3), np.array([1, 2], dtype=np.int64),
                     tf.constant([3, 4], tf.int32), tf.constant([1.0, 2.0])]),
)
DETERMINISTIC_SEEDS = st.one_of(st.integers(-(2**63), 2**63 - 1), st.tuples(st.integers(0, 99), st.integers(0, 99)))


@st.composite
def belief(draw, dim=None):
    """A Gaussian belief: TriL, Diag or full covariance; sometimes degenerate (a zero or a
    tiny entry on the scale's diagonal), huge, float32, a batch, or not a belief at all."""
    d = dim if dim is not None else draw(st.integers(1, 3))
    loc = np.array(draw(st.lists(st.floats(-2, 2), min_size=d, max_size=d)))
    diagonal = np.array(draw(st.lists(st.floats(0.2, 2.0), min_size=d, max_size=d)))
    lower = np.tril(np.array(draw(st.lists(st.floats(-0.5, 0.5), min_size=d * d, max_size=d * d))).reshape(d, d), -1)
    kind = draw(st.sampled_from(["tril", "tril", "diag", "full", "degenerate", "tiny", "negative",
                                 "huge", "nan", "float32", "batch", "not"]))
    scale = lower + np.diag(diagonal)
    if kind == "degenerate":
        diagonal[draw(st.integers(0, d - 1))] = 0.0
        scale = lower + np.diag(diagonal)
    elif kind == "tiny":
        scale = np.diag(diagonal) * np.array([1.0] * (d - 1) + [1e-200])
    elif kind == "negative":
        scale = lower + np.diag(-diagonal)
    elif kind == "huge":
        scale = scale * 1e150
    elif kind == "nan":
        loc[0] = np.nan
    if kind == "diag":
        return tfd.MultivariateNormalDiag(loc=tf.constant(loc), scale_diag=tf.constant(diagonal))
    if kind == "full":
        return tfd.MultivariateNormalFullCovariance(tf.constant(loc), tf.constant(scale @ scale.T))
    if kind == "float32":
        return tfd.MultivariateNormalTriL(tf.constant(loc, tf.float32), tf.constant(scale, tf.float32))
    if kind == "batch":
        return tfd.MultivariateNormalTriL(tf.constant([loc, loc]), tf.constant([scale, scale]))
    if kind == "not":
        return draw(st.sampled_from([None, "q", loc, tfd.Normal(np.float64(0.0), np.float64(1.0))]))
    return tfd.MultivariateNormalTriL(tf.constant(loc), tf.constant(scale))


def _good_belief(dim: int) -> tfd.MultivariateNormalTriL:
    return tfd.MultivariateNormalTriL(tf.zeros(dim, tf.float64), tf.eye(dim, dtype=tf.float64))


_FEATURES = tf.constant(np.random.default_rng(0).normal(size=(6, 3)))
_LABELS = tf.constant([0.0, 1.0, 1.0, 0.0, 1.0, 0.0], tf.float64)


def _logistic(dim: int) -> Callable:
    return likelihoods.logistic_log_likelihood(_FEATURES[:, :dim], _LABELS)


@st.composite
def log_likelihood_callable(draw, dim):
    """``theta [S, d] -> [S]``: correct, or wrong in one of many ways."""
    good = _logistic(dim)
    kind = draw(st.sampled_from(
        ["good", "good", "good", "offset", "numpy", "none", "string", "complex", "float32",
         "scalar", "wrong_length", "matrix", "nan", "constant", "int", "not_callable"]
    ))
    return kind, {
        "good": good,
        "offset": lambda t: good(t) + 1e12,
        "numpy": lambda t: tf.constant(-np.sum(np.asarray(t) ** 2, axis=1)),
        "none": lambda t: None,
        "string": lambda t: ["a"] * int(t.shape[0]),
        "complex": lambda t: tf.complex(good(t), tf.ones_like(good(t))),
        "float32": lambda t: tf.cast(good(t), tf.float32),
        "scalar": lambda t: tf.reduce_sum(good(t)),
        "wrong_length": lambda t: good(t)[:-1],
        "matrix": lambda t: good(t)[:, None],
        "nan": lambda t: good(t) * np.nan,
        "constant": lambda t: tf.zeros([tf.shape(t)[0]], tf.float64),
        "int": lambda t: tf.cast(good(t), tf.int64),
        "not_callable": 3.0,
    }[kind]


@st.composite
def energy_callable(draw):
    """``gamma [d] -> scalar``: correct, or wrong in one of many ways."""
    kind = draw(st.sampled_from(
        ["quadratic", "quadratic", "quartic", "numpy", "none", "string", "complex", "float32",
         "vector", "nan", "constant", "indefinite", "python_float", "not_callable"]
    ))
    return kind, {
        "quadratic": lambda g: 0.5 * tf.reduce_sum(g**2) + tf.reduce_sum(g),
        "quartic": lambda g: tf.reduce_sum(g**4) + tf.reduce_sum(g**2),
        "numpy": lambda g: tf.constant(float(np.sum(np.asarray(g) ** 2)), tf.float64),
        "none": lambda g: None,
        "string": lambda g: "energy",
        "complex": lambda g: tf.complex(tf.reduce_sum(g**2), tf.constant(0.0, tf.float64)),
        "float32": lambda g: tf.cast(tf.reduce_sum(g**2), tf.float32),
        "vector": lambda g: g**2,
        "nan": lambda g: tf.reduce_sum(g**2) * np.nan,
        "constant": lambda g: tf.constant(1.0, tf.float64),
        "indefinite": lambda g: -tf.reduce_sum(g**2),
        "python_float": lambda g: 1.0,
        "not_callable": "energy",
    }[kind]


def _params(draw, dim):
    return draw(hostile_array((dim,), corrupt=0.4))


# ============================================================================ properties
# --- seeds


@fuzz(40)
@given(seed=SEEDS)
def test_fuzz_seeds(seed) -> None:
    check = unchanged(seed)
    result = outcome(lambda: sanitize_seed(seed), ["seed"])
    if result is not None:
        assert result.dtype == tf.int32 and result.shape == (2,)
        if seed is not None:
            same(result, sanitize_seed(seed))
    value = outcome(lambda: numpy_seed(seed), ["seed"])
    if value is not None:
        assert 0 <= value < 2**64
    check()


# --- likelihoods


@fuzz(25)
@given(data=st.data(), n=st.integers(0, 4), d=st.integers(1, 3))
def test_fuzz_likelihoods(data, n, d) -> None:
    X = data.draw(hostile_array((n, d), low=-1e3, high=1e3))
    y_binary = data.draw(st.one_of(
        hostile_array((n,), low=0, high=1).map(lambda a: np.round(a) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a),
        hostile_array((n + 1,)),
    ))
    y = data.draw(hostile_array((n,)))
    noise = data.draw(hostile_number())
    theta = data.draw(hostile_array((data.draw(st.integers(0, 3)), d), low=-1e2, high=1e2))
    check = unchanged(X, y, y_binary, theta)
    for build, args, names in (
        (likelihoods.logistic_log_likelihood, (X, y_binary), ["X", "y"]),
        (likelihoods.linear_gaussian_log_likelihood, (X, y, noise), ["X", "y", "noise_variance"]),
    ):
        log_likelihood = outcome(lambda build=build, args=args: build(*args), names)
        if log_likelihood is not None:
            values = outcome(lambda f=log_likelihood: f(theta), ["theta"])
            assert_finite(values)
            if values is not None:
                assert values.shape == (np.asarray(theta).shape[0],)
    check()


# --- beliefs and metrics


@fuzz(15)
@given(q=belief(), p=belief())
def test_fuzz_gaussian_kl(q, p) -> None:
    check = unchanged(q, p)
    kl = outcome(lambda: metrics.gaussian_kl(q, p), ["q", "p"])
    assert_finite(kl)
    if kl is not None:
        assert float(kl) >= 0.0
    check()


@st.composite
def probabilities(draw, n, c):
    kind = draw(st.sampled_from(["bernoulli", "categorical", "unnormalised", "hostile"]))
    if kind == "bernoulli":
        return draw(hostile_array((n,), low=0.0, high=1.0, corrupt=0.2))
    rows = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=n * c, max_size=n * c))).reshape(n, c)
    if kind == "categorical":
        rows = rows + 1e-3
        return rows / rows.sum(axis=1, keepdims=True)
    if kind == "unnormalised":
        return rows
    return draw(hostile_array((n, c), low=-1.0, high=2.0))


@fuzz(30)
@given(data=st.data(), n=st.integers(0, 3), c=st.integers(1, 3))
def test_fuzz_averaged_kl(data, n, c) -> None:
    p = data.draw(probabilities(n, c))
    q = data.draw(st.one_of(st.just(p), probabilities(n, c), probabilities(n + 1, c)))
    epsilon = data.draw(st.one_of(st.just(1e-12), hostile_number(low=1e-15, high=0.4)))
    check = unchanged(p, q)
    result = outcome(lambda: metrics.averaged_kl(p, q, epsilon), ["retrained_probs", "other_probs", "epsilon"])
    assert_finite(result)
    if result is not None:
        assert result.mean >= 0.0 and result.std >= 0.0
    check()


@fuzz(15)
@given(data=st.data(), q=belief(2), seed=SEEDS)
def test_fuzz_predictive_probabilities(data, q, seed) -> None:
    kind = data.draw(st.sampled_from(
        ["sigmoid", "softmax", "none", "string", "complex", "negative", "unnormalised", "nan",
         "wrong_rank", "wrong_samples", "float32"]
    ))
    X = _FEATURES[:, :2]
    probs = {
        "sigmoid": lambda t: tf.sigmoid(t @ tf.transpose(X)),
        "softmax": lambda t: tf.nn.softmax(tf.stack([t @ tf.transpose(X), -t @ tf.transpose(X)], -1)),
        "none": lambda t: None,
        "string": lambda t: "p",
        "complex": lambda t: tf.complex(tf.sigmoid(t @ tf.transpose(X)), tf.zeros([tf.shape(t)[0], 6], tf.float64)),
        "negative": lambda t: -tf.sigmoid(t @ tf.transpose(X)),
        "unnormalised": lambda t: tf.fill([tf.shape(t)[0], 6, 2], tf.constant(0.3, tf.float64)),
        "nan": lambda t: tf.sigmoid(t @ tf.transpose(X)) * np.nan,
        "wrong_rank": lambda t: tf.sigmoid(t[:, 0]),
        "wrong_samples": lambda t: tf.sigmoid(t @ tf.transpose(X))[1:],
        "float32": lambda t: tf.cast(tf.sigmoid(t @ tf.transpose(X)), tf.float32),
    }[kind]
    num_samples = data.draw(st.one_of(st.integers(1, 50), hostile_number()))
    check = unchanged(q)
    names = ["belief", "class_probabilities", "num_samples", "seed"]
    result = outcome(lambda: metrics.predictive_probabilities(q, probs, num_samples, seed=seed), names)
    assert_finite(result)
    if result is not None:
        assert np.all((result.numpy() >= 0) & (result.numpy() <= 1))
        if seed is not None:
            same(result, metrics.predictive_probabilities(q, probs, num_samples, seed=seed))
    check()


# --- variational unlearning


@fuzz(15)
@given(data=st.data(), q_full=belief(2), q_u=belief(2))
def test_fuzz_adjusted_log_likelihood(data, q_full, q_u) -> None:
    kind, log_likelihood = data.draw(log_likelihood_callable(2))
    lam = data.draw(st.one_of(st.floats(0.0, 1.0), hostile_number(low=0.0, high=1.0)))
    theta = data.draw(hostile_array((data.draw(st.integers(0, 4)), 2)))
    check = unchanged(q_full, theta)
    names = ["erased_log_likelihood", "q_full", "lam", "theta"]
    adjusted = outcome(lambda: uk.adjusted_log_likelihood(log_likelihood, q_full, lam), names)
    if adjusted is not None:
        assert_finite(outcome(lambda: adjusted(theta), names))
    check()


@fuzz(10)
@given(data=st.data(), q_full=belief(2), q_u=belief(2), seed=DETERMINISTIC_SEEDS)
def test_fuzz_eubo_and_reverse_kl(data, q_full, q_u, seed) -> None:
    kind, log_likelihood = data.draw(log_likelihood_callable(2))
    lam = data.draw(st.one_of(st.sampled_from([0.0, 0.1, 1.0]), hostile_number(low=0.0, high=1.0)))
    num_samples = data.draw(st.one_of(st.integers(1, 60), hostile_number()))
    check = unchanged(q_full, q_u)
    names = ["erased_log_likelihood", "q_full", "q_u", "lam", "num_samples", "seed"]
    value = outcome(lambda: uk.eubo(q_u, q_full, log_likelihood, lam, num_samples=num_samples, seed=seed), names)
    assert_finite(value)
    if value is not None:
        same(value, uk.eubo(q_u, q_full, log_likelihood, lam, num_samples=num_samples, seed=seed))
    result = outcome(
        lambda: uk.unlearn_reverse_kl(q_full, log_likelihood, lam, num_samples=num_samples, seed=seed),
        names,
    )
    assert_finite(result)
    if result is not None:
        same(result, uk.unlearn_reverse_kl(q_full, log_likelihood, lam, num_samples=num_samples, seed=seed))
    check()


@fuzz(4)
@given(data=st.data(), q_full=belief(2), seed=DETERMINISTIC_SEEDS)
def test_fuzz_unlearn_eubo(data, q_full, seed) -> None:
    kind, log_likelihood = data.draw(log_likelihood_callable(2))
    lam = data.draw(st.sampled_from([0.0, 0.05]))
    options = data.draw(st.fixed_dictionaries({
        "num_samples": st.one_of(st.integers(3, 40), hostile_number()),
        "max_iterations": st.one_of(st.integers(1, 15), st.sampled_from([0, -1, 2.5, True])),
        "tolerance": st.one_of(st.sampled_from([1e-6, 1e-3]), hostile_number(low=1e-9, high=0.5)),
    }))
    check = unchanged(q_full)
    names = ["erased_log_likelihood", "q_full", "lam", "seed", *options]

    def run():
        return uk.unlearn_eubo(q_full, log_likelihood, lam, seed=seed, **options)

    result = outcome(run, names)
    assert_finite(result)
    if result is not None:
        same(result, run())
    check()


@fuzz(2)
@given(data=st.data(), prior=belief(2), initial=st.one_of(st.none(), belief(2)), seed=DETERMINISTIC_SEEDS)
def test_fuzz_fit_gaussian_vi(data, prior, initial, seed) -> None:
    kind, log_likelihood = data.draw(log_likelihood_callable(2))
    options = data.draw(st.fixed_dictionaries({
        "num_samples": st.one_of(st.integers(3, 40), hostile_number()),
        "max_iterations": st.one_of(st.integers(1, 10), st.sampled_from([0, -1, True])),
    }))
    check = unchanged(prior, initial)
    names = ["log_likelihood", "prior", "initial", "seed", *options]

    def run():
        return uk.fit_gaussian_vi(log_likelihood, prior, initial=initial, seed=seed, **options)

    result = outcome(run, names)
    assert_finite(result)
    if result is not None:
        same(result, run())
    check()


@fuzz(30)
@given(data=st.data(), s=st.integers(0, 5))
def test_fuzz_importance_ess(data, s) -> None:
    log_weights = data.draw(st.one_of(
        hostile_array((s,), low=-50, high=50),
        st.floats(-1e300, 1e300).map(lambda v: np.full(max(s, 1), v)),
        hostile_array((s, 2)),
    ))
    check = unchanged(log_weights)
    ess = outcome(lambda: uk.importance_ess(log_weights), ["log_weights"])
    if ess is not None:
        assert 1.0 - 1e-9 <= ess <= np.asarray(log_weights).shape[0] * (1 + 1e-9)
    check()


# --- exact unlearning


@fuzz(30)
@given(
    a=hostile_number(), b=hostile_number(),
    seen=st.one_of(st.lists(st.integers(0, 1), max_size=8).map(np.array), st.builds(lambda: np.zeros(0))),
    erase=st.lists(st.integers(0, 1), max_size=8).map(np.array),
    hostile=hostile_array((3,), low=0, high=1),
)
def test_fuzz_beta_bernoulli(a, b, seen, erase, hostile) -> None:
    check = unchanged(seen, erase, hostile)
    names = ["concentration1", "concentration0", "x"]
    model = outcome(lambda: exact.BetaBernoulli(a, b), names)
    if model is not None:
        observed = outcome(lambda: model.observe(seen), names)
        assert_finite(observed)
        if observed is not None:
            forgotten = outcome(lambda: observed.unlearn(erase), names)
            assert_finite(forgotten)
            if forgotten is not None:  # erasing the same data twice: refused unless possible
                outcome(lambda: forgotten.unlearn(erase), names)
            everything = observed.unlearn(seen)  # erasing everything gives the prior back
            assert everything == model
            outcome(lambda: observed.observe(hostile), names)
    check()


@fuzz(25)
@given(data=st.data(), d=st.integers(1, 3), n=st.integers(0, 5))
def test_fuzz_linear_gaussian(data, d, n) -> None:
    mean = data.draw(hostile_array((d,), corrupt=0.2))
    cov_kind = data.draw(st.sampled_from(["eye", "eye", "scaled", "singular", "indefinite", "asymmetric", "hostile"]))
    cov = {
        "eye": np.eye(d),
        "scaled": np.eye(d) * data.draw(st.sampled_from([1e-100, 1e100, 3.0])),
        "singular": np.ones((d, d)) if d > 1 else np.zeros((1, 1)),
        "indefinite": -np.eye(d),
        "asymmetric": np.eye(d) + np.triu(np.ones((d, d)), 1),
        "hostile": data.draw(hostile_array((d, d))),
    }[cov_kind]
    noise = data.draw(hostile_number())
    X = data.draw(hostile_array((n, d), corrupt=0.3))
    y = data.draw(hostile_array((n,), corrupt=0.3))
    check = unchanged(mean, cov, X, y)
    names = ["prior_mean", "prior_cov", "noise_variance", "X", "y"]
    model = outcome(lambda: exact.LinearGaussian(mean, cov, noise), names)
    if model is not None:
        assert_finite(model)
        observed = outcome(lambda: model.observe(X, y), names)
        if observed is not None and outcome(lambda: assert_finite(observed) or True, names):
            everything = outcome(lambda: observed.unlearn(X, y), names)
            assert everything is not None, "erasing every observed row was refused"
            assert everything.num_observations == 0
            np.testing.assert_allclose(everything.posterior_mean, model.posterior_mean, atol=1e-12, rtol=1e-9)
            if n:  # erasing twice: refused, and the model is still usable
                outcome(lambda: everything.unlearn(X, y), names)
                assert_finite(everything.observe(X, y))
    check()


@fuzz(30)
@given(data=st.data(), shape=shape_of(2, low=0, high=3))
def test_fuzz_grid_unlearn(data, shape) -> None:
    log_posterior = data.draw(st.one_of(
        hostile_array(shape, low=-50, high=0),
        hostile_array(shape, low=-50, high=0).map(lambda a: np.where(a < -40, -np.inf, a) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a),
    ))
    erased = data.draw(st.one_of(hostile_array(shape, low=-20, high=0), hostile_array(shape[::-1])))
    check = unchanged(log_posterior, erased)
    result = outcome(lambda: exact.grid_unlearn(log_posterior, erased), ["log_posterior", "erased_log_likelihood"])
    if result is not None:
        values = result.numpy()
        assert not np.isnan(values).any() and not (values == np.inf).any()
        np.testing.assert_allclose(np.exp(values).sum(), 1.0, rtol=1e-9)
    check()


# --- derivatives, Laplace, linear algebra


@fuzz(15)
@given(data=st.data(), d=st.integers(0, 3))
def test_fuzz_derivatives(data, d) -> None:
    kind, energy = data.draw(energy_callable())
    params = data.draw(hostile_array((d,), corrupt=0.4))
    vector = data.draw(hostile_array((d,), corrupt=0.4))
    check = unchanged(params, vector)
    names = ["energy", "params", "vector"]
    for call in (
        lambda: derivatives.energy_gradient(energy, params),
        lambda: derivatives.energy_hessian(energy, params),
        lambda: derivatives.hessian_vector_product(energy, params, vector),
        lambda: laplace.laplace_approximation(energy, params),
    ):
        assert_finite(outcome(call, names))
    check()


@st.composite
def matrices(draw, d):
    kind = draw(st.sampled_from(["spd", "spd", "singular", "indefinite", "nan", "huge", "tiny", "hostile", "batch"]))
    a = np.array(draw(st.lists(st.floats(-1, 1), min_size=d * d, max_size=d * d))).reshape(d, d)
    spd = a @ a.T + np.eye(d)
    return {
        "spd": spd,
        "singular": np.zeros((d, d)),
        "indefinite": spd - 10 * np.eye(d),
        "nan": np.where(np.eye(d) > 0, np.nan, spd),
        "huge": spd * 1e300,
        "tiny": spd * 1e-300,
        "hostile": draw(hostile_array((d, d))),
        "batch": np.stack([spd, spd]),
    }[kind]


@fuzz(15)
@given(data=st.data(), d=st.integers(1, 3))
def test_fuzz_linear_algebra(data, d) -> None:
    matrix = data.draw(matrices(d))
    rhs = data.draw(hostile_array((d,), corrupt=0.4))
    damping = data.draw(st.one_of(st.just(0.0), hostile_number(low=0.0, high=1.0)))
    check = unchanged(matrix, rhs)
    names = ["matrix", "the matrix", "rhs", "damping", "matvec", "A"]
    assert_finite(outcome(lambda: linalg.cholesky(matrix), names))
    assert_finite(outcome(lambda: linalg.solve_positive_definite(matrix, rhs, damping=damping), names))
    kind = data.draw(st.sampled_from(["tf", "tf", "numpy", "none", "float32", "complex", "shape", "nan"]))
    dense = tf.constant(np.asarray(matrix, dtype=np.float64)) if isinstance(matrix, np.ndarray) and matrix.ndim == 2 else tf.eye(d, dtype=tf.float64)
    matvec = {
        "tf": lambda v: tf.linalg.matvec(dense, v),
        "numpy": lambda v: np.asarray(dense) @ np.asarray(v),
        "none": lambda v: None,
        "float32": lambda v: tf.cast(tf.linalg.matvec(dense, v), tf.float32),
        "complex": lambda v: tf.complex(v, v),
        "shape": lambda v: tf.concat([v, v], 0),
        "nan": lambda v: v * np.nan,
    }[kind]
    tolerance = data.draw(st.one_of(st.just(1e-10), hostile_number(low=1e-12, high=0.9)))
    result = outcome(lambda: linalg.conjugate_gradient(matvec, rhs, tolerance=tolerance), names + ["tolerance"])
    assert_finite(result)
    check()


# --- influence functions


@fuzz(10)
@given(data=st.data(), d=st.integers(1, 3))
def test_fuzz_influence_unlearn(data, d) -> None:
    _, energy = data.draw(energy_callable())
    _, erased = data.draw(energy_callable())
    params = data.draw(hostile_array((d,), corrupt=0.3))
    options = data.draw(st.fixed_dictionaries({
        "hessian": st.sampled_from(["before", "after", "during", None]),
        "solver": st.sampled_from(["exact", "cg", "cg", "lu"]),
        "damping": st.one_of(st.just(0.0), hostile_number(low=0.0, high=1.0)),
        "tolerance": st.one_of(st.just(1e-10), hostile_number(low=1e-12, high=0.9)),
        "max_iterations": st.one_of(st.none(), st.integers(-1, 20), st.just(True)),
    }))
    check = unchanged(params)
    names = ["energy", "erased_energy", "params", *options]
    result = outcome(lambda: bif.influence_unlearn(energy, erased, params, **options), names)
    assert_finite(result)
    sequential = outcome(
        lambda: bif.influence_unlearn_sequential(energy, [erased, erased], params, **options),
        names + ["erased_energies"],
    )
    assert_finite(sequential)
    check()


@fuzz(10)
@given(data=st.data(), n=st.integers(0, 5))
def test_fuzz_map_energies_and_newton(data, n) -> None:
    X = data.draw(hostile_array((n, 2), corrupt=0.3))
    y = data.draw(hostile_array((n,), low=0, high=1, corrupt=0.3).map(
        lambda a: np.round(a) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a))
    erased = data.draw(st.one_of(
        st.lists(st.integers(-1, n), max_size=n + 1, unique=True).map(np.array),
        st.sampled_from([[0, 0], 0.5, [[0]], "0", None]),
    ))
    prior_variance = data.draw(hostile_number())
    check = unchanged(X, y, erased)
    names = ["X", "y", "erased", "prior_variance", "make_log_likelihood"]
    energies = outcome(lambda: bif.map_energies(likelihoods.logistic_log_likelihood, X, y, erased, prior_variance=prior_variance), names)
    if energies is not None:
        energy, erased_energy = energies
        minimum = outcome(lambda: bif.newton_minimize(energy, np.zeros(2), max_iterations=20), ["energy", "initial"])
        assert_finite(minimum)
        if minimum is not None:
            assert_finite(outcome(lambda: bif.influence_unlearn(energy, erased_energy, minimum, hessian="after"), ["energy", "erased_energy", "params"]))
    check()


# --- the Gaussian mixture: model, samplers, SVI, forgetting


MODEL = mixture.GaussianMixtureModel(2, 2, 5.0)
_POINTS = np.random.default_rng(1).normal(size=(12, 2)) + np.repeat([[-2.0, 0.0], [2.0, 0.0]], 6, axis=0)


@fuzz(25)
@given(
    data=st.data(),
    k=st.one_of(st.integers(1, 3), st.sampled_from([0, -1, True, 2.0])),
    dim=st.one_of(st.integers(1, 3), st.sampled_from([0, True, "2"])),
    prior_scale=hostile_number(),
)
def test_fuzz_mixture_model(data, k, dim, prior_scale) -> None:
    names = ["num_components", "dim", "prior_scale"]
    model = outcome(lambda: mixture.GaussianMixtureModel(k, dim, prior_scale), names)
    if model is None:
        return
    p = model.num_params
    theta = data.draw(hostile_array((data.draw(st.integers(0, 2)), p), low=-1e2, high=1e2, corrupt=0.3))
    points = data.draw(hostile_array((data.draw(st.integers(0, 4)), model.dim), low=-1e2, high=1e2, corrupt=0.3))
    gamma = data.draw(hostile_array((2 * p,), corrupt=0.3))
    noise_seed = data.draw(SEEDS)
    check = unchanged(theta, points, gamma)
    names = ["theta", "points", "gamma", "noise", "seed", "num_samples", "num_components", "scale", "mean"]
    for call in (
        lambda: model.energy(theta, points),
        lambda: model.h_derivatives(theta, points),
        lambda: mixture.kmeans_centres(points, model.num_components, seed=noise_seed),
    ):
        assert_finite(outcome(call, names))
    check()


@fuzz(2)
@given(data=st.data(), seed=DETERMINISTIC_SEEDS)
def test_fuzz_samplers(data, seed) -> None:
    kind = data.draw(st.sampled_from(["good", "good", "summed_h", "scalar_f", "float32_h", "none_h", "complex_h", "numpy_h"]))
    h = {
        "good": MODEL.h,
        "summed_h": lambda t, p: tf.reduce_sum(MODEL.h(t, p), -1, keepdims=True),
        "scalar_f": MODEL.h,
        "float32_h": lambda t, p: tf.cast(MODEL.h(t, p), tf.float32),
        "none_h": lambda t, p: None,
        "complex_h": lambda t, p: tf.complex(MODEL.h(t, p), MODEL.h(t, p)),
        "numpy_h": lambda t, p: np.zeros((np.shape(t)[0], np.shape(p)[-2])),
    }[kind]
    f = (lambda t: tf.reduce_sum(MODEL.f(t))) if kind == "scalar_f" else MODEL.f
    sampler_kind = data.draw(st.sampled_from(["SGLD", "SGHMC"]))
    step = data.draw(st.one_of(st.just(1e-3), hostile_number(low=1e-5, high=1e-2)))
    batch_size = data.draw(st.one_of(st.none(), st.integers(1, 4), st.sampled_from([0, True])))
    chains, num_points = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 4))
    points = data.draw(hostile_array((num_points, 2), corrupt=0.3))
    initial = data.draw(hostile_array((chains, MODEL.num_params), corrupt=0.3))
    check = unchanged(points, initial)
    names = ["h", "f", "step_size", "learning_rate", "batch_size", "points", "initial", "seed"]

    def build():
        if sampler_kind == "SGLD":
            return bif.SGLD(h, f, step_size=step, batch_size=batch_size, num_steps=4, record_every=2)
        return bif.SGHMC(h, f, learning_rate=step, batch_size=batch_size, num_steps=4, record_every=2)

    sampler = outcome(build, names)
    if sampler is not None:
        samples = outcome(lambda: sampler.sample(points, initial, seed=seed), names)
        assert_finite(samples)
        if samples is not None:
            assert kind == "good", f"a wrong energy ({kind}) was accepted"
            same(samples, sampler.sample(points, initial, seed=seed))
    check()


@fuzz(2)
@given(data=st.data())
def test_fuzz_fit_svi_and_forgetting(data) -> None:
    points = data.draw(st.one_of(
        st.just(_POINTS), st.just(_POINTS[:1]), st.just(np.ones((5, 2))), hostile_array((4, 2), corrupt=0.6),
    ))
    p = MODEL.num_params
    initial = data.draw(st.one_of(
        st.just(tfd.MultivariateNormalDiag(tf.zeros(p, tf.float64), tf.fill([p], tf.constant(0.1, tf.float64)))),
        st.just(tfd.MultivariateNormalDiag(tf.zeros(p, tf.float32), tf.ones(p, tf.float32))),
        st.just(np.zeros(p)),
    ))
    options = data.draw(st.fixed_dictionaries({
        "seed": st.one_of(st.integers(0, 5), SEEDS),
        "batch_size": st.one_of(st.just(4), st.sampled_from([0, -1, True])),
        "num_samples": st.one_of(st.just(2), st.sampled_from([0, True])),
        "learning_rate": st.one_of(st.just(0.01), hostile_number(low=1e-4, high=0.1)),
        "average_fraction": st.one_of(st.just(0.5), st.sampled_from([0.0, 1.5, float("nan")])),
    }))
    check = unchanged(points)
    names = ["log_likelihood", "log_prior", "points", "initial", *options]
    q = outcome(lambda: bif.fit_svi(MODEL.log_likelihood, MODEL.log_prior, points, initial,
                                    num_steps=20, record_every=10, **options), names)
    assert_finite(q)
    erased = data.draw(st.one_of(st.just([0]), st.just([0, 0]), st.just([]), st.just([99]), st.just(list(range(12)))))
    num_chunks = data.draw(st.one_of(st.just(1), st.sampled_from([0, 2, 50, True])))
    damping = data.draw(st.one_of(st.just(0.0), st.just(1.0), hostile_number(low=0.0, high=1.0)))
    method = data.draw(st.sampled_from(["transport", "influence", "newton?"]))
    names = ["belief", "points", "erased", "num_chunks", "damping", "method", "hessian"]
    if q is not None:
        assert_finite(outcome(lambda: bif.forget_variational(
            q, MODEL.log_likelihood, MODEL.log_prior, points, erased, method=method,
            num_chunks=num_chunks, damping=damping, num_samples=16, seed=0), names))
    samples = data.draw(hostile_array((2, p), corrupt=0.3))
    names = ["samples", "points", "erased", "num_chunks", "damping", "hessian"]
    assert_finite(outcome(lambda: bif.forget_samples(
        samples, MODEL.log_likelihood, MODEL.log_prior, _POINTS, erased,
        num_chunks=num_chunks, damping=damping), names))
    check()


# --- data sets


@fuzz(25)
@given(
    num_points=st.one_of(st.sampled_from([4, 8, 40]), st.integers(-4, 9), st.sampled_from([True, 8.0])),
    seed=st.one_of(st.integers(0, 10), SEEDS),
    per_cluster=st.one_of(st.integers(1, 12), st.sampled_from([0, True])),
    erased=st.one_of(st.lists(st.integers(-1, 8), max_size=4).map(np.array), st.just([1, 1])),
)
def test_fuzz_datasets(num_points, seed, per_cluster, erased) -> None:
    names = ["num_points", "seed", "per_cluster", "erased"]
    data = outcome(lambda: datasets.make_gmm_data(num_points, seed=seed), names)
    if data is None:
        return
    assert_finite(data.points)
    if seed is not None:
        same(data.points, datasets.make_gmm_data(num_points, seed=seed).points)
    check = unchanged(data.points, erased)
    removal = outcome(lambda: datasets.structured_removal(data, per_cluster), names)
    if removal is not None:
        assert len(np.unique(removal)) == removal.size == 2 * per_cluster
    kept = outcome(lambda: datasets.remaining_indices(erased, num_points), names)
    if kept is not None:
        assert kept.size == num_points - np.asarray(erased).size
    check()


# --- GPflow models


_GP_CACHE: dict = {}


def _gp_model():
    if not _GP_CACHE:
        gpflow = pytest.importorskip("gpflow")
        rng = np.random.default_rng(0)
        X = rng.normal(size=(8, 1))
        model = gpflow.models.SVGP(
            gpflow.kernels.SquaredExponential(), gpflow.likelihoods.Gaussian(), X[:3].copy(), num_data=8
        )
        _GP_CACHE.update(model=model, X=X, y=np.sin(X[:, 0]))
    return _GP_CACHE


@fuzz(4)
@given(data=st.data(), n=st.integers(0, 3))
def test_fuzz_gp(data, n) -> None:
    from unlearnkit import gp

    cache = _gp_model()
    model = cache["model"]
    X_e = data.draw(hostile_array((n, data.draw(st.sampled_from([1, 1, 2]))), corrupt=0.3))
    y_e = data.draw(hostile_array((n,), corrupt=0.3))
    u = data.draw(hostile_array((data.draw(st.integers(0, 3)), data.draw(st.sampled_from([3, 3, 2]))), corrupt=0.4))
    q = data.draw(belief(3))
    kind = data.draw(st.sampled_from(["variational", "predictive", "other"]))
    before = [v.numpy().tobytes() for v in model.trainable_variables]
    check = unchanged(X_e, y_e, u, q)
    names = ["model", "X_e", "y_e", "kind", "u", "X", "q"]
    log_likelihood = outcome(lambda: gp.erased_log_likelihood(model, X_e, y_e, kind=kind), names)
    if log_likelihood is not None:
        assert_finite(outcome(lambda: log_likelihood(u), names))
    mean = outcome(lambda: gp.conditional_predictive_mean(model, X_e), names)
    if mean is not None:
        assert_finite(outcome(lambda: mean(u), names))
    outcome(lambda: gp.with_inducing_posterior(model, q), names)
    assert [v.numpy().tobytes() for v in model.trainable_variables] == before
    check()


# ============================================================================ regressions
# One test per defect of issue 15, with the reproducer (or a smaller one).

_Q2 = _good_belief(2)


def test_defect1_linear_gaussian_unlearns_after_rounding_residue() -> None:
    X = np.array([[1.0, 0], [1, 1], [1, 1]])
    y = np.array([0.3, 0.1, 0.2])
    m = exact.LinearGaussian(np.zeros(2), np.eye(2), 1.0).observe(X, y)
    m = m.unlearn(X[1:2], y[1:2]).unlearn(X[2:3], y[2:3]).unlearn(X[:1], y[:1])
    assert m.num_observations == 0
    m.unlearn(np.zeros((0, 2)), np.zeros(0))  # even nothing could not be unlearned before
    X = np.array([[1e4], [0.3]])
    y = np.array([3700.0, 0.1])
    prior = exact.LinearGaussian(np.zeros(1), np.eye(1), 1.0)
    m = prior.observe(X, y).unlearn(X[:1], y[:1]).unlearn(X[1:], y[1:])
    np.testing.assert_allclose(m.posterior_mean, prior.posterior_mean, atol=1e-12)


def _numpy_log_likelihood(theta):
    return tf.constant(-np.sum(np.asarray(theta) ** 2, axis=1))


def test_defect2_no_gradient_is_an_error_not_a_silent_no_op() -> None:
    with pytest.raises(ValueError, match="erased_log_likelihood has no gradient"):
        uk.unlearn_eubo(_Q2, _numpy_log_likelihood, num_samples=20, seed=0)
    with pytest.raises(ValueError, match="log_likelihood has no gradient"):
        uk.fit_gaussian_vi(_numpy_log_likelihood, _Q2, num_samples=20, seed=0)


def test_defect3_degenerate_beliefs_are_refused_with_the_typed_error() -> None:
    degenerate = tfd.MultivariateNormalTriL(tf.zeros(2, tf.float64), tf.constant([[1.0, 0], [0, 0]], tf.float64))
    diagonal = tfd.MultivariateNormalDiag(tf.zeros(2, tf.float64), tf.constant([1.0, 0.0], tf.float64))
    log_likelihood = _logistic(2)
    for call in (
        lambda: metrics.gaussian_kl(degenerate, _Q2),
        lambda: metrics.gaussian_kl(_Q2, diagonal),
        lambda: uk.eubo(degenerate, _Q2, log_likelihood, num_samples=20, seed=0),
        lambda: uk.adjusted_log_likelihood(log_likelihood, degenerate, 0.1),
        lambda: uk.unlearn_reverse_kl(degenerate, log_likelihood, num_samples=50, seed=0),
    ):
        with pytest.raises(NotPositiveDefiniteError, match="degenerate"):
            call()


@pytest.mark.parametrize("chains, num_points, batch_size", [(3, 20, 5), (1, 1, 1), (1, 1, None), (2, 2, None)])
def test_defect4_sampler_probe_catches_wrong_shaped_energies(chains, num_points, batch_size) -> None:
    summed = lambda t, p: tf.reduce_sum(MODEL.h(t, p), -1, keepdims=True)  # noqa: E731 - [C, 1]
    points, initial = _POINTS[:num_points], np.zeros((chains, MODEL.num_params))
    for make in (bif.SGLD, bif.SGHMC):
        kwargs = {"step_size": 1e-3} if make is bif.SGLD else {"learning_rate": 1e-3}
        with pytest.raises(ValueError, match=r"h must return \[C, b\].*got \[2, 1\]"):
            make(summed, MODEL.f, batch_size=batch_size, num_steps=2, record_every=1, **kwargs).sample(points, initial, seed=0)
        with pytest.raises(TypeError, match="h must return float64"):
            make(lambda t, p: tf.cast(MODEL.h(t, p), tf.float32), MODEL.f, batch_size=batch_size,
                 num_steps=2, record_every=1, **kwargs).sample(points, initial, seed=0)


def test_defect5_averaged_kl_of_nothing_is_an_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for empty in (np.zeros(0), np.zeros((0, 3))):
            with pytest.raises(ValueError, match="retrained_probs must hold at least one input"):
                metrics.averaged_kl(empty, empty)


def test_defect6_float32_tensors_are_named_type_errors() -> None:
    theta32 = tf.zeros([3, 2], tf.float32)
    with pytest.raises(TypeError, match="theta must be a float64"):
        _logistic(2)(theta32)
    with pytest.raises(TypeError, match="theta must be a float64"):
        likelihoods.linear_gaussian_log_likelihood(_FEATURES[:, :2], _LABELS, 1.0)(theta32)
    energy = lambda g: tf.reduce_sum(g**2)  # noqa: E731
    with pytest.raises(TypeError, match="params must have dtype float64"):
        derivatives.hessian_vector_product(energy, tf.ones(2, tf.float32), tf.ones(2, tf.float32))
    with pytest.raises(TypeError, match="rhs must be a float64"):
        linalg.conjugate_gradient(lambda v: 2 * v, tf.ones(2, tf.float32))
    with pytest.raises(TypeError, match="matvec must return"):
        linalg.conjugate_gradient(lambda v: tf.cast(2 * v, tf.float32), tf.ones(2, tf.float64))
    assert uk.importance_ess(tf.zeros(4, tf.float32)) == 4.0  # log-weights are widened, not refused


def test_defect6_gp_callables_check_u() -> None:
    from unlearnkit import gp

    cache = _gp_model()
    log_likelihood = gp.erased_log_likelihood(cache["model"], cache["X"][:2], cache["y"][:2])
    mean = gp.conditional_predictive_mean(cache["model"], cache["X"][:2])
    for f in (log_likelihood, mean):
        with pytest.raises(TypeError, match="u must be a float64"):
            f(tf.zeros([2, 3], tf.float32))
        with pytest.raises(ValueError, match="u contains NaN"):
            f(np.full((2, 3), np.nan))
        with pytest.raises(TypeError, match="u must be real"):
            f(np.zeros((2, 3)) + 1j)
        with pytest.raises(TypeError, match="u must be a numeric array"):
            f(None)


def test_defect6_callables_returning_none_or_strings() -> None:
    for bad in (lambda t: None, lambda t: ["a"] * int(t.shape[0])):
        with pytest.raises(TypeError, match="erased_log_likelihood must return"):
            uk.eubo(_Q2, _Q2, bad, num_samples=20, seed=0)
        with pytest.raises(TypeError, match="erased_log_likelihood must return"):
            uk.unlearn_reverse_kl(_Q2, bad, num_samples=20, seed=0)
        with pytest.raises(TypeError, match="log_likelihood must return"):
            uk.fit_gaussian_vi(bad, _Q2, num_samples=20, seed=0)
    for bad in (lambda t: None, lambda t: "p"):
        with pytest.raises(TypeError, match="class_probabilities must return"):
            metrics.predictive_probabilities(_Q2, bad, 10, seed=0)
        with pytest.raises(TypeError, match="energy must return"):
            bif.energy_gradient(lambda g, bad=bad: bad(g), tf.zeros(2, tf.float64))
    with pytest.raises(TypeError, match="matvec must return"):
        linalg.conjugate_gradient(lambda v: None, tf.ones(2, tf.float64))


def test_defect6_seeds_beyond_int64_and_numpy_seeds() -> None:
    with pytest.raises(ValueError, match="seed must lie in the int64 range"):
        uk.eubo(_Q2, _Q2, _logistic(2), num_samples=20, seed=2**63)
    with pytest.raises(ValueError, match="seed must lie in the int64 range"):
        mixture.kmeans_centres(_POINTS, 2, seed=2**63)
    with pytest.raises(ValueError, match="seed must lie in the int64 range"):
        datasets.make_gmm_data(8, seed=2**64)
    with pytest.raises(TypeError, match="seed must be None or an int"):
        mixture.kmeans_centres(_POINTS, 2, seed=1.5)
    # every int seed the package accepts works with NumPy too (negative ones modulo 2**64);
    # non-negative seeds are NumPy's own, so the book's data are unchanged
    assert numpy_seed(-1) == 2**64 - 1 and numpy_seed(7) == 7
    same(datasets.make_gmm_data(8, seed=-1).points, datasets.make_gmm_data(8, seed=-1).points)
    rng = np.random.default_rng(7)
    covariances = [np.diag([1.0, 0.05]), np.eye(2), np.diag([0.05, 1.0]), np.eye(2)]
    expected = np.concatenate(
        [rng.multivariate_normal(mu, cov, size=2) for mu, cov in zip(datasets.TRUE_CENTRES, covariances)]
    )
    np.testing.assert_array_equal(datasets.make_gmm_data(8, seed=7).points, expected)


def test_defect6_too_few_distinct_points_for_the_components() -> None:
    with pytest.raises(ValueError, match="points must hold at least num_components=2 distinct rows"):
        mixture.kmeans_centres(np.ones((5, 2)), 2)


def test_defect6_nan_in_conjugate_gradients_is_not_called_indefinite() -> None:
    with pytest.raises(ValueError, match="rhs contains NaN") as err:
        linalg.conjugate_gradient(lambda v: 2 * v, tf.constant([np.nan, 1.0], tf.float64))
    assert not isinstance(err.value, NotPositiveDefiniteError)
    with pytest.raises(ValueError, match="matvec returned NaN") as err:
        linalg.conjugate_gradient(lambda v: v * np.nan, tf.ones(2, tf.float64))
    assert not isinstance(err.value, NotPositiveDefiniteError)
    # NaN met later in the recursion (not at rhs): reported as non-finite, not as curvature
    calls = []

    def late_nan(v):
        calls.append(1)
        return 2 * v if len(calls) < 2 else v * np.nan

    with pytest.raises(ValueError, match="NaN or infinite") as err:
        linalg.conjugate_gradient(late_nan, tf.constant([1.0, 2.0], tf.float64))
    assert not isinstance(err.value, NotPositiveDefiniteError)


def test_defect6_fit_svi_initial_is_named() -> None:
    for bad in (np.zeros(4), tfd.MultivariateNormalDiag(tf.zeros(4, tf.float32), tf.ones(4, tf.float32))):
        with pytest.raises((ValueError, TypeError), match="initial"):
            bif.fit_svi(MODEL.log_likelihood, MODEL.log_prior, _POINTS, bad, num_steps=10)


def test_defect7_complex_outputs_are_refused() -> None:
    log_likelihood = _logistic(2)
    with pytest.raises(TypeError, match="erased_log_likelihood must return real numbers"):
        uk.eubo(_Q2, _Q2, lambda t: tf.complex(log_likelihood(t), log_likelihood(t)), num_samples=20, seed=0)
    with pytest.raises(TypeError, match="class_probabilities must return real numbers"):
        metrics.predictive_probabilities(
            _Q2, lambda t: tf.complex(tf.sigmoid(t), tf.zeros_like(t)), 10, seed=0
        )
    with pytest.raises(TypeError, match="matvec must return real numbers"):
        linalg.conjugate_gradient(lambda v: tf.complex(v, v), tf.ones(2, tf.float64))
    with pytest.raises(TypeError, match="energy must return a float64 scalar"):
        bif.energy_gradient(lambda g: tf.complex(tf.reduce_sum(g**2), tf.constant(0.0, tf.float64)), tf.zeros(2, tf.float64))
    with pytest.raises(TypeError, match="h must return real numbers"):
        bif.SGLD(lambda t, p: tf.complex(MODEL.h(t, p), MODEL.h(t, p)), MODEL.f, step_size=1e-3,
                 batch_size=2, num_steps=2, record_every=1).sample(_POINTS, np.zeros((2, 4)), seed=0)


def test_defect7_fit_svi_bad_options() -> None:
    initial = tfd.MultivariateNormalDiag(tf.zeros(4, tf.float64), tf.fill([4], tf.constant(0.1, tf.float64)))
    for options, name in (
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"num_steps": 15, "record_every": 10}, "num_steps"),
        ({"batch_size": 0}, "batch_size"),
        ({"average_fraction": 0.0}, "average_fraction"),
        ({"family": "blocks"}, "family"),
        ({"seed": 1.5}, "seed"),
    ):
        with pytest.raises((ValueError, TypeError), match=name):
            bif.fit_svi(MODEL.log_likelihood, MODEL.log_prior, _POINTS, initial, **options)


@pytest.mark.parametrize("flag", [True, False, np.True_, np.array(True), tf.constant(True)])
def test_defect7_booleans_are_not_scales_or_variances(flag) -> None:
    with pytest.raises(TypeError, match="prior_scale must be a positive number, got a boolean"):
        mixture.GaussianMixtureModel(2, 2, flag)
    with pytest.raises(TypeError, match="noise_variance must be a positive number"):
        likelihoods.linear_gaussian_log_likelihood(_FEATURES, _LABELS, flag)
    if isinstance(flag, (bool, np.bool_)):
        with pytest.raises(TypeError, match="noise_variance"):
            exact.LinearGaussian(np.zeros(1), np.eye(1), flag)


def test_defect7_prior_scale_is_stored_as_a_float() -> None:
    model = mixture.GaussianMixtureModel(2, 2, np.array(3.0))
    assert type(model.prior_scale) is float and model == mixture.GaussianMixtureModel(2, 2, 3)


def test_defect7_class_probabilities_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="retrained_probs must have rows that sum to 1"):
        metrics.averaged_kl(np.array([[0.5, 0.4]]), np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"class_probabilities must return \[S, N, C\] rows that sum to 1"):
        metrics.predictive_probabilities(
            _Q2, lambda t: tf.fill([tf.shape(t)[0], 3, 2], tf.constant(0.3, tf.float64)), 10, seed=0
        )


def test_defect7_nan_parameters_are_errors_not_nan_outputs() -> None:
    nan_theta = tf.constant([[np.nan, 0.0]], tf.float64)
    with pytest.raises(ValueError, match="theta contains NaN"):
        _logistic(2)(nan_theta)
    with pytest.raises(ValueError, match="params contains NaN"):
        bif.influence_unlearn(lambda g: tf.reduce_sum(g**2), lambda g: tf.reduce_sum(g), tf.constant([np.nan, 0.0], tf.float64))
    with pytest.raises(ValueError, match="theta contains NaN"):
        MODEL.h(np.full((1, 4), np.nan), _POINTS)
    with pytest.raises(ValueError, match="samples contains NaN"):
        bif.forget_samples(np.full((1, 4), np.nan), MODEL.log_likelihood, MODEL.log_prior, _POINTS, [0])


def test_defect8_importance_ess_of_equal_huge_log_weights() -> None:
    assert uk.importance_ess(np.full(4, 1e16)) == 4.0
    assert uk.importance_ess(np.full(4, -1e300)) == 4.0


def test_defect8_beta_bernoulli_evidence_at_extremes() -> None:
    n = 10**12
    value = exact.BetaBernoulli(1.0, 1.0, num_ones=n, num_zeros=n).log_marginal_likelihood()
    # log B(n + 1, n + 1) = -(2n + 1) log 2 + log(pi / n) / 2 + O(1/n) (Stirling), to ~1e-12
    expected = -(2 * n + 1) * math.log(2) + 0.5 * math.log(math.pi / n)
    assert abs(value - expected) <= 1e-15 * abs(expected) * 8
    point_mass = exact.BetaBernoulli(1e300, 1e300, num_ones=3, num_zeros=2).log_marginal_likelihood()
    assert point_mass == pytest.approx(5 * math.log(0.5), rel=1e-14)


def test_defect8_unlearn_eubo_with_a_huge_offset() -> None:
    log_likelihood = _logistic(2)
    reference = uk.unlearn_eubo(_Q2, log_likelihood, num_samples=200, seed=0)
    shifted, info = uk.unlearn_eubo(_Q2, lambda t: log_likelihood(t) + 1e12, num_samples=200, seed=0, return_info=True)
    assert info.num_iterations > 1
    # values of the callable carry an absolute rounding error of ~1e-4 at 1e12, which
    # determines the minimiser to about sqrt(1e-4) = 1e-2
    np.testing.assert_allclose(shifted.mean(), reference.mean(), atol=2e-2)
    np.testing.assert_allclose(shifted.covariance(), reference.covariance(), atol=2e-2)


# --- defects the fuzz suite found beyond the list


def test_found_influence_cg_with_an_energy_without_gradient() -> None:
    """A NumPy energy passed the check of ``energy - erased_energy`` (the erased energy has a
    gradient) and then failed inside the compiled conjugate gradients with a raw
    ``NotImplementedError``."""
    numpy_energy = lambda g: tf.constant(float(np.sum(np.asarray(g) ** 2)), tf.float64)  # noqa: E731
    erased = lambda g: tf.reduce_sum(g)  # noqa: E731
    for hessian in ("before", "after"):
        with pytest.raises(ValueError, match="energy does not depend on params"):
            bif.influence_unlearn(numpy_energy, erased, np.zeros(2), solver="cg", hessian=hessian)


def test_found_overflows_are_errors_not_infinities() -> None:
    with pytest.raises(ValueError, match="noise_variance is too small"):
        likelihoods.linear_gaussian_log_likelihood(_FEATURES, _LABELS, 5e-324)
    huge = likelihoods.linear_gaussian_log_likelihood(_FEATURES * 1e200, _LABELS, 1.0)
    with pytest.raises(ValueError, match="the log-likelihood of theta"):
        huge(tf.ones([1, 3], tf.float64) * 1e200)
    for scale in (1e-300, 1e300):
        with pytest.raises(ValueError, match="prior_scale must lie in"):
            mixture.GaussianMixtureModel(2, 2, scale)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="prior_mean is too large"):
            exact.LinearGaussian(np.array([1e300]), np.eye(1) * 1e-100, 1.0)


def test_found_non_numeric_inputs_to_linear_algebra_are_named() -> None:
    with pytest.raises(TypeError, match="rhs must be a float64 vector"):
        linalg.conjugate_gradient(lambda v: v, None)
    with pytest.raises(TypeError, match="rhs must be a numeric array"):
        linalg.solve_positive_definite(np.eye(2), None)
    with pytest.raises(ValueError, match=r"rhs must have shape \[2\]"):
        linalg.solve_positive_definite(np.eye(2), np.ones(3))
    with pytest.raises(TypeError, match="log_weights must be a float tensor"):
        uk.importance_ess(None)
