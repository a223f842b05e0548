"""Every unlearning method of the book on one task: the rows of the head-to-head chapter.

A *task* is a Gaussian belief ``q(theta | D)`` [d] fitted to data ``D``, a per-datum model
(``log_likelihood(theta [S, d], points) -> [S, n]`` and ``log_prior(theta [S, d]) -> [S]``,
as in :mod:`unlearnkit.bif.per_datum`), the rows ``D_e`` to erase, and a way to retrain.
:func:`run_methods` applies every method to it and times each one; :func:`assess` measures a
resulting belief against the retrained one. Methods:

- ``"retrain"``: the caller's retraining function (the reference).
- ``"EUBO"`` and ``"reverse KL"``: :func:`unlearnkit.unlearn_eubo` and
  :func:`unlearnkit.unlearn_reverse_kl` at the threshold chosen by
  :func:`~unlearnkit.variational.lambda_selection.select_lambda_by_ess` (the rule that
  needs neither retraining nor ``D_r``; its time is counted in both methods' times).
- ``"BIF, ..."``: :func:`unlearnkit.bif.forget_variational` with ``method="influence"``
  (Bayesian inference forgetting's step on the variational parameters), one step or
  ``num_chunks`` chunks, Hessian before or after; it evaluates the negative ELBO of all the
  data, so it needs ``D_r``.
- ``"Newton (Laplace)"``: :func:`newton_removal`, one Newton step on a MAP estimate with the
  precision of its Laplace approximation stored at training time (Guo et al., 2020); it needs
  only ``D_e``. Judged against the *retrained Laplace approximation*, its own reference.
- ``"reweighting"``: :func:`unlearnkit.bif.reweight_samples` on samples of ``q(theta | D)``,
  summarised by the weighted mean and covariance.

Every time is the wall time of one call, TensorFlow's tracing included, for the methods and
for retraining alike (every call builds its own compiled functions, so none is excluded).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit import linalg
from unlearnkit._validation import (
    as_gaussian_belief,
    check_callable,
    check_positive_int,
)
from unlearnkit.bif.forgetting import forget_variational, reweight_samples
from unlearnkit.bif.map_energy import map_energies, newton_minimize
from unlearnkit.derivatives import Energy, energy_gradient, energy_hessian
from unlearnkit.errors import DegenerateWeightsError, NotPositiveDefiniteError
from unlearnkit.laplace import laplace_approximation
from unlearnkit.likelihoods import logistic_log_likelihood
from unlearnkit.metrics import (
    averaged_kl,
    gaussian_kl,
    membership_inference_auc,
    membership_scores,
    predictive_probabilities,
)
from unlearnkit.seeds import Seed, split_seed
from unlearnkit.variational.evidence_upper_bound import unlearn_eubo
from unlearnkit.variational.gaussian_vi import fit_gaussian_vi
from unlearnkit.variational.lambda_selection import (
    DEFAULT_LAMBDAS,
    select_lambda_by_ess,
)
from unlearnkit.variational.reverse_kl import unlearn_reverse_kl

tfd = tfp.distributions

BIF_VARIANTS = ("one step, before", "one step, after", "chunks, before", "chunks, after")
"""The four BIF rows: one step or ``num_chunks`` chunks, Hessian before or after."""

__all__ = [
    "BIF_VARIANTS",
    "MethodOutcome",
    "MapModel",
    "newton_removal",
    "weighted_gaussian",
    "run_methods",
    "assess",
    "SCALING_METHODS",
    "synthetic_logistic",
    "logistic_scaling_times",
    "log_log_slopes",
]


@dataclasses.dataclass(frozen=True)
class MethodOutcome:
    """What one method returned on one task.

    Attributes:
        name: the method's name.
        belief: the unlearned belief [d] (``None`` when the method refused or does not apply).
        seconds: wall time of the call (``nan`` when the method does not apply).
        needs_remaining: whether the method reads the remaining data ``D_r``.
        reference: the retrained belief to judge ``belief`` against (``None``: the task's
            retrained belief; the Newton row uses the retrained Laplace approximation).
        note: why there is no belief, or the threshold used.
    """

    name: str
    belief: Optional[tfd.MultivariateNormalTriL]
    seconds: float
    needs_remaining: bool
    reference: Optional[tfd.MultivariateNormalTriL] = None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class MapModel:
    """The MAP/Laplace version of a task: energies of all the data, of ``D_e`` and of ``D_r``.

    Attributes:
        energy: ``gamma [d] -> F(gamma, D)``, the negative log joint of all the data.
        erased_energy: ``gamma [d] -> -log p(D_e | gamma)``.
    """

    energy: Energy
    erased_energy: Energy


def newton_removal(laplace: object, erased_energy: Energy) -> tfd.MultivariateNormalTriL:
    """One Newton step that removes ``D_e`` from a Laplace approximation, with ``D_e`` alone.

    With ``N(m, P^{-1})`` the Laplace approximation at the MAP estimate ``m`` of all the data
    (``P`` the Hessian of the energy there, kept from training) and ``E`` the energy of the
    erased data, the remaining energy has Hessian ``P_r = P - hess E(m)`` and gradient
    ``-grad E(m)`` at ``m``; the step ``m_r = m + P_r^{-1} grad E(m)`` is Guo et al.'s
    (2020) Newton removal, and ``N(m_r, P_r^{-1})`` the unlearned Laplace approximation.

    Args:
        laplace: ``N(m, P^{-1})``, a float64 multivariate normal [d].
        erased_energy: ``gamma [d] -> scalar``.

    Returns:
        A new ``tfd.MultivariateNormalTriL`` [d].

    Raises:
        NotPositiveDefiniteError: ``P_r`` is not positive definite.
    """
    laplace = as_gaussian_belief(laplace, "laplace")
    check_callable(erased_energy, "erased_energy", "gamma [d] -> scalar")
    mean = laplace.loc
    scale = laplace.scale.to_dense()
    eye = tf.eye(int(mean.shape[0]), dtype=tf.float64)
    scale_inverse = tf.linalg.triangular_solve(scale, eye)
    precision = tf.matmul(scale_inverse, scale_inverse, transpose_a=True)
    remaining = precision - energy_hessian(erased_energy, mean, name="erased_energy")
    remaining = 0.5 * (remaining + tf.transpose(remaining))
    factor = linalg.cholesky(remaining, name="the remaining Hessian")
    gradient = energy_gradient(erased_energy, mean, name="erased_energy")
    new_mean = mean + tf.linalg.cholesky_solve(factor, gradient[:, None])[:, 0]
    new_scale = tf.linalg.triangular_solve(factor, eye)  # P_r^{-1} = (L^{-1})^T L^{-1}
    covariance = tf.matmul(new_scale, new_scale, transpose_a=True)
    return tfd.MultivariateNormalTriL(loc=new_mean, scale_tril=tf.linalg.cholesky(covariance))


def weighted_gaussian(samples: object, weights: object) -> tfd.MultivariateNormalTriL:
    """The Gaussian with the weighted mean and covariance of weighted samples.

    Args:
        samples: ``[C, d]`` float64.
        weights: ``[C]`` non-negative weights summing to 1.

    Returns:
        A new ``tfd.MultivariateNormalTriL`` [d].

    Raises:
        DegenerateWeightsError: the weighted covariance is singular (fewer than about
            ``d + 1`` samples carry the weight).
    """
    samples = tf.convert_to_tensor(samples, tf.float64)
    weights = tf.convert_to_tensor(weights, tf.float64)
    if samples.shape.rank != 2 or weights.shape != [samples.shape[0]]:
        raise ValueError(
            f"samples must be [C, d] and weights [C], got {samples.shape.as_list()} "
            f"and {weights.shape.as_list()}"
        )
    mean = tf.reduce_sum(weights[:, None] * samples, axis=0)
    centred = samples - mean
    covariance = tf.matmul(weights[:, None] * centred, centred, transpose_a=True)
    ess = float(1.0 / tf.reduce_sum(weights**2))
    try:
        factor = linalg.cholesky(covariance, name="the weighted covariance")
    except NotPositiveDefiniteError as error:
        raise DegenerateWeightsError(
            f"the weighted covariance is singular (effective sample size {ess:.1f})"
        ) from error
    return tfd.MultivariateNormalTriL(loc=mean, scale_tril=factor)


def _timed(function: Callable[[], object]):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def run_methods(
    q_full: object,
    log_likelihood: Callable[[tf.Tensor, object], tf.Tensor],
    log_prior: Callable[[tf.Tensor], tf.Tensor],
    points: object,
    erased: object,
    retrain: Callable[[], object],
    *,
    erased_log_likelihood: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
    map_model: Optional[MapModel] = None,
    lams: Sequence[float] = DEFAULT_LAMBDAS,
    num_chunks: int = 2,
    bif_variants: Sequence[str] = BIF_VARIANTS,
    num_samples: int = 64,
    num_importance_samples: int = 20_000,
    seed: Seed = 0,
) -> Dict[str, MethodOutcome]:
    """Run every method of the book on one task, timing each.

    Args:
        q_full: ``q(theta | D)``, a float64 multivariate normal [d].
        log_likelihood: ``(theta [S, d], points) -> [S, n]``, per datum.
        log_prior: ``theta [S, d] -> [S]``.
        points: the data ``D`` (array ``[n, ...]`` or tuple of arrays).
        erased: ``[m]`` row indices of ``D_e``.
        retrain: ``() -> q(theta | D_r)``, the retraining (timed).
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]`` for the EUBO and
            the reverse KL; default: the per-datum log-likelihood of the erased rows, summed
            (pass e.g. the sparse-GP likelihood, whose Gaussian expectation the EUBO uses).
        map_model: the MAP/Laplace version of the task; ``None``: the Newton row is n/a.
        lams: candidate thresholds of the ESS rule.
        num_chunks: chunks of the chunked BIF rows.
        bif_variants: the BIF rows to run, a subset of :data:`BIF_VARIANTS` (the others
            are reported without a belief, "not run": BIF's cost grows with ``n`` times the
            number of variational parameters, and a chapter may not afford all four).
        num_samples: base noise of BIF's negative ELBO.
        num_importance_samples: samples of ``q(theta | D)`` for the reweighting row and per
            round of the reverse KL.
        seed: seed of every random draw.

    Returns:
        ``{name: MethodOutcome}`` in the order retrain, EUBO, reverse KL, four BIF rows,
        Newton (Laplace), reweighting.
    """
    q_full = as_gaussian_belief(q_full, "q_full")
    check_callable(retrain, "retrain", "() -> belief")
    num_chunks = check_positive_int(num_chunks, "num_chunks")
    erased = np.asarray(erased)
    if erased_log_likelihood is None:
        if isinstance(points, tuple):
            erased_points = tuple(np.asarray(p)[erased] for p in points)
        else:
            erased_points = np.asarray(points)[erased]

        def erased_log_likelihood(theta: tf.Tensor) -> tf.Tensor:
            return tf.reduce_sum(log_likelihood(theta, erased_points), axis=-1)

    outcomes: Dict[str, MethodOutcome] = {}
    retrained, seconds = _timed(retrain)
    outcomes["retrain"] = MethodOutcome("retrain", as_gaussian_belief(retrained), seconds, True)

    selection, select_seconds = _timed(
        lambda: select_lambda_by_ess(q_full, erased_log_likelihood, lams, seed=seed)
    )
    lam = selection.lam
    note = f"λ = {lam:g} (ESS rule)"
    belief, seconds = _timed(lambda: unlearn_eubo(q_full, erased_log_likelihood, lam, seed=seed))
    outcomes["EUBO"] = MethodOutcome("EUBO", belief, select_seconds + seconds, False, note=note)
    start = time.perf_counter()
    try:
        belief = unlearn_reverse_kl(
            q_full, erased_log_likelihood, lam, seed=seed, num_samples=num_importance_samples
        )
        reverse_note = note
    except DegenerateWeightsError:
        belief, reverse_note = None, f"refused at λ = {lam:g}"
    seconds = select_seconds + time.perf_counter() - start
    outcomes["reverse KL"] = MethodOutcome("reverse KL", belief, seconds, False, note=reverse_note)

    for variant in BIF_VARIANTS:
        chunks = 1 if variant.startswith("one step") else num_chunks
        hessian = variant.split(", ")[1]
        name = f"BIF, {'one step' if chunks == 1 else f'{chunks} chunks'}, {hessian}"
        if variant not in bif_variants:
            outcomes[name] = MethodOutcome(name, None, float("nan"), True, note="not run (cost)")
            continue
        start = time.perf_counter()
        try:
            belief = forget_variational(
                q_full, log_likelihood, log_prior, points, erased,
                method="influence", hessian=hessian, num_chunks=chunks,
                num_samples=num_samples, seed=seed,
            )
            bif_note = ""
        except NotPositiveDefiniteError:
            belief, bif_note = None, "Hessian not positive definite"
        seconds = time.perf_counter() - start
        outcomes[name] = MethodOutcome(name, belief, seconds, True, note=bif_note)

    if map_model is None:
        outcomes["Newton (Laplace)"] = MethodOutcome(
            "Newton (Laplace)", None, float("nan"), False, note="n/a: no MAP model"
        )
    else:  # training: the MAP estimate and its Laplace approximation (not timed)
        initial = tf.identity(q_full.loc)
        mode = newton_minimize(map_model.energy, initial)
        laplace = laplace_approximation(map_model.energy, mode)
        belief, seconds = _timed(lambda: newton_removal(laplace, map_model.erased_energy))

        def remaining_energy(gamma: tf.Tensor) -> tf.Tensor:
            return map_model.energy(gamma) - map_model.erased_energy(gamma)

        reference = laplace_approximation(remaining_energy, newton_minimize(remaining_energy, mode))
        outcomes["Newton (Laplace)"] = MethodOutcome(
            "Newton (Laplace)", belief, seconds, False, reference=reference,
            note="judged against the retrained Laplace approximation",
        )

    samples = q_full.sample(num_importance_samples, seed=split_seed(seed, 2)[1])
    start = time.perf_counter()
    weights, info = reweight_samples(samples, log_likelihood, points, erased, return_info=True)
    try:
        belief = weighted_gaussian(samples, weights)
        weight_note = f"ESS {info.effective_sample_size:.0f} of {num_importance_samples}"
    except DegenerateWeightsError:
        belief = None
        weight_note = f"collapsed: ESS {info.effective_sample_size:.1f}"
    seconds = time.perf_counter() - start
    outcomes["reweighting"] = MethodOutcome("reweighting", belief, seconds, False, note=weight_note)
    return outcomes


def assess(
    belief: object,
    retrained: object,
    class_probabilities: Mapping[str, Callable[[tf.Tensor], tf.Tensor]],
    member_log_likelihood: Callable[[tf.Tensor], tf.Tensor],
    nonmember_log_likelihood: Callable[[tf.Tensor], tf.Tensor],
    *,
    num_samples: int = 1000,
    seed: Seed = 0,
) -> Dict[str, float]:
    """The measures of the chapter for one belief.

    Args:
        belief: the belief to judge, a float64 multivariate normal [d].
        retrained: the retrained belief [d] it is judged against.
        class_probabilities: ``{part: theta [S, d] -> [S, N_part]}`` class-1 probabilities on
            each part's inputs (e.g. ``{"D_e": ..., "D_r": ...}``).
        member_log_likelihood: ``theta [S, d] -> [S, m]`` per-point log-likelihoods of
            ``D_e``.
        nonmember_log_likelihood: ``theta [S, d] -> [S, k]`` of held-out points.
        num_samples: Monte Carlo samples of the predictives and the scores.
        seed: seed shared by all beliefs (common random numbers).

    Returns:
        ``{"KL": KL[belief || retrained], "avg KL <part>": ..., "MIA AUC": ...}``.
    """
    result = {"KL": float(gaussian_kl(belief, retrained))}
    for part, probabilities in class_probabilities.items():
        reference = predictive_probabilities(retrained, probabilities, num_samples, seed=seed)
        other = predictive_probabilities(belief, probabilities, num_samples, seed=seed)
        result[f"avg KL {part}"] = averaged_kl(reference, other).mean
    members = membership_scores(belief, member_log_likelihood, num_samples, seed=seed)
    others = membership_scores(belief, nonmember_log_likelihood, num_samples, seed=seed)
    result["MIA AUC"] = membership_inference_auc(members, others)
    return result


# --------------------------------------------------------------------- cost as data grow

SCALING_METHODS = (
    "retrain",
    "EUBO",
    "reverse KL",
    "BIF, one step, after",
    "Newton (Laplace)",
    "reweighting",
)
"""The methods timed by :func:`logistic_scaling_times`."""


def synthetic_logistic(
    n: int, dim: int = 20, num_erased: int = 100, *, seed: int = 0
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic logistic-regression data and the structured removal of the scaling study.

    ``x ~ N(0, I_dim)``, ``y ~ Bernoulli(sigmoid(x^T w))``, ``w = 2 N(0, I) / sqrt(dim)``
    fixed (drawn with seed 1, whatever ``seed``); the erased points are the ``num_erased``
    with the largest first feature.

    Args:
        n: number of points.
        dim: number of features ``d``.
        num_erased: ``|D_e|``, at most ``n``.
        seed: seed of ``X`` and ``y``.

    Returns:
        ``(X [n, dim], y [n], erase [n] bool)``.
    """
    n = check_positive_int(n, "n")
    dim = check_positive_int(dim, "dim")
    num_erased = check_positive_int(num_erased, "num_erased")
    if num_erased > n:
        raise ValueError(f"num_erased must be at most n = {n}, got {num_erased}")
    weights = 2.0 * np.random.default_rng(1).normal(size=dim) / np.sqrt(dim)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim))
    y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-X @ weights))).astype(np.float64)
    erase = np.zeros(n, dtype=bool)
    erase[np.argsort(-X[:, 0])[:num_erased]] = True
    return X, y, erase


def _logistic_per_datum(theta: tf.Tensor, points: Tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
    X, y = points
    return -tf.math.softplus(-(2.0 * y - 1.0) * tf.matmul(theta, X, transpose_b=True))


def logistic_scaling_times(
    n: int,
    dim: int = 20,
    num_erased: int = 100,
    *,
    run_bif: bool = True,
    fit_samples: int = 100,
    seed: int = 0,
) -> Dict[str, float]:
    """Seconds of one call of each method of :data:`SCALING_METHODS` on a synthetic task.

    Fits ``q(theta | D)`` (``fit_gaussian_vi``, ``fit_samples`` moment-matched samples,
    prior ``N(0, I)``) to :func:`synthetic_logistic` data (not timed), then times the
    methods with :func:`run_methods` (BIF: one step, Hessian after, 32 base samples).

    Args:
        n, dim, num_erased: the task's size.
        run_bif: time BIF too (its cost grows with ``n`` times the square of the
            ``dim + dim (dim + 1) / 2`` variational parameters); ``nan`` otherwise.
        fit_samples: Monte Carlo samples of the fits (full and retrained), ``> dim``.
        seed: seed of the data and of every method.

    Returns:
        ``{method: seconds}`` (``nan`` for a method not run).
    """
    X, y, erase = synthetic_logistic(n, dim, num_erased, seed=seed)
    prior = tfd.MultivariateNormalTriL(tf.zeros(dim, tf.float64), tf.eye(dim, dtype=tf.float64))
    q_full = fit_gaussian_vi(
        logistic_log_likelihood(X, y), prior, seed=seed, num_samples=fit_samples
    )
    rows = np.flatnonzero(erase)
    energy, erased_energy = map_energies(logistic_log_likelihood, X, y, rows, prior_variance=1.0)

    def retrain() -> tfd.MultivariateNormalTriL:
        return fit_gaussian_vi(
            logistic_log_likelihood(X[~erase], y[~erase]), prior,
            initial=q_full, seed=seed + 1, num_samples=fit_samples,
        )

    outcomes = run_methods(
        q_full, _logistic_per_datum, prior.log_prob, (X, y), rows, retrain,
        map_model=MapModel(energy, erased_energy),
        bif_variants=("one step, after",) if run_bif else (),
        num_samples=32,
        seed=seed,
    )
    return {name: outcomes[name].seconds for name in SCALING_METHODS}


def log_log_slopes(
    sizes: Sequence[int], times: Sequence[Mapping[str, float]]
) -> Dict[str, float]:
    """Least-squares slope of ``log time`` against ``log n`` for each method.

    Args:
        sizes: ``[K]`` data sizes.
        times: ``[K]`` mappings ``{method: seconds}`` (``nan``: not run at that size).

    Returns:
        ``{method: slope}`` for every method timed at two sizes or more.
    """
    if len(sizes) != len(times):
        raise ValueError(f"sizes and times must have the same length, got {len(sizes)} and {len(times)}")
    result = {}
    for name in times[0] if times else ():
        pairs = [(n, t[name]) for n, t in zip(sizes, times) if np.isfinite(t[name]) and t[name] > 0]
        if len({n for n, _ in pairs}) >= 2:
            logs = np.log(np.array(pairs, dtype=np.float64))
            result[name] = float(np.polyfit(logs[:, 0], logs[:, 1], 1)[0])
    return result
