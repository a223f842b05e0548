"""Energies of maximum-a-posteriori (MAP) models, and their minimisers.

For a model with likelihood ``p(z | gamma)`` and a Gaussian prior ``N(0, prior_variance I)``,
the negative log posterior is an energy in the sense of :mod:`unlearnkit.derivatives`:

    F(gamma, S) = sum_i h(gamma, z_i) + f(gamma),
    h(gamma, z) = -log p(z | gamma),    f(gamma) = ||gamma||^2 / (2 prior_variance),

and the energy of the erased data ``S'`` is ``-log p(S' | gamma)``. Its minimiser
(:func:`newton_minimize`) is the MAP estimate, and the Gaussian with that mean and the inverse
Hessian as covariance (:func:`unlearnkit.laplace.laplace_approximation`) is the Laplace
approximation of the posterior.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, Optional, Tuple, Union

import tensorflow as tf

from unlearnkit import linalg
from unlearnkit._validation import (
    as_float64,
    as_float64_vector,
    check_callable,
    check_erased_indices,
    check_positive_int,
    check_positive_number,
    ensure_finite,
)
from unlearnkit.bif.influence import check_solver, newton_direction
from unlearnkit.derivatives import Energy, energy_gradient
from unlearnkit.diagnostics import OptimizationInfo
from unlearnkit.errors import ConvergenceWarning

__all__ = ["map_energies", "map_erased_energy", "newton_minimize"]

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


def _check_data(make_log_likelihood: object, X: object, y: object) -> Tuple[tf.Tensor, tf.Tensor]:
    check_callable(make_log_likelihood, "make_log_likelihood", "(X, y) -> (theta [S, d] -> [S])")
    X = as_float64(X, "X", ndim=2)
    y = as_float64(y, "y", ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape [{X.shape[0]}] to match X, got {y.shape.as_list()}")
    return X, y


def map_erased_energy(
    make_log_likelihood: LikelihoodBuilder, X: object, y: object, erased: object
) -> Energy:
    """The energy ``gamma [d] -> -log p(y_erased | X_erased, gamma)`` of the rows ``erased``.

    Args:
        make_log_likelihood: ``(X, y) -> (theta [S, d] -> [S])``.
        X: inputs ``[n, p]``.
        y: targets ``[n]``.
        erased: row indices ``[m]`` of the points to erase (distinct, ``1 <= m <= n``).
    """
    X, y = _check_data(make_log_likelihood, X, y)
    rows = check_erased_indices(erased, int(X.shape[0]), "erased", allow_empty=False)
    return _energy_of(make_log_likelihood(tf.gather(X, rows), tf.gather(y, rows)), None)


def map_energies(
    make_log_likelihood: LikelihoodBuilder,
    X: object,
    y: object,
    erased: object,
    *,
    prior_variance: float,
) -> Tuple[Energy, Energy]:
    """The MAP energy of all the data and the energy of the data to erase.

    Args:
        make_log_likelihood: builds a log-likelihood callable from data, ``(X, y) -> (theta
            [S, d] -> [S])``, e.g. :func:`unlearnkit.likelihoods.logistic_log_likelihood`.
        X: inputs ``[n, p]``.
        y: targets ``[n]``.
        erased: row indices ``[m]`` of the points to erase (distinct, ``1 <= m <= n``). For
            removal in chunks, build one erased energy per chunk with
            :func:`map_erased_energy`.
        prior_variance: variance of the zero-mean isotropic Gaussian prior.

    Returns:
        ``(energy, erased_energy)``: ``energy(gamma) = F(gamma, S)`` (negative log posterior up
        to a constant) and ``erased_energy(gamma) = -log p(S' | gamma)``, both
        ``gamma [d] -> scalar``.

    Raises:
        ValueError: mismatched shapes, non-finite data, indices out of range, repeated, or
            more erased points than data.
    """
    X, y = _check_data(make_log_likelihood, X, y)
    variance = check_positive_number(prior_variance, "prior_variance")
    erased_energy = map_erased_energy(make_log_likelihood, X, y, erased)
    return _energy_of(make_log_likelihood(X, y), variance), erased_energy


def newton_minimize(
    energy: Energy,
    initial: object,
    *,
    tolerance: float = 1e-12,
    max_iterations: int = 100,
    solver: str = "exact",
    return_info: bool = False,
) -> Union[tf.Tensor, Tuple[tf.Tensor, OptimizationInfo]]:
    """Minimise a smooth, strictly convex energy by Newton's method with backtracking.

    This is "retraining": the reference against which a one-step removal is judged. Each
    iteration solves with the Hessian at the current point; a halving line search keeps the
    energy decreasing far from the minimum, and the convergence is quadratic near it.

    Args:
        energy: ``gamma [d] -> scalar``.
        initial: starting point ``[d]`` float64 (not modified).
        tolerance: stop when the Newton step satisfies
            ``||step|| <= tolerance * (1 + ||gamma||)``.
        max_iterations: Newton iteration limit.
        solver: ``"exact"`` or ``"cg"``, as in :func:`~unlearnkit.bif.influence_unlearn`.
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Returns:
        The minimiser ``[d]``, and the info if requested.

    Raises:
        NotPositiveDefiniteError: the Hessian is not positive definite along the way.

    Warns:
        ConvergenceWarning: no convergence within ``max_iterations``; the last iterate is
            returned.
    """
    start = time.perf_counter()
    check_callable(energy, "energy", "gamma [d] -> scalar")
    gamma = as_float64_vector(initial, "initial")
    tolerance = linalg.check_tolerance(tolerance)
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    solver = check_solver(solver)
    energy_gradient(energy, gamma)  # checks: a finite float64 scalar that depends on gamma
    value = float(energy(gamma))
    converged, iterations, evaluations = False, 0, 1
    for iterations in range(1, max_iterations + 1):
        gradient = energy_gradient(energy, gamma)
        step = -newton_direction(energy, gamma, gradient, solver=solver, tolerance=1e-11)
        size = 1.0
        while True:  # backtracking: accept the first halving that does not increase the energy
            candidate = gamma + size * step
            candidate_value = float(energy(candidate))
            evaluations += 1
            if candidate_value <= value or size < 1e-10:
                break
            size *= 0.5
        gamma, value = candidate, candidate_value
        if float(tf.norm(size * step)) <= tolerance * (1.0 + float(tf.norm(gamma))):
            converged = True
            break
    if not converged:
        warnings.warn(
            f"Newton's method did not converge in {max_iterations} iterations",
            ConvergenceWarning,
            stacklevel=2,
        )
    gamma = ensure_finite(gamma, "the minimiser")
    if not return_info:
        return gamma
    info = OptimizationInfo(
        objective=value,
        num_iterations=iterations,
        num_evaluations=evaluations,
        converged=converged,
        message="converged" if converged else "iteration limit reached",
        seconds=time.perf_counter() - start,
    )
    return gamma, info
