"""Input checks shared by every module.

Each helper raises ``TypeError`` or ``ValueError`` with a message that names the
argument and says what was expected, so that bad input fails loudly at the call
site instead of producing a silently wrong posterior.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit.errors import NotPositiveDefiniteError

tfd = tfp.distributions

__all__ = [
    "as_float64",
    "as_float64_array",
    "as_float64_vector",
    "ensure_finite",
    "check_unit_interval",
    "check_binary_labels",
    "as_gaussian_belief",
    "check_shape",
    "check_callable",
    "check_log_likelihood_values",
    "check_differentiable",
    "check_theta",
    "factor_is_positive_definite",
    "check_positive_int",
    "check_nonnegative_int",
    "check_nonnegative_number",
    "check_positive_number",
    "as_positive_scalar",
    "check_erased_indices",
    "check_output_tensor",
]


def as_float64(
    value: object,
    name: str,
    *,
    ndim: Optional[int] = None,
    shape: Optional[Sequence[Optional[int]]] = None,
) -> tf.Tensor:
    """Convert ``value`` to a finite float64 tensor, checking rank and shape.

    Args:
        value: array-like or tensor.
        name: the argument's name, used in error messages.
        ndim: required rank, if any.
        shape: required shape, ``None`` entries matching any size.

    Returns:
        A float64 ``tf.Tensor`` with the same values.

    Raises:
        TypeError: ``value`` is not numeric.
        ValueError: wrong rank or shape, or NaN / infinite entries.
    """
    if not isinstance(value, tf.Tensor):
        return tf.constant(as_float64_array(value, name, ndim=ndim, shape=shape))
    if not (value.dtype.is_floating or value.dtype.is_integer or value.dtype.is_bool):
        raise TypeError(f"{name} must be numeric, got dtype {value.dtype.name}")
    check_shape(value.shape.as_list(), name, ndim, shape)
    return ensure_finite(tf.cast(value, tf.float64), name)


def check_shape(
    actual: list, name: str, ndim: Optional[int], shape: Optional[Sequence[Optional[int]]]
) -> None:
    """Raise ``ValueError`` unless ``actual`` has rank ``ndim`` and matches ``shape``.

    ``None`` entries of ``shape`` (and unknown entries of ``actual``, as inside a
    ``tf.function``) match any size.
    """
    if ndim is not None and len(actual) != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {actual}")
    if shape is not None and (
        len(actual) != len(shape)
        or any(
            want is not None and got is not None and want != got
            for want, got in zip(shape, actual)
        )
    ):
        want_text = [("?" if s is None else s) for s in shape]
        raise ValueError(f"{name} must have shape {want_text}, got {actual}")


def as_float64_array(
    value: object,
    name: str,
    *,
    ndim: Optional[int] = None,
    shape: Optional[Sequence[Optional[int]]] = None,
    check_finite: bool = True,
) -> np.ndarray:
    """NumPy twin of :func:`as_float64`, for hot paths where TensorFlow's eager overhead
    (tens of microseconds per call) would dominate the arithmetic.

    Same arguments, checks and errors as :func:`as_float64`; returns a float64
    ``np.ndarray`` (the caller's array itself when it already is one: never write to it).
    ``check_finite=False`` skips the scan for NaN / inf, for a caller that checks a
    quantity computed from every entry instead (e.g. the diagonal of ``X^T X``).
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except Exception as err:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} must be a numeric array: {err}") from err
    if array.dtype != np.float64:
        if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == bool
        ):
            raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
        if np.iscomplexobj(array):
            raise TypeError(f"{name} must be real, got dtype {array.dtype}")
        array = array.astype(np.float64)
    check_shape(list(array.shape), name, ndim, shape)
    if check_finite and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def as_float64_vector(value: object, name: str, *, size: Optional[int] = None) -> tf.Tensor:
    """A float64 copy of a 1-D, non-empty, finite vector (never a view of the caller's array).

    Unlike :func:`as_float64`, this refuses other dtypes instead of casting them: a float32
    parameter vector is a ``TypeError`` that says to cast it.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a 1-D float64 tensor, got {type(value).__name__}")
    if isinstance(value, (tf.Tensor, tf.Variable)):
        dtype, tensor = value.dtype, tf.identity(value)
    else:
        array = np.array(value)  # np.array copies: the caller's array is never aliased
        if array.dtype == object or array.dtype.kind not in "biufc":
            raise TypeError(f"{name} must be a 1-D float64 tensor, got dtype {array.dtype}")
        dtype, tensor = tf.as_dtype(array.dtype), tf.constant(array)
    if dtype != tf.float64:
        raise TypeError(f"{name} must have dtype float64, got {dtype.name} (cast it to float64)")
    if tensor.shape.rank != 1 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor [d], got shape {tensor.shape.as_list()}")
    if size is not None and tensor.shape[0] != size:
        raise ValueError(f"{name} must have shape [{size}], got {tensor.shape.as_list()}")
    return ensure_finite(tensor, name)


def ensure_finite(tensor: tf.Tensor, name: str) -> tf.Tensor:
    """Return ``tensor`` (or a NumPy array) unchanged, or raise if it has NaN or inf entries.

    Eagerly this raises ``ValueError`` at once. Inside a ``tf.function`` it adds a check to
    the graph (``tf.debugging.assert_all_finite``) that raises
    ``tf.errors.InvalidArgumentError`` when the graph runs; the package's compiled loops
    (see :func:`unlearnkit.optimize.minimize_lbfgs`) turn that into a rejected step or a
    ``ValueError`` that names the quantity.
    """
    if isinstance(tensor, np.ndarray):  # checked in NumPy: microseconds, not milliseconds
        if not np.all(np.isfinite(tensor)):
            raise ValueError(f"{name} contains NaN or infinite values")
        return tensor
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(tf.math.is_finite(tensor))):
            raise ValueError(f"{name} contains NaN or infinite values")
        return tensor
    return tf.debugging.assert_all_finite(tensor, f"{name} contains NaN or infinite values")


def check_unit_interval(value: float, name: str) -> float:
    """Return ``value`` as a float after checking that it lies in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return value


def check_positive_int(value: int, name: str) -> int:
    """Return ``value`` after checking that it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def check_nonnegative_int(value: object, name: str) -> int:
    """Return ``value`` after checking that it is an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value}")
    return int(value)


def check_nonnegative_number(value: object, name: str) -> float:
    """Return ``value`` as a float after checking that it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a non-negative number, got {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite non-negative number, got {value}")
    return float(value)


def check_positive_number(value: object, name: str) -> float:
    """Return ``value`` as a float after checking that it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


def as_positive_scalar(value: object, name: str) -> float:
    """A finite number > 0 given as a Python / NumPy number or a 0-d array or tensor.

    Booleans (``True``, ``np.True_``, boolean arrays and tensors) are refused with a
    ``TypeError``: ``True`` is not a variance.
    """
    dtype = getattr(value, "dtype", None)
    if isinstance(value, (bool, np.bool_)) or dtype in (np.bool_, tf.bool):
        raise TypeError(f"{name} must be a positive number, got a boolean")
    scale = float(as_float64(value, name, ndim=0))
    if scale <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {scale}")
    return scale


def check_output_tensor(value: object, name: str, expected: str) -> tf.Tensor:
    """The output of a user callable as a real (floating or integer) tensor, before its shape
    is checked: ``None``, strings, objects and complex numbers are a ``TypeError`` naming
    the callable (``expected`` describes what it must return)."""
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must return {expected}, got {type(value).__name__}")
    try:
        value = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must return {expected}: {err}") from None
    if not (value.dtype.is_floating or value.dtype.is_integer) or value.dtype.is_complex:
        raise TypeError(f"{name} must return real numbers ({expected}), got dtype {value.dtype.name}")
    return value


def check_erased_indices(
    erased: object, num_points: int, name: str = "erased", *, allow_empty: bool = True
) -> np.ndarray:
    """Check indices of points to erase: integers in ``[0, n)``, no repeats, at most n of them.

    Args:
        erased: indices ``[m]`` into the data.
        num_points: n, the number of data points.
        name: the argument's name, for error messages.
        allow_empty: whether ``m = 0`` (nothing to erase) is accepted.

    Returns:
        A new ``int64`` array ``[m]`` (the caller's array is never written to).
    """
    try:
        array = np.asarray(erased)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D array of indices") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of indices, got shape {list(array.shape)}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integer indices, got dtype {array.dtype}")
    if array.size == 0 and not allow_empty:
        raise ValueError(f"{name} must name at least one data point to erase")
    if array.size > num_points:
        raise ValueError(f"{name} has {array.size} indices but the data has only {num_points} points")
    if array.size and (array.min() < 0 or array.max() >= num_points):
        raise ValueError(
            f"{name} must index rows 0..{num_points - 1}: got values outside [0, {num_points})"
        )
    if np.unique(array).size != array.size:
        raise ValueError(f"{name} contains repeated indices (a point named more than once)")
    return array.astype(np.int64)


def check_binary_labels(value: object, name: str) -> tf.Tensor:
    """Convert labels to float64 and check that every entry is 0 or 1."""
    tensor = as_float64(value, name)
    if not bool(tf.reduce_all((tensor == 0.0) | (tensor == 1.0))):
        raise ValueError(f"{name} must contain only the labels 0 and 1")
    return tensor


def factor_is_positive_definite(factor_diagonal: np.ndarray, matrix_diagonal: np.ndarray) -> bool:
    """The package's one rule for positive definiteness, given a Cholesky factor ``L`` of ``A``.

    ``A [..., d, d]`` counts as positive definite when its factor is finite and
    ``min_i L_ii^2 > d * eps * max_i A_ii`` for every matrix of the batch (``eps`` the float64
    machine epsilon): a pivot below that is rounding noise, not curvature.

    Args:
        factor_diagonal: ``[..., d]`` the diagonal of ``L``.
        matrix_diagonal: ``[..., d]`` the diagonal of ``A``.
    """
    factor_diagonal = np.asarray(factor_diagonal, dtype=np.float64)
    matrix_diagonal = np.asarray(matrix_diagonal, dtype=np.float64)
    if not np.all(np.isfinite(factor_diagonal)):
        return False
    dim = factor_diagonal.shape[-1]
    threshold = dim * np.finfo(np.float64).eps * np.abs(matrix_diagonal).max(axis=-1)
    return bool(np.all(np.min(factor_diagonal**2, axis=-1) > threshold))


def as_gaussian_belief(q: object, name: str = "q_full") -> tfd.MultivariateNormalTriL:
    """A Gaussian belief over a vector, as a ``tfd.MultivariateNormalTriL``.

    Accepts any float64 ``tfd.MultivariateNormalLinearOperator`` with event shape ``[d]`` and
    an empty batch shape (``MultivariateNormalTriL``, ``MultivariateNormalDiag``,
    ``MultivariateNormalFullCovariance``, ...). Returns ``q`` itself when it already is a
    ``MultivariateNormalTriL`` with a positive diagonal (beliefs are immutable; nothing is
    copied or changed), otherwise a new one with the same mean and covariance.

    Raises:
        TypeError: ``q`` is not a multivariate normal of that family, or not float64.
        ValueError: a batch of beliefs, or NaN / infinite parameters.
        NotPositiveDefiniteError: the covariance is singular (a zero on the scale's diagonal).
    """
    if not isinstance(q, tfd.MultivariateNormalLinearOperator):
        # a normalising flow (e.g. unlearnkit.variational.make_maf_belief) has its own functions
        hint = (
            "; for a flow belief use unlearnkit.variational.unlearn_eubo_flow or "
            "unlearn_reverse_kl_flow"
            if isinstance(q, tfd.Distribution) and "Transformed" in type(q).__name__
            else ""
        )
        raise TypeError(
            f"{name} must be a multivariate normal belief (a tfd.MultivariateNormalLinearOperator "
            f"such as MultivariateNormalTriL or MultivariateNormalDiag), got {type(q).__name__}{hint}"
        )
    if q.dtype != tf.float64:
        raise TypeError(
            f"{name} must have dtype float64, got {q.dtype.name}: build it from float64 "
            f"tensors (e.g. tf.cast(loc, tf.float64))"
        )
    loc = q.loc
    batched = q.scale.shape.rank != 2 or (loc is not None and loc.shape.rank != 1)
    if batched and q.batch_shape.rank != 0:  # TFP's (slower) shape inference only if needed
        raise ValueError(f"{name} must have an empty batch shape, got {q.batch_shape}")
    if q.scale.shape[-1] in (None, 0) or (loc is not None and loc.shape[-1] != q.scale.shape[-1]):
        raise ValueError(f"{name} must have event shape [d] with d >= 1, got {q.event_shape}")
    # q.loc is the mean (empty batch shape); q.mean() would cost milliseconds of broadcasting.
    # The checks run in NumPy: eager TensorFlow would cost milliseconds per belief.
    loc = np.zeros(q.scale.shape[-1]) if loc is None else np.asarray(loc, dtype=np.float64)
    loc = ensure_finite(loc, f"{name}'s mean")
    if isinstance(
        q.scale, (tf.linalg.LinearOperatorLowerTriangular, tf.linalg.LinearOperatorDiag)
    ):
        scale = ensure_finite(q.scale.to_dense().numpy(), f"{name}'s scale")
    else:
        covariance = ensure_finite(q.covariance(), f"{name}'s covariance")
        try:
            scale = tf.linalg.cholesky(covariance).numpy()
        except tf.errors.InvalidArgumentError as err:
            raise NotPositiveDefiniteError(f"{name}'s covariance is not positive definite") from err
    diagonal = np.diag(scale)
    variances = np.sum(scale**2, axis=-1)  # the covariance's diagonal
    if not factor_is_positive_definite(diagonal, variances):
        raise NotPositiveDefiniteError(
            f"{name} is degenerate: its covariance is singular (the scale's diagonal has "
            f"{'a zero' if np.abs(diagonal).min() == 0 else 'an entry ' + format(np.abs(diagonal).min(), '.3g')})"
        )
    if isinstance(q, tfd.MultivariateNormalTriL) and np.all(diagonal > 0):
        return q
    return tfd.MultivariateNormalTriL(
        loc=tf.constant(loc), scale_tril=tf.constant(scale * np.sign(diagonal)[None, :])
    )


def check_callable(fn: object, name: str, expected: str) -> Callable:
    """Return ``fn`` after checking that it is callable; ``expected`` describes its signature."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable {expected}, got {type(fn).__name__}")
    return fn


def check_log_likelihood_values(
    values: object, num_samples: Optional[int], name: str = "erased_log_likelihood"
) -> tf.Tensor:
    """Check the output of a log-likelihood callable: shape [S], real, finite.

    Works eagerly and inside a ``tf.function`` (where ``num_samples`` may be unknown and
    the finiteness check runs with the graph, see :func:`ensure_finite`).
    """
    values = check_output_tensor(values, name, "a float tensor [S]")
    if values.shape.rank != 1 or (
        num_samples is not None and values.shape[0] is not None and values.shape[0] != num_samples
    ):
        raise ValueError(
            f"{name} must return shape [{num_samples if num_samples is not None else 'S'}] for "
            f"theta of shape [S, d], got {values.shape.as_list()}"
        )
    return ensure_finite(tf.cast(values, tf.float64), f"the output of {name}")


def check_differentiable(
    log_likelihood: Callable, theta: tf.Tensor, name: str = "erased_log_likelihood"
) -> None:
    """Raise ``ValueError`` unless ``log_likelihood(theta)`` has a gradient in ``theta``.

    A callable that goes through NumPy returns values but no gradient; an optimiser would
    then see only the rest of its objective and return a silently wrong answer.
    """
    theta = tf.convert_to_tensor(theta)
    with tf.GradientTape() as tape:
        tape.watch(theta)
        values = tf.reduce_sum(tf.cast(log_likelihood(theta), tf.float64))
    if tape.gradient(values, theta) is None:
        raise ValueError(
            f"{name} has no gradient with respect to theta: it must be written with TensorFlow "
            f"operations (a likelihood computed with NumPy cannot be differentiated)"
        )


def check_theta(theta: object, dim: int, name: str = "theta") -> tf.Tensor:
    """``theta`` as a finite float64 tensor of shape ``[S, dim]`` (eagerly or compiled).

    Raises:
        TypeError: ``theta`` is not float64 (a float32 tensor must be cast first).
        ValueError: wrong shape, or NaN / infinite entries.
    """
    if not isinstance(theta, (tf.Tensor, tf.Variable)):
        theta = tf.constant(as_float64_array(theta, name, check_finite=False))
    if theta.dtype != tf.float64:
        raise TypeError(
            f"{name} must be a float64 tensor [S, {dim}], got dtype {theta.dtype.name} "
            f"(cast it with tf.cast({name}, tf.float64))"
        )
    check_shape(theta.shape.as_list(), name, 2, [None, dim])
    return ensure_finite(theta, name)
