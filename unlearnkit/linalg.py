"""Checked linear algebra: positive-definite factorisations and solves, conjugate gradients.

One rule decides whether a symmetric matrix ``A [d, d]`` is positive definite, everywhere in
the package (:func:`unlearnkit._validation.factor_is_positive_definite`): its Cholesky factor
``L`` exists and ``min_i L_ii^2 > d * eps * max_i A_ii`` (``eps`` the float64 machine epsilon). A matrix that fails it raises
:class:`~unlearnkit.errors.NotPositiveDefiniteError`, with the smallest eigenvalue and the
damping that would make it positive definite.
"""

from __future__ import annotations

import weakref
import warnings
from typing import Callable, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from unlearnkit._validation import (
    as_float64,
    check_nonnegative_number,
    check_output_tensor,
    check_positive_int,
    factor_is_positive_definite,
)
from unlearnkit.diagnostics import SolverInfo
from unlearnkit.errors import ConvergenceWarning, NotPositiveDefiniteError

__all__ = [
    "cholesky",
    "solve_positive_definite",
    "conjugate_gradient",
    "check_tolerance",
    "default_max_iterations",
]

_EPS = np.finfo(np.float64).eps


def check_tolerance(tolerance: object, name: str = "tolerance") -> float:
    """Return ``tolerance`` as a float after checking that it lies in (0, 1)."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in (0, 1), got {type(tolerance).__name__}")
    if not 0.0 < float(tolerance) < 1.0:
        raise ValueError(f"{name} must lie in (0, 1), got {tolerance}")
    return float(tolerance)


def default_max_iterations(max_iterations: Optional[int], dim: int) -> int:
    """``max_iterations`` checked, or ``max(10 d, 50)`` when it is None."""
    if max_iterations is None:
        return max(10 * dim, 50)
    return check_positive_int(max_iterations, "max_iterations")


def _not_positive_definite(matrix: np.ndarray, name: str, hint: str) -> NotPositiveDefiniteError:
    eigenvalues = np.linalg.eigvalsh(np.nan_to_num(matrix))
    smallest = eigenvalues[..., 0].min()
    needed = max(-smallest, 0.0) + _EPS * max(np.abs(eigenvalues).max(), 1.0)
    return NotPositiveDefiniteError(
        f"{name} is not positive definite (smallest eigenvalue {smallest:.3g}){hint}"
        f" (damping must exceed about {needed:.3g})"
    )


def cholesky(
    matrix: Union[tf.Tensor, np.ndarray], name: str = "the matrix", *, hint: str = ""
) -> tf.Tensor:
    """Lower Cholesky factor ``[..., d, d]`` of a symmetric positive-definite matrix (batch).

    Args:
        matrix: ``[..., d, d]`` float64; symmetrised before factorising.
        name: names the matrix in the error message.
        hint: appended to the error message (for example how to add damping).

    Raises:
        NotPositiveDefiniteError: some matrix of the batch is not positive definite by the
            module's rule.
        ValueError: NaN or infinite entries.
    """
    matrix = as_float64(matrix, name)  # NaN / inf, strings, complex: errors naming it
    if matrix.shape.rank < 2 or matrix.shape[-1] != matrix.shape[-2] or matrix.shape[-1] == 0:
        raise ValueError(f"{name} must have shape [..., d, d] with d >= 1, got {matrix.shape.as_list()}")
    matrix = 0.5 * (matrix + tf.linalg.matrix_transpose(matrix))
    try:
        factor = tf.linalg.cholesky(matrix)
    except tf.errors.InvalidArgumentError:
        raise _not_positive_definite(matrix.numpy(), name, hint) from None
    if not factor_is_positive_definite(
        tf.linalg.diag_part(factor).numpy(), tf.linalg.diag_part(matrix).numpy()
    ):
        raise _not_positive_definite(matrix.numpy(), name, hint)
    return factor


def solve_positive_definite(
    matrix: Union[tf.Tensor, np.ndarray],
    rhs: Union[tf.Tensor, np.ndarray],
    *,
    damping: float = 0.0,
    name: str = "the matrix",
    hint: str = "",
) -> tf.Tensor:
    """``(A + damping I)^{-1} b`` for positive-definite ``A [..., d, d]`` and ``b [..., d]``.

    Raises:
        NotPositiveDefiniteError: ``A + damping I`` is not positive definite.
    """
    matrix = as_float64(matrix, name)
    rhs = as_float64(rhs, "rhs")
    if matrix.shape.rank < 2 or rhs.shape.as_list() != matrix.shape.as_list()[:-1]:
        raise ValueError(
            f"rhs must have shape {matrix.shape.as_list()[:-1]} to match {name} "
            f"{matrix.shape.as_list()}, got {rhs.shape.as_list()}"
        )
    damping = check_nonnegative_number(damping, "damping")
    if damping:
        matrix = matrix + damping * tf.eye(int(matrix.shape[-1]), dtype=tf.float64)
    factor = cholesky(matrix, name, hint=hint)
    return tf.linalg.cholesky_solve(factor, rhs[..., None])[..., 0]


# --------------------------------------------------------------------- conjugate gradients

_CONVERGED, _NEGATIVE_CURVATURE, _NOT_CONVERGED, _NOT_FINITE = 0, 1, 2, 3


def conjugate_gradient_loop(
    matvec: Callable[[tf.Tensor], tf.Tensor],
    rhs: tf.Tensor,
    tolerance: tf.Tensor,
    max_iterations: tf.Tensor,
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """The conjugate-gradient recursion as TensorFlow ops (``tf.while_loop``), to compile.

    Returns ``(x, iterations, relative residual, status, curvature)``; ``status`` is 0
    (converged), 1 (a direction of curvature ``p^T A p <= 0``), 2 (iteration limit) or 3
    (non-finite values). Callers compile it and turn the status into errors and warnings.
    """
    rhs_norm = tf.norm(rhs)

    def body(i, x, r, p, rs, status, curvature):
        product = matvec(p)
        curvature = tf.tensordot(p, product, 1)
        positive = curvature > 0.0
        alpha = rs / tf.where(positive, curvature, 1.0)
        x_new, r_new = x + alpha * p, r - alpha * product
        rs_new = tf.tensordot(r_new, r_new, 1)
        status = tf.where(
            ~tf.math.is_finite(curvature),  # NaN from matvec is not a negative curvature
            _NOT_FINITE,
            tf.where(
                ~positive,
                _NEGATIVE_CURVATURE,
                tf.where(
                    ~tf.math.is_finite(rs_new),
                    _NOT_FINITE,
                    tf.where(tf.sqrt(rs_new) <= tolerance * rhs_norm, _CONVERGED, -1),
                ),
            ),
        )
        x = tf.where(positive, x_new, x)  # a failed step leaves the iterate as it was
        r = tf.where(positive, r_new, r)
        p = r_new + (rs_new / rs) * p
        rs = tf.where(positive, rs_new, rs)
        return i + 1, x, r, p, rs, status, curvature

    def cond(i, x, r, p, rs, status, curvature):
        return tf.logical_and(i < max_iterations, status < 0)

    zero = tf.zeros_like(rhs)
    start = (
        tf.constant(0),
        zero,
        rhs,
        rhs,
        tf.tensordot(rhs, rhs, 1),
        tf.where(rhs_norm > 0.0, -1, _CONVERGED),
        tf.constant(0.0, tf.float64),
    )
    i, x, r, _, rs, status, curvature = tf.while_loop(cond, body, start)
    status = tf.where(status < 0, _NOT_CONVERGED, status)
    residual = tf.sqrt(rs) / tf.where(rhs_norm > 0.0, rhs_norm, 1.0)
    return x, i, residual, status, curvature


def finish_conjugate_gradient(
    outputs: Tuple[tf.Tensor, ...], tolerance: float, max_iterations: int, name: str
) -> Tuple[tf.Tensor, SolverInfo]:
    """Turn the loop's status into the result, a typed error or a warning."""
    x, iterations, residual, status, curvature = outputs
    status, residual = int(status), float(residual)
    if status == _NEGATIVE_CURVATURE:
        raise NotPositiveDefiniteError(
            f"{name} is not positive definite: conjugate gradients met a direction with "
            f"curvature p^T A p = {float(curvature):.3g} <= 0. Pass damping > 0 to solve "
            f"(A + damping I) instead"
        )
    if status == _NOT_FINITE or not bool(tf.reduce_all(tf.math.is_finite(x))):
        raise ValueError(f"conjugate gradients on {name} produced NaN or infinite values")
    converged = status == _CONVERGED
    if not converged:
        warnings.warn(
            f"conjugate gradients on {name} did not reach relative residual {tolerance:g} in "
            f"{max_iterations} iterations (reached {residual:.3g}); raise max_iterations or "
            f"tolerance, or add damping",
            ConvergenceWarning,
            stacklevel=3,
        )
    return x, SolverInfo(int(iterations), residual, converged)


_COMPILED_LOOPS: "weakref.WeakKeyDictionary[Callable, Callable]" = weakref.WeakKeyDictionary()


def _compiled_loop(matvec: Callable[[tf.Tensor], tf.Tensor]) -> Callable:
    try:
        return _COMPILED_LOOPS[matvec]
    except (KeyError, TypeError):
        pass
    compiled = tf.function(
        lambda rhs, tol, maxit: conjugate_gradient_loop(matvec, rhs, tol, maxit), autograph=False
    )
    try:
        _COMPILED_LOOPS[matvec] = compiled
    except TypeError:
        pass
    return compiled


def _check_matvec(matvec: Callable[[tf.Tensor], tf.Tensor], rhs: tf.Tensor) -> None:
    """Call ``matvec`` once, eagerly, on ``rhs``: it must return a finite float64 ``[d]``."""
    expected = f"a float64 vector [{int(rhs.shape[0])}] (A v for v [d])"
    product = check_output_tensor(matvec(rhs), "matvec", expected)
    if product.dtype != tf.float64:
        raise TypeError(f"matvec must return {expected}, got dtype {product.dtype.name}")
    if product.shape.as_list() != rhs.shape.as_list():
        raise ValueError(f"matvec must return {expected}, got shape {product.shape.as_list()}")
    if not bool(tf.reduce_all(tf.math.is_finite(product))):
        raise ValueError("matvec returned NaN or infinite values (A v at v = rhs)")


def conjugate_gradient(
    matvec: Callable[[tf.Tensor], tf.Tensor],
    rhs: object,
    *,
    tolerance: float = 1e-10,
    max_iterations: Optional[int] = None,
    return_info: bool = False,
) -> Union[tf.Tensor, Tuple[tf.Tensor, SolverInfo]]:
    """Solve ``A x = rhs`` for a symmetric positive-definite ``A`` given only ``v -> A v``.

    The recursion runs compiled (one ``tf.function`` with a ``tf.while_loop``, no host
    synchronisation per iteration) when ``matvec`` is TensorFlow code, eagerly otherwise.

    Args:
        matvec: ``v [d] -> A v [d]`` (float64).
        rhs: ``[d]`` float64.
        tolerance: stop when ``||rhs - A x|| <= tolerance * ||rhs||``; in (0, 1).
        max_iterations: iteration limit (default ``max(10 d, 50)``).
        return_info: also return a :class:`~unlearnkit.diagnostics.SolverInfo`.

    Returns:
        ``x [d]``, and the info if requested.

    Raises:
        NotPositiveDefiniteError: a search direction ``p`` with ``p^T A p <= 0`` was met, so
            ``A`` is not positive definite. (CG sees only the directions it explores: an
            indefinite ``A`` whose negative directions are orthogonal to them goes unnoticed.)
        TypeError: ``matvec`` does not return a float64 vector (checked once, at ``rhs``).
        ValueError: ``rhs``, ``A rhs`` or the iterates are not finite, or ``matvec``
            returns the wrong shape.

    Warns:
        ConvergenceWarning: no convergence within ``max_iterations``; the last iterate is
            returned.
    """
    if not callable(matvec):
        raise TypeError(f"matvec must be callable v [d] -> A v [d], got {type(matvec).__name__}")
    if rhs is None or isinstance(rhs, (str, bytes)):
        raise TypeError(f"rhs must be a float64 vector [d], got {type(rhs).__name__}")
    try:
        rhs = tf.convert_to_tensor(rhs)
    except (TypeError, ValueError) as err:
        raise TypeError(f"rhs must be a float64 vector [d]: {err}") from None
    if not rhs.dtype.is_floating or rhs.dtype != tf.float64:
        raise TypeError(f"rhs must be a float64 vector [d], got dtype {rhs.dtype.name}")
    if rhs.shape.rank != 1 or rhs.shape[0] == 0:
        raise ValueError(f"rhs must have shape [d] with d >= 1, got {rhs.shape.as_list()}")
    if not bool(tf.reduce_all(tf.math.is_finite(rhs))):
        raise ValueError("rhs contains NaN or infinite values")
    tolerance = check_tolerance(tolerance)
    max_iterations = default_max_iterations(max_iterations, int(rhs.shape[0]))
    _check_matvec(matvec, rhs)
    args = (rhs, tf.constant(tolerance, tf.float64), tf.constant(max_iterations))
    try:
        outputs = _compiled_loop(matvec)(*args)
    except tf.errors.InvalidArgumentError:
        raise
    except Exception:  # noqa: BLE001 - matvec is not traceable: run the same loop eagerly
        outputs = conjugate_gradient_loop(matvec, *args)
    x, info = finish_conjugate_gradient(outputs, tolerance, max_iterations, "A")
    return (x, info) if return_info else x
