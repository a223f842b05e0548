"""Forgetting applied to posterior samples and variational fits of the Gaussian mixture.

BIF for SG-MCMC (as the book applies it here): every sample theta_j is treated as the gamma
of its own energy F(theta_j, S) and moved by its own influence step; all samples move in one
batched, closed-form computation. For SVI, gamma = (m, rho) of the mean-field fit moves by
the same step. Both run the package's one sequential routine,
:func:`unlearnkit.bif.influence.remove_in_chunks`, with the mixture's closed-form gradients
and Hessians (:meth:`~unlearnkit.bif.mixture.GaussianMixtureModel.h_derivatives`) instead of
automatic differentiation.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from unlearnkit import linalg
from unlearnkit._validation import (
    check_erased_indices,
    check_nonnegative_number,
    check_positive_int,
    ensure_finite,
)
from unlearnkit.bif.influence import check_hessian_choice, remove_in_chunks
from unlearnkit.bif.mixture import GaussianMixtureModel

__all__ = [
    "erasure_chunks",
    "forget_samples",
    "forget_svi",
    "influence_hessians",
]

Derivatives = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tuple]
"""``(params [C, P], remaining [n', D], removed [m', D]) ->
(grad of the removed energy [C, P], Hessian of the remaining energy [C, P, P],
Hessian of the removed energy [C, P, P])``."""


def erasure_chunks(erased: object, num_points: int, num_chunks: int) -> list:
    """Split erased indices ``[m]`` into ``num_chunks`` consecutive, nearly equal chunks.

    The order of ``erased`` is kept: shuffle it first to remove points in random order.
    """
    erased = check_erased_indices(erased, num_points)
    check_positive_int(num_chunks, "num_chunks")
    if num_chunks > max(erased.size, 1):
        raise ValueError(f"num_chunks={num_chunks} exceeds the {erased.size} erased points")
    return np.array_split(erased, num_chunks)


class _MixtureChunks:
    """:class:`~unlearnkit.bif.influence.ChunkDerivatives` from closed-form derivatives."""

    def __init__(self, derivatives: Derivatives, points: tf.Tensor, chunks: Sequence) -> None:
        self.num_chunks = len(chunks)
        self.derivatives = derivatives
        self.points = points
        self.chunks = chunks
        self.keep = np.ones(int(points.shape[0]), dtype=bool)
        self.cache = None

    def erased_gradient(self, params: tf.Tensor, chunk: int) -> tf.Tensor:
        self.keep[self.chunks[chunk]] = False
        self.cache = self.derivatives(
            params, tf.boolean_mask(self.points, self.keep), tf.gather(self.points, self.chunks[chunk])
        )
        return self.cache[0]

    def newton_direction(self, params, chunk, rhs, hessian, damping) -> tf.Tensor:
        _, h_remaining, h_removed = self.cache
        matrix = h_remaining + h_removed if hessian == "before" else h_remaining
        return linalg.solve_positive_definite(
            matrix,
            rhs,
            damping=damping,
            name=f"the Hessian ({hessian} chunk {chunk}) of some sample"
            + (" (+ damping I)" if damping else ""),
            hint="; pass damping > 0 to solve (H + damping I) instead",
        )


def _forget(derivatives, params, points, erased, num_chunks, hessian, damping) -> tf.Tensor:
    hessian = check_hessian_choice(hessian)
    damping = check_nonnegative_number(damping, "damping")
    chunks = erasure_chunks(erased, int(points.shape[0]), num_chunks)
    result, _ = remove_in_chunks(
        params, _MixtureChunks(derivatives, points, chunks), hessian=hessian, damping=damping
    )
    return result


_SAMPLE_DERIVATIVES: dict = {}


def _sample_derivatives(model: GaussianMixtureModel) -> Derivatives:
    """Compiled closed-form derivatives of the sampling energies (one per model)."""
    if model not in _SAMPLE_DERIVATIVES:
        spec = [
            tf.TensorSpec([None, model.num_params], tf.float64),
            tf.TensorSpec([None, model.dim], tf.float64),
            tf.TensorSpec([None, model.dim], tf.float64),
        ]

        @tf.function(input_signature=spec)
        def derivatives(theta, remaining, removed):
            _, hess_remaining = model.energy_derivatives(theta, remaining)
            grad_removed, hess_removed = model.h_derivatives(theta, removed)
            return grad_removed, hess_remaining, hess_removed

        _SAMPLE_DERIVATIVES[model] = derivatives
    return _SAMPLE_DERIVATIVES[model]


def influence_hessians(
    model: GaussianMixtureModel,
    samples: object,
    points: object,
    erased: object,
    *,
    hessian: str = "before",
) -> tf.Tensor:
    """The Hessians ``[C, P, P]`` a one-chunk :func:`forget_samples` would solve with.

    ``hessian="before"``: of F(theta_j, S); ``"after"``: of F(theta_j, S - S'). Use them to see
    which samples have a Hessian that is not positive definite (and so need damping).
    """
    samples = model.check_theta(samples, "samples")
    points = model.check_points(points)
    hessian = check_hessian_choice(hessian)
    erased = check_erased_indices(erased, int(points.shape[0]))
    keep = np.ones(int(points.shape[0]), dtype=bool)
    keep[erased] = False
    _, h_remaining, h_removed = _sample_derivatives(model)(
        samples, tf.boolean_mask(points, keep), tf.gather(points, erased)
    )
    return h_remaining + h_removed if hessian == "before" else h_remaining


def forget_samples(
    model: GaussianMixtureModel,
    samples: object,
    points: object,
    erased: object,
    *,
    num_chunks: int = 1,
    hessian: str = "before",
    damping: float = 0.0,
) -> tf.Tensor:
    """Remove the points ``erased`` from posterior samples by an influence step on every sample.

    Every sample theta_j is treated as the gamma of its own energy F(theta_j, S). For each
    chunk C_k of the erased points, removed in order from S_0 = S,

        theta_j <- theta_j + H_j^{-1} grad_theta sum_{z in C_k} h(theta_j, z),

    with H_j the Hessian of F(., S_{k-1}) at theta_j (``hessian="before"``: the slides'
    tangent at tau = 0) or of F(., S_k) (``"after"``, S_k = S_{k-1} - C_k: a Newton step on
    the energy that remains). All samples move in one batched, closed-form computation.

    Args:
        model: the mixture model.
        samples: ``[C, P]`` posterior samples on S.
        points: ``[n, D]`` the data S.
        erased: ``[m]`` indices into ``points`` of S' (no repeats, m <= n).
        num_chunks: number of sequential chunks (1: the whole batch at once).
        hessian: ``"before"`` or ``"after"``.
        damping: non-negative multiple of the identity added to every Hessian (0: none, and a
            Hessian that is not positive definite is an error).

    Returns:
        The processed samples ``[C, P]``, a new tensor.

    Raises:
        NotPositiveDefiniteError: some sample's (damped) Hessian is not positive definite.
    """
    samples = model.check_theta(samples, "samples")
    points = model.check_points(points)
    result = _forget(
        _sample_derivatives(model), samples, points, erased, num_chunks, hessian, damping
    )
    return ensure_finite(result, "the processed samples")


_SVI_DERIVATIVES: dict = {}


def _svi_derivatives(model: GaussianMixtureModel, noise: tf.Tensor) -> Derivatives:
    """Closed-form derivatives of the SVI energies (compiled once per model; the noise is an
    input, so new noise or data sizes do not trigger retracing); batch dimension 1."""
    if model not in _SVI_DERIVATIVES:
        spec = [
            tf.TensorSpec([1, 2 * model.num_params], tf.float64),
            tf.TensorSpec([None, model.dim], tf.float64),
            tf.TensorSpec([None, model.dim], tf.float64),
            tf.TensorSpec([None, model.num_params], tf.float64),
        ]

        @tf.function(input_signature=spec)
        def derivatives(gamma, remaining, removed, noise):
            _, hess_remaining = model.svi_h_derivatives(gamma[0], remaining, noise)
            _, hess_kl = model.svi_f_derivatives(gamma[0])
            grad_removed, hess_removed = model.svi_h_derivatives(gamma[0], removed, noise)
            return grad_removed[None], (hess_remaining + hess_kl)[None], hess_removed[None]

        _SVI_DERIVATIVES[model] = derivatives
    compiled = _SVI_DERIVATIVES[model]
    return lambda gamma, remaining, removed: compiled(gamma, remaining, removed, noise)


def svi_energy_derivatives(
    model: GaussianMixtureModel, gamma: tf.Tensor, points: tf.Tensor, noise: tf.Tensor
) -> tuple:
    """Gradient ``[2P]`` and Hessian ``[2P, 2P]`` of F(gamma, S), in closed form."""
    empty = tf.zeros([0, model.dim], tf.float64)
    gradient, hessian_kl, hessian_data = _svi_derivatives(model, noise)(gamma[None], empty, points)
    return gradient[0] + model.svi_f_derivatives(gamma)[0], hessian_kl[0] + hessian_data[0]


def forget_svi(
    model: GaussianMixtureModel,
    gamma: object,
    points: object,
    erased: object,
    noise: object,
    *,
    num_chunks: int = 1,
    hessian: str = "before",
    damping: float = 0.0,
) -> tf.Tensor:
    """Remove the points ``erased`` from a variational fit by influence steps.

    For each chunk C_k of the erased points (removed in order from S_0 = S):

        gamma_k = gamma_{k-1} + H_k^{-1} grad sum_{z in C_k} h(gamma_{k-1}, z),

    with ``H_k`` the Hessian of ``F(., S_{k-1})`` (``hessian="before"``: the slides' formula,
    the tangent at tau = 0) or of ``F(., S_k)`` (``"after"``: the energy *after* the chunk is
    removed; the step is then one Newton step on the retraining objective). For one point
    both have error O(1/n^2); for a large batch "after" is far more accurate (for a quadratic
    energy it is exact).

    The result equals :func:`unlearnkit.bif.influence_unlearn` with the same ``hessian``;
    here the gradient and Hessian come in closed form
    (:meth:`GaussianMixtureModel.svi_h_derivatives`) from one compiled pass over the data
    instead of 2*K*D reverse passes.

    Args:
        model: the mixture model.
        gamma: ``[2*K*D]`` gamma_S, the fit on all points.
        points: ``[n, D]`` the data S the fit used.
        erased: ``[m]`` indices into ``points`` of S', no repeats, m <= n.
        noise: ``[M, K*D]`` the base noise the fit used.
        num_chunks: number of sequential chunks (1: the whole batch at once).
        hessian: ``"before"`` or ``"after"`` (see above).
        damping: non-negative multiple of the identity added to the Hessian (0: none; the
            Hessian must then be positive definite).

    Returns:
        The processed gamma ``[2*K*D]``, a new tensor.
    """
    gamma = model.check_gamma(gamma)
    points = model.check_points(points)
    noise = model.check_noise(noise)
    result = _forget(
        _svi_derivatives(model, noise), gamma[None], points, erased, num_chunks, hessian, damping
    )
    return ensure_finite(result[0], "the processed gamma")
