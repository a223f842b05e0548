"""The whitened parameterisation shared by the Gaussian-belief methods (EUBO, reverse KL, VI).

Every optimiser here works in *whitened* coordinates relative to a reference Gaussian
``N(mu_0, L_0 L_0^T)`` (the belief we start from):

    theta = mu_0 + L_0 z,    z = a + B eps,    eps ~ N(0, I),

with ``a`` a vector and ``B`` lower triangular with a positive diagonal, packed into one
vector ``x = [a, b]`` where ``B = FillScaleTriL(diag_bijector=Exp)(b)`` (the diagonal is
stored through its logarithm). ``x = 0`` is the reference belief itself, so every
optimisation starts at the all-zeros vector, and the problem is equally well scaled
whatever the scale of the reference (a prior of standard deviation 100, or GP inducing
outputs of standard deviation 0.01).

The base samples ``eps`` are fixed for a whole optimisation ("common random numbers"),
which turns a Monte Carlo objective into a deterministic, piecewise-smooth function of
``(a, B)`` that L-BFGS can minimise in a few dozen iterations.
"""

from __future__ import annotations

import functools
from typing import Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import check_positive_int, ensure_finite
from unlearnkit.seeds import Seed, sanitize_seed

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "moment_matched_normal",
    "num_parameters",
    "unpack",
    "unpack_numpy",
    "packed_layout",
    "pack",
    "whiten",
    "belief_from_whitened",
    "belief_from_packed",
    "final_belief",
    "whitened_belief",
    "copy_belief",
    "STANDARD_SCALE",
]

STANDARD_SCALE = tfb.FillScaleTriL(diag_bijector=tfb.Exp(), diag_shift=None)
"""Packed vector ``[d (d + 1) / 2]`` -> lower-triangular ``B [d, d]`` with diagonal ``exp(.)``."""


def moment_matched_normal(num_samples: int, dim: int, seed: Seed) -> tf.Tensor:
    """Standard-normal base samples ``eps [S, d]`` with sample mean exactly 0 and
    sample covariance (``1/S`` normalisation) exactly ``I``.

    Centring and whitening the raw draws removes the Monte Carlo error of every
    expectation of a quadratic function of ``theta`` (for example a Gaussian
    log-likelihood), and reduces it for smooth ones. Needs ``S > d``.

    A draw is a function of ``(S, d)`` and the stateless seed alone, so draws of a
    concrete seed (an int, a pair, an eager seed tensor) of up to 2^20 numbers are cached
    (the last 8): a repeated request, or one per ``lam`` of a grid, does not draw again.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    if num_samples <= dim:
        raise ValueError(
            f"num_samples must exceed the dimension d = {dim} of theta, got {num_samples}"
        )
    stateless = sanitize_seed(seed)
    # None is a fresh seed each time, and inside a graph there are no values to key on
    if seed is None or num_samples * dim > _CACHED_SAMPLES_LIMIT or not tf.executing_eagerly():
        return _moment_matched_normal(num_samples, dim, stateless)
    low, high = (int(half) for half in stateless.numpy())
    return _moment_matched_normal_of_seed(num_samples, dim, low, high)


_CACHED_SAMPLES_LIMIT = 2**20  # numbers per cached draw (8 MB): at most 8 draws are kept


@functools.lru_cache(maxsize=8)
def _moment_matched_normal_of_seed(num_samples: int, dim: int, low: int, high: int) -> tf.Tensor:
    # a stateless seed always gives the same (immutable) tensor: a repeated request reuses it
    return _moment_matched_normal(num_samples, dim, tf.constant([low, high], tf.int32))


def _moment_matched_normal(num_samples: int, dim: int, seed: tf.Tensor) -> tf.Tensor:
    raw = tf.random.stateless_normal([num_samples, dim], seed=seed, dtype=tf.float64)
    centred = raw - tf.reduce_mean(raw, axis=0)
    cov = tf.matmul(centred, centred, transpose_a=True) / num_samples
    chol = tf.linalg.cholesky(cov)
    # eps = centred @ chol^{-T}  =>  eps^T eps / S = I (a product with the [d, d] inverse is
    # ten times faster than a triangular solve with S right-hand sides).
    inverse = tf.linalg.triangular_solve(chol, tf.eye(dim, dtype=tf.float64), lower=True)
    return tf.matmul(centred, inverse, transpose_b=True)


def num_parameters(dim: int) -> int:
    """Length of the packed vector ``[a (d), b (d(d+1)/2)]``."""
    return dim + dim * (dim + 1) // 2


def unpack(x: tf.Tensor, dim: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """Split the packed vector into ``a [d]`` and lower-triangular ``B [d, d]``."""
    return x[:dim], STANDARD_SCALE.forward(x[dim:])


@functools.lru_cache(maxsize=None)
def packed_layout(dim: int) -> Tuple[np.ndarray, np.ndarray]:
    """Where :func:`unpack` puts each packed entry, read off ``STANDARD_SCALE`` itself:
    ``[d, d]`` positions into ``[0, b]`` (0: a structural zero) and ``[d]`` into ``b``."""
    size = dim * (dim + 1) // 2
    positions = tfp.math.fill_triangular(tf.range(1, size + 1, dtype=tf.float64)).numpy()
    off_diagonal = np.tril(positions, -1).astype(np.int64)
    return off_diagonal, np.diag(positions).astype(np.int64) - 1


def unpack_numpy(x: object, dim: int) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`unpack` in NumPy (for a final result: no gradient), in microseconds."""
    x = np.asarray(x, dtype=np.float64)
    off_diagonal, diagonal = packed_layout(dim)
    b = x[dim:]
    B = np.concatenate([[0.0], b])[off_diagonal]
    B[np.diag_indices(dim)] = np.exp(b[diagonal])
    return x[:dim].copy(), B


def pack(a: tf.Tensor, B: tf.Tensor) -> tf.Tensor:
    """Inverse of :func:`unpack` (``B`` lower triangular with a positive diagonal)."""
    return tf.concat([a, STANDARD_SCALE.inverse(B)], axis=0)


def whitened_belief(a: tf.Tensor, B: tf.Tensor) -> tfd.MultivariateNormalTriL:
    """``N(a, B B^T)``, the belief in whitened coordinates (its KL to ``N(0, I)`` is the
    KL of the belief to the reference)."""
    return tfd.MultivariateNormalTriL(loc=a, scale_tril=B)


def whiten(
    q: tfd.MultivariateNormalTriL, reference: tfd.MultivariateNormalTriL
) -> Tuple[tf.Tensor, tf.Tensor]:
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


def final_belief(
    reference: tfd.MultivariateNormalTriL, a: object, B: object
) -> tfd.MultivariateNormalTriL:
    """:func:`belief_from_whitened` for the result of an optimisation, computed in NumPy
    (not differentiable; constructing the distribution is the only TensorFlow cost)."""
    L0 = reference.scale.to_dense().numpy()
    mean = 0.0 if reference.loc is None else np.asarray(reference.loc, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # a non-finite result is refused below
        loc = mean + L0 @ np.asarray(a, dtype=np.float64)
        scale = L0 @ np.asarray(B, dtype=np.float64)
    loc = ensure_finite(loc, "the unlearned mean")
    scale = ensure_finite(scale, "the unlearned scale")
    return tfd.MultivariateNormalTriL(loc=tf.constant(loc), scale_tril=tf.constant(scale))


def belief_from_packed(reference: tfd.MultivariateNormalTriL, x: object) -> tfd.MultivariateNormalTriL:
    """:func:`final_belief` of the packed whitened parameters ``x [P]`` (see :func:`unpack`)."""
    return final_belief(reference, *unpack_numpy(x, int(reference.scale.shape[-1])))


def copy_belief(q: tfd.MultivariateNormalTriL) -> tfd.MultivariateNormalTriL:
    """A new belief with the same parameters as ``q`` (results are never the caller's object)."""
    return tfd.MultivariateNormalTriL(loc=tf.identity(q.loc), scale_tril=q.scale.to_dense())
