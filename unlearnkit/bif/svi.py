"""Variational inference for the Gaussian mixture: fitting q(theta) = N(m, diag(softplus(rho)^2)).

Fitting minimises the SVI energy (the negative ELBO, :meth:`GaussianMixtureModel.svi_energy`)
over gamma = (m, rho) with L-BFGS (:func:`unlearnkit.optimize.minimize_lbfgs`) followed by a
few Newton steps with the closed-form Hessian. The base noise is fixed ("common random
numbers"), so the objective is deterministic and smooth and L-BFGS converges in tens of
iterations instead of the thousands of noisy steps of stochastic-gradient SVI; the optimum is
the same kind of object the influence function is derived for: a minimiser of F(gamma, S).

Forgetting moves gamma_S by influence steps, see :func:`unlearnkit.bif.forgetting.forget_svi`.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from unlearnkit._validation import (
    check_nonnegative_int,
    check_positive_int,
    check_positive_number,
    ensure_finite,
)
from unlearnkit.bif.forgetting import svi_energy_derivatives
from unlearnkit.bif.mixture import GaussianMixtureModel, kmeans_centres
from unlearnkit.diagnostics import OptimizationInfo
from unlearnkit import linalg
from unlearnkit.errors import ConvergenceWarning, NotPositiveDefiniteError
from unlearnkit.linalg import check_tolerance
from unlearnkit.optimize import minimize_lbfgs
from unlearnkit.seeds import Seed, numpy_seed

__all__ = ["fit_svi"]


def fit_svi(
    model: GaussianMixtureModel,
    points: object,
    noise: object,
    *,
    initial: Optional[object] = None,
    initial_scale: float = 0.1,
    seed: Seed = 0,
    max_iterations: int = 500,
    tolerance: float = 1e-10,
    newton_steps: int = 3,
    return_info: bool = False,
) -> Union[tf.Tensor, Tuple[tf.Tensor, OptimizationInfo]]:
    """Fit q(theta) = N(m, diag(softplus(rho)^2)) by minimising F(gamma, S).

    L-BFGS runs to a gradient of ``sqrt(tolerance)``; then at most ``newton_steps`` Newton
    steps with the closed-form Hessian polish the optimum (quadratic convergence) until the
    gradient falls below ``tolerance``.

    Args:
        model: the mixture model.
        points: ``[n, D]`` the data S.
        noise: ``[M, K*D]`` fixed base noise (:func:`unlearnkit.bif.mixture.svi_noise`).
        initial: starting gamma ``[2*K*D]``; by default the k-means centres of ``points``
            (:func:`unlearnkit.bif.mixture.kmeans_centres` with ``seed``) and standard
            deviations ``initial_scale``.
        initial_scale: initial standard deviation of every coordinate when ``initial`` is
            None (> 0).
        seed: seed of the k-means initialisation (None or an int); checked even when
            ``initial`` is given.
        max_iterations: L-BFGS iteration limit.
        tolerance: largest gradient entry at convergence.
        newton_steps: at most this many Newton steps after L-BFGS, each taken only while the
            Hessian is positive definite and the gradient exceeds ``tolerance``. 0 to skip.
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo` (with
            gamma at the start and after every iteration in ``path``).

    Returns:
        The fitted gamma ``[2*K*D]``, and the info if requested.

    Warns:
        ConvergenceWarning: the gradient did not fall below ``tolerance``.
    """
    start = time.perf_counter()
    points = model.check_points(points)
    noise = model.check_noise(noise)
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = check_tolerance(tolerance)
    newton_steps = check_nonnegative_int(newton_steps, "newton_steps")
    numpy_seed(seed)  # checked even when initial is given
    if initial is None:
        scale = check_positive_number(initial_scale, "initial_scale")
        centres = kmeans_centres(points, model.num_components, seed=seed)
        initial = model.svi_gamma(centres.reshape(-1), np.full(model.num_params, scale))
    gamma = tf.identity(model.check_gamma(initial, "initial"))
    with warnings.catch_warnings():  # convergence is judged after the Newton steps
        warnings.simplefilter("ignore", ConvergenceWarning)
        gamma, lbfgs = minimize_lbfgs(
            lambda g: model.svi_energy(g, points, noise),
            gamma,
            max_iterations=max_iterations,
            tolerance=math.sqrt(tolerance),
            name="the SVI energy",
            record_path=True,
        )
    path = list(lbfgs.path)
    gradient, hessian = svi_energy_derivatives(model, gamma, points, noise)
    for _ in range(newton_steps):
        if float(tf.reduce_max(tf.abs(gradient))) <= tolerance:
            break
        try:
            step = linalg.solve_positive_definite(hessian, gradient, name="the SVI Hessian")
        except NotPositiveDefiniteError:  # not yet in the basin of a minimum: stop polishing
            break
        gamma = gamma - step
        path.append(gamma.numpy())
        gradient, hessian = svi_energy_derivatives(model, gamma, points, noise)
    gamma = ensure_finite(gamma, "the fitted gamma")
    largest = float(tf.reduce_max(tf.abs(gradient)))
    converged = largest <= tolerance
    if not converged:
        warnings.warn(
            f"fit_svi stopped with gradient {largest:.3g} > tolerance {tolerance:g}",
            ConvergenceWarning,
            stacklevel=2,
        )
    if not return_info:
        return gamma
    info = OptimizationInfo(
        objective=float(model.svi_energy(gamma, points, noise)),
        num_iterations=len(path) - 1,
        num_evaluations=lbfgs.num_evaluations,
        converged=converged,
        message=lbfgs.message,
        seconds=time.perf_counter() - start,
        path=np.array(path),
    )
    return gamma, info
