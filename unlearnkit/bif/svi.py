"""Variational inference for the Gaussian mixture, and forgetting applied to it.

Fitting minimises the SVI energy (the negative ELBO, :meth:`GaussianMixtureModel.svi_energy`)
over gamma = (m, rho) with L-BFGS. The base noise is fixed ("common random numbers"), so
the objective is deterministic and smooth and L-BFGS converges in tens of iterations
instead of the thousands of noisy steps of stochastic-gradient SVI; the optimum is the same
kind of object the influence function is derived for: a minimiser of F(gamma, S).

Forgetting moves gamma_S by influence steps, see :func:`forget_svi`.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import scipy.optimize
import tensorflow as tf

from unlearnkit._validation import check_positive_int, ensure_finite
from unlearnkit.bif.mixture import GaussianMixtureModel
from unlearnkit.bif.mixture import kmeans_centres
from unlearnkit.bif.samplers import _forget_chunks

__all__ = ["SVIFit", "fit_svi", "forget_svi"]


class SVIFit(NamedTuple):
    """Result of :func:`fit_svi`: ``(gamma, path, energy)``."""

    gamma: tf.Tensor
    path: np.ndarray
    energy: float


SVIFit.gamma.__doc__ = "``[2*K*D]`` the fitted variational parameters (m, rho)."
SVIFit.path.__doc__ = "``[T, 2*K*D]`` gamma at the start and after every L-BFGS and Newton iteration."
SVIFit.energy.__doc__ = "F(gamma, S) at the optimum."


_COMPILED: dict = {}


def _value_and_gradient(model: GaussianMixtureModel):
    """A compiled ``(gamma, points, noise) -> (F, grad F)``, one per model (cached)."""
    if model not in _COMPILED:
        spec = [
            tf.TensorSpec([2 * model.num_params], tf.float64),
            tf.TensorSpec([None, model.dim], tf.float64),
            tf.TensorSpec([None, model.num_params], tf.float64),
        ]

        @tf.function(input_signature=spec)
        def value_and_gradient(gamma, points, noise):
            with tf.GradientTape() as tape:
                tape.watch(gamma)
                value = model.svi_energy(gamma, points, noise)
            return value, tape.gradient(value, gamma)

        _COMPILED[model] = value_and_gradient
    return _COMPILED[model]


def fit_svi(
    model: GaussianMixtureModel,
    points: object,
    noise: object,
    *,
    init: Optional[object] = None,
    init_scale: float = 0.1,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-10,
    newton_steps: int = 3,
) -> SVIFit:
    """Fit q(theta) = N(m, diag(softplus(rho)^2)) by minimising F(gamma, S) with L-BFGS.

    Args:
        model: the mixture model.
        points: ``[n, D]`` the data S.
        noise: ``[M, K*D]`` fixed base noise (:func:`unlearnkit.bif.energies.svi_noise`).
        init: starting gamma ``[2*K*D]``; by default the k-means centres of ``points``
            (:func:`unlearnkit.bif.gmm.kmeans_centres` with ``seed``) and standard
            deviations ``init_scale``.
        init_scale: initial standard deviation of every coordinate when ``init`` is None.
        seed: seed of the k-means initialisation.
        max_iter: L-BFGS iteration limit.
        tol: L-BFGS tolerance on the projected gradient (``gtol``) and relative decrease.
        newton_steps: at most this many Newton steps (closed-form Hessian) after L-BFGS, to
            polish the optimum to machine precision; each is taken only while the Hessian
            is positive definite and the gradient norm exceeds 1e-10. 0 to skip.

    Returns:
        An :class:`SVIFit`.

    Raises:
        RuntimeError: L-BFGS stopped without converging.
    """
    points = model.check_points(points)
    noise = model.check_noise(noise)
    check_positive_int(max_iter, "max_iter")
    if init is None:
        centres = kmeans_centres(points, model.num_components, seed=seed)
        init = model.svi_gamma(centres.reshape(-1), np.full(model.num_params, float(init_scale)))
    gamma0 = model.check_gamma(init, "init").numpy().copy()
    value_and_gradient = _value_and_gradient(model)

    def objective(x: np.ndarray):
        value, gradient = value_and_gradient(tf.constant(x), points, noise)
        return float(value), gradient.numpy()

    path = [gamma0.copy()]
    result = scipy.optimize.minimize(
        objective,
        gamma0,
        jac=True,
        method="L-BFGS-B",
        callback=lambda x: path.append(np.array(x)),
        options={"maxiter": max_iter, "gtol": tol, "ftol": tol},
    )
    if not result.success and result.nit >= max_iter:
        raise RuntimeError(f"L-BFGS did not converge in {max_iter} iterations: {result.message}")
    gamma = tf.constant(result.x, dtype=tf.float64)
    derivatives = _svi_derivatives(model, noise)
    empty = tf.zeros([0, model.dim], tf.float64)
    for _ in range(newton_steps):
        # with nothing "remaining" and all of S "removed": H_KL and (grad, H) of sum_S h
        gradient, hessian_kl, hessian_data = derivatives(gamma[None], empty, points)
        gradient = gradient[0] + model.svi_f_derivatives(gamma)[0]
        hessian = hessian_kl[0] + hessian_data[0]
        if float(tf.norm(gradient)) < 1e-10 or float(tf.reduce_min(tf.linalg.eigvalsh(hessian))) <= 0:
            break
        gamma = gamma - tf.linalg.solve(hessian, gradient[:, None])[:, 0]
        path.append(gamma.numpy())
    gamma = ensure_finite(gamma, "the fitted gamma")
    energy = float(model.svi_energy(gamma, points, noise))
    return SVIFit(gamma, np.array(path), energy)


_DERIVATIVES: dict = {}


def _svi_derivatives(model: GaussianMixtureModel, noise: tf.Tensor):
    """``(gamma [1, 2P], remaining, removed) -> (g_removed, H_remaining + H_KL, H_removed)``.

    Closed-form derivatives in one compiled function per model (the noise is an input, so
    new noise or data sizes do not trigger retracing); batch dimension 1 for the shared
    chunk loop of :mod:`unlearnkit.bif.samplers`.
    """
    if model not in _DERIVATIVES:
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

        _DERIVATIVES[model] = derivatives
    compiled = _DERIVATIVES[model]
    return lambda gamma, remaining, removed: compiled(gamma, remaining, removed, noise)


def forget_svi(
    model: GaussianMixtureModel,
    gamma: object,
    points: object,
    erased: object,
    noise: object,
    *,
    num_chunks: int = 1,
    hessian: str = "after",
    damping: float = 0.0,
) -> tf.Tensor:
    """Remove the points ``erased`` from a variational fit by influence steps.

    For each chunk C_k of the erased points (removed in order from S_0 = S):

        gamma_k = gamma_{k-1} + H_k^{-1} grad sum_{z in C_k} h(gamma_{k-1}, z),

    with ``H_k`` the Hessian of ``F(., S_k)`` (``hessian="after"``: the energy *after* the
    chunk is removed, S_k = S_{k-1} - C_k; the step is then one Newton step on the
    retraining objective) or of ``F(., S_{k-1})`` (``hessian="before"``: the slides'
    formula, the tangent at tau = 0). For one point both have error O(1/n^2); for a large
    batch "after" is far more accurate (for a quadratic energy it is exact).

    The result equals :func:`unlearnkit.bif.influence_unlearn` with the energies
    ``F(., S_k)`` (or ``F(., S_{k-1})``) and ``sum_{C_k} h``; here the gradient and Hessian
    come in closed form (:meth:`GaussianMixtureModel.svi_h_derivatives`) from one compiled
    pass over the data instead of 2*K*D reverse passes.

    Args:
        model: the mixture model.
        gamma: ``[2*K*D]`` gamma_S, the fit on all points.
        points: ``[n, D]`` the data S the fit used.
        erased: ``[m]`` indices into ``points`` of S', no repeats, m <= n.
        noise: ``[M, K*D]`` the base noise the fit used.
        num_chunks: number of sequential chunks (1: the whole batch at once).
        hessian: ``"after"`` or ``"before"`` (see above).
        damping: non-negative multiple of the identity added to the Hessian (0: none; the
            Hessian must then be positive definite).

    Returns:
        The processed gamma ``[2*K*D]``, a new tensor.
    """
    gamma = model.check_gamma(gamma)
    points = model.check_points(points)
    noise = model.check_noise(noise)
    result = _forget_chunks(
        _svi_derivatives(model, noise), gamma[None], points, erased, num_chunks, hessian, damping
    )
    return ensure_finite(result[0], "the processed gamma")
