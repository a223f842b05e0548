"""Private helpers shared by the Gaussian-belief methods (EUBO, reverse KL, VI).

Every optimiser here works in *whitened* coordinates relative to a reference Gaussian
``N(mu_0, L_0 L_0^T)`` (the belief we start from):

    theta = mu_0 + L_0 z,    z = a + B eps,    eps ~ N(0, I),

with ``a`` a vector and ``B`` lower triangular with a positive diagonal (stored through
its logarithm). ``a = 0, B = I`` is the reference belief itself, so every optimisation
starts at the all-zeros parameter vector, and the problem is equally well scaled
whatever the scale of the reference (a prior of standard deviation 100, or GP inducing
outputs of standard deviation 0.01).

The base samples ``eps`` are fixed for a whole optimisation ("common random numbers"),
which turns a Monte Carlo objective into a deterministic, piecewise-smooth function of
``(a, B)`` that L-BFGS can minimise in a few dozen iterations.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Tuple, Union

import numpy as np
import scipy.optimize
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    check_positive_int,
    check_positive_number,
    ensure_finite,
)

tfd = tfp.distributions

Seed = Union[None, int, Tuple[int, int]]


def seed_pair(seed: Seed, name: str = "seed") -> tf.Tensor:
    """A stateless-RNG seed ``[2] int64``.

    ``None`` draws a fresh seed from NumPy's global generator (so ``np.random.seed``
    makes a run reproducible); an integer or a pair of integers is used as given.
    """
    if seed is None:
        return tf.constant(np.random.randint(0, 2**31 - 1, size=2), dtype=tf.int64)
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, an integer or a pair of integers, got bool")
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    if isinstance(seed, (tuple, list)) and len(seed) == 2 and all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seed
    ):
        return tf.constant([int(s) for s in seed], dtype=tf.int64)
    raise TypeError(f"{name} must be None, an integer or a pair of integers, got {seed!r}")


def moment_matched_normal(num_samples: int, dim: int, seed: Seed) -> tf.Tensor:
    """Standard-normal base samples ``eps [S, d]`` with sample mean exactly 0 and
    sample covariance (``1/S`` normalisation) exactly ``I``.

    Centring and whitening the raw draws removes the Monte Carlo error of every
    expectation of a quadratic function of ``theta`` (for example a Gaussian
    log-likelihood), and reduces it for smooth ones. Needs ``S > d``.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    if num_samples <= dim:
        raise ValueError(
            f"num_samples must exceed the dimension d = {dim} of theta, got {num_samples}"
        )
    raw = tf.random.stateless_normal([num_samples, dim], seed=seed_pair(seed), dtype=tf.float64)
    centred = raw - tf.reduce_mean(raw, axis=0)
    cov = tf.matmul(centred, centred, transpose_a=True) / num_samples
    chol = tf.linalg.cholesky(cov)
    # eps = centred @ chol^{-T}  =>  eps^T eps / S = I.
    return tf.transpose(tf.linalg.triangular_solve(chol, tf.transpose(centred), lower=True))


def num_parameters(dim: int) -> int:
    """Length of the packed vector ``[a (d), lower triangle of B (d(d+1)/2)]``."""
    return dim + dim * (dim + 1) // 2


def unpack(x: tf.Tensor, dim: int) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Split the packed vector into ``a [d]``, ``B [d, d]`` and ``log diag(B) [d]``."""
    a = x[:dim]
    raw = tfp.math.fill_triangular(x[dim:])
    log_diag = tf.linalg.diag_part(raw)
    return a, tf.linalg.set_diag(raw, tf.exp(log_diag)), log_diag


def pack(a: tf.Tensor, B: tf.Tensor) -> tf.Tensor:
    """Inverse of :func:`unpack` (``B`` lower triangular with a positive diagonal)."""
    raw = tf.linalg.set_diag(B, tf.math.log(tf.linalg.diag_part(B)))
    return tf.concat([a, tfp.math.fill_triangular_inverse(raw)], axis=0)


def whitened_kl_to_standard(a: tf.Tensor, B: tf.Tensor, log_diag: tf.Tensor) -> tf.Tensor:
    """``KL[N(a, B B^T) || N(0, I)]`` in closed form."""
    dim = tf.cast(tf.shape(a)[0], tf.float64)
    return 0.5 * (tf.reduce_sum(B**2) + tf.reduce_sum(a**2) - dim) - tf.reduce_sum(log_diag)


def gaussian_kl_tril(
    loc_q: tf.Tensor, scale_q: tf.Tensor, loc_p: tf.Tensor, scale_p: tf.Tensor
) -> tf.Tensor:
    """``KL[N(loc_q, S_q S_q^T) || N(loc_p, S_p S_p^T)]`` for lower-triangular scales."""
    dim = tf.cast(tf.shape(loc_q)[0], tf.float64)
    M = tf.linalg.triangular_solve(scale_p, scale_q, lower=True)  # S_p^{-1} S_q
    v = tf.linalg.triangular_solve(scale_p, (loc_q - loc_p)[:, None], lower=True)[:, 0]
    log_det_ratio = tf.reduce_sum(
        tf.math.log(tf.abs(tf.linalg.diag_part(scale_p)))
        - tf.math.log(tf.abs(tf.linalg.diag_part(scale_q)))
    )
    return 0.5 * (tf.reduce_sum(M**2) + tf.reduce_sum(v**2) - dim) + log_det_ratio


def whiten(q: tfd.MultivariateNormalTriL, reference: tfd.MultivariateNormalTriL):
    """Whitened coordinates ``(a, B)`` of ``q`` relative to ``reference``."""
    L0 = reference.scale.to_dense()
    a = tf.linalg.triangular_solve(L0, (q.loc - reference.loc)[:, None], lower=True)[:, 0]
    B = tf.linalg.triangular_solve(L0, q.scale.to_dense(), lower=True)
    # Flip column signs so that the diagonal is positive (same covariance).
    return a, B * tf.sign(tf.linalg.diag_part(B))[None, :]


def belief_from_whitened(
    reference: tfd.MultivariateNormalTriL, a: tf.Tensor, B: tf.Tensor
) -> tfd.MultivariateNormalTriL:
    """The new belief ``N(mu_0 + L_0 a, (L_0 B)(L_0 B)^T)``, checked to be finite."""
    L0 = reference.scale.to_dense()
    loc = ensure_finite(reference.loc + tf.linalg.matvec(L0, a), "the unlearned mean")
    scale = ensure_finite(tf.matmul(L0, B), "the unlearned scale")
    return tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale)


def copy_belief(q: tfd.MultivariateNormalTriL) -> tfd.MultivariateNormalTriL:
    """A new belief with the same parameters as ``q``."""
    return tfd.MultivariateNormalTriL(
        loc=tf.identity(q.loc), scale_tril=tf.identity(q.scale.to_dense())
    )


@dataclass(frozen=True)
class OptimizationInfo:
    """What an L-BFGS fit did.

    Attributes:
        objective: the final value of the (common-random-number) objective.
        num_iterations: L-BFGS iterations taken.
        num_evaluations: objective-and-gradient evaluations.
        converged: whether scipy reported convergence. A line search that cannot make
            progress across a discontinuity of the adjusted likelihood is reported as
            not converged even when the result is fine; look at ``message``.
        message: scipy's termination message.
        seconds: wall-clock time of the fit, including tracing.
    """

    objective: float
    num_iterations: int
    num_evaluations: int
    converged: bool
    message: str
    seconds: float


def compile_value_and_gradient(
    objective: Callable[[tf.Tensor], tf.Tensor], x0: tf.Tensor
) -> Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]:
    """Value-and-gradient of ``objective``, as a ``tf.function`` when it can be traced.

    A user's log-likelihood that is not TensorFlow-traceable (for example one that
    converts tensors to NumPy) falls back to eager execution: slower, same result.
    """

    def value_and_gradient(x: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = objective(x)
        return value, tape.gradient(value, x)

    compiled = tf.function(value_and_gradient, autograph=False)
    try:
        compiled(x0)
        return compiled
    except Exception:  # noqa: BLE001 - not traceable; the eager call raises real errors
        value_and_gradient(x0)
        return value_and_gradient


def minimize_lbfgs(
    objective: Callable[[tf.Tensor], tf.Tensor],
    x0: tf.Tensor,
    *,
    max_iterations: int,
    tolerance: float,
    name: str,
) -> Tuple[tf.Tensor, OptimizationInfo]:
    """Minimise a deterministic TensorFlow objective with scipy's L-BFGS-B.

    Args:
        objective: ``x [P] -> scalar``, differentiable TensorFlow code.
        x0: starting point, ``[P]`` float64.
        max_iterations: L-BFGS iteration cap.
        tolerance: stop when the largest gradient entry falls below it (or the
            relative change of the objective below ``tolerance**2``).
        name: names the objective in error messages.

    Returns:
        The minimiser ``[P]`` and an :class:`OptimizationInfo`.

    Raises:
        ValueError: the objective is not finite at the start or at the result.
    """
    start = time.perf_counter()
    value_and_gradient = compile_value_and_gradient(objective, x0)

    def scipy_objective(x: np.ndarray) -> Tuple[float, np.ndarray]:
        value, gradient = value_and_gradient(tf.constant(x, dtype=tf.float64))
        value, gradient = float(value), gradient.numpy()
        if not (math.isfinite(value) and np.all(np.isfinite(gradient))):
            # Tell the line search this step is unacceptable; it will backtrack.
            return math.inf, np.zeros_like(x)
        return value, gradient

    initial_value, _ = scipy_objective(x0.numpy())
    if not math.isfinite(initial_value):
        raise ValueError(f"{name} is not finite at the starting belief")
    result = scipy.optimize.minimize(
        scipy_objective,
        x0.numpy(),
        jac=True,
        method="L-BFGS-B",
        options={
            "maxiter": max_iterations,
            "gtol": tolerance,
            "ftol": tolerance**2,
            "maxcor": 20,
        },
    )
    x = tf.constant(result.x, dtype=tf.float64)
    final_value = float(result.fun)
    if not math.isfinite(final_value) or not np.all(np.isfinite(result.x)):
        raise ValueError(f"{name} became non-finite during optimisation")
    info = OptimizationInfo(
        objective=final_value,
        num_iterations=int(result.nit),
        num_evaluations=int(result.nfev),
        converged=bool(result.success),
        message=str(result.message),
        seconds=time.perf_counter() - start,
    )
    return x, info


def check_tolerance(tolerance: float) -> float:
    """Return ``tolerance`` as a float after checking that it is positive and finite."""
    return check_positive_number(tolerance, "tolerance")
