"""Unlearning by minimising the reverse KL divergence (Nguyen et al., 2020).

The target is the adjusted unlearned posterior

    p~_adj(theta | D_r) ∝ q(theta | D) / p_adj(D_e | theta; lam),

and the unlearned belief ``q_v`` minimises ``KL[p~_adj || q_v]`` (the paper's "reverse KL";
in TFP's terms the *forward* direction, ``tfp.vi.kl_forward``: the expectation is under the
target), i.e. maximises ``E_{p~_adj}[log q_v(theta)]``. For a Gaussian ``q_v`` the maximiser
is the target's own mean and covariance (the objective is concave in the natural
parameters ``(V^{-1} m, V^{-1})``, and its stationary point is the moment match). No
optimisation is needed: only the target's moments, estimated by self-normalised
importance sampling.

Two samplers estimate them:

- ``sampler="one-shot"``: samples ``theta_s ~ q(theta | D)`` with weights
  ``w_s ∝ 1 / p_adj(D_e | theta_s)``, the estimator of the paper's objective
  ``E_{q(theta | D)}[log q_v(theta) / p_adj(D_e | theta)]``. It starves when much is
  erased: the target's mass then lies in the tails of ``q(theta | D)``, where few samples
  fall, a handful of samples carry all the weight (the effective sample size stays small
  however many samples are drawn), and the weighted moments describe those samples, not
  the target.
- ``sampler="adaptive"`` (the default): adaptive importance sampling. Round 0 is the
  one-shot estimate; each further round proposes from a mixture of ``q(theta | D)``
  (a defensive component that keeps the weights bounded) and a widened copy of the
  Gaussian moment-matched to the previous round's weighted samples, with weights
  ``p~_adj / proposal``, until the effective sample size reaches ``target_ess``. When the
  one-shot estimate is healthy it is returned unchanged after one round. When the
  effective sample size has stalled (see :func:`unlearn_reverse_kl`'s ``stall_rounds``)
  it refuses without drawing the rounds it has left: each round costs ``num_samples``
  evaluations of the likelihood, and a refusal would otherwise use every round allowed.

For the package's linear-predictor likelihoods (the sparse-GP ones of
:func:`unlearnkit.gp.erased_log_likelihood`) each round (drawing, weighting, effective
sample size, moments) runs as one compiled graph, traced on its first use and kept for as
long as the likelihood object lives; other callables run eagerly, with the same results.

:func:`importance_ess` measures the weights' health. An estimate whose effective sample
size stays below what the sampler requires raises
:class:`~unlearnkit.errors.DegenerateWeightsError`, never a silently bad belief.
"""

from __future__ import annotations

import math
import time
import weakref
from typing import List, Optional, Tuple, Union

import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit import linalg
from unlearnkit._validation import (
    check_log_likelihood_values,
    check_nonnegative_int,
    check_positive_int,
    check_positive_number,
    check_unit_interval,
    ensure_finite,
)
from unlearnkit.diagnostics import ImportanceInfo
from unlearnkit.errors import DegenerateWeightsError, NotPositiveDefiniteError
from unlearnkit.likelihoods import LogLikelihood
from unlearnkit.seeds import Seed, sanitize_seed, split_seed
from unlearnkit.variational import gaussian
from unlearnkit.variational.adjusted import AdjustedLogLikelihood
from unlearnkit.variational.linear_predictor import keeps_compiled_graphs

tfd = tfp.distributions

__all__ = [
    "unlearn_reverse_kl",
    "importance_log_weights",
    "importance_ess",
    "SAMPLERS",
    "DEFAULT_NUM_SAMPLES",
]


DEFAULT_NUM_SAMPLES = 100_000
SAMPLERS = ("adaptive", "one-shot")
DEFAULT_TARGET_ESS_FRACTION = 0.1
"""The adaptive sampler's default ``target_ess``, as a fraction of ``num_samples``."""
DEFAULT_MAX_ROUNDS = 20
DEFAULT_WIDENING = 1.2
"""Standard deviations of the adaptive proposal's Gaussian component, relative to the
moment-matched Gaussian of the previous round."""
DEFAULT_STALL_ROUNDS = 2
"""The adaptive sampler gives up after this many rounds without progress (see
:func:`unlearn_reverse_kl`)."""
STALL_FACTOR = 2.0
"""A round makes progress when it raises the largest effective sample size of a round by at
least this factor."""
DEFAULT_DEFENSIVE_WEIGHT = 0.1
"""Share of each adaptive round's samples drawn from ``q(theta | D)`` itself."""
_POOL_FRACTION = 10.0
"""Adaptive rounds whose effective sample size reaches ``target_ess / _POOL_FRACTION`` are
pooled into the estimate."""
_JITTERS = (0.0, 1e-12, 1e-10, 1e-8, 1e-6)


def importance_log_weights(adjusted: AdjustedLogLikelihood, theta: tf.Tensor) -> tf.Tensor:
    """Self-normalised log importance weights ``log w_s``, ``w_s ∝ 1 / p_adj(D_e | theta_s)``.

    These are the one-shot weights: ``theta_s`` are samples from ``q(theta | D)``.

    Args:
        adjusted: the adjusted log-likelihood (see :func:`unlearnkit.adjusted_log_likelihood`).
        theta: samples from ``q(theta | D)``, [S, d].

    Returns:
        ``log w_s`` with ``logsumexp_s log w_s = 0``, [S].
    """
    log_unnormalised = -adjusted(theta)
    return log_unnormalised - tf.reduce_logsumexp(log_unnormalised)


def importance_ess(log_weights: object) -> float:
    """Kish's effective sample size ``(sum_s w_s)^2 / sum_s w_s^2`` of importance weights.

    Not to be confused with ``tfp.mcmc.effective_sample_size``, the effective sample size of
    an autocorrelated Markov chain. Computed after subtracting the largest log-weight, so
    that equal weights give exactly ``S`` whatever their magnitude.

    Args:
        log_weights: log importance weights, normalised or not, [S].

    Returns:
        A number between 1 (degenerate weights) and ``S`` (equal weights).
    """
    if log_weights is None or isinstance(log_weights, (str, bytes)):
        raise TypeError(f"log_weights must be a float tensor [S], got {type(log_weights).__name__}")
    try:
        log_weights = tf.convert_to_tensor(log_weights)
    except (TypeError, ValueError) as err:
        raise TypeError(f"log_weights must be a float tensor [S]: {err}") from None
    if not log_weights.dtype.is_floating:
        raise TypeError(f"log_weights must be floating point, got dtype {log_weights.dtype.name}")
    log_weights = tf.cast(log_weights, tf.float64)
    if log_weights.shape.rank != 1 or log_weights.shape[0] == 0:
        raise ValueError(f"log_weights must have shape [S], got {log_weights.shape.as_list()}")
    ensure_finite(log_weights, "log_weights")
    return float(_kish_ess(log_weights))


def _kish_ess(log_weights: tf.Tensor) -> tf.Tensor:
    """:func:`importance_ess` without the checks, as a tensor (usable inside a graph)."""
    shifted = log_weights - tf.reduce_max(log_weights)
    return tf.exp(2.0 * tf.reduce_logsumexp(shifted) - tf.reduce_logsumexp(2.0 * shifted))


def _weighted_moments(z: tf.Tensor, log_weights: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Weighted mean [d] and covariance [d, d] of the rows of ``z`` [S, d] (normalised weights)."""
    weights = tf.exp(log_weights)
    mean = tf.linalg.matvec(z, weights, transpose_a=True)
    centred = z - mean
    cov = tf.matmul(centred * weights[:, None], centred, transpose_a=True)
    return mean, 0.5 * (cov + tf.transpose(cov))


def _cholesky_with_jitter(cov: tf.Tensor, ess: float) -> Tuple[tf.Tensor, float]:
    """Cholesky factor of the estimated covariance, with the smallest jitter that works."""
    eye = tf.eye(int(cov.shape[0]), dtype=tf.float64)
    for jitter in _JITTERS:
        try:
            return linalg.cholesky(cov + jitter * eye, "the weighted covariance"), jitter
        except NotPositiveDefiniteError:
            continue
    raise DegenerateWeightsError(
        f"the importance-weighted covariance is singular (effective sample size {ess:.3g}): "
        f"the weights are degenerate; increase num_samples or lam"
    )


def _check_sampler(sampler: object) -> str:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    return str(sampler)


def _target_ess(target_ess: Optional[float], sampler: str, num_samples: int, dim: int) -> float:
    if target_ess is None:
        if sampler == "one-shot":
            return float(dim + 1)
        return max(float(dim + 1), DEFAULT_TARGET_ESS_FRACTION * num_samples)
    value = check_positive_number(target_ess, "target_ess")
    if value > num_samples:
        raise ValueError(
            f"target_ess must not exceed num_samples = {num_samples} (the largest effective "
            f"sample size), got {value:g}"
        )
    return max(value, float(dim + 1))


class _Round:
    """One round of importance sampling in coordinates whitened by ``q(theta | D)``: its
    effective sample size and weighted first and second moments."""

    def __init__(self, z: tf.Tensor, log_weights: tf.Tensor) -> None:
        self.ess = importance_ess(log_weights)
        self.mean, self.cov = _weighted_moments(z, log_weights)

    @classmethod
    def from_moments(cls, ess: tf.Tensor, mean: tf.Tensor, cov: tf.Tensor) -> "_Round":
        part = cls.__new__(cls)
        part.ess, part.mean, part.cov = float(ess), mean, cov
        return part


class _Pool:
    """Rounds pooled into one estimate: their moments averaged with weights proportional to
    their effective sample sizes (each round is a self-normalised estimate of the same
    moments, with variance about inversely proportional to its effective sample size)."""

    def __init__(self, dim: int) -> None:
        self.ess = 0.0
        self.num_rounds = 0
        self._first = tf.zeros([dim], tf.float64)
        self._second = tf.zeros([dim, dim], tf.float64)

    def add(self, part: _Round) -> None:
        self.ess += part.ess
        self.num_rounds += 1
        self._first += part.ess * part.mean
        self._second += part.ess * (part.cov + part.mean[:, None] * part.mean[None, :])

    def moments(self) -> Tuple[tf.Tensor, tf.Tensor]:
        mean = self._first / self.ess
        cov = self._second / self.ess - mean[:, None] * mean[None, :]
        return mean, 0.5 * (cov + tf.transpose(cov))


_COMPILED: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()
"""Compiled rounds for the package's linear-predictor likelihoods, kept while the likelihood
lives (see :meth:`_AdaptiveSampler._compiled`)."""


def _normal_log_density(z: tf.Tensor, loc: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
    """``log N(z_s; loc, scale scale^T)`` [S] of the rows of ``z`` [S, d], ``scale`` lower
    triangular: ``tfd.MultivariateNormalTriL(loc, scale).log_prob(z)`` to rounding, with one
    triangular solve for all S right-hand sides (a fifth of TFP's time at S = 20,000)."""
    whitened = tf.linalg.triangular_solve(scale, tf.transpose(z - loc), lower=True)  # [d, S]
    log_determinant = tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(scale))))
    dim = int(z.shape[-1])
    return (-0.5 * tf.reduce_sum(whitened**2, axis=0) - log_determinant
            - 0.5 * dim * math.log(2.0 * math.pi))


def _round_moments(log_likelihood, z, q_loc, q_scale, radius_squared, log_proposal):
    """Log-weights of samples ``z`` [S, d] (whitened by ``q_full``) and their effective sample
    size and weighted moments, in one graph. ``log_proposal=None``: round 0, samples of
    ``q_full`` itself (weights ``∝ 1 / p_adj``); ``radius_squared=None``: ``lam = 0``.

    Outside the region ``p_adj = 1``, so the log-likelihood is evaluated only at the samples
    inside it (in 20 dimensions a share 4e-9 of ``q_full``'s samples at ``lam = 0.5``,
    1.5e-4 at ``lam = 0.1``, 16% at ``lam = 1e-3``)."""
    theta = q_loc + tf.matmul(z, q_scale, transpose_b=True)
    if radius_squared is None:
        values = check_log_likelihood_values(log_likelihood(theta), None)
    else:
        inside = tf.where(tf.reduce_sum(z**2, axis=-1) < radius_squared)  # [S_in, 1]
        values_inside = check_log_likelihood_values(log_likelihood(tf.gather_nd(theta, inside)), None)
        values = tf.scatter_nd(inside, values_inside, tf.shape(z, out_type=tf.int64)[:1])  # 0 outside
    if log_proposal is None:
        log_unnormalised = -values
    else:
        standard = tfd.MultivariateNormalDiag(loc=tf.zeros([int(z.shape[1])], tf.float64))
        log_standard = standard.log_prob(z)  # as the eager path computes it
        log_unnormalised = ensure_finite(
            log_standard - values - log_proposal, "the importance log-weights"
        )
    log_weights = log_unnormalised - tf.reduce_logsumexp(log_unnormalised)
    return (_kish_ess(log_weights), *_weighted_moments(z, log_weights))


class _AdaptiveSampler:
    """Importance sampling of ``p~_adj(z) ∝ N(z; 0, I) / p_adj(D_e | theta(z))``, whitened.

    For the package's linear-predictor likelihoods (such as the sparse-GP ones of
    :func:`unlearnkit.gp.erased_log_likelihood`, immutable once built) each round's weights,
    effective sample size and moments are computed by one compiled graph, kept across calls
    while the likelihood lives (a weak reference); other callables run eagerly.
    """

    def __init__(self, adjusted: AdjustedLogLikelihood, num_samples: int) -> None:
        self.adjusted = adjusted
        self.q_full = adjusted.q_full
        self.dim = adjusted.dim
        self.num_samples = num_samples
        self.scale = self.q_full.scale.to_dense()
        radius_squared = adjusted.radius_squared
        self.radius_squared = (
            None if math.isinf(radius_squared) else tf.constant(radius_squared, tf.float64)
        )

    def _compiled(self, key: tuple, build):
        """The compiled function ``build()`` for this likelihood and ``key``, or ``None``
        (the likelihood is not one of the package's: run eagerly)."""
        log_likelihood = self.adjusted.erased_log_likelihood
        if not keeps_compiled_graphs(log_likelihood) or self.adjusted.lam == 1.0:
            return None
        cache = _COMPILED.setdefault(log_likelihood, {})
        key = (*key, self.radius_squared is None, self.num_samples, self.dim)
        if key not in cache:
            function = tf.function(build(weakref.ref(log_likelihood)), autograph=False)
            # One trace per likelihood and key; TensorFlow's frequent-retracing detector keys
            # on the Python code, so it would count other likelihoods' traces as retracing.
            function._omit_frequent_tracing_warning = True
            cache[key] = function
        return cache[key]

    @property
    def standard(self) -> tfd.MultivariateNormalDiag:
        """``N(0, I)`` in the whitened coordinates (built only by the eager path)."""
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.dim], tf.float64))

    @staticmethod
    def _run(compiled, *args) -> _Round:
        """Call a compiled round; a graph's finiteness check becomes the eager ValueError."""
        try:
            return _Round.from_moments(*compiled(*args))
        except tf.errors.InvalidArgumentError as err:
            raise ValueError(err.message.splitlines()[0]) from None

    def log_target(self, z: tf.Tensor) -> tf.Tensor:
        """``log N(z; 0, I) - log p_adj(D_e | theta(z))``, the unnormalised target, [S]."""
        theta = self.q_full.loc + tf.matmul(z, self.scale, transpose_b=True)
        squared = tf.reduce_sum(z**2, axis=-1)  # the Mahalanobis distance under q_full
        log_adj = self.adjusted.smoothed(theta, 0.0, squared)  # validates the callable
        return self.standard.log_prob(z) - log_adj

    def one_shot(self, seed: Seed) -> _Round:
        """Moment-matched samples of ``q(theta | D)``; weights ``∝ 1 / p_adj``."""
        num_samples, dim = self.num_samples, self.dim

        # drawn outside the graph: gaussian.moment_matched_normal caches the draw of a concrete
        # seed, so a repeated request, or one per lam of a grid, does not draw it again
        z = gaussian.moment_matched_normal(num_samples, dim, seed)

        def build(reference):
            def compute(z, q_loc, q_scale, radius_squared):
                return _round_moments(reference(), z, q_loc, q_scale, radius_squared, None)
            return compute

        compiled = self._compiled(("one-shot",), build)
        if compiled is not None:
            return self._run(compiled, z, self.q_full.loc, self.scale, self.radius_squared)
        theta = self.q_full.loc + tf.matmul(z, self.scale, transpose_b=True)
        squared = tf.reduce_sum(z**2, axis=-1)
        log_unnormalised = -self.adjusted.smoothed(theta, 0.0, squared)
        return _Round(z, log_unnormalised - tf.reduce_logsumexp(log_unnormalised))

    def mixture_round(
        self, loc: tf.Tensor, scale: tf.Tensor, defensive_weight: float, seed: Seed
    ) -> _Round:
        """Samples of ``a N(0, I) + (1 - a) N(loc, scale scale^T)`` (stratified: a fixed
        share from each component), weights ``p~_adj / mixture`` (the balance heuristic)."""
        seeds = tf.stack(split_seed(seed, 2))
        num_defensive = int(round(defensive_weight * self.num_samples))
        num_component = self.num_samples - num_defensive
        dim = self.dim  # the compiled function outlives this sampler: it must not hold it

        def samples_and_log_proposal(seeds, loc, scale):
            parts = []
            if num_defensive:
                parts.append(tf.random.stateless_normal(
                    [num_defensive, dim], seed=seeds[0], dtype=tf.float64))
            eps = tf.random.stateless_normal(
                [num_component, dim], seed=seeds[1], dtype=tf.float64)
            parts.append(loc + tf.matmul(eps, scale, transpose_b=True))
            z = tf.concat(parts, axis=0)
            log_terms = [_normal_log_density(z, loc, scale) + math.log1p(-defensive_weight)]
            if defensive_weight > 0.0:
                standard = tfd.MultivariateNormalDiag(loc=tf.zeros([dim], tf.float64))
                log_terms.append(standard.log_prob(z) + math.log(defensive_weight))
            return z, tf.reduce_logsumexp(tf.stack(log_terms), axis=0)

        def build(reference):
            def compute(seeds, loc, scale, q_loc, q_scale, radius_squared):
                z, log_proposal = samples_and_log_proposal(seeds, loc, scale)
                return _round_moments(reference(), z, q_loc, q_scale, radius_squared, log_proposal)
            return compute

        compiled = self._compiled(("mixture", defensive_weight), build)
        if compiled is not None:
            return self._run(
                compiled, seeds, loc, scale, self.q_full.loc, self.scale, self.radius_squared)
        z, log_proposal = samples_and_log_proposal(seeds, loc, scale)
        log_unnormalised = ensure_finite(
            self.log_target(z) - log_proposal, "the importance log-weights"
        )
        return _Round(z, log_unnormalised - tf.reduce_logsumexp(log_unnormalised))

def _stalled(history: List[float], moves: List[float], pool: "_Pool", target: float,
             rounds_left: int, stall_rounds: int) -> Optional[str]:
    """Why the adaptive sampler should give up early (see :func:`unlearn_reverse_kl`), or
    ``None`` when it should go on.

    ``history``: the effective sample size of every round so far (round 0 first);
    ``moves``: for every adaptive round, how far its estimate of the target's mean lies from
    the mean of the proposal that drew it, in the proposal's standard deviations. Stalled
    when (a) none of the last ``stall_rounds`` rounds raised the largest effective sample
    size of a round by a factor of at least :data:`STALL_FACTOR` (single rounds are not
    approaching ``target``), (b) none of them moved the estimate by a standard deviation or
    more (the proposal is not travelling towards a target further out), and (c) the pooled
    rounds, adding their mean effective sample size per round in each round left, would not
    reach ``target`` either; or when (d) ``1 + 2 stall_rounds`` rounds have been drawn and
    none reached ``d + 1`` effective samples: no round could estimate the target's
    covariance, each proposal only moved and doubled its width, and the estimates jump
    from round to round with the few samples that carry the weight (so (b) never holds).
    """
    if stall_rounds == 0 or len(moves) < stall_rounds:
        return None
    dim = int(pool._first.shape[0])
    if len(history) >= 1 + 2 * stall_rounds and max(history) < dim + 1.0:
        return (f"no round in {len(history)} reached d + 1 = {dim + 1} effective samples, "
                f"enough to estimate a covariance")
    before = max(history[:-stall_rounds])
    recent = max(history[-stall_rounds:])
    if recent >= STALL_FACTOR * before or max(moves[-stall_rounds:]) >= 1.0:
        return None
    pool_rate = pool.ess / pool.num_rounds if pool.num_rounds else 0.0
    if pool.ess + rounds_left * pool_rate >= target:
        return None
    return (f"no round in the last {stall_rounds} raised the effective sample size by a "
            f"factor of {STALL_FACTOR:g} or moved the estimate by a standard deviation")


def _next_proposal(
    mean: tf.Tensor, cov: tf.Tensor, ess: float, previous_cov: tf.Tensor, widening: float
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Mean, widened lower-triangular scale and unwidened covariance of the next round's
    Gaussian component, from the current estimate ``(mean, cov)`` of the target's moments.

    An estimate from few effective samples is noisy, and singular below ``d + 1`` of them.
    Below ``d + 1`` the proposal only moves: it keeps the previous covariance and doubles
    the widening (the target lies beyond the samples, and wider proposals reach further);
    above, the covariance is shrunk towards the previous one in proportion,
    ``(ESS * C + (d + 1) * C_prev) / (ESS + d + 1)``.
    """
    dim = int(mean.shape[0])
    if ess < dim + 1.0:
        cov, widening = previous_cov, 2.0 * widening
    else:
        shrink = (dim + 1.0) / (ess + dim + 1.0)
        cov = (1.0 - shrink) * cov + shrink * previous_cov
    eye = tf.eye(dim, dtype=tf.float64)
    for jitter in _JITTERS:
        candidate = cov + jitter * tf.reduce_max(tf.linalg.diag_part(cov)) * eye
        try:
            return mean, widening * linalg.cholesky(candidate, "the proposal covariance"), candidate
        except NotPositiveDefiniteError:
            continue
    return mean, widening * tf.linalg.cholesky(previous_cov), previous_cov  # pragma: no cover


def unlearn_reverse_kl(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    sampler: str = "adaptive",
    target_ess: Optional[float] = None,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    widening: float = DEFAULT_WIDENING,
    defensive_weight: float = DEFAULT_DEFENSIVE_WEIGHT,
    return_info: bool = False,
    stall_rounds: int = DEFAULT_STALL_ROUNDS,
) -> Union[tfd.MultivariateNormalTriL, Tuple[tfd.MultivariateNormalTriL, ImportanceInfo]]:
    """Unlearn ``D_e``: the Gaussian ``q_v`` minimising ``KL[p~_adj(theta | D_r) || q_v]``.

    This is the paper's "reverse KL", ``KL[target || q_v]`` (TFP's ``kl_forward`` direction):
    mass covering, not mode seeking. Its minimiser over Gaussians is the target's mean and
    covariance, estimated by self-normalised importance sampling (in log space) in
    coordinates whitened by ``q_full``:

    - ``sampler="one-shot"``: the importance-weighted mean and covariance of
      ``num_samples`` moment-matched samples of ``q_full``, weights
      ``w_s ∝ 1 / p_adj(D_e | theta_s; lam)`` (``lam = 1`` returns ``q_full``'s moments).
    - ``sampler="adaptive"``: round 0 is the one-shot estimate, returned when its effective
      sample size reaches ``target_ess``. Otherwise each new round draws ``num_samples``
      samples from ``defensive_weight * q_full + (1 - defensive_weight) * N(m, widening^2 C)``,
      with ``(m, C)`` the current estimate of the target's moments, and weights
      ``p~_adj / proposal``. Rounds whose effective sample size reaches ``target_ess / 10``
      (the proposal has settled on the target) are pooled: their moments are averaged with
      weights proportional to their effective sample sizes, and the pooled moments drive
      the next proposal. It stops when one round, or the pool, reaches ``target_ess``, and
      refuses early when the effective sample size has stalled: none of the last
      ``stall_rounds`` rounds raised the largest effective sample size of a round by a
      factor of at least :data:`STALL_FACTOR` (2) or moved the estimated mean by one of its
      proposal's standard deviations or more (a proposal still travelling towards a target
      in the tails is not stalled, however few effective samples it has), and the pooled
      rounds, at their mean effective sample size per round, would not reach ``target_ess``
      in the rounds left. It also refuses when ``1 + 2 stall_rounds`` rounds (5 by
      default) have been drawn and none reached ``d + 1`` effective samples: no round could
      estimate the target's covariance, and the estimated mean jumps with the few samples
      that carry the weight, so the previous rule never sees a stall.
      Like ``max_rounds``, the rule can turn a late answer into a refusal, never into a
      wrong answer: a returned estimate always reached ``target_ess``. Only a sampler whose
      effective sample size grows again after ``stall_rounds`` rounds without growth would
      have answered (pass ``stall_rounds=0`` to always draw every round allowed).

    Args:
        q_full: ``q(theta | D)``, any float64 ``tfd.MultivariateNormalLinearOperator`` [d].
            Not modified.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lam: adjusted-likelihood threshold in [0, 1]; 1 returns ``q_full``'s moments.
        seed: ``None``, an int or a stateless seed (see :mod:`unlearnkit.seeds`); each
            round uses its own seed split from it.
        num_samples: samples ``S`` per round (must exceed ``d``).
        sampler: ``"adaptive"`` (default) or ``"one-shot"``.
        target_ess: the effective sample size an estimate must reach to be returned (for a
            pooled estimate, the sum over its rounds). Default: ``num_samples / 10`` for the adaptive sampler; ``d + 1`` for the
            one-shot sampler (it cannot improve its weights, and refuses only the
            estimates whose covariance would be singular). Never below ``d + 1``.
        max_rounds: adaptive rounds after round 0 (0 makes the adaptive sampler one-shot
            with the adaptive sampler's ``target_ess``). Ignored by the one-shot sampler.
        widening: factor (>= 1) on the standard deviations of the adaptive proposal's
            Gaussian component.
        defensive_weight: share in [0, 1) of each adaptive round's samples drawn from
            ``q_full``; it bounds the weights by ``1 / (defensive_weight * p_adj)``.
        return_info: also return an :class:`~unlearnkit.diagnostics.ImportanceInfo`:
            the estimate's effective sample size, the samples it used, the rounds drawn and
            every round's effective sample size.
        stall_rounds: rounds without progress after which the adaptive sampler refuses
            early (see above); 0 never stops early. Ignored by the one-shot sampler.

    Returns:
        A new float64 ``tfd.MultivariateNormalTriL`` [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad ``q_full``, callable, ``lam``, ``num_samples``,
            ``sampler`` or sampler options; a callable returning the wrong shape or
            non-finite values.
        DegenerateWeightsError: the effective sample size stayed below ``target_ess``
            (after ``max_rounds`` adaptive rounds, or fewer when it stalled), so no estimate
            can be trusted. The message gives every round's effective sample size and says
            whether the sampler stopped early; the error's attributes ``ess_history``
            (tuple of floats) and ``stalled`` (bool) hold the same.
    """
    start = time.perf_counter()
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)
    q_full = adjusted.q_full
    dim = adjusted.dim
    num_samples = check_positive_int(num_samples, "num_samples")
    sampler = _check_sampler(sampler)
    target = _target_ess(target_ess, sampler, num_samples, dim)
    max_rounds = check_nonnegative_int(max_rounds, "max_rounds")
    stall_rounds = check_nonnegative_int(stall_rounds, "stall_rounds")
    widening = check_positive_number(widening, "widening")
    if widening < 1.0:
        raise ValueError(f"widening must be at least 1, got {widening}")
    defensive_weight = check_unit_interval(defensive_weight, "defensive_weight")
    if defensive_weight == 1.0:
        raise ValueError("defensive_weight must be below 1 (1 is the one-shot sampler)")
    seed = sanitize_seed(seed)
    rounds_allowed = 0 if sampler == "one-shot" else max_rounds
    seeds = split_seed(seed, rounds_allowed + 1)

    problem = _AdaptiveSampler(adjusted, num_samples)
    current = problem.one_shot(seeds[0])  # round 0: the one-shot estimate (checks the callable)
    history: List[float] = [current.ess]
    pool = _Pool(dim)  # adaptive rounds only: round 0's weights are the ones that starve
    estimate = (current.mean, current.cov, current.ess)
    proposal_cov = tf.eye(dim, dtype=tf.float64)
    rounds = 1
    stalled: Optional[str] = None
    moves: List[float] = []
    while (
        current.ess < target and pool.ess < target and rounds <= rounds_allowed
        and adjusted.lam < 1.0
    ):
        stalled = _stalled(history, moves, pool, target, rounds_allowed + 1 - rounds, stall_rounds)
        if stalled:
            break
        loc, scale, proposal_cov = _next_proposal(*estimate, proposal_cov, widening)
        current = problem.mixture_round(loc, scale, defensive_weight, seeds[rounds])
        history.append(current.ess)
        step = tf.linalg.triangular_solve(scale, (current.mean - loc)[:, None], lower=True)
        moves.append(float(tf.norm(step)))
        rounds += 1
        if current.ess >= target / _POOL_FRACTION:  # the proposal has settled: pool
            pool.add(current)
            estimate = (*pool.moments(), pool.ess)
        else:
            estimate = (current.mean, current.cov, current.ess)
    if current.ess >= target:  # one round suffices (always the case for the one-shot sampler)
        mean, cov, ess, used = current.mean, current.cov, current.ess, 1
    elif pool.ess >= target:
        (mean, cov), ess, used = pool.moments(), pool.ess, pool.num_rounds
    else:
        what = (
            f"after {rounds} rounds of adaptive importance sampling (pooled: {pool.ess:.3g})"
            if sampler == "adaptive" else "sampling from q_full alone (sampler='one-shot')"
        )
        if stalled:
            what += f", stopped early: {stalled}"
        error = DegenerateWeightsError(
            f"the importance weights are degenerate: effective sample size {current.ess:.3g} "
            f"< {target:.3g} needed, {what}, for d = {dim} and num_samples = {num_samples}; "
            f"increase num_samples, max_rounds or lam (effective sample sizes per round: "
            f"{', '.join(format(e, '.3g') for e in history)})"
        )
        error.ess_history = tuple(history)
        error.stalled = bool(stalled)
        raise error
    if adjusted.lam == 1.0:  # equal weights: the moments of q_full itself
        result, jitter = gaussian.copy_belief(q_full), 0.0
    else:
        scale, jitter = _cholesky_with_jitter(cov, ess)
        result = gaussian.final_belief(q_full, mean, scale)
    if not return_info:
        return result
    info = ImportanceInfo(
        effective_sample_size=ess,
        num_samples=used * num_samples,
        num_rounds=rounds,
        jitter=jitter,
        seconds=time.perf_counter() - start,
        ess_history=tuple(history),
    )
    return result, info
