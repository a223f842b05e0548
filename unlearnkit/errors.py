"""The typed failures of unlearnkit.

An estimator that cannot be trusted raises, it never returns a silently wrong answer:

- :class:`DegenerateWeightsError`: importance weights collapsed onto a few samples, so no
  weighted estimate can be trusted (raise the number of samples, or ``lam``).
- :class:`NotPositiveDefiniteError`: a Hessian or covariance that must be positive definite
  is not (the parameters are not a minimiser, or the belief is degenerate).

An optimiser or solver that stops before convergence but still returns a result issues a
:class:`ConvergenceWarning`, so ``warnings.simplefilter("error", ConvergenceWarning)`` turns
every unconverged result into an error.
"""

from __future__ import annotations

__all__ = ["DegenerateWeightsError", "NotPositiveDefiniteError", "ConvergenceWarning"]


class DegenerateWeightsError(ValueError):
    """Importance weights are degenerate: too few samples carry the weight to estimate from."""


class NotPositiveDefiniteError(ValueError):
    """A matrix that must be positive definite (a Hessian, a covariance, a scale) is not."""


class ConvergenceWarning(UserWarning):
    """An optimiser or solver stopped before it converged; the result it returned is inexact."""
