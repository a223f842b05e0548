"""Influence-function removal of data from a minimiser of an energy (Fu et al., 2021).

An *energy* (see :mod:`unlearnkit.derivatives`) is ``F(gamma, S) = sum_i h(gamma, z_i) + f(gamma)``.
Removing the data ``S'`` leaves ``F(gamma, S - S') = F(gamma, S) - sum_{z in S'} h(gamma, z)``;
the *erased energy* is that sum. If ``gamma_S`` minimises ``F(., S)``, the implicit function
theorem along ``grad F(gamma, S) + tau grad h(gamma, z) = 0`` (``tau`` from 0 to -1) gives

    gamma_{S - S'} ~= gamma_S + H^{-1} grad_gamma sum_{z in S'} h(gamma_S, z),

with ``H = hess F(gamma_S, S)`` (``hessian="before"``, the tangent of the path at
``tau = 0``: BIF's formula) and an error of order ``1/n^2`` for the removal of one point
out of ``n``. With ``H = hess F(gamma_S, S - S')`` (``hessian="after"``) the step is one
Newton step on the retraining objective from ``gamma_S``: exact for a quadratic energy and
more accurate when much is removed.

Removing ``S'`` in chunks re-linearises after each chunk. :func:`remove_in_chunks` is the one
routine that does it; :func:`influence_unlearn` (one chunk) and
:func:`influence_unlearn_sequential` apply it to energies given as callables, and
:mod:`unlearnkit.bif.forgetting` applies it to samples and variational fits of the mixture
model with closed-form derivatives.

Two solvers for energies given as callables: ``"exact"`` forms the dense Hessian by
automatic differentiation and solves by Cholesky; ``"cg"`` touches the Hessian only through
Hessian-vector products (forward-over-reverse differentiation) inside conjugate gradients,
compiled, for parameter vectors too large for a dense ``d x d`` matrix. A Hessian that is not
positive definite (the parameters are not a minimiser, e.g. a single posterior sample)
raises :class:`~unlearnkit.errors.NotPositiveDefiniteError` unless the caller asks for
damping, which solves with ``H + damping * I`` instead.
"""

from __future__ import annotations

import time
import weakref
from typing import Callable, Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from unlearnkit import linalg
from unlearnkit._validation import (
    as_float64_vector,
    check_callable,
    check_nonnegative_number,
    ensure_finite,
)
from unlearnkit.derivatives import (
    Energy,
    traceable_hessian_vector_product,
    energy_gradient,
    energy_hessian,
)
from unlearnkit.diagnostics import InfluenceInfo

__all__ = [
    "ChunkDerivatives",
    "remove_in_chunks",
    "influence_unlearn",
    "influence_unlearn_sequential",
    "newton_direction",
    "check_hessian_choice",
    "check_solver",
]

_SOLVERS = ("exact", "cg")
_HESSIANS = ("before", "after")
_DAMPING_HINT = "; params is not a minimiser of energy. Pass damping > 0 to solve (H + damping I)"


def check_hessian_choice(hessian: object) -> str:
    """``hessian`` must be ``"before"`` or ``"after"`` (which energy's Hessian a step uses)."""
    if hessian not in _HESSIANS:
        raise ValueError(f"hessian must be 'before' or 'after', got {hessian!r}")
    return hessian


def check_solver(solver: object) -> str:
    """``solver`` must be ``"exact"`` or ``"cg"``."""
    if solver not in _SOLVERS:
        raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}")
    return solver


class ChunkDerivatives(Protocol):
    """What :func:`remove_in_chunks` needs from a model, chunk by chunk.

    ``params`` may carry leading batch dimensions (many samples at once): ``[..., d]``.
    """

    num_chunks: int

    def erased_gradient(self, params: tf.Tensor, chunk: int) -> tf.Tensor:
        """``grad sum_{z in chunk} h(params, z)``, ``[..., d]``."""

    def newton_direction(
        self, params: tf.Tensor, chunk: int, rhs: tf.Tensor, hessian: str, damping: float
    ) -> tf.Tensor:
        """``(H + damping I)^{-1} rhs`` with ``H`` the Hessian of the energy that remains
        before (``hessian="before"``) or after (``"after"``) removing the chunk, ``[..., d]``."""


def remove_in_chunks(
    params: tf.Tensor, derivatives: ChunkDerivatives, *, hessian: str, damping: float
) -> Tuple[tf.Tensor, list]:
    """The sequential influence removal, the one routine every forgetting method uses.

    With ``gamma_0 = params``, chunk ``k`` gives
    ``gamma_k = gamma_{k-1} + (H_k + damping I)^{-1} grad h_k(gamma_{k-1})``, ``H_k`` the
    Hessian of the energy before or after removing chunk ``k`` (at ``gamma_{k-1}``).

    Returns:
        The final parameters and the list of every ``gamma_k``.
    """
    hessian = check_hessian_choice(hessian)
    path = []
    for chunk in range(derivatives.num_chunks):
        gradient = derivatives.erased_gradient(params, chunk)
        params = params + derivatives.newton_direction(params, chunk, gradient, hessian, damping)
        path.append(params)
    return params, path


# --------------------------------------------------------- energies given as callables

_COMPILED_CG: "weakref.WeakKeyDictionary[Callable, Callable]" = weakref.WeakKeyDictionary()


def _compiled_cg(energy: Energy) -> Callable:
    """Compiled conjugate gradients on ``hess energy(params) + damping I`` (cached per energy)."""
    try:
        return _COMPILED_CG[energy]
    except (KeyError, TypeError):
        pass
    getter = _weak_getter(energy)  # the compiled function must not keep the energy alive

    @tf.function(reduce_retracing=True, autograph=False)
    def solve(params, rhs, damping, tolerance, max_iterations):
        current = getter()

        def matvec(vector):
            return traceable_hessian_vector_product(current, params, vector) + damping * vector

        return linalg.conjugate_gradient_loop(matvec, rhs, tolerance, max_iterations)

    try:
        _COMPILED_CG[energy] = solve
    except TypeError:
        pass
    return solve


def _weak_getter(energy: Energy) -> Callable[[], Energy]:
    try:
        return weakref.ref(energy)
    except TypeError:  # not weakly referenceable: hold it
        return lambda: energy


def newton_direction(
    energy: Energy,
    params: tf.Tensor,
    rhs: tf.Tensor,
    *,
    solver: str = "exact",
    damping: float = 0.0,
    tolerance: float = 1e-10,
    max_iterations: Optional[int] = None,
) -> tf.Tensor:
    """``(hess energy(params) + damping I)^{-1} rhs`` with the chosen solver, ``[d]``.

    Raises:
        NotPositiveDefiniteError: the (damped) Hessian is not positive definite.

    Warns:
        ConvergenceWarning: conjugate gradients stopped at ``max_iterations``.
    """
    if solver == "exact":
        return linalg.solve_positive_definite(
            energy_hessian(energy, params),
            rhs,
            damping=damping,
            name="the Hessian of energy at params" + (" (+ damping I)" if damping else ""),
            hint=_DAMPING_HINT if not damping else f"; damping {damping:g} is not enough",
        )
    energy_gradient(energy, params)  # eager checks once; the products below are compiled
    max_iterations = linalg.default_max_iterations(max_iterations, int(params.shape[0]))
    try:
        outputs = _compiled_cg(energy)(
            params,
            rhs,
            tf.constant(damping, tf.float64),
            tf.constant(tolerance, tf.float64),
            tf.constant(max_iterations),
        )
    except (NotImplementedError, TypeError, ValueError) as err:  # could not be traced
        raise TypeError(
            f"energy must be traceable for solver='cg' (a pure function of gamma built from "
            f"TensorFlow operations): {str(err).splitlines()[0]}"
        ) from None
    direction, _ = linalg.finish_conjugate_gradient(
        outputs, tolerance, max_iterations, "the Hessian of energy at params"
    )
    return direction


class _EnergyChunks:
    """:class:`ChunkDerivatives` of energies given as callables (automatic differentiation)."""

    def __init__(self, energy, erased_energies, solver, tolerance, max_iterations) -> None:
        self.num_chunks = len(erased_energies)
        self.erased = list(erased_energies)
        self.before, self.after = [], []
        current = energy
        for chunk in self.erased:
            remaining = _difference(current, chunk)
            self.before.append(current)
            self.after.append(remaining)
            current = remaining
        self.options = dict(solver=solver, tolerance=tolerance, max_iterations=max_iterations)

    def erased_gradient(self, params: tf.Tensor, chunk: int) -> tf.Tensor:
        name = "erased_energy" if self.num_chunks == 1 else f"erased_energies[{chunk}]"
        return energy_gradient(self.erased[chunk], params, name=name)

    def newton_direction(self, params, chunk, rhs, hessian, damping) -> tf.Tensor:
        energy = (self.before if hessian == "before" else self.after)[chunk]
        return newton_direction(energy, params, rhs, damping=damping, **self.options)


def _difference(energy: Energy, erased: Energy) -> Energy:
    return lambda gamma: energy(gamma) - erased(gamma)


def _check_options(solver, damping, tolerance, max_iterations, hessian) -> tuple:
    return (
        check_solver(solver),
        check_nonnegative_number(damping, "damping"),
        linalg.check_tolerance(tolerance),
        None if max_iterations is None else linalg.default_max_iterations(max_iterations, 1),
        check_hessian_choice(hessian),
    )


def influence_unlearn_sequential(
    energy: Energy,
    erased_energies: Sequence[Energy],
    params: object,
    *,
    hessian: str = "before",
    solver: str = "exact",
    damping: float = 0.0,
    tolerance: float = 1e-10,
    max_iterations: Optional[int] = None,
    return_info: bool = False,
) -> Union[tf.Tensor, Tuple[tf.Tensor, InfluenceInfo]]:
    """Remove data in chunks, one influence step per chunk, re-linearising after each.

    With ``F_0 = energy`` and ``gamma_0 = params``, chunk ``k`` gives
    ``gamma_k = gamma_{k-1} + H_k^{-1} grad erased_energies[k](gamma_{k-1})`` and
    ``F_k = F_{k-1} - erased_energies[k]``, with ``H_k`` the Hessian of ``F_{k-1}``
    (``hessian="before"``) or of ``F_k`` (``"after"``) at ``gamma_{k-1}``.

    Args:
        energy: ``gamma [d] -> F(gamma, S)``, the scalar energy of all the data.
        erased_energies: non-empty sequence of ``gamma [d] -> scalar``, the energy of each
            chunk to remove (disjoint chunks of the data).
        params: ``gamma_S``, ``[d]`` float64, a minimiser of ``energy``.
        hessian, solver, damping, tolerance, max_iterations: as in :func:`influence_unlearn`.
        return_info: also return an :class:`~unlearnkit.diagnostics.InfluenceInfo` with
            every ``gamma_k`` (``k = 1 .. K``) in ``path``.

    Returns:
        The processed parameters ``[d]``, a new float64 tensor, and the info if requested.
    """
    start = time.perf_counter()
    params = as_float64_vector(params, "params")
    check_callable(energy, "energy", "gamma [d] -> scalar")
    if callable(erased_energies) or not isinstance(erased_energies, Sequence):
        raise TypeError("erased_energies must be a sequence of callables gamma [d] -> scalar")
    if len(erased_energies) == 0:
        raise ValueError("erased_energies must contain at least one chunk")
    for k, chunk in enumerate(erased_energies):
        check_callable(chunk, f"erased_energies[{k}]", "gamma [d] -> scalar")
    solver, damping, tolerance, max_iterations, hessian = _check_options(
        solver, damping, tolerance, max_iterations, hessian
    )
    energy_gradient(energy, params)  # a finite float64 scalar with a gradient in params
    derivatives = _EnergyChunks(energy, erased_energies, solver, tolerance, max_iterations)
    result, path = remove_in_chunks(params, derivatives, hessian=hessian, damping=damping)
    result = ensure_finite(result, "the processed params")
    if not return_info:
        return result
    info = InfluenceInfo(
        path=np.stack([p.numpy() for p in path]),
        hessian=hessian,
        solver=solver,
        seconds=time.perf_counter() - start,
    )
    return result, info


def influence_unlearn(
    energy: Energy,
    erased_energy: Energy,
    params: object,
    *,
    hessian: str = "before",
    solver: str = "exact",
    damping: float = 0.0,
    tolerance: float = 1e-10,
    max_iterations: Optional[int] = None,
    return_info: bool = False,
) -> Union[tf.Tensor, Tuple[tf.Tensor, InfluenceInfo]]:
    """Remove data from a minimiser of an energy in one influence-function step.

    Computes ``gamma_S + (H + damping I)^{-1} grad erased_energy(gamma_S)``: the first-order
    approximation of the minimiser of ``energy - erased_energy``.

    Args:
        energy: ``gamma [d] -> F(gamma, S)``, the scalar energy of all the data.
        erased_energy: ``gamma [d] -> sum_{z in S'} h(gamma, z)``, the scalar energy of the
            data to remove.
        params: ``gamma_S``, ``[d]`` float64, a minimiser of ``energy``.
        hessian: ``"before"`` (default, BIF's formula): ``H = hess energy(gamma_S)``;
            ``"after"``: ``H = hess (energy - erased_energy)(gamma_S)``, a Newton step on the
            retraining objective.
        solver: ``"exact"`` (dense autodiff Hessian, Cholesky solve) or ``"cg"`` (conjugate
            gradients on forward-over-reverse Hessian-vector products, compiled with
            ``tf.function`` once per energy callable, so the energy must be traceable: a
            pure function of ``gamma`` built from TensorFlow operations).
        damping: non-negative multiple of the identity added to the Hessian. Leave at 0 at a
            true minimiser; a positive value is needed where the Hessian is not positive
            definite (e.g. at a single posterior sample).
        tolerance: relative residual at which conjugate gradients stop (``"cg"`` only).
        max_iterations: conjugate-gradient iteration limit (``"cg"`` only; default
            ``max(10 d, 50)``).
        return_info: also return an :class:`~unlearnkit.diagnostics.InfluenceInfo`.

    Returns:
        The processed parameters ``[d]``, a new float64 tensor, and the info if requested.

    Raises:
        TypeError: ``params`` not float64, or an energy not callable or not returning a
            float64 tensor.
        ValueError: bad shapes, non-finite values, a non-scalar energy.
        NotPositiveDefiniteError: the Hessian (with the damping given) is not positive
            definite.

    Warns:
        ConvergenceWarning: conjugate gradients stopped at ``max_iterations``.
    """
    check_callable(erased_energy, "erased_energy", "gamma [d] -> scalar")
    return influence_unlearn_sequential(
        energy,
        [erased_energy],
        params,
        hessian=hessian,
        solver=solver,
        damping=damping,
        tolerance=tolerance,
        max_iterations=max_iterations,
        return_info=return_info,
    )
