"""Laws of exact unlearning for LinearGaussian, on the data that expose cancellation.

Random valid sequences interleave ``observe`` and ``unlearn`` on rows with an intercept,
integer columns, one-hot columns, columns and targets with one decimal (not exact in
binary) and occasional outlier rows, in many small batches. After every call:

- the statistics are within the documented rounding bound of the exact statistics of
  the rows that remain, ``4 eps sqrt(w_j w_k)`` with ``w`` the history of the model
  (module docstring of :mod:`unlearnkit.exact`);
- the posterior mean and covariance agree with those of a model that observed only the
  remaining rows, to the tolerance that bound implies (in the posterior's own metric);
- no valid request is refused, and requests that no data set allows are refused with
  ``ValueError``, leaving the model unchanged and usable.

The default hypothesis profile runs 30 sequences per law; ``--hypothesis-profile=long``
runs 1,000.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from unlearnkit import exact
from unlearnkit.exact import LinearGaussian

EPS = 2.0**-53


@st.composite
def regression_rows(draw):
    """(X [n, d], y [n]) with integer, one-hot, decimal and outlier structure."""
    n = draw(st.integers(1, 14))
    columns = []
    if draw(st.booleans()):
        columns.append(np.ones(n))  # intercept
    for _ in range(draw(st.integers(0, 2))):  # integer columns, many zeros
        columns.append(np.array(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), float))
    if draw(st.booleans()):  # a column with one decimal (not exact in binary)
        columns.append(np.array(draw(st.lists(st.integers(-30, 30), min_size=n, max_size=n))) / 10.0)
    levels = draw(st.sampled_from([0, 2, 3]))
    if levels:  # one-hot columns of a categorical feature
        categories = draw(st.lists(st.integers(0, levels - 1), min_size=n, max_size=n))
        columns += list(np.eye(levels)[categories].T)
    if not columns:
        columns.append(np.array(draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n)), float))
    X = np.stack(columns, axis=1)
    y = np.array(draw(st.lists(st.integers(-30, 30), min_size=n, max_size=n))) / 10.0
    # Outlier rows: a factor of 1e2..1e6 on one column and on the target.
    factors = np.array(
        draw(st.lists(st.sampled_from([1.0, 1.0, 1.0, 1.0, 1e2, 1e4, 1e6]), min_size=n, max_size=n))
    )
    column = draw(st.integers(0, X.shape[1] - 1))
    X[:, column] *= factors
    y *= factors
    return X, y


@st.composite
def valid_sequences(draw):
    """Rows and a valid sequence of ("observe" | "unlearn", row indices) that ends with
    every row unlearned; batches of 1 to 4 rows."""
    X, y = draw(regression_rows())
    fresh = draw(st.permutations(range(X.shape[0])))
    observed: list = []
    operations = []
    while fresh or observed:
        if fresh and (not observed or draw(st.booleans())):
            size = draw(st.integers(1, min(4, len(fresh))))
            batch, fresh = list(fresh[:size]), fresh[size:]
            observed += batch
            operations.append(("observe", batch))
        else:
            size = draw(st.integers(1, min(3, len(observed))))
            batch = list(draw(st.permutations(observed))[:size])
            observed = [i for i in observed if i not in batch]
            operations.append(("unlearn", batch))
    prior_variance = draw(st.sampled_from([1.0, 1e4]))
    noise_variance = draw(st.sampled_from([0.1, 1.0]))
    return X, y, operations, prior_variance, noise_variance


def _split(values: np.ndarray):
    """Dekker's split: values = high + low, each with at most 26 significant bits."""
    scaled = 134217729.0 * values  # 2**27 + 1
    high = scaled - (scaled - values)
    return high, values - high


def exact_gram(Z: np.ndarray) -> np.ndarray:
    """Z^T Z rounded once from the exact value (Dekker's exact products, then fsum)."""
    a, b = Z[:, :, None], Z[:, None, :]
    products = a * b
    (a_high, a_low), (b_high, b_low) = _split(a), _split(b)
    errors = ((a_high * b_high - products) + a_high * b_low + a_low * b_high) + a_low * b_low
    terms = np.concatenate([products, errors], axis=0)
    size = Z.shape[1]
    return np.array([[math.fsum(terms[:, j, k]) for k in range(size)] for j in range(size)])


def history_weight(Z: np.ndarray) -> np.ndarray:
    """A batch's contribution to w: min(rows, 4096) times its column sums of squares."""
    return min(Z.shape[0], exact._STACK_ROWS) * (Z**2).sum(axis=0)


def assert_posteriors_agree(model, reference, bound: np.ndarray) -> None:
    """Mean and covariance of ``model`` and ``reference`` agree to the tolerance implied
    by an entrywise bound on the difference of their statistics, measured in the
    reference posterior's own metric (whitened by the Cholesky factor L of its precision)."""
    dim, noise = model.dim, model.noise_variance
    precision = reference._prior_precision + reference.gram[:dim, :dim] / noise
    L = np.linalg.cholesky(precision)
    L_inv = np.linalg.inv(L)
    # ||L^-1 E L^-T|| <= || |L^-1| bound |L^-1|^T || for any E with |E| <= bound.
    perturbation = np.linalg.norm(np.abs(L_inv) @ bound[:dim, :dim] @ np.abs(L_inv).T, 2) / noise
    shift = np.linalg.norm(np.abs(L_inv) @ bound[:dim, dim]) / noise
    # Rounding in the two Cholesky solves, in the same metric.
    solve = 20 * (dim + 1) * EPS * np.linalg.norm(np.abs(L_inv) @ np.abs(L), 2) ** 2
    total = perturbation + solve
    if total > 0.25:  # the statistics do not determine the posterior to this precision
        return
    mean_whitened = np.linalg.norm(L.T @ reference.posterior_mean)
    mean_gap = np.linalg.norm(L.T @ (model.posterior_mean - reference.posterior_mean))
    assert mean_gap <= 2 * (total * mean_whitened + shift) + 1e-300, (mean_gap, total, shift)
    cov_gap = np.linalg.norm(L.T @ (model.posterior_covariance - reference.posterior_covariance) @ L, 2)
    assert cov_gap <= 2 * total, (cov_gap, total)


@given(case=valid_sequences())
def test_interleaved_observe_unlearn_equals_observing_the_remaining_rows(case) -> None:
    X, y, operations, prior_variance, noise_variance = case
    Z = np.column_stack([X, y])
    dim = X.shape[1]
    prior = LinearGaussian(np.zeros(dim), prior_variance * np.eye(dim), noise_variance)
    model, observed = prior, []
    weight = np.zeros(dim + 1)
    for operation, batch in operations:
        model = getattr(model, operation)(X[batch], y[batch])  # never refused
        weight += history_weight(Z[batch])
        observed = observed + batch if operation == "observe" else [
            i for i in observed if i not in batch
        ]
        assert model.num_observations == len(observed)
        exact_statistics = exact_gram(Z[observed])
        bound = 4 * EPS * np.sqrt(np.outer(weight, weight))
        assert (np.abs(model.gram - exact_statistics) <= bound).all()
        reference = prior.observe(X[observed], y[observed])
        reference_weight = history_weight(Z[observed])
        reference_bound = 4 * EPS * np.sqrt(np.outer(reference_weight, reference_weight))
        assert_posteriors_agree(model, reference, bound + reference_bound)
    # Every row is gone: the statistics are exactly zero and the posterior is the prior.
    np.testing.assert_array_equal(model.gram, np.zeros((dim + 1, dim + 1)))
    np.testing.assert_array_equal(model.posterior_mean, prior.posterior_mean)
    np.testing.assert_array_equal(model.posterior_covariance, prior.posterior_covariance)


@given(case=valid_sequences(), cut=st.floats(0.0, 1.0), kind=st.integers(0, 2))
def test_impossible_requests_are_refused_and_leave_the_model_usable(case, cut, kind) -> None:
    X, y, operations, prior_variance, noise_variance = case
    dim = X.shape[1]
    model, observed = LinearGaussian(np.zeros(dim), prior_variance * np.eye(dim), noise_variance), []
    for operation, batch in operations[: int(cut * len(operations))]:
        model = getattr(model, operation)(X[batch], y[batch])
        observed = observed + batch if operation == "observe" else [
            i for i in observed if i not in batch
        ]
    gram = model.gram.copy()
    Z = np.column_stack([X[observed], y[observed]])
    if kind == 0:  # one row more than were observed
        rows = np.concatenate([Z, Z[:1]]) if observed else np.ones((1, dim + 1))
        bad_X, bad_y = rows[:, :dim], rows[:, dim]
    else:
        zero = ~Z.any(axis=0)  # columns that are zero in every observed row
        if kind == 2 and zero.any():  # a non-zero value in such a column
            row = zero.astype(float)
        else:  # a row twice as large as everything observed, along its main direction:
            # [X y]^T [X y] - row row^T has the eigenvalue -3 lambda_max (or -4 if zero)
            values, vectors = np.linalg.eigh(model.gram)
            row = 2.0 * math.sqrt(max(values[-1], 1.0)) * vectors[:, -1]
        bad_X, bad_y = row[None, :dim], row[dim:]
    with pytest.raises(ValueError, match="cannot be unlearned"):
        model.unlearn(bad_X, bad_y)
    np.testing.assert_array_equal(model.gram, gram)  # unchanged
    for i in observed:  # and still usable: every remaining row can be unlearned
        model = model.unlearn(X[i : i + 1], y[i : i + 1])
    np.testing.assert_array_equal(model.gram, np.zeros((dim + 1, dim + 1)))


@given(case=valid_sequences())
def test_unlearning_in_one_batch_or_row_by_row_gives_the_same_posterior(case) -> None:
    X, y, _, prior_variance, noise_variance = case
    dim = X.shape[1]
    prior = LinearGaussian(np.zeros(dim), prior_variance * np.eye(dim), noise_variance)
    full = prior.observe(X, y)
    erased = np.arange(0, X.shape[0], 2)
    once = full.unlearn(X[erased], y[erased])
    one_by_one = full
    for i in erased[::-1]:
        one_by_one = one_by_one.unlearn(X[i : i + 1], y[i : i + 1])
    Z = np.column_stack([X, y])
    weight = 2 * history_weight(Z) + history_weight(Z[erased]) + sum(
        history_weight(Z[i : i + 1]) for i in erased
    )
    bound = 8 * EPS * np.sqrt(np.outer(weight, weight))
    assert (np.abs(once.gram - one_by_one.gram) <= bound).all()
    assert_posteriors_agree(once, one_by_one, bound)


extreme_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e-300, 1e-300),
    st.sampled_from([0.0, 1.0, -1.0, 0.1, 1e-160, 1e150, 3e153, -1e154]),
)


@given(
    data=st.data(),
    dim=st.integers(1, 3),
    prior_variance=st.sampled_from([1e-300, 1e-10, 1.0, 1e10, 1e300]),
    noise_variance=st.sampled_from([1e-300, 1e-8, 1.0, 1e300]),
)
def test_any_input_gives_a_value_error_or_a_finite_result(
    data, dim, prior_variance, noise_variance
) -> None:
    """Extreme values (NaN, inf, squares that overflow or underflow, huge and tiny prior
    and noise): every call raises ValueError or returns finite values, issues no
    warning, changes neither the model nor the inputs, and unlearning rows that were
    observed is never refused."""
    import warnings

    from unlearnkit.errors import NotPositiveDefiniteError

    model = LinearGaussian(np.zeros(dim), prior_variance * np.eye(dim), noise_variance)
    seen: list = []  # rows observed and not yet unlearned, when known
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(data.draw(st.integers(1, 5))):
            operation = data.draw(st.sampled_from(["observe", "unlearn", "unlearn seen"]))
            if operation == "unlearn seen" and seen:
                count = data.draw(st.integers(1, len(seen)))
                X = np.array([row for row, _ in seen[:count]])
                y = np.array([target for _, target in seen[:count]])
            else:
                rows = data.draw(st.integers(0, 3))
                values = data.draw(st.lists(extreme_floats, min_size=rows * (dim + 1), max_size=rows * (dim + 1)))
                Z = np.array(values, dtype=float).reshape(rows, dim + 1)
                X, y = Z[:, :dim], Z[:, dim]
                operation = "observe" if operation == "observe" else "unlearn"
            copies, before = (X.copy(), y.copy()), model.gram.copy()
            try:
                new = getattr(model, "unlearn" if "unlearn" in operation else "observe")(X, y)
            except ValueError as error:
                assert operation != "unlearn seen", f"a valid request was refused: {error}"
                assert "X" in str(error) or "y" in str(error)
                new = None
            np.testing.assert_array_equal(model.gram, before)
            np.testing.assert_array_equal(X, copies[0])
            np.testing.assert_array_equal(y, copies[1])
            if new is None:
                continue
            model = new
            if operation == "observe":
                seen += list(zip(X, y))
            elif operation == "unlearn seen":
                seen = seen[len(y) :]
            else:
                seen = []  # unknown rows were removed: stop checking validity
            assert np.isfinite(model.gram).all()
            try:
                values = (model.posterior_mean, model.posterior_covariance)
                assert all(np.isfinite(v).all() for v in values)
                assert math.isfinite(model.log_marginal_likelihood())
                _ = model.distribution
            except NotPositiveDefiniteError:
                pass
            except ValueError as error:
                assert "noise_variance" in str(error), str(error)
