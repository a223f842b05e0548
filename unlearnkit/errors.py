"""The typed failures of unlearnkit.

An estimator that cannot be trusted raises, it never returns a silently wrong answer:

- :class:`DegenerateWeightsError`: importance weights collapsed onto a few samples, so no
  weighted estimate can be trusted (raise the number of samples, or ``lam``).
- :class:`NotPositiveDefiniteError`: a Hessian or covariance that must be positive definite
  is not (the parameters are not a minimiser, or the belief is degenerate).

An optimiser or solver that stops before convergence but still returns a result issues a
:class:`ConvergenceWarning`, so ``warnings.simplefilter("error", ConvergenceWarning)`` turns
every unconverged result into an error.

A fast exact route (such as a Cholesky downdate) whose result fails its own accuracy check,
or that cannot start, is replaced by the slow exact route (recomputing from scratch), with a
:class:`FallbackWarning`: the result is still exact, only the speed-up is lost.
"""

from __future__ import annotations

__all__ = [
    "DegenerateWeightsError",
    "NotPositiveDefiniteError",
    "ConvergenceWarning",
    "FallbackWarning",
]


class DegenerateWeightsError(ValueError):
    """Importance weights are degenerate: too few samples carry the weight to estimate from."""


class NotPositiveDefiniteError(ValueError):
    """A matrix that must be positive definite (a Hessian, a covariance, a scale) is not."""


class ConvergenceWarning(UserWarning):
    """An optimiser or solver stopped before it converged; the result it returned is inexact."""


class FallbackWarning(UserWarning):
    """A fast exact update could not be trusted, so the result was recomputed from scratch.

    The returned result is exact (as exact as recomputing it always is); only the speed-up
    is lost. The message says why the fast route was abandoned.
    """
