"""Unlearning by minimising the evidence upper bound (EUBO) (Nguyen et al., 2020).

Given the belief ``q(theta | D)`` after training on all data and the log-likelihood of
the erased data, find the Gaussian ``q_u(theta | D_r)`` minimising

    U~(q_u) = E_{q_u}[log p_adj(D_e | theta; lam)] + KL[q_u || q(theta | D)].

When ``q(theta | D)`` is the exact posterior and ``lam = 0``,
``U = log p(D_e | D_r) + KL[q_u || p(theta | D_r)]``, so the minimiser is the best
Gaussian approximation of the posterior given the remaining data alone.

The expectation is estimated with *fixed* base samples ``eps`` (common random numbers):
``theta_s = mu + L eps_s``. The estimate is then a deterministic function of
``(mu, L)``, minimised by L-BFGS in a few dozen iterations instead of tens of thousands
of stochastic-gradient steps.

With ``lam > 0`` the adjusted likelihood has a jump at the region's boundary. With fixed
samples the estimate then jumps whenever a sample crosses the boundary, and its
reparameterisation gradient misses the boundary's contribution to the true gradient
altogether (so stochastic-gradient methods that use it, like Adam on fresh samples, do
not minimise ``U~``). During the optimisation we therefore replace the indicator of the
region by a smooth step (:meth:`AdjustedLogLikelihood.smoothed`, width 2% of the radius
by default): the objective becomes smooth, its gradient sees the boundary, and as the
width tends to 0 it tends to ``U~``. :func:`eubo` always evaluates the exact definition.

**Likelihoods of linear predictors.** When the erased log-likelihood offers
``gaussian_expectation(loc, scale_tril)`` (see
:mod:`unlearnkit.variational.linear_predictor`; the sparse-GP likelihoods of
:func:`unlearnkit.gp.erased_log_likelihood` do), ``G(q_u) = E_{q_u}[log p(D_e | theta)]``
is a sum of one-dimensional integrals computed by quadrature, and no sample is drawn at
``lam = 0``: the objective is ``G + KL``, exact up to quadrature error. For ``lam > 0``, ``G``
serves as a control variate:

    U~ = E_{q_u}[w log p(D_e | theta)] + KL = beta G + E_{q_u}[(w - beta) log p(D_e | theta)] + KL,

with ``w`` the region's (smoothed) indicator, is estimated by averaging only the second
expectation over the base samples. The identity holds for any constant ``beta``; we take
``beta`` = the share of ``q(theta | D)``'s mass inside the region (the optimal coefficient
if ``w`` and the log-likelihood were independent), which removes most of the Monte Carlo
noise when the region holds most of the mass (small ``lam``), and none of the signal.

**When to stop.** For ``lam > 0`` the objective is a Monte Carlo estimate, whose standard
error (measured at the start, over the base samples) bounds what the samples can resolve:
L-BFGS also stops once three iterations in a row each lower it by less than 1% of that error
(:func:`~unlearnkit.optimize.minimize_lbfgs`'s ``noise``). This cuts the long tail of
iterations that would only fit the particular samples more closely (measured in
``benchmarks/results/bench_moons.md``).

**A grid of lam.** :func:`unlearn_eubo_grid` unlearns for several values of ``lam`` in one
call: the base samples, the checks, and the compiled objective (``lam`` enters it as a
tensor) are shared, so only the first value pays for TensorFlow's tracing.

**Compiled objectives across calls.** For the package's linear-predictor likelihoods (such
as :func:`unlearnkit.gp.erased_log_likelihood`'s, immutable once built) the compiled
objective is also kept between calls, keyed weakly on the likelihood object (the cache never
keeps a likelihood alive) and on the shapes; ``q(theta | D)``'s mean and scale and the base
samples are arguments of the compiled function, so a second request with the same
likelihood object skips tracing and returns what a fresh trace would.
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_gaussian_belief,
    check_differentiable,
    check_positive_int,
    check_unit_interval,
    ensure_finite,
)
from unlearnkit.diagnostics import OptimizationInfo
from unlearnkit.likelihoods import LogLikelihood
from unlearnkit.linalg import check_tolerance
from unlearnkit.optimize import minimize_lbfgs
from unlearnkit.seeds import Seed
from unlearnkit.variational import gaussian
from unlearnkit.variational.adjusted import (
    AdjustedLogLikelihood,
    adjusted_region_radius_squared,
    check_boundary_smoothing,
    smooth_region_weight,
)
from unlearnkit.variational.linear_predictor import (
    has_gaussian_expectation,
    keeps_compiled_graphs,
)

tfd = tfp.distributions

__all__ = ["eubo", "unlearn_eubo", "unlearn_eubo_grid"]


DEFAULT_NUM_SAMPLES = 2_000
"""Base samples for ``lam = 0``: the integrand is smooth, and moment matching makes its
quadratic part exact. (None are drawn when the likelihood has a Gaussian expectation.)"""
DEFAULT_NUM_SAMPLES_ADJUSTED = 10_000
"""Base samples for ``lam > 0``: more, so that many lie near the region's boundary."""
DEFAULT_NUM_SAMPLES_CONTROLLED = 1_000
"""Base samples for ``lam > 0`` when the likelihood has a Gaussian expectation (the control
variate removes most of the noise). On the moons' sparse GP, 1,000 instead of 2,000 leaves
the mean averaged KL of the results over 16 seeds as good or better and their spread between
seeds about 1.3 times larger, at 50-80% of the time
(``benchmarks/results/bench_eubo_samples.md``)."""
DEFAULT_BOUNDARY_SMOOTHING = 0.02
_NOISE_SAMPLES = 256
"""Base samples on which the estimate's standard deviation is measured, for the stopping rule."""


def _region_mass(lam: float, dim: int) -> float:
    """``P(chi^2_d < -2 ln lam)``: the share of a d-dimensional Gaussian inside the region."""
    radius_squared = adjusted_region_radius_squared(lam)
    if math.isinf(radius_squared):
        return 1.0
    return float(tf.math.igamma(tf.constant(dim / 2.0, tf.float64), radius_squared / 2.0))


class _Unpacker:
    """:func:`gaussian.unpack` in three gathers (cheap to trace), also returning ``log diag(B)``
    (the layout of the packed vector is :func:`gaussian.packed_layout`)."""

    def __init__(self, dim: int) -> None:
        off_diagonal, diagonal = gaussian.packed_layout(dim)
        self.dim = dim
        self.off_diagonal = tf.constant(off_diagonal.ravel())  # into [0, b]; 0: a zero
        self.diagonal = tf.constant(diagonal)  # into b

    def __call__(self, x: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        b = x[self.dim :]
        padded = tf.concat([tf.zeros([1], tf.float64), b], axis=0)
        lower = tf.reshape(tf.gather(padded, self.off_diagonal), [self.dim, self.dim])
        log_diagonal = tf.gather(b, self.diagonal)
        return x[: self.dim], lower + tf.linalg.diag(tf.exp(log_diagonal)), log_diagonal


def _whitened_kl(a: tf.Tensor, B: tf.Tensor, log_diagonal: tf.Tensor) -> tf.Tensor:
    """``KL[N(a, B B^T) || N(0, I)]`` for lower-triangular ``B`` with diagonal ``exp(log_diagonal)``."""
    dim = tf.cast(tf.shape(a)[0], tf.float64)
    return 0.5 * (tf.reduce_sum(B**2) + tf.reduce_sum(a**2) - dim) - tf.reduce_sum(log_diagonal)


_COMPILED: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()
"""Compiled objectives of package-built likelihoods, kept while the likelihood lives (see
:meth:`_WhitenedEUBO.compiled`)."""


def _eubo_value(log_likelihood, expectation, a, B, log_diagonal, radius_squared, beta,
                smoothing, loc, scale, eps) -> tf.Tensor:
    """``U~`` at ``N(a, B B^T)`` in coordinates whitened by ``q_full = N(loc, scale scale^T)``.

    ``B`` is lower triangular with diagonal ``exp(log_diagonal)``; ``eps`` [S, d] the base
    samples (``None``: no sampling); ``expectation`` the likelihood's Gaussian expectation or
    ``None``; ``radius_squared=None`` means ``lam = 0``.
    """
    kl = _whitened_kl(a, B, log_diagonal)
    if expectation is not None:
        expected = expectation(loc + tf.linalg.matvec(scale, a), tf.matmul(scale, B))
        if radius_squared is None:  # lam = 0: no sampling at all
            return expected + kl
    z = a + tf.matmul(eps, B, transpose_b=True)  # [S, d], whitened samples of q_u
    theta = loc + tf.matmul(z, scale, transpose_b=True)
    values = tf.cast(log_likelihood(theta), tf.float64)  # [S]
    terms = _sampled_terms(values, z, radius_squared, beta, smoothing, expectation is not None)
    if expectation is None:  # (with an expectation, lam = 0 returned above)
        return tf.reduce_mean(terms) + kl
    return beta * expected + tf.reduce_mean(terms) + kl


def _sampled_terms(values, z, radius_squared, beta, smoothing, controlled: bool) -> tf.Tensor:
    """The [S] terms whose average estimates ``U~``'s expectation: ``log p(D_e | theta_s)``
    [S] (``values``) weighted by the region's (smoothed) indicator at the whitened samples
    ``z`` [S, d], less ``beta`` when ``controlled`` (the control variate takes the rest)."""
    if radius_squared is None:
        return values
    distance_squared = tf.reduce_sum(z**2, axis=-1)  # z is whitened by q_full
    if smoothing == 0.0:
        weight = tf.cast(distance_squared < radius_squared, tf.float64)
    else:
        weight = smooth_region_weight(distance_squared, radius_squared, smoothing)
    return (weight - beta) * values if controlled else weight * values


def _value_and_gradient_function(get_log_likelihood, unpack, smoothing):
    """``(x, radius_squared, beta, loc, scale, eps) -> (U~, dU~/dx)``.

    ``get_log_likelihood()`` returns the likelihood (a weak reference's call for cached
    functions, so that the function does not keep its own cache key alive).
    """

    def value_and_gradient(x, radius_squared, beta, loc, scale, eps):
        log_likelihood = get_log_likelihood()
        expectation = (
            log_likelihood.gaussian_expectation if has_gaussian_expectation(log_likelihood) else None
        )
        with tf.GradientTape() as tape:
            tape.watch(x)
            a, B, log_diagonal = unpack(x)
            result = _eubo_value(log_likelihood, expectation, a, B, log_diagonal,
                                 radius_squared, beta, smoothing, loc, scale, eps)
        gradient = tape.gradient(result, x)
        if gradient is None:
            raise ValueError(
                "the EUBO does not depend on its parameters through TensorFlow operations, "
                "so it has no gradient (write the likelihood with TensorFlow operations)"
            )
        return result, gradient

    return value_and_gradient


class _WhitenedEUBO:
    """``U~`` as a function of the packed whitened parameters relative to ``q_full``.

    One instance serves every ``lam``: the base samples are drawn once, and the compiled
    value takes the region's squared radius and the control-variate coefficient as tensors.
    The callable's output was checked (shape, finiteness) before; inside the objective it is
    used as it comes, and a non-finite value makes the objective non-finite, which
    :func:`~unlearnkit.optimize.minimize_lbfgs` rejects.
    """

    def __init__(
        self,
        adjusted: AdjustedLogLikelihood,
        num_samples: Optional[int],
        seed: Seed,
        smoothing: float,
    ) -> None:
        self.adjusted = adjusted
        self.q_full = adjusted.q_full
        self.dim = adjusted.dim
        self.smoothing = smoothing
        self.log_likelihood = adjusted.erased_log_likelihood
        self.expectation = (
            self.log_likelihood.gaussian_expectation
            if has_gaussian_expectation(self.log_likelihood)
            else None
        )
        self.eps = (
            None if num_samples is None else gaussian.moment_matched_normal(num_samples, self.dim, seed)
        )  # [S, d]
        self.loc = tf.convert_to_tensor(self.q_full.loc)
        self.scale = self.q_full.scale.to_dense()
        self.unpack = _Unpacker(self.dim)
        self._values_at_start: Optional[tf.Tensor] = None

    def value(self, a, B, log_diagonal, radius_squared, beta, smoothing) -> tf.Tensor:
        """``U~`` at ``N(a, B B^T)`` in whitened coordinates (``B`` with positive diagonal)."""
        return _eubo_value(self.log_likelihood, self.expectation, a, B, log_diagonal,
                           radius_squared, beta, smoothing, self.loc, self.scale, self.eps)

    def standard_error(self, lam: float, smoothing: float) -> Optional[float]:
        """The Monte Carlo standard error of ``U~``'s estimate at the start (``q_u = q_full``),
        ``std(terms) / sqrt(S)``, for ``lam > 0``, with the standard deviation estimated on
        the first :data:`_NOISE_SAMPLES` base samples (a few percent off, which does not
        matter for the scale of a stopping rule, at a tenth of the cost).

        ``None`` for ``lam = 0`` (moment-matched samples make the quadratic part of the
        log-likelihood exact there, so the sample standard deviation overstates the error), without
        samples, or where it is 0 or not finite (the optimiser refuses a non-finite start itself).
        """
        if self.eps is None or lam == 0.0:
            return None
        eps = self.eps[:_NOISE_SAMPLES]  # a scale for a stopping rule: a few hundred do
        if self._values_at_start is None:  # shared by every lam of a grid
            theta = self.loc + tf.matmul(eps, self.scale, transpose_b=True)
            self._values_at_start = tf.cast(self.log_likelihood(theta), tf.float64)
        radius_squared, beta = self.coefficients(lam)
        terms = _sampled_terms(self._values_at_start, eps, radius_squared, beta, smoothing,
                               self.expectation is not None).numpy()
        error = float(np.std(terms) / math.sqrt(self.eps.shape[0]))
        return error if math.isfinite(error) and error > 0.0 else None

    def coefficients(self, lam: float) -> Tuple[Optional[tf.Tensor], tf.Tensor]:
        """The region's squared radius (``None`` for ``lam = 0``) and ``beta``, as tensors."""
        if lam == 0.0:
            return None, tf.constant(1.0, tf.float64)
        radius_squared = tf.constant(adjusted_region_radius_squared(lam), tf.float64)
        return radius_squared, tf.constant(_region_mass(lam, self.dim), tf.float64)

    def compiled(self, lam: float, smoothing: float) -> Tuple[Callable, bool]:
        """The objective for :func:`~unlearnkit.optimize.minimize_lbfgs`, and whether it
        returns its own gradient.

        The value and its gradient are computed together by one ``tf.function``, traced
        once per (``lam == 0``, smoothing, d, number of base samples) and shared across
        ``lam`` (the squared radius and ``beta`` are tensor arguments, and so are
        ``q_full``'s mean and scale and the base samples). The returned callable
        ``x [P] -> (U~, dU~/dx)`` is that function itself, which the optimiser calls as it
        is (``returns_gradient=True``: nothing is wrapped or traced again per request). For
        the package's linear-predictor likelihoods (the sparse-GP ones) the traced function
        is also kept across calls, for as long as the likelihood object lives (a weak
        reference: the cache never keeps a likelihood alive), so a second request with the
        same likelihood object is not traced again; its results are those of a fresh trace.
        If the likelihood cannot be traced, the returned callable ``x [P] -> U~`` computes
        the value eagerly (and ``False`` says so: the optimiser differentiates it).
        """
        radius_squared, beta = self.coefficients(lam)
        function, traced = self._function(radius_squared is None, smoothing)
        tensors = (self.loc, self.scale, self.eps)
        return (lambda x: function(x, radius_squared, beta, *tensors)), traced

    def _function(self, plain: bool, smoothing: float):
        """The (cached) value-and-gradient function, and whether it is traced."""
        log_likelihood = self.log_likelihood
        key = (plain, smoothing, self.dim, None if self.eps is None else int(self.eps.shape[0]))
        cache = None
        if keeps_compiled_graphs(log_likelihood):
            cache = _COMPILED.setdefault(log_likelihood, {})
            if key in cache:
                return cache[key]
            reference = weakref.ref(log_likelihood)
            value_and_gradient = _value_and_gradient_function(reference, _Unpacker(self.dim), smoothing)
        else:
            value_and_gradient = _value_and_gradient_function(
                lambda: log_likelihood, self.unpack, smoothing
            )
        scalar = tf.TensorSpec([], tf.float64)
        dim = self.dim
        specs = [
            tf.TensorSpec([gaussian.num_parameters(dim)], tf.float64),
            None if plain else scalar,
            scalar,
            tf.TensorSpec([dim], tf.float64),
            tf.TensorSpec([dim, dim], tf.float64),
            None if self.eps is None else tf.TensorSpec(self.eps.shape, tf.float64),
        ]
        function = tf.function(value_and_gradient, autograph=False)
        # traced once per likelihood and key; TensorFlow's frequent-retracing detector keys on
        # the Python code, so it would count other likelihoods' traces as retracing
        function._omit_frequent_tracing_warning = True
        try:  # called as the concrete function: no per-call signature matching (~0.2 ms)
            entry = (function.get_concrete_function(*specs), True)
        except Exception:  # noqa: BLE001 - not traceable: minimize_lbfgs runs it eagerly

            def value(x, radius_squared, beta, loc, scale, eps):
                return _eubo_value(log_likelihood, self.expectation, *self.unpack(x),
                                   radius_squared, beta, smoothing, loc, scale, eps)

            entry = (value, False)
        if cache is not None and entry[1]:
            cache[key] = entry
        return entry


def _needs_samples(adjusted: AdjustedLogLikelihood, lams: Sequence[float]) -> bool:
    closed_form = has_gaussian_expectation(adjusted.erased_log_likelihood)
    return any((lam > 0.0 and lam < 1.0) or (lam == 0.0 and not closed_form) for lam in lams)


def _num_samples(num_samples: Optional[int], adjusted: AdjustedLogLikelihood, lams: Sequence[float]) -> Optional[int]:
    """The number of base samples for a set of ``lam`` values (``None``: no sampling needed)."""
    if num_samples is not None:
        num_samples = check_positive_int(num_samples, "num_samples")
    if not _needs_samples(adjusted, lams):
        return None
    if num_samples is not None:
        return num_samples
    if has_gaussian_expectation(adjusted.erased_log_likelihood):
        return DEFAULT_NUM_SAMPLES_CONTROLLED
    if all(lam == 0.0 for lam in lams):
        return DEFAULT_NUM_SAMPLES
    return DEFAULT_NUM_SAMPLES_ADJUSTED


def eubo(
    q_u: object,
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    num_samples: Optional[int] = None,
    seed: Seed = None,
) -> tf.Tensor:
    """Monte Carlo estimate of ``U~ = E_{q_u}[log p_adj(D_e | theta; lam)] + KL[q_u || q_full]``.

    The expectation uses ``num_samples`` moment-matched base samples (sample mean 0,
    sample covariance I); with the same ``num_samples`` and ``seed`` this is exactly
    the objective that :func:`unlearn_eubo` minimises (without its boundary smoothing).
    The KL term is in closed form. When ``erased_log_likelihood`` has a
    ``gaussian_expectation`` method, ``lam = 0`` needs no samples and ``lam > 0`` uses it
    as a control variate (see the module docstring).

    Args:
        q_u: the candidate belief ``q_u(theta | D_r)``, a float64 multivariate normal [d].
        q_full: the belief after training on all data, ``q(theta | D)``, same form.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lam: adjusted-likelihood threshold in [0, 1] (0: no adjustment).
        num_samples: Monte Carlo samples ``S`` (must exceed ``d``); default 2,000 for
            ``lam = 0`` and 10,000 for ``lam > 0`` (1,000 with a Gaussian expectation).
        seed: ``None``, an int or a stateless seed (see :mod:`unlearnkit.seeds`).

    Returns:
        The estimate, a float64 scalar tensor.

    Raises:
        TypeError, ValueError: bad beliefs, callable, ``lam`` or ``num_samples``, or a
            callable that returns the wrong shape or non-finite values.
    """
    q_u = as_gaussian_belief(q_u, "q_u")
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
    if q_u.event_shape != adjusted.q_full.event_shape:
        raise ValueError(
            f"q_u must have the event shape of q_full {adjusted.q_full.event_shape}, "
            f"got {q_u.event_shape}"
        )
    problem = _WhitenedEUBO(adjusted, _num_samples(num_samples, adjusted, [adjusted.lam]), seed, 0.0)
    a, B = gaussian.whiten(q_u, adjusted.q_full)
    log_diagonal = tf.math.log(tf.linalg.diag_part(B))
    if adjusted.lam == 1.0:
        return _whitened_kl(a, B, log_diagonal)
    _check_callable_output(adjusted)
    radius_squared, beta = problem.coefficients(adjusted.lam)
    return ensure_finite(problem.value(a, B, log_diagonal, radius_squared, beta, 0.0), "the EUBO")


def _check_callable_output(adjusted: AdjustedLogLikelihood) -> None:
    """Eagerly, at two points of ``q_full`` (its mean, and one standard deviation along the
    first axis): the callable returns finite values of shape [S] with a gradient. The
    package's linear-predictor likelihoods are TensorFlow code returning [S] by construction,
    and are not probed (a non-finite objective at the start is refused by the optimiser)."""
    if keeps_compiled_graphs(adjusted.erased_log_likelihood):
        return
    loc, scale = adjusted.q_full.loc, adjusted.q_full.scale.to_dense()
    probe = tf.stack([loc, loc + scale[:, 0]])
    with tf.GradientTape() as tape:
        tape.watch(probe)
        values = adjusted.log_likelihood(probe)  # shape and finiteness, eagerly
    if tape.gradient(values, probe) is None:
        check_differentiable(adjusted.erased_log_likelihood, probe)  # raises the usual error


def _check_lams(lams: object) -> List[float]:
    if isinstance(lams, (str, bytes)) or not hasattr(lams, "__iter__"):
        raise TypeError(f"lams must be a sequence of numbers in [0, 1], got {type(lams).__name__}")
    values = [check_unit_interval(lam, "lams") for lam in np.asarray(lams, dtype=object).ravel()]
    if not values:
        raise ValueError("lams must contain at least one value")
    return values


def unlearn_eubo_grid(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lams: Sequence[float],
    *,
    seed: Seed = None,
    num_samples: Optional[int] = None,
    max_iterations: int = 1000,
    tolerance: float = 1e-6,
    boundary_smoothing: float = DEFAULT_BOUNDARY_SMOOTHING,
    return_info: bool = False,
) -> Union[
    List[tfd.MultivariateNormalTriL],
    Tuple[List[tfd.MultivariateNormalTriL], List[OptimizationInfo]],
]:
    """:func:`unlearn_eubo` for several values of ``lam`` at once, sharing the work.

    The result for each ``lam`` is what ``unlearn_eubo(q_full, erased_log_likelihood, lam,
    seed=seed, num_samples=num_samples, ...)`` returns when ``num_samples`` is given (by
    default the grid draws the number of base samples its largest need calls for): the same
    base samples, the same objective, the same start at ``q_full``. What is shared is the
    base samples, the checks of the callable, and the compiled objective and gradient,
    which are traced once for ``lam = 0`` and once for all ``lam > 0`` instead of once per
    value.

    Args:
        q_full: ``q(theta | D)``, any float64 ``tfd.MultivariateNormalLinearOperator`` [d].
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lams: thresholds in [0, 1], in any order.
        seed, num_samples, max_iterations, tolerance, boundary_smoothing: as for
            :func:`unlearn_eubo`.
        return_info: also return one :class:`~unlearnkit.diagnostics.OptimizationInfo` per
            ``lam`` (its ``seconds`` count that value's optimisation, not the shared set-up).

    Returns:
        A list of new float64 ``tfd.MultivariateNormalTriL`` [d], one per ``lam`` in the
        given order, and the list of infos if requested.

    Raises:
        TypeError, ValueError: as :func:`unlearn_eubo`; ``lams`` empty or outside [0, 1].

    Warns:
        ConvergenceWarning: L-BFGS stopped before convergence for some ``lam``.
    """
    lams = _check_lams(lams)
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lams[0])
    num_samples = _num_samples(num_samples, adjusted, lams)
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = check_tolerance(tolerance)
    smoothing = check_boundary_smoothing(boundary_smoothing)
    problem = _WhitenedEUBO(adjusted, num_samples, seed, smoothing)
    dim = problem.dim
    _check_callable_output(adjusted)
    beliefs, infos = [], []
    for lam in lams:
        start = time.perf_counter()
        if lam == 1.0:  # p_adj = 1: the KL term alone, minimised by q_full itself
            info = OptimizationInfo(0.0, 0, 1, True, "lam = 1: nothing to unlearn", 0.0)
            beliefs.append(gaussian.copy_belief(adjusted.q_full))
            infos.append(info)
            continue
        objective, returns_gradient = problem.compiled(lam, smoothing)
        x, info = minimize_lbfgs(
            objective,
            tf.zeros([gaussian.num_parameters(dim)], dtype=tf.float64),
            max_iterations=max_iterations,
            tolerance=tolerance,
            name=f"the EUBO (lam = {lam:g})",
            returns_gradient=returns_gradient,
            noise=problem.standard_error(lam, smoothing),
        )
        beliefs.append(gaussian.belief_from_packed(adjusted.q_full, x))
        infos.append(
            OptimizationInfo(
                objective=info.objective,
                num_iterations=info.num_iterations,
                num_evaluations=info.num_evaluations,
                converged=info.converged,
                message=info.message,
                seconds=time.perf_counter() - start,
            )
        )
    return (beliefs, infos) if return_info else beliefs


def unlearn_eubo(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    seed: Seed = None,
    num_samples: Optional[int] = None,
    max_iterations: int = 1000,
    tolerance: float = 1e-6,
    boundary_smoothing: float = DEFAULT_BOUNDARY_SMOOTHING,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalTriL, Tuple[tfd.MultivariateNormalTriL, OptimizationInfo]]:
    """Unlearn ``D_e``: the Gaussian ``q_u(theta | D_r)`` that minimises the EUBO ``U~``.

    Starts at ``q_full`` and runs L-BFGS on the common-random-number estimate of
    :func:`eubo` (the same ``num_samples`` base samples at every iteration), in
    coordinates whitened by ``q_full``. The log-likelihood is evaluated once per
    iteration inside a ``tf.function`` (eagerly if it cannot be traced). A log-likelihood
    with a ``gaussian_expectation`` method (such as the sparse-GP likelihoods of
    :func:`unlearnkit.gp.erased_log_likelihood`) is integrated by quadrature instead: with
    no sampling at ``lam = 0``, as a control variate for ``lam > 0`` (module docstring).
    To unlearn for several ``lam``, :func:`unlearn_eubo_grid` shares the work.

    Args:
        q_full: ``q(theta | D)``, any float64 ``tfd.MultivariateNormalLinearOperator`` with
            event shape [d]. Not modified.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``, summed over the
            erased points; TensorFlow code (so that it can be differentiated).
        lam: adjusted-likelihood threshold in [0, 1]. 0: plain EUBO; 1: nothing is
            unlearned (returns ``q_full``'s moments).
        seed: ``None``, an int or a stateless seed; fixes the base samples.
        num_samples: Monte Carlo samples ``S`` (must exceed ``d``); default 2,000 for
            ``lam = 0`` and 10,000 for ``lam > 0``; 1,000 for ``lam > 0`` and none for
            ``lam = 0`` with a Gaussian expectation.
        max_iterations: L-BFGS iteration cap.
        tolerance: L-BFGS tolerance (see :func:`unlearnkit.optimize.minimize_lbfgs`). For
            ``lam > 0`` L-BFGS also stops when iterations gain less than 1% of the
            estimate's standard error (module docstring).
        boundary_smoothing: width of the smooth step that replaces the region's
            indicator during the optimisation, relative to the region's radius
            (see the module docstring); 0 uses the indicator itself, whose jumps
            stall L-BFGS. Irrelevant for ``lam = 0``.
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Returns:
        A new float64 ``tfd.MultivariateNormalTriL`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad ``q_full``, callable, ``lam``, ``num_samples``; a
            callable returning the wrong shape or non-finite values, or without a gradient;
            a non-finite result.

    Warns:
        ConvergenceWarning: L-BFGS stopped before convergence.
    """
    lam = check_unit_interval(lam, "lam")
    beliefs, infos = unlearn_eubo_grid(
        q_full,
        erased_log_likelihood,
        [lam],
        seed=seed,
        num_samples=num_samples,
        max_iterations=max_iterations,
        tolerance=tolerance,
        boundary_smoothing=boundary_smoothing,
        return_info=True,
    )
    return (beliefs[0], infos[0]) if return_info else beliefs[0]
