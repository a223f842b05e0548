"""What a computation did: the ``info`` that functions return with ``return_info=True``.

Every function of unlearnkit that has diagnostics takes the keyword ``return_info=False``;
with ``return_info=True`` it returns ``(result, info)``, where ``info`` is one of the frozen
dataclasses below. The result itself never changes type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

__all__ = [
    "OptimizationInfo",
    "SolverInfo",
    "ImportanceInfo",
    "SamplerInfo",
    "InfluenceInfo",
    "ForgettingInfo",
]


@dataclass(frozen=True)
class OptimizationInfo:
    """What an optimiser (L-BFGS, Newton's method) did.

    Attributes:
        objective: the final value of the objective that was minimised.
        num_iterations: iterations taken.
        num_evaluations: objective (and gradient) evaluations.
        converged: whether the optimiser met its tolerance. When it did not, a
            :class:`~unlearnkit.errors.ConvergenceWarning` was issued.
        message: the optimiser's termination message.
        seconds: wall-clock time, including tracing.
        path: the parameters after every iteration, ``[T, P]``, where recorded.
    """

    objective: float
    num_iterations: int
    num_evaluations: int
    converged: bool
    message: str
    seconds: float
    path: Optional[np.ndarray] = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SolverInfo:
    """What an iterative linear solver (conjugate gradients) did.

    Attributes:
        num_iterations: iterations taken.
        relative_residual: ``||b - A x|| / ||b||`` at the end (as the recursion tracks it).
        converged: whether the residual reached the tolerance.
    """

    num_iterations: int
    relative_residual: float
    converged: bool


@dataclass(frozen=True)
class ImportanceInfo:
    """Diagnostics of an importance-weighted estimate (the reverse KL).

    Attributes:
        effective_sample_size: Kish's ``(sum w)^2 / sum w^2`` of the final weights, between 1
            (one sample carries all the weight) and ``num_samples``.
        num_samples: samples the final estimate used.
        num_rounds: proposal rounds (1 for plain sampling from ``q(theta | D)``).
        jitter: added to the diagonal of the weighted covariance to make it positive
            definite (0 unless the weights are nearly degenerate).
        seconds: wall-clock time.
        ess_history: the effective sample size of every round, in order (the last is
            ``effective_sample_size``); empty when not recorded.
    """

    effective_sample_size: float
    num_samples: int
    num_rounds: int
    jitter: float
    seconds: float
    ess_history: Tuple[float, ...] = ()


@dataclass(frozen=True)
class SamplerInfo:
    """What a stochastic-gradient sampler run did.

    Attributes:
        trace: ``[T, C, P]`` the states every ``record_every`` steps (last row: the samples).
        num_steps: steps of every chain.
        seconds: wall-clock time, including tracing.
    """

    trace: np.ndarray = field(repr=False)
    num_steps: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class InfluenceInfo:
    """What an influence-function removal did.

    Attributes:
        path: the parameters after every chunk, ``[K, ...]`` (the last is the result).
        hessian: which energy's Hessian the steps used, ``"before"`` or ``"after"``.
        solver: ``"exact"`` or ``"cg"``.
        seconds: wall-clock time.
    """

    path: np.ndarray = field(repr=False)
    hessian: str = "before"
    solver: str = "exact"
    seconds: float = 0.0


@dataclass(frozen=True)
class ForgettingInfo:
    """What forgetting applied to posterior samples, chains or a variational fit did.

    Attributes:
        method: the algorithm (e.g. ``"transport"``, ``"newton"``, ``"influence"``,
            ``"continued sampling"``).
        hessian: which energy's Hessian the steps used, ``"before"`` or ``"after"``.
        num_chunks: how many sequential chunks the erased data were removed in.
        sampler_steps: sampler steps every chain ran on the data (0 when the method runs no
            sampler).
        seconds: wall-clock time.
        path: the state after every chunk, ``[K, ...]`` (samples, or packed parameters).
    """

    method: str
    hessian: str
    num_chunks: int
    sampler_steps: int
    seconds: float
    path: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
