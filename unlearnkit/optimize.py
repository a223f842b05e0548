"""The one L-BFGS entry point of unlearnkit.

Every deterministic objective in the package (the EUBO and ELBO on common random numbers,
the negative log joint of a MAP fit, the SVI energy of the mixture) is minimised by
:func:`minimize_lbfgs`: scipy's L-BFGS-B driven by a compiled TensorFlow value-and-gradient.

Conventions, the same for every caller:

- stop when the largest gradient entry falls below ``tolerance`` (``gtol``) or the decrease
  of the objective, measured from its starting value, falls below ``tolerance**2``
  (``ftol``; measuring from the start makes it insensitive to a constant offset of the
  objective, such as 1e12 added to a log-likelihood);
- a Monte Carlo objective (one whose ``noise``, the standard error of its estimate, is
  given) also stops once :data:`NOISE_PATIENCE` iterations in a row have each decreased it
  by less than :data:`NOISE_FRACTION` of that standard error: what further iterations find
  is below what the samples resolve;
- a trial point where the objective or its gradient is not finite is rejected (the line
  search backtracks); it never ends the optimisation as converged;
- an objective that does not depend on the parameters through TensorFlow operations (for
  example a likelihood computed in NumPy) has no gradient, and is refused;
- a run that stops before convergence still returns its result, with a
  :class:`~unlearnkit.errors.ConvergenceWarning`.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Optional, Tuple

import numpy as np
import scipy.optimize
import tensorflow as tf

from unlearnkit._validation import check_positive_number
from unlearnkit.diagnostics import OptimizationInfo
from unlearnkit.errors import ConvergenceWarning

__all__ = ["minimize_lbfgs", "compile_value_and_gradient", "OptimizationInfo"]

NOISE_FRACTION = 0.01
"""A Monte Carlo objective's iteration is negligible when it decreases the objective by
less than this fraction of the estimate's standard error."""
NOISE_PATIENCE = 3
"""Negligible iterations in a row that end the minimisation of a Monte Carlo objective."""

ValueAndGradient = Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]


def _value_and_gradient(objective: Callable[[tf.Tensor], tf.Tensor], name: str) -> ValueAndGradient:
    def value_and_gradient(x: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = objective(x)
        gradient = tape.gradient(value, x)
        if gradient is None:
            raise ValueError(
                f"{name} does not depend on its parameters through TensorFlow operations, so it "
                f"has no gradient (a likelihood computed with NumPy cannot be optimised: write "
                f"it with TensorFlow operations)"
            )
        return value, gradient

    return value_and_gradient


def compile_value_and_gradient(
    objective: Callable[[tf.Tensor], tf.Tensor], x0: tf.Tensor, name: str = "the objective"
) -> ValueAndGradient:
    """Value-and-gradient of ``objective``, as a ``tf.function`` when it can be traced.

    Traceable code runs compiled. Code that TensorFlow cannot trace but can differentiate
    eagerly (for example Python control flow on tensor values) falls back to eager
    execution: slower, same result. Code without a gradient is refused either way.

    Args:
        objective: ``x [P] -> scalar``.
        x0: a point ``[P]`` float64 to trace (and check) the function at.
        name: names the objective in error messages.

    Raises:
        ValueError: the objective has no gradient with respect to ``x``.
    """
    eager = _value_and_gradient(objective, name)
    compiled = tf.function(eager, autograph=False)
    try:
        compiled.get_concrete_function(tf.TensorSpec(x0.shape, tf.float64))
        return compiled
    except ValueError as err:
        if "has no gradient" in str(err):
            raise
    except Exception:  # noqa: BLE001 - not traceable; the eager call below raises real errors
        pass
    eager(x0)
    return eager


def minimize_lbfgs(
    objective: Callable[[tf.Tensor], tf.Tensor],
    x0: tf.Tensor,
    *,
    max_iterations: int,
    tolerance: float,
    name: str = "the objective",
    record_path: bool = False,
    returns_gradient: bool = False,
    noise: Optional[float] = None,
) -> Tuple[tf.Tensor, OptimizationInfo]:
    """Minimise a deterministic TensorFlow objective with scipy's L-BFGS-B.

    Args:
        objective: ``x [P] -> scalar`` float64, differentiable TensorFlow code.
        x0: starting point, ``[P]`` float64.
        max_iterations: L-BFGS iteration cap.
        tolerance: stop when the largest gradient entry falls below it, or when an
            iteration decreases the objective (relative to the start) by less than
            ``tolerance**2``.
        name: names the objective in error messages.
        record_path: keep the point after every iteration in ``info.path``.
        returns_gradient: ``objective(x)`` already returns ``(value, gradient)`` (for
            example a ``tf.function`` the caller compiled once and reuses across calls):
            it is called as it is, without being wrapped and traced again.
        noise: the standard error of a Monte Carlo objective's estimate (> 0), or ``None``
            for an exact one. Given, L-BFGS also stops after :data:`NOISE_PATIENCE`
            iterations in a row that each decrease the objective by less than
            :data:`NOISE_FRACTION` times ``noise`` (and the run counts as converged).

    Returns:
        The minimiser ``[P]`` and an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Raises:
        ValueError: the objective has no gradient, or is not finite at the start or at the
            result.

    Warns:
        ConvergenceWarning: the run stopped before it met the tolerance.
    """
    start = time.perf_counter()
    x0 = tf.convert_to_tensor(x0, tf.float64)
    value_and_gradient = (
        objective if returns_gradient else compile_value_and_gradient(objective, x0, name)
    )

    last: dict = {}  # the latest point and its result: L-BFGS-B re-evaluates x0 and the end

    def evaluate(x: np.ndarray) -> Tuple[float, np.ndarray]:
        key = np.asarray(x, dtype=np.float64).tobytes()
        if key not in last:
            value, gradient = value_and_gradient(tf.constant(x, dtype=tf.float64))
            last.clear()
            last[key] = (float(value), gradient.numpy())
        value, gradient = last[key]
        return value, gradient.copy()

    try:
        offset, gradient0 = evaluate(x0.numpy())
    except tf.errors.InvalidArgumentError as err:
        raise ValueError(f"{name} at the starting point: {err.message.splitlines()[0]}") from None
    if not (math.isfinite(offset) and np.all(np.isfinite(gradient0))):
        raise ValueError(f"{name} (or its gradient) is not finite at the starting point")

    def shifted(x: np.ndarray) -> Tuple[float, np.ndarray]:
        try:
            value, gradient = evaluate(x)
        except tf.errors.InvalidArgumentError:  # a compiled finiteness check failed
            return math.inf, np.zeros_like(x)
        if not (math.isfinite(value) and np.all(np.isfinite(gradient))):
            return math.inf, np.zeros_like(x)  # reject the trial point: backtrack
        return value - offset, gradient

    path = [x0.numpy()] if record_path else None
    negligible = None if noise is None else NOISE_FRACTION * check_positive_number(noise, "noise")
    progress = {"value": 0.0, "negligible_in_a_row": 0}  # the shifted objective starts at 0

    def callback(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        if record_path:
            path.append(np.array(intermediate_result.x))
        if negligible is None:
            return
        decrease = progress["value"] - intermediate_result.fun
        progress["value"] = intermediate_result.fun
        progress["negligible_in_a_row"] = progress["negligible_in_a_row"] + 1 if decrease < negligible else 0
        if progress["negligible_in_a_row"] >= NOISE_PATIENCE:
            raise StopIteration

    result = scipy.optimize.minimize(
        shifted,
        x0.numpy(),
        jac=True,
        method="L-BFGS-B",
        callback=callback if record_path or negligible is not None else None,
        options={
            "maxiter": max_iterations,
            "gtol": tolerance,
            "ftol": tolerance**2,
            "maxcor": 20,
        },
    )
    value, gradient = shifted(result.x)
    if not (math.isfinite(value) and np.all(np.isfinite(result.x))):
        raise ValueError(f"{name} became non-finite during optimisation")
    below_noise = progress["negligible_in_a_row"] >= NOISE_PATIENCE
    converged = bool(result.success) or below_noise or float(np.max(np.abs(gradient))) <= tolerance
    message = (
        f"{NOISE_PATIENCE} iterations in a row decreased the objective by less than "
        f"{NOISE_FRACTION:g} of its Monte Carlo standard error"
        if below_noise
        else str(result.message)
    )
    if not converged:
        warnings.warn(
            f"L-BFGS on {name} stopped before convergence after {result.nit} iterations "
            f"({message}; largest gradient entry {np.max(np.abs(gradient)):.3g} > tolerance "
            f"{tolerance:g})",
            ConvergenceWarning,
            stacklevel=3,
        )
    info = OptimizationInfo(
        objective=value + offset,
        num_iterations=int(result.nit),
        num_evaluations=int(result.nfev),
        converged=converged,
        message=message,
        seconds=time.perf_counter() - start,
        path=None if path is None else np.array(path),
    )
    return tf.constant(result.x, dtype=tf.float64), info
