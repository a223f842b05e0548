"""One-step (influence-function) removal of data from a minimiser of an energy.

An *energy* here is a callable ``gamma [d] -> F(gamma)`` returning a float64 scalar, with
``F(gamma, S) = sum_i h(gamma, z_i) + f(gamma)`` (Fu et al., Bayesian Inference Forgetting).
Removing the data ``S'`` leaves ``F(gamma, S - S') = F(gamma, S) - sum_{z in S'} h(gamma, z)``;
the *erased energy* is that sum. If ``gamma_S`` minimises ``F(., S)``, the implicit function
theorem along ``grad F(gamma, S) + tau grad h(gamma, z) = 0`` (``tau`` from 0 to -1) gives

    gamma_{S - S'} ~= gamma_S + H^{-1} grad_gamma sum_{z in S'} h(gamma_S, z),
    H = hess_gamma F(gamma_S, S),

with an error of order ``1/n^2`` for the removal of one point out of ``n``.

Two solvers: ``"exact"`` forms the dense Hessian by automatic differentiation and solves by
Cholesky; ``"cg"`` touches the Hessian only through Hessian-vector products
(forward-over-reverse differentiation) inside conjugate gradients, for parameter vectors too
large for a dense ``d x d`` matrix. A Hessian that is not positive definite (the parameters
are not a minimiser, e.g. a single posterior sample) is an error unless the caller asks for
damping, which solves with ``H + damping * I`` instead.
"""

from __future__ import annotations

import weakref
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from unlearnkit._validation import (
    check_callable,
    check_nonnegative_number,
    ensure_finite,
)

__all__ = [
    "Energy",
    "energy_gradient",
    "energy_hessian",
    "hessian_vector_product",
    "conjugate_gradient",
    "influence_unlearn",
    "influence_unlearn_sequential",
]

Energy = Callable[[tf.Tensor], tf.Tensor]
"""``gamma [d] -> F(gamma)``, a float64 scalar built from TensorFlow ops."""

_SOLVERS = ("exact", "cg")


# ----------------------------------------------------------------------------- input checks


def _check_params(params: object, name: str = "params") -> tf.Tensor:
    """Return a float64 copy of a 1-D, non-empty, finite parameter vector (never a view)."""
    if isinstance(params, (str, bytes)) or params is None:
        raise TypeError(f"{name} must be a 1-D float64 tensor, got {type(params).__name__}")
    if isinstance(params, (tf.Tensor, tf.Variable)):
        dtype = params.dtype
        tensor = tf.identity(params)
    else:
        array = np.array(params)  # np.array copies: the caller's array is never aliased
        if array.dtype == object:
            raise TypeError(f"{name} must be a 1-D float64 tensor, got dtype object")
        dtype = tf.as_dtype(array.dtype) if array.dtype.kind in "biufc" else None
        if dtype is None:
            raise TypeError(f"{name} must be a 1-D float64 tensor, got dtype {array.dtype}")
        tensor = tf.constant(array)
    if dtype != tf.float64:
        raise TypeError(f"{name} must have dtype float64, got {dtype.name}")
    if tensor.shape.rank != 1 or tensor.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor [d], got shape {tensor.shape.as_list()}")
    return ensure_finite(tensor, name)


def _check_energy_value(value: object, name: str) -> tf.Tensor:
    if not isinstance(value, (tf.Tensor, tf.Variable)):
        raise TypeError(f"{name} must return a float64 scalar tf.Tensor, got {type(value).__name__}")
    if value.dtype != tf.float64:
        raise TypeError(f"{name} must return a float64 scalar, got dtype {value.dtype.name}")
    if value.shape.rank != 0:
        raise ValueError(f"{name} must return a scalar, got shape {value.shape.as_list()}")
    return ensure_finite(value, f"the value of {name}")


def _check_solver_options(solver: object, tol: object, max_iter: Optional[int], dim: int) -> tuple:
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.floating)):
        raise TypeError(f"tol must be a positive number, got {type(tol).__name__}")
    if not 0.0 < float(tol) < 1.0:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    if max_iter is None:
        max_iter = max(10 * dim, 50)
    elif isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer or None, got {max_iter!r}")
    return float(tol), int(max_iter)


# ------------------------------------------------------------------- derivatives of an energy


def energy_gradient(energy: Energy, params: tf.Tensor, *, name: str = "energy") -> tf.Tensor:
    """Gradient of a scalar energy.

    Args:
        energy: ``gamma [d] -> scalar``.
        params: ``[d]`` float64.
        name: the energy's argument name, for error messages.

    Returns:
        ``grad energy(params)``, ``[d]``.

    Raises:
        ValueError: the energy is not a finite scalar, or does not depend on ``params``
            through TensorFlow operations.
    """
    check_callable(energy, name, "gamma [d] -> scalar")
    params = _check_params(params)
    return ensure_finite(_taped_gradient(energy, params, name), f"the gradient of {name}")


def _taped_gradient(energy: Energy, params: tf.Tensor, name: str) -> tf.Tensor:
    """``grad energy(params)`` on a tape of its own (an enclosing tape records it too)."""
    with tf.GradientTape() as tape:
        tape.watch(params)
        value = _check_energy_value(energy(params), name)
    gradient = tape.gradient(value, params)
    if gradient is None:
        raise ValueError(f"{name} does not depend on params through TensorFlow operations")
    return gradient


def energy_hessian(energy: Energy, params: tf.Tensor, *, name: str = "energy") -> tf.Tensor:
    """Dense Hessian of a scalar energy by reverse-over-reverse differentiation.

    The rows are computed one at a time from a persistent tape (``d`` reverse passes over the
    gradient), which is fast in eager mode for the small ``d`` a dense Hessian is meant for.

    Args:
        energy: ``gamma [d] -> scalar``.
        params: ``[d]`` float64.
        name: the energy's argument name, for error messages.

    Returns:
        The symmetrised Hessian ``[d, d]``.
    """
    check_callable(energy, name, "gamma [d] -> scalar")
    params = _check_params(params)
    dim = params.shape[0]
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(params)
        gradient = _taped_gradient(energy, params, name)
        entries = [gradient[i] for i in range(dim)]
    zero = tf.zeros_like(params)
    rows = [outer.gradient(entry, params, unconnected_gradients="zero") for entry in entries]
    del outer
    hessian = tf.stack([zero if row is None else row for row in rows])
    hessian = 0.5 * (hessian + tf.transpose(hessian))
    return ensure_finite(hessian, f"the Hessian of {name}")


def hessian_vector_product(
    energy: Energy, params: tf.Tensor, vector: tf.Tensor, *, name: str = "energy"
) -> tf.Tensor:
    """Hessian-vector product ``hess energy(params) @ vector`` without forming the Hessian.

    Forward-over-reverse: a forward-mode directional derivative (along ``vector``) of the
    reverse-mode gradient, costing a small multiple of one gradient evaluation.

    Args:
        energy: ``gamma [d] -> scalar``.
        params: ``[d]`` float64.
        vector: ``[d]`` float64.
        name: the energy's argument name, for error messages.

    Returns:
        ``[d]``.
    """
    params = _check_params(params)
    vector = tf.convert_to_tensor(vector, dtype=tf.float64)
    if vector.shape != params.shape:
        raise ValueError(f"vector must have shape {params.shape.as_list()}, got {vector.shape.as_list()}")
    energy_gradient(energy, params, name=name)  # checks the value and the dependence on params
    product = _forward_over_reverse(energy, params, vector)
    return ensure_finite(product, f"the Hessian-vector product of {name}")


def _forward_over_reverse(energy: Energy, params: tf.Tensor, vector: tf.Tensor) -> tf.Tensor:
    with tf.autodiff.ForwardAccumulator(primals=params, tangents=vector) as accumulator:
        with tf.GradientTape() as tape:
            tape.watch(params)
            value = energy(params)
        gradient = tape.gradient(value, params)
    return accumulator.jvp(gradient, unconnected_gradients="zero")


# Compiled Hessian-vector products, one per energy callable, so that conjugate gradients (and
# repeated calls with the same energy) pay TensorFlow's tracing cost once. The traced function
# holds the energy only weakly, so the cache never keeps an energy alive.
_COMPILED_HVPS: "weakref.WeakKeyDictionary[Callable, Callable]" = weakref.WeakKeyDictionary()


def _compiled_hessian_vector_product(energy: Energy) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    try:
        return _COMPILED_HVPS[energy]
    except (KeyError, TypeError):
        pass
    energy_ref = weakref.ref(energy) if _weakrefable(energy) else (lambda: energy)

    @tf.function(reduce_retracing=True)
    def product(params: tf.Tensor, vector: tf.Tensor) -> tf.Tensor:
        return _forward_over_reverse(energy_ref(), params, vector)

    if _weakrefable(energy):
        _COMPILED_HVPS[energy] = product
    return product


def _weakrefable(obj: object) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


# ---------------------------------------------------------------------------------- solvers


def conjugate_gradient(
    matvec: Callable[[tf.Tensor], tf.Tensor],
    rhs: tf.Tensor,
    *,
    tol: float = 1e-10,
    max_iter: Optional[int] = None,
) -> tf.Tensor:
    """Solve ``A x = rhs`` for a symmetric positive-definite ``A`` given only ``v -> A v``.

    Args:
        matvec: ``v [d] -> A v [d]``.
        rhs: ``[d]`` float64.
        tol: stop when ``||rhs - A x|| <= tol * ||rhs||``.
        max_iter: iteration limit (default ``max(10 d, 50)``).

    Returns:
        ``x``, ``[d]``.

    Raises:
        ValueError: a search direction ``p`` with ``p^T A p <= 0`` was met, so ``A`` is not
            positive definite. (CG sees only the directions it explores: an indefinite ``A``
            whose negative directions are orthogonal to them goes unnoticed.)
        RuntimeError: no convergence within ``max_iter`` iterations.
    """
    rhs = tf.convert_to_tensor(rhs, dtype=tf.float64)
    tol, max_iter = _check_solver_options("cg", tol, max_iter, int(rhs.shape[0]))
    solution = tf.zeros_like(rhs)
    rhs_norm = float(tf.norm(rhs))
    if rhs_norm == 0.0:
        return solution
    residual = rhs
    direction = residual
    residual_sq = float(tf.tensordot(residual, residual, 1))
    for _ in range(max_iter):
        product = matvec(direction)
        curvature = float(tf.tensordot(direction, product, 1))
        if not curvature > 0.0:
            raise ValueError(
                f"the Hessian is not positive definite: conjugate gradients met a direction "
                f"with curvature p^T H p = {curvature:.3g} <= 0; params is not a minimiser of "
                f"energy. Pass damping > 0 to solve (H + damping I) instead"
            )
        step = residual_sq / curvature
        solution = solution + step * direction
        residual = residual - step * product
        new_residual_sq = float(tf.tensordot(residual, residual, 1))
        if np.sqrt(new_residual_sq) <= tol * rhs_norm:
            return solution
        direction = residual + (new_residual_sq / residual_sq) * direction
        residual_sq = new_residual_sq
    raise RuntimeError(
        f"conjugate gradients did not reach relative residual {tol:g} in {max_iter} iterations "
        f"(reached {np.sqrt(residual_sq) / rhs_norm:.3g}); raise max_iter or tol, or add damping"
    )


def _solve_exact(hessian: tf.Tensor, rhs: tf.Tensor, damping: float) -> tf.Tensor:
    dim = int(hessian.shape[0])
    system = hessian + damping * tf.eye(dim, dtype=tf.float64)
    eigenvalues = np.linalg.eigvalsh(system.numpy())
    threshold = dim * np.finfo(np.float64).eps * max(np.abs(eigenvalues).max(), 1e-300)
    if eigenvalues[0] <= threshold:
        needed = max(-eigenvalues[0] + damping, 0.0)
        hint = (
            "Pass damping > 0 to solve (H + damping I) instead"
            if damping == 0.0
            else f"damping {damping:g} is not enough"
        )
        raise ValueError(
            f"the Hessian of energy at params is not positive definite (smallest eigenvalue of "
            f"H + damping I: {eigenvalues[0]:.3g}); params is not a minimiser of energy. {hint} "
            f"(damping must exceed {needed:.3g})"
        )
    chol = tf.linalg.cholesky(system)
    return tf.linalg.cholesky_solve(chol, rhs[:, None])[:, 0]


def _newton_direction(
    energy: Energy,
    params: tf.Tensor,
    rhs: tf.Tensor,
    *,
    solver: str,
    damping: float,
    tol: float,
    max_iter: int,
) -> tf.Tensor:
    """``(hess energy(params) + damping I)^{-1} rhs`` with the chosen solver."""
    if solver == "exact":
        return _solve_exact(energy_hessian(energy, params), rhs, damping)
    energy_gradient(energy, params)  # eager checks once; the products below are compiled
    compiled = _compiled_hessian_vector_product(energy)

    def matvec(vector: tf.Tensor) -> tf.Tensor:
        product = ensure_finite(compiled(params, vector), "the Hessian-vector product of energy")
        return product + damping * vector

    return conjugate_gradient(matvec, rhs, tol=tol, max_iter=max_iter)


# ------------------------------------------------------------------------------ the removal


def influence_unlearn(
    params: tf.Tensor,
    energy: Energy,
    erased_energy: Energy,
    *,
    solver: str = "exact",
    damping: float = 0.0,
    tol: float = 1e-10,
    max_iter: Optional[int] = None,
) -> tf.Tensor:
    """Remove data from a minimiser of an energy in one influence-function step.

    Computes ``gamma_S + H^{-1} grad erased_energy(gamma_S)`` with
    ``H = hess energy(gamma_S) + damping * I``: the first-order approximation of the minimiser
    of ``energy - erased_energy``.

    Args:
        params: ``gamma_S``, ``[d]`` float64, a minimiser of ``energy``.
        energy: ``gamma [d] -> F(gamma, S)``, the scalar energy of all the data.
        erased_energy: ``gamma [d] -> sum_{z in S'} h(gamma, z)``, the scalar energy of the
            data to remove.
        solver: ``"exact"`` (dense autodiff Hessian, Cholesky solve) or ``"cg"`` (conjugate
            gradients on forward-over-reverse Hessian-vector products, compiled with
            ``tf.function`` once per ``energy`` callable, so ``energy`` must be traceable: a
            pure function of ``gamma`` built from TensorFlow operations).
        damping: non-negative multiple of the identity added to the Hessian. Leave at 0 at a
            true minimiser; a positive value is needed where the Hessian is not positive
            definite (e.g. at a single posterior sample).
        tol: relative residual at which conjugate gradients stop (``"cg"`` only).
        max_iter: conjugate-gradient iteration limit (``"cg"`` only; default ``max(10 d, 50)``).

    Returns:
        The processed parameters ``[d]``, a new float64 tensor.

    Raises:
        TypeError: ``params`` not float64, or an energy not callable or not returning a
            float64 tensor.
        ValueError: bad shapes, non-finite values, a non-scalar energy, or a Hessian that is
            not positive definite (with the damping given).
        RuntimeError: conjugate gradients did not converge.
    """
    params = _check_params(params)
    check_callable(energy, "energy", "gamma [d] -> scalar")
    check_callable(erased_energy, "erased_energy", "gamma [d] -> scalar")
    damping = check_nonnegative_number(damping, "damping")
    tol, max_iter = _check_solver_options(solver, tol, max_iter, int(params.shape[0]))
    gradient = energy_gradient(erased_energy, params, name="erased_energy")
    direction = _newton_direction(
        energy, params, gradient, solver=solver, damping=damping, tol=tol, max_iter=max_iter
    )
    return ensure_finite(params + direction, "the processed params")


def influence_unlearn_sequential(
    params: tf.Tensor,
    energy: Energy,
    erased_energies: Sequence[Energy],
    *,
    solver: str = "exact",
    damping: float = 0.0,
    tol: float = 1e-10,
    max_iter: Optional[int] = None,
    return_path: bool = False,
) -> tf.Tensor | list[tf.Tensor]:
    """Remove data in chunks, one influence step per chunk, re-linearising after each.

    With ``F_0 = energy`` and ``gamma_0 = params``, chunk ``k`` gives
    ``gamma_k = influence_unlearn(gamma_{k-1}, F_{k-1}, erased_energies[k])`` and
    ``F_k = F_{k-1} - erased_energies[k]``. Each step uses the Hessian of the energy that
    remains at that point, instead of the Hessian of the full-data energy for the whole
    batch; both are first-order approximations of the retrained minimiser.

    Args:
        params: ``gamma_S``, ``[d]`` float64, a minimiser of ``energy``.
        energy: ``gamma [d] -> F(gamma, S)``.
        erased_energies: non-empty sequence of ``gamma [d] -> scalar``, the energy of each
            chunk to remove (disjoint chunks of the data).
        solver, damping, tol, max_iter: as in :func:`influence_unlearn`.
        return_path: if true, return every ``gamma_k`` (``k = 1 .. K``), not just the last.

    Returns:
        The processed parameters ``[d]`` after all chunks, or the list of ``K`` of them.
    """
    params = _check_params(params)
    check_callable(energy, "energy", "gamma [d] -> scalar")
    if callable(erased_energies) or not isinstance(erased_energies, Sequence):
        raise TypeError("erased_energies must be a sequence of callables gamma [d] -> scalar")
    if len(erased_energies) == 0:
        raise ValueError("erased_energies must contain at least one chunk")
    for k, chunk in enumerate(erased_energies):
        check_callable(chunk, f"erased_energies[{k}]", "gamma [d] -> scalar")

    def remaining(previous: Energy, chunk: Energy) -> Energy:
        return lambda gamma: previous(gamma) - chunk(gamma)

    path = []
    current_params, current_energy = params, energy
    for chunk in erased_energies:
        current_params = influence_unlearn(
            current_params,
            current_energy,
            chunk,
            solver=solver,
            damping=damping,
            tol=tol,
            max_iter=max_iter,
        )
        current_energy = remaining(current_energy, chunk)
        path.append(current_params)
    return path if return_path else path[-1]
