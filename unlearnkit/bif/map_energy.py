"""Energies of maximum-a-posteriori (MAP) models, their minimisers and Laplace approximations.

For a model with likelihood ``p(z | gamma)`` and a Gaussian prior ``N(0, prior_variance I)``,
the negative log posterior is an energy in the sense of :mod:`unlearnkit.bif.influence`:

    F(gamma, S) = sum_i h(gamma, z_i) + f(gamma),
    h(gamma, z) = -log p(z | gamma),    f(gamma) = ||gamma||^2 / (2 prior_variance),

and the energy of the erased data ``S'`` is ``-log p(S' | gamma)``. Its minimiser
(:func:`newton_minimize`) is the MAP estimate, and the Gaussian with that mean and the inverse
Hessian as covariance (:func:`laplace_approximation`) is the Laplace approximation of the
posterior.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_float64,
    check_callable,
    check_erased_indices,
    ensure_finite,
)
from unlearnkit.bif.influence import (
    Energy,
    _check_params,
    _check_solver_options,
    _newton_direction,
    energy_gradient,
    energy_hessian,
)

tfd = tfp.distributions

__all__ = ["map_energies", "newton_minimize", "laplace_approximation"]

LikelihoodBuilder = Callable[[tf.Tensor, tf.Tensor], Callable[[tf.Tensor], tf.Tensor]]
"""``(X [m, p], y [m]) -> (theta [S, d] -> log p(y | X, theta) [S])``, e.g.
:func:`unlearnkit.likelihoods.logistic_log_likelihood`."""


def _energy_of(log_likelihood: Callable, prior_variance: Optional[float]) -> Energy:
    """``gamma [d] -> -log_likelihood(gamma) + ||gamma||^2 / (2 prior_variance)`` (scalar)."""

    def energy(gamma: tf.Tensor) -> tf.Tensor:
        value = -log_likelihood(gamma[tf.newaxis, :])[0]
        if prior_variance is not None:
            value = value + 0.5 * tf.reduce_sum(gamma**2) / prior_variance
        return value

    return energy


def map_energies(
    make_log_likelihood: LikelihoodBuilder,
    X: object,
    y: object,
    erased: object,
    *,
    prior_variance: float,
) -> tuple[Energy, Energy | list[Energy]]:
    """The MAP energy of all the data and the energy of the data to erase.

    Args:
        make_log_likelihood: builds a log-likelihood callable from data, ``(X, y) -> (theta
            [S, d] -> [S])``, e.g. :func:`unlearnkit.likelihoods.logistic_log_likelihood`.
        X: inputs ``[n, p]``.
        y: targets ``[n]``.
        erased: row indices ``[m]`` of the points to erase (distinct, ``m <= n``), or a
            sequence of such index arrays, one per chunk for sequential removal (the chunks
            must be disjoint).
        prior_variance: variance of the zero-mean isotropic Gaussian prior.

    Returns:
        ``(energy, erased_energy)``: ``energy(gamma) = F(gamma, S)`` (negative log posterior up
        to a constant) and ``erased_energy(gamma) = -log p(S' | gamma)``, both
        ``gamma [d] -> scalar``; with chunks, ``erased_energy`` is a list, one per chunk.

    Raises:
        ValueError: mismatched shapes, non-finite data, indices out of range, repeated, or
            more erased points than data.
    """
    check_callable(make_log_likelihood, "make_log_likelihood", "(X, y) -> (theta [S, d] -> [S])")
    X = as_float64(X, "X", ndim=2)
    y = as_float64(y, "y", ndim=1)
    num_data = int(X.shape[0])
    if y.shape[0] != num_data:
        raise ValueError(f"y must have shape [{num_data}] to match X, got {y.shape.as_list()}")
    variance = float(as_float64(prior_variance, "prior_variance", ndim=0))
    if variance <= 0.0:
        raise ValueError(f"prior_variance must be positive, got {variance}")

    chunked = isinstance(erased, Sequence) and len(erased) > 0 and np.ndim(erased[0]) == 1
    if chunked:
        chunks = [check_erased_indices(c, num_data, f"erased[{k}]", allow_empty=False) for k, c in enumerate(erased)]
        check_erased_indices(np.concatenate(chunks), num_data, "the union of the erased chunks")
    else:
        chunks = [check_erased_indices(erased, num_data, "erased", allow_empty=False)]

    energy = _energy_of(make_log_likelihood(X, y), variance)
    erased_energies = [
        _energy_of(make_log_likelihood(tf.gather(X, c), tf.gather(y, c)), None) for c in chunks
    ]
    return energy, (erased_energies if chunked else erased_energies[0])


def newton_minimize(
    energy: Energy,
    init: tf.Tensor,
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
    solver: str = "exact",
) -> tf.Tensor:
    """Minimise a smooth, strictly convex energy by Newton's method with backtracking.

    This is "retraining": the reference against which a one-step removal is judged. Each
    iteration solves with the Hessian at the current point; a halving line search keeps the
    energy decreasing far from the minimum, and the convergence is quadratic near it.

    Args:
        energy: ``gamma [d] -> scalar``.
        init: starting point ``[d]`` float64 (not modified).
        tol: stop when the Newton step satisfies ``||step|| <= tol * (1 + ||gamma||)``.
        max_iter: Newton iteration limit.
        solver: ``"exact"`` or ``"cg"``, as in :func:`influence_unlearn`.

    Returns:
        The minimiser ``[d]``.

    Raises:
        ValueError: the Hessian is not positive definite along the way.
        RuntimeError: no convergence within ``max_iter`` iterations.
    """
    check_callable(energy, "energy", "gamma [d] -> scalar")
    gamma = _check_params(init, "init")
    tol, max_iter = _check_solver_options(solver, tol, max_iter, int(gamma.shape[0]))
    cg_tol, cg_max_iter = _check_solver_options(solver, 1e-11, None, int(gamma.shape[0]))
    energy_gradient(energy, gamma)  # checks: a finite float64 scalar that depends on gamma
    value = float(energy(gamma))
    for _ in range(max_iter):
        gradient = energy_gradient(energy, gamma)
        step = -_newton_direction(
            energy, gamma, gradient, solver=solver, damping=0.0, tol=cg_tol, max_iter=cg_max_iter
        )
        size = 1.0
        while True:  # backtracking: accept the first halving that does not increase the energy
            candidate = gamma + size * step
            candidate_value = float(energy(candidate))
            if candidate_value <= value or size < 1e-10:
                break
            size *= 0.5
        gamma, value = candidate, candidate_value
        if float(tf.norm(size * step)) <= tol * (1.0 + float(tf.norm(gamma))):
            return ensure_finite(gamma, "the minimiser")
    raise RuntimeError(f"Newton's method did not converge in {max_iter} iterations")


def laplace_approximation(energy: Energy, params: tf.Tensor) -> tfd.MultivariateNormalTriL:
    """Gaussian ``N(params, H^{-1})`` with ``H = hess energy(params)``.

    At the minimiser of a negative log posterior this is the Laplace approximation of the
    posterior (exact for a Gaussian posterior, e.g. Bayesian linear regression).

    Args:
        energy: ``gamma [d] -> scalar``.
        params: ``[d]`` float64, where the Hessian must be positive definite.

    Returns:
        A float64 ``tfd.MultivariateNormalTriL`` over ``[d]``.

    Raises:
        ValueError: the Hessian at ``params`` is not positive definite.
    """
    check_callable(energy, "energy", "gamma [d] -> scalar")
    params = _check_params(params)
    hessian = energy_hessian(energy, params)
    if np.linalg.eigvalsh(hessian.numpy())[0] <= 0.0:
        raise ValueError("the Hessian of energy at params is not positive definite")
    dim = int(params.shape[0])
    covariance = tf.linalg.cholesky_solve(tf.linalg.cholesky(hessian), tf.eye(dim, dtype=tf.float64))
    scale_tril = ensure_finite(tf.linalg.cholesky(0.5 * (covariance + tf.transpose(covariance))), "the covariance")
    return tfd.MultivariateNormalTriL(loc=params, scale_tril=scale_tril)
