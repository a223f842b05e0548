"""Exact Bayesian unlearning: p(theta | D_r) is proportional to p(theta | D) / p(D_e | theta).

When the data are conditionally independent given theta, the posterior on the
remaining data ``D_r`` is the posterior on all the data ``D`` divided by the likelihood
of the erased data ``D_e``. This module computes that division exactly in the two
settings where p(theta | D) is known exactly:

- conjugate models, whose posterior depends on the data only through sufficient
  statistics, so unlearning subtracts the statistics of ``D_e``
  (:class:`BetaBernoulli`, :class:`LinearGaussian`);
- low-dimensional models evaluated on a grid of parameter values (:func:`grid_unlearn`).

The conjugate models keep the prior and the sufficient statistics separately. Removing
data that could not have been observed (more ones than were seen, more rows than were
seen, statistics no data set could produce) raises ``ValueError`` rather than returning
a posterior that is silently wrong. They are immutable: ``observe`` and ``unlearn``
return new objects.

Fixed hyperparameters. Unlearning is exact for a prior and a likelihood fixed before
the data were seen. If they were fitted on ``D`` (say, ``noise_variance`` chosen by
maximising :meth:`LinearGaussian.log_marginal_likelihood`), they carry information
about ``D_e`` that subtracting statistics does not remove: the result is the posterior
on ``D_r`` under hyperparameters chosen with ``D_e``. To forget ``D_e`` completely,
fit them again on ``D_r`` (the unlearned model's log marginal likelihood is that of
``D_r``) and rebuild the model from ``D_r``'s statistics.

Rounding. :class:`BetaBernoulli` keeps integer counts, so unlearning is exact to the
last bit. :class:`LinearGaussian` keeps floating-point sums, and subtraction cannot
remove the rounding that happened when the rows were added: after any sequence of
``observe`` and ``unlearn`` calls, entry (j, k) of the statistics differs from that of
the remaining rows by at most ``4 eps sqrt(w_j w_k)``, where ``eps = 2**-53`` and
``w_j`` is the sum, over every batch ever observed *or unlearned*, of the batch's sum
of squares in column j times its number of rows (capped at 4,096: large batches are
summed in blocks). The error is thus relative to everything that ever passed through
the model, not to what remains: it grows with every call, by the size of that call's
batch. It is not amplified by the number of calls or by the size of the running total
(the total is kept in double-double arithmetic, so what is left is the rounding inside
each batch's own sums). Removing an outlier therefore leaves the statistics of the
other rows with an error relative to the outlier's size, which no subtraction of
floating-point sums can avoid, and a sequence that ends with a few rows after much
traffic has a relative error of about eps times (traffic / what remains). Two things
are exact: a column (or the whole matrix) that is zero in every remaining row is set
to exactly zero, so an unidentified direction never picks up a rounding residue that a
flat prior would amplify; and the checks that a request is possible use this bound, so
rounding never makes a valid request look impossible (requests are refused when they
are impossible by more than the bound: a model cannot tell apart two data sets whose
statistics differ by less).
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import math
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special
from scipy.linalg import lapack

from unlearnkit._validation import as_float64_array, check_positive_number
from unlearnkit.errors import NotPositiveDefiniteError

tfd = tfp.distributions

__all__ = ["BetaBernoulli", "LinearGaussian", "grid_unlearn"]

# Unit roundoff of float64.
_EPS = 2.0**-53
# Rows per block: up to this many rows, X and y are stacked and multiplied once (cheaper
# than three products); larger batches are summed block by block, so that the rounding
# bound of a batch's sums grows with at most this many terms.
_STACK_ROWS = 4096
# Every entry (j, k) of LinearGaussian's statistics is within
# _ERROR_FACTOR * _EPS * sqrt(w_j w_k) of the exact statistics of the remaining rows
# (w as in the module docstring): a batch of m rows adds at most m eps sqrt(S_jj S_kk)
# from its own sums (meeting the total adds nothing: TwoSum keeps the sum exactly in
# double-double), at most eps sqrt(w_j w_k) by Cauchy-Schwarz; rounding the double-double total to float64 adds eps sqrt(w_j w_k);
# the rest is to spare (and covers the eps^2 terms).
_ERROR_FACTOR = 4.0
# Least value of LinearGaussian's error scale: it covers products that underflow (each
# is off by at most 2**-1075, and 4 eps _STACK_ROWS _SCALE_FLOOR >= 2**67 * 2**-1075).
_SCALE_FLOOR = 2.0**-960
# Below this, sums of magnitudes cannot overflow float64 (they stay 18 times below).
_SAFE = 1e307
# Counts above 2**53 are not exact in float64.
_MAX_COUNT = 2**53
_PRIOR_FIELDS = (
    "prior_mean",
    "prior_cov",
    "noise_variance",
    "_prior_precision",
    "_prior_shift",
    "_prior_log_det",
)


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value}")
    if value > _MAX_COUNT:
        raise ValueError(f"{name} must be at most 2**53 (exact in float64), got {value}")
    return int(value)


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64)  # a private copy
    array.flags.writeable = False
    return array


@dataclasses.dataclass(frozen=True)
class BetaBernoulli:
    """Beta prior on the probability of a one, Bernoulli observations in {0, 1}.

    The posterior after ``num_ones`` ones and ``num_zeros`` zeros is
    ``Beta(concentration1 + num_ones, concentration0 + num_zeros)``. Unlearning
    subtracts the counts of the erased data; the counts are integers, so the result is
    exactly the model that never saw the erased data.

    Args:
        concentration1: prior pseudo-count of ones (Beta's ``a``), positive.
        concentration0: prior pseudo-count of zeros (Beta's ``b``), positive; the sum
            ``concentration1 + concentration0`` must be finite in float64.
        num_ones: ones observed so far (keyword only; normally left at 0 and grown by
            :meth:`observe`), at most 2**53.
        num_zeros: zeros observed so far (keyword only), at most 2**53.

    Example:
        >>> model = BetaBernoulli(1.0, 1.0).observe([1, 0, 1, 1])
        >>> model.unlearn([1, 0]) == BetaBernoulli(1.0, 1.0).observe([1, 1])
        True
    """

    concentration1: float = 1.0
    concentration0: float = 1.0
    num_ones: int = dataclasses.field(default=0, kw_only=True)
    num_zeros: int = dataclasses.field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        for name in ("concentration1", "concentration0"):
            object.__setattr__(self, name, check_positive_number(getattr(self, name), name))
        if not math.isfinite(self.concentration1 + self.concentration0):
            raise ValueError(
                "concentration1 + concentration0 must be finite, got "
                f"{self.concentration1} + {self.concentration0}"
            )
        for name in ("num_ones", "num_zeros"):
            object.__setattr__(self, name, _check_count(getattr(self, name), name))

    @property
    def num_observations(self) -> int:
        """Number of observations the posterior conditions on."""
        return self.num_ones + self.num_zeros

    def observe(self, x: object) -> "BetaBernoulli":
        """Condition on more observations.

        Args:
            x: observations in {0, 1}, [n].

        Returns:
            A new :class:`BetaBernoulli` with the counts of ``x`` added.
        """
        ones, zeros = _count_binary(x, "x")
        return dataclasses.replace(
            self, num_ones=self.num_ones + ones, num_zeros=self.num_zeros + zeros
        )

    def unlearn(self, x: object) -> "BetaBernoulli":
        """Remove observations that were observed before (exact unlearning).

        Args:
            x: the erased observations in {0, 1}, [n].

        Returns:
            A new :class:`BetaBernoulli` equal to one that never observed ``x``.

        Raises:
            ValueError: ``x`` has more ones or more zeros than were observed.
        """
        ones, zeros = _count_binary(x, "x")
        if ones > self.num_ones or zeros > self.num_zeros:
            raise ValueError(
                f"x cannot be unlearned: it has {ones} ones and {zeros} zeros, but only "
                f"{self.num_ones} ones and {self.num_zeros} zeros were observed"
            )
        return dataclasses.replace(
            self, num_ones=self.num_ones - ones, num_zeros=self.num_zeros - zeros
        )

    @functools.cached_property
    def distribution(self) -> tfd.Beta:
        """The posterior over the probability of a one, a float64 ``tfd.Beta``."""
        return tfd.Beta(
            concentration1=tf.constant(self.concentration1 + self.num_ones, tf.float64),
            concentration0=tf.constant(self.concentration0 + self.num_zeros, tf.float64),
        )

    def log_marginal_likelihood(self) -> float:
        """Log probability of the observed sequence under the prior,
        log B(a + ones, b + zeros) - log B(a, b).

        Accurate to a few units in the last place of the result (relative, or absolute
        for results near 0) for any counts and concentrations, including 10^12
        observations and concentrations of 1e300 (where the prior is a point mass at
        a / (a + b) and the result tends to ``ones log(a/(a+b)) + zeros log(b/(a+b))``).
        A difference of log-Gamma values would lose up to ``log10(a + b + n)`` digits.
        """
        return _log_marginal_beta_bernoulli(
            self.concentration1, self.concentration0, self.num_ones, self.num_zeros
        )


def _count_binary(x: object, name: str) -> Tuple[int, int]:
    """(number of ones, number of zeros) of a vector of labels in {0, 1}."""
    labels = as_float64_array(x, name, ndim=1)
    ones = int(np.count_nonzero(labels == 1.0))
    zeros = int(np.count_nonzero(labels == 0.0))
    if ones + zeros != labels.shape[0]:
        raise ValueError(f"{name} must contain only the labels 0 and 1")
    return ones, zeros


# --- log marginal likelihood of the Beta-Bernoulli model, without cancellation ---------

# Below this, a concentration is first raised by conditioning on observations one at a
# time; at or above it, the Stirling series below is accurate to double precision.
_STIRLING_MIN = 10.0
# Coefficients B_2j / (2j (2j - 1)) of the Stirling series of log Gamma, j = 1..8.
_STIRLING_SERIES = (
    1.0 / 12.0,
    -1.0 / 360.0,
    1.0 / 1260.0,
    -1.0 / 1680.0,
    1.0 / 1188.0,
    -691.0 / 360360.0,
    1.0 / 156.0,
    -3617.0 / 122400.0,
)


def _stirling_remainder(x: float) -> float:
    """omega(x) = log Gamma(x) - [(x - 1/2) log x - x + log(2 pi) / 2], for x >= 10
    (truncation error below 1e-17)."""
    inverse_square = 1.0 / (x * x)
    total = 0.0
    for coefficient in reversed(_STIRLING_SERIES):
        total = total * inverse_square + coefficient
    return total / x


def _log1pmx(x: float) -> float:
    """log(1 + x) - x for |x| <= 1/2, accurate relative to the result.

    With s = x / (2 + x), log(1 + x) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) and
    2 s - x = -x s, so the result is -x s + 2 (s^3/3 + s^5/5 + ...), |s| <= 1/3.
    """
    s = x / (2.0 + x)
    square = s * s
    power, total = s * square, 0.0
    for odd in range(3, 80, 2):
        term = power / odd
        total += term
        if abs(term) <= 1e-17 * abs(total):
            break
        power *= square
    return -x * s + 2.0 * total


def _log1p_ratio(numerator: float, denominator: float) -> float:
    """log(1 + numerator / denominator) for positive arguments, also when the ratio
    overflows float64."""
    ratio = numerator / denominator
    if ratio < 1e300:
        return math.log1p(ratio)
    return math.log(numerator) - math.log(denominator) + math.log1p(denominator / numerator)


def _log_marginal_beta_bernoulli(a: float, b: float, ones: int, zeros: int) -> float:
    """log [Gamma(a + k) Gamma(b + z) Gamma(a + b)] / [Gamma(a) Gamma(b) Gamma(a + b + k + z)]
    with k = ``ones``, z = ``zeros``, without subtracting large numbers.

    Write x = a + k, y = b + z, N = a + b, N' = N + k + z, p = a / N (prior mean) and
    q = x / N' (posterior mean). Stirling's formula for the six log-Gamma values, with
    every term that cancels exactly removed by hand, gives

        log p(data) = -[k log(N'/x) + z log(N'/y)] - N KL(p || q)
                      + [log(N'/N) - log(x/a) - log(y/b)] / 2 + (omega terms),

    where KL is the Kullback-Leibler divergence between Bernoulli distributions. The
    first bracket and N KL are non-negative and are computed from log1p of exactly
    rounded ratios (N KL is written through eps1 = (a z - b k) / (N x) and
    eps2 = -(a z - b k) / (N y), with a z - b k computed exactly), so nothing cancels.
    Stirling's formula needs each Gamma argument to be at least 10: a concentration
    below 10 is first raised by conditioning on single observations (the chain rule,
    log p(x_i | x_<i) = -log1p(b / (a + i)) for a one), and when a is small and k = 0
    the terms in Gamma(a) cancel exactly, so a needs no raising.
    """
    pieces = []
    if a < _STIRLING_MIN and ones > 0:
        steps = min(ones, math.ceil(_STIRLING_MIN - a))
        pieces += [-_log1p_ratio(b, a + i) for i in range(steps)]
        a, ones = a + steps, ones - steps
    if b < _STIRLING_MIN and zeros > 0:
        steps = min(zeros, math.ceil(_STIRLING_MIN - b))
        pieces += [-_log1p_ratio(a, b + j) for j in range(steps)]
        b, zeros = b + steps, zeros - steps
    if ones == 0 and zeros == 0:
        return math.fsum(pieces)
    n = ones + zeros
    x, y = a + ones, b + zeros
    total, total_after = a + b, a + b + n
    cross_entropy = (ones * math.log1p(y / x) if ones else 0.0) + (
        zeros * math.log1p(x / y) if zeros else 0.0
    )
    exact_a, exact_b = fractions.Fraction(a), fractions.Fraction(b)
    difference = exact_a * zeros - exact_b * ones  # a z - b k, exactly
    exact_total = exact_a + exact_b
    eps1 = float(difference / (exact_total * (exact_a + ones)))
    eps2 = float(-difference / (exact_total * (exact_b + zeros)))
    log_growth = math.log1p(n / total)  # log(N' / N)
    if abs(eps1) <= 0.5 and abs(eps2) <= 0.5:
        # N KL = a log1p(eps1) + b log1p(eps2); its first-order terms sum to -N eps1 eps2.
        divergence = -total * eps1 * eps2 + a * _log1pmx(eps1) + b * _log1pmx(eps2)
    else:
        # 1 + eps1 = (a / x) (N' / N): near 0, take its logarithm from the factors.
        log1 = math.log1p(eps1) if eps1 > -0.5 else log_growth - math.log1p(ones / a)
        log2 = math.log1p(eps2) if eps2 > -0.5 else log_growth - math.log1p(zeros / b)
        divergence = a * log1 + b * log2
    half_logs = 0.5 * (log_growth - math.log1p(ones / a) - math.log1p(zeros / b))
    omega = _stirling_remainder(total) - _stirling_remainder(total_after)
    if ones:
        omega += _stirling_remainder(x) - _stirling_remainder(a)
    if zeros:
        omega += _stirling_remainder(y) - _stirling_remainder(b)
    return math.fsum(pieces + [-cross_entropy, -divergence, half_logs, omega])


# --- Bayesian linear regression -----------------------------------------------------------


def _two_sum(
    hi: np.ndarray,
    lo: np.ndarray,
    other_hi: np.ndarray,
    other_lo: Optional[np.ndarray],
    subtract: bool = False,
) -> Tuple[np.ndarray, np.ndarray]:
    """Double-double (hi + lo) + (other_hi + other_lo), or minus with ``subtract``, as a
    new normalised pair (the high part is the sum rounded to float64).

    The rounding error of ``hi +- other_hi`` comes from Knuth's TwoSum, exact whatever
    the magnitudes (a batch larger than the running total, such as an outlier observed
    on its own, is kept exactly and leaves no residue when it is unlearned).
    """
    if subtract:
        total = hi - other_hi
        other_seen = total - hi  # ~ -other_hi
        error = (hi - (total - other_seen)) - (other_hi + other_seen)
    else:
        total = hi + other_hi
        other_seen = total - hi
        error = (hi - (total - other_seen)) + (other_hi - other_seen)
    error += lo
    if other_lo is not None:
        if subtract:
            error -= other_lo
        else:
            error += other_lo
    new_hi = total + error
    return new_hi, error - (new_hi - total)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class LinearGaussian:
    """Bayesian linear regression, y = x^T theta + N(0, noise_variance), with a Gaussian prior.

    The model keeps the prior and the sufficient statistics of the data, the augmented
    Gram matrix ``[X y]^T [X y]`` ([d + 1, d + 1]) and the number of rows, separately.
    The posterior has precision ``P = prior_cov^{-1} + X^T X / noise_variance`` and mean
    ``P^{-1} (prior_cov^{-1} prior_mean + X^T y / noise_variance)``. Unlearning m rows
    subtracts their statistics: O(m d^2 + d^3) time, independent of how many rows were
    observed. The statistics live in NumPy; :attr:`posterior_mean` and
    :attr:`posterior_covariance` are computed, and :attr:`distribution` (the TensorFlow
    Probability posterior) is built, when first asked for.

    Floating-point sums cannot be subtracted without residue (see the module docstring
    for the bound), so whether the erased rows were observed can only be checked up to
    that bound. The model also counts, exactly, the rows with a non-zero entry in each
    column of ``[X y]``: a column that is zero in every remaining row gets statistics
    that are exactly zero, and a request that would leave a negative count (a non-zero
    value where no observed row had one) is refused outright.

    Args:
        prior_mean: prior mean, [d].
        prior_cov: prior covariance, [d, d], symmetric positive definite.
        noise_variance: observation-noise variance, positive.

    Example:
        >>> X, y = np.random.default_rng(0).normal(size=(100, 2)), np.zeros(100)
        >>> prior = LinearGaussian(np.zeros(2), np.eye(2), noise_variance=0.1)
        >>> forgotten = prior.observe(X, y).unlearn(X[:5], y[:5])
        >>> forgotten.num_observations  # same posterior as prior.observe(X[5:], y[5:])
        95
    """

    prior_mean: np.ndarray
    prior_cov: np.ndarray
    noise_variance: float
    # Statistics [X y]^T [X y] as a double-double pair (_gram + _gram_low), [d + 1, d + 1].
    _gram: np.ndarray = dataclasses.field(init=False, repr=False)
    _gram_low: np.ndarray = dataclasses.field(init=False, repr=False)
    _num_observations: int = dataclasses.field(init=False, repr=False)
    # Rows with a non-zero entry, per column of [X y], minus one, [d + 1] (int64, exact).
    # (The offset lets one reduction check that every count is in [1, num].)
    _nonzero_less_one: np.ndarray = dataclasses.field(init=False, repr=False)
    # w / _STACK_ROWS, per column, with w as in the module docstring, [d + 1].
    _error_scale: np.ndarray = dataclasses.field(init=False, repr=False)
    # The sum, over every batch since the statistics were last all zero, of the batch's
    # largest diagonal entry: a bound on every entry of the statistics and of the error
    # scale (a float).
    _history: float = dataclasses.field(init=False, repr=False)
    _prior_precision: np.ndarray = dataclasses.field(init=False, repr=False)
    _prior_shift: np.ndarray = dataclasses.field(init=False, repr=False)
    _prior_log_det: float = dataclasses.field(init=False, repr=False)
    # The prior's fields above, shared (unchanged) by every model derived from this one.
    _shared: dict = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        mean = as_float64_array(self.prior_mean, "prior_mean", ndim=1)
        dim = mean.shape[0]
        if dim == 0:
            raise ValueError("prior_mean must have at least one entry")
        cov = as_float64_array(self.prior_cov, "prior_cov", shape=[dim, dim])
        if not np.allclose(cov, cov.T, rtol=1e-10, atol=0.0):
            raise ValueError("prior_cov must be symmetric")
        chol, info = lapack.dpotrf(cov, lower=1, clean=1)
        if info != 0:
            raise ValueError("prior_cov must be positive definite")
        precision, info = lapack.dpotri(chol, lower=1)  # inverse from the Cholesky factor
        precision = np.tril(precision) + np.tril(precision, -1).T
        if info != 0 or not np.isfinite(precision).all():
            raise ValueError("prior_cov must be positive definite with a finite inverse")
        noise = check_positive_number(self.noise_variance, "noise_variance")
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below
            shift = precision @ mean
        values = {
            "prior_mean": _read_only(mean),
            "prior_cov": _read_only(cov),
            "noise_variance": noise,
            "_prior_precision": _read_only(precision),
            "_prior_shift": _read_only(shift),
            "_prior_log_det": float(-2.0 * np.sum(np.log(np.diag(chol)))),
            "_gram": _read_only(np.zeros((dim + 1, dim + 1))),
            "_gram_low": _read_only(np.zeros((dim + 1, dim + 1))),
            "_num_observations": 0,
            "_nonzero_less_one": np.full(dim + 1, -1, dtype=np.int64),
            "_error_scale": _read_only(np.full(dim + 1, _SCALE_FLOOR)),
            "_history": 0.0,
        }
        values["_nonzero_less_one"].flags.writeable = False
        if not np.isfinite(values["_prior_shift"]).all():
            raise ValueError("prior_cov^{-1} prior_mean overflows: prior_mean is too large")
        values["_shared"] = {name: values[name] for name in _PRIOR_FIELDS}
        values["_shared"]["_shared"] = values["_shared"]
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return (
            f"LinearGaussian(dim={self.dim}, noise_variance={self.noise_variance}, "
            f"num_observations={self.num_observations})"
        )

    @property
    def dim(self) -> int:
        """Number of parameters d."""
        return self.prior_mean.shape[0]

    @property
    def num_observations(self) -> int:
        """Number of rows the posterior conditions on."""
        return self._num_observations

    @property
    def gram(self) -> np.ndarray:
        """Sufficient statistics ``[X y]^T [X y]`` of the observed rows, [d + 1, d + 1]
        (read-only): ``gram[:d, :d] = X^T X``, ``gram[:d, d] = X^T y``, ``gram[d, d] = y^T y``."""
        return self._gram

    def observe(self, X: object, y: object) -> "LinearGaussian":
        """Condition on more rows.

        Args:
            X: inputs, [n, d].
            y: targets, [n].

        Returns:
            A new :class:`LinearGaussian` whose statistics include the rows. Costs O(n d^2).

        Raises:
            ValueError: NaN or infinite values, or statistics that overflow float64.
        """
        gram, gram_low, nonzero, rows, scale, largest = self._batch(X, y)
        history = self._history + largest
        if history < _SAFE:  # nothing can overflow
            gram, gram_low = _two_sum(self._gram, self._gram_low, gram, gram_low)
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                gram, gram_low = _two_sum(self._gram, self._gram_low, gram, gram_low)
        scale += self._error_scale
        if history >= _SAFE and not (np.isfinite(gram).all() and np.isfinite(scale).all()):
            raise ValueError("X, y are too large: their sums of squares overflow float64")
        return self._with_statistics(
            gram,
            gram_low,
            self._num_observations + rows,
            self._nonzero_less_one + nonzero,
            scale,
            history,
        )

    def unlearn(self, X: object, y: object) -> "LinearGaussian":
        """Remove rows that were observed before (exact unlearning).

        Args:
            X: erased inputs, [m, d].
            y: erased targets, [m].

        Returns:
            A new :class:`LinearGaussian` whose posterior is the one on the remaining rows
            (up to the rounding bound of the module docstring). Costs O(m d^2 + d^3),
            whatever the number of rows observed.

        Raises:
            ValueError: more rows than were observed, a column with non-zero values in
                more erased rows than observed rows, or statistics that no data set can
                have after the subtraction, beyond rounding (the erased rows were not
                all observed).
        """
        gram, gram_low, nonzero, rows, scale, largest = self._batch(X, y)
        num = self._num_observations - rows
        if num < 0:
            raise ValueError(
                f"X cannot be unlearned: it has {rows} rows but only "
                f"{self._num_observations} were observed"
            )
        less_one = self._nonzero_less_one - nonzero
        # Negative values are huge unsigned ones: one reduction checks 1 <= count <= num,
        # the common case (other counts are possible only if 0 <= count <= num).
        common = int(np.maximum.reduce(less_one.view(np.uint64))) < num
        if not common and (less_one.min() < -1 or less_one.max() >= num):
            raise ValueError(
                "X, y cannot be unlearned: these rows were not all observed (a column of "
                "[X y] would have non-zero values in "
                + ("fewer than 0 rows)" if less_one.min() < -1 else "more rows than remain)")
            )
        history = self._history + largest
        if history < _SAFE:  # nothing can overflow
            gram, gram_low = _two_sum(self._gram, self._gram_low, gram, gram_low, subtract=True)
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # non-finite entries fail below
                gram, gram_low = _two_sum(
                    self._gram, self._gram_low, gram, gram_low, subtract=True
                )
        scale += self._error_scale
        if history >= _SAFE and not np.isfinite(scale).all():
            raise ValueError("X, y are too large: their sums of squares overflow float64")
        # Usually (more rows than columns, no column all zero) the statistics factorise as
        # they are, which settles the check with one Cholesky factorisation.
        if not (
            common and num > self.dim and lapack.dpotrf(gram, lower=1, clean=0)[1] == 0
        ) and not _is_possible(gram, gram_low, less_one, scale, num, common):
            raise ValueError(
                "X, y cannot be unlearned: the remaining sufficient statistics are not those "
                "of any data set (beyond rounding), so these rows were not all observed"
            )
        # With no rows left, the statistics and their error scale are exactly zero.
        return self._with_statistics(gram, gram_low, num, less_one, scale, history if num else 0.0)

    def _batch(
        self, X: object, y: object
    ) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray, int, np.ndarray, float]:
        """Statistics of a batch, after checking the arguments.

        Returns ``(gram, gram_low, nonzero, rows, scale, largest)``: ``[X y]^T [X y]``
        as a double-double pair (``gram_low`` is None when there is a single block), the
        number of rows with a non-zero entry per column, the number of rows, the batch's
        contribution to ``_error_scale``, and its largest diagonal entry (at least the
        magnitude of every entry). All arrays are new (writable).
        """
        dim = self.dim
        # NaN / inf anywhere in a column makes its diagonal entry of the Gram matrix
        # non-finite, so checking that diagonal replaces an O(n d) scan of the rows.
        if not (type(X) is np.ndarray and X.dtype == np.float64 and X.shape[1:] == (dim,)):
            X = as_float64_array(X, "X", shape=[None, dim], check_finite=False)
        rows = X.shape[0]
        if not (type(y) is np.ndarray and y.dtype == np.float64 and y.shape == (rows,)):
            y = as_float64_array(y, "y", shape=[rows], check_finite=False)
        gram_low = None
        if rows <= _STACK_ROWS:  # one block: one product of the stacked rows
            stacked = np.empty((rows, dim + 1), order="F")  # columns contiguous: fast counts
            stacked[:, :dim] = X
            stacked[:, dim] = y
            gram = stacked.T.dot(stacked)  # (ndarray.dot issues no overflow warnings)
            nonzero = np.add.reduce(stacked != 0.0, axis=0)  # int64
        else:  # blocks of _STACK_ROWS rows, added in double-double; X is not copied
            counts = np.zeros(dim + 1)  # float64: exact for counts below 2**53
            mask, ones = np.empty((_STACK_ROWS, dim)), np.ones(_STACK_ROWS)
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                for start in range(0, rows, _STACK_ROWS):
                    X_block, y_block = X[start : start + _STACK_ROWS], y[start : start + _STACK_ROWS]
                    size = X_block.shape[0]
                    block = np.empty((dim + 1, dim + 1))
                    block[:dim, :dim] = X_block.T @ X_block
                    block[:dim, dim] = block[dim, :dim] = y_block @ X_block
                    block[dim, dim] = y_block @ y_block
                    # Non-zeros per column as a product with ones: faster than count_nonzero.
                    np.not_equal(X_block, 0.0, out=mask[:size])
                    counts[:dim] += ones[:size] @ mask[:size]
                    counts[dim] += np.count_nonzero(y_block)
                    if gram_low is None:
                        gram, gram_low = block, np.zeros_like(block)
                    else:
                        gram, gram_low = _two_sum(gram, gram_low, block, None)
            nonzero = counts.astype(np.int64)
        squares = gram.diagonal()
        largest = float(np.maximum.reduce(squares))  # NaN, inf propagate; cannot overflow
        if not math.isfinite(largest):
            name = "y" if np.isfinite(squares[:dim]).all() else "X"
            raise ValueError(
                f"{name} contains NaN or infinite values, or values whose squares overflow"
            )
        # Rounding bound of the batch's sums: (rows per block) * eps * sum of squares.
        scale = squares * (min(rows, _STACK_ROWS) / _STACK_ROWS)
        return gram, gram_low, nonzero, rows, scale, largest

    def _with_statistics(
        self,
        gram: np.ndarray,
        gram_low: np.ndarray,
        num: int,
        nonzero_less_one: np.ndarray,
        scale: np.ndarray,
        history: float,
    ) -> "LinearGaussian":
        """A copy with the same prior and new statistics (no re-validation of the prior).
        The arrays become the new model's: no one else may hold them."""
        new = object.__new__(LinearGaussian)
        gram.flags.writeable = False  # public through .gram; the others stay private
        new.__dict__.update(self._shared)  # frozen: write the instance dictionary directly
        new.__dict__.update(
            _gram=gram,
            _gram_low=gram_low,
            _num_observations=num,
            _nonzero_less_one=nonzero_less_one,
            _error_scale=scale,
            _history=history,
        )
        return new

    @functools.cached_property
    def _posterior(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior (mean [d], Cholesky factor of the precision [d, d], covariance [d, d])."""
        dim, noise = self.dim, self.noise_variance
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
            gram = self._gram[:dim, :dim] / noise
            precision = self._prior_precision + gram
            shift = self._prior_shift + self._gram[:dim, dim] / noise
            if not (np.isfinite(precision).all() and np.isfinite(shift).all()):
                raise ValueError(
                    "the posterior precision X^T X / noise_variance overflows float64: "
                    "noise_variance is too small for the scale of X and y"
                )
            chol, info = lapack.dpotrf(precision, lower=1, clean=1)
            if info != 0 and self._num_observations > 0:
                # X^T X is within rounding of positive semi-definite (unlearn checked
                # that) but not quite: drop its negative eigenvalues, which are rounding.
                root = np.sqrt(self._error_scale[:dim])
                values, vectors = np.linalg.eigh(gram / np.outer(root, root))
                gram = (vectors * np.maximum(values, 0.0)) @ vectors.T * np.outer(root, root)
                precision = self._prior_precision + gram
                chol, info = lapack.dpotrf(precision, lower=1, clean=1)
            # A pivot within Cholesky's rounding of zero: the precision is singular in
            # float64, and the covariance would be noise in some direction.
            if info != 0 or (
                np.diag(chol) ** 2 <= 2.0 * (dim + 1) * _EPS * np.diag(precision)
            ).any():
                raise NotPositiveDefiniteError(
                    "the posterior precision prior_cov^{-1} + X^T X / noise_variance is "
                    "singular to working precision: the prior precision is too small next "
                    "to the data's statistics (use a smaller prior_cov or a larger "
                    "noise_variance)"
                )
            mean, _ = lapack.dpotrs(chol, shift, lower=1)
            cov, _ = lapack.dpotri(chol, lower=1)
            cov = np.tril(cov) + np.tril(cov, -1).T
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise NotPositiveDefiniteError(
                "the posterior precision is too close to singular: its inverse overflows"
            )
        for array in (mean, chol, cov):
            array.flags.writeable = False
        return mean, chol, cov

    @property
    def posterior_mean(self) -> np.ndarray:
        """Posterior mean of theta, [d] (read-only NumPy array).

        Raises:
            NotPositiveDefiniteError: the posterior precision is singular to working
                precision (a prior covariance far larger than the data's scale).
            ValueError: the posterior precision overflows float64.
        """
        return self._posterior[0]

    @property
    def posterior_covariance(self) -> np.ndarray:
        """Posterior covariance of theta, [d, d] (read-only NumPy array).

        Raises:
            NotPositiveDefiniteError: as :attr:`posterior_mean`.
        """
        return self._posterior[2]

    @functools.cached_property
    def distribution(self) -> tfd.MultivariateNormalTriL:
        """The posterior over theta, a float64 ``tfd.MultivariateNormalTriL`` with event [d].

        Raises:
            NotPositiveDefiniteError: as :attr:`posterior_mean`.
        """
        mean = self._posterior[0]
        # A lower-triangular square root of P^{-1} from the precision P itself (no second
        # factorisation of the covariance): with J the order-reversing permutation and
        # J P J = M M^T, P^{-1} = S S^T for the lower-triangular S = J M^{-T} J.
        reversed_chol, info = lapack.dpotrf(self._precision_matrix()[::-1, ::-1], lower=1, clean=1)
        if info != 0:
            raise NotPositiveDefiniteError("the posterior precision is singular to working precision")
        inverse, info = lapack.dtrtri(reversed_chol, lower=1)
        scale_tril = np.ascontiguousarray(inverse.T[::-1, ::-1])
        if info != 0 or not np.isfinite(scale_tril).all():
            raise NotPositiveDefiniteError("the posterior covariance overflows")
        return tfd.MultivariateNormalTriL(
            loc=tf.constant(mean, tf.float64), scale_tril=tf.constant(scale_tril, tf.float64)
        )

    def _precision_matrix(self) -> np.ndarray:
        """The posterior precision L L^T, [d, d], from its Cholesky factor."""
        chol = self._posterior[1]
        return chol @ chol.T

    def log_marginal_likelihood(self) -> float:
        """Log density of the observed targets given the inputs, log p(y | X), with theta
        integrated out: y ~ N(X prior_mean, X prior_cov X^T + noise_variance I).

        Raises:
            NotPositiveDefiniteError: as :attr:`posterior_mean`.
            ValueError: the posterior, or the result, overflows float64.
        """
        dim, noise, n = self.dim, self.noise_variance, self._num_observations
        mean, chol, _ = self._posterior
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            log_det_ratio = 0.5 * self._prior_log_det - np.sum(np.log(np.diag(chol)))
            shift = self._prior_shift + self._gram[:dim, dim] / noise
            quadratic = (
                self._gram[dim, dim] / noise
                + self.prior_mean @ self._prior_shift
                - mean @ shift
            )
            value = float(
                -0.5 * n * math.log(2.0 * math.pi * noise) + log_det_ratio - 0.5 * quadratic
            )
        if not math.isfinite(value):
            raise ValueError(
                "the log marginal likelihood overflows float64 (noise_variance is too small "
                "for the scale of y)"
            )
        return value



def _is_possible(
    gram: np.ndarray,
    gram_low: np.ndarray,
    nonzero_less_one: np.ndarray,
    scale: np.ndarray,
    num: int,
    common: bool,
) -> bool:
    """Whether ``gram`` can be, up to rounding, the statistics of ``num`` rows whose
    columns have ``nonzero_less_one + 1`` non-zero entries, each between 0 and ``num``
    (``common``: none is 0); snaps exact zeros in place (of ``gram``, ``gram_low`` and
    ``scale``).

    In the coordinates ``gram[j, k] / (r_j r_k)`` with ``r_j = sqrt(scale[j])`` (and
    ``scale = w / _STACK_ROWS``, w as in the module docstring), the rounding error of
    every entry is at most ``_ERROR_FACTOR * eps * _STACK_ROWS``, every diagonal entry
    is at most about ``_STACK_ROWS``, and the exact statistics are positive
    semi-definite with rank at most ``num``. So: a column with
    no non-zero entry must be within the bound of zero (it is then set to exactly zero,
    and its rounding history forgotten); the other columns, shifted by the bound times
    their number (Gershgorin) plus Cholesky's own rounding, must factorise; and when
    there are fewer rows than columns, all but ``num`` eigenvalues must be within the
    bound of zero. (The caller first tries the usual case: more rows than columns, no
    column all zero, and ``gram`` factorises as it is, hence also when shifted.)
    """
    bound = _ERROR_FACTOR * _EPS * _STACK_ROWS  # for the scaling sqrt(scale) used below
    root = np.sqrt(scale)
    if not common:
        empty = nonzero_less_one == -1
        # (written so that NaN fails)
        if not (np.abs(gram[empty]) <= bound * np.outer(root[empty], root)).all():
            return False
        for array in (gram, gram_low):
            array[empty, :] = 0.0
            array[:, empty] = 0.0
        scale[empty] = _SCALE_FLOOR
        active = ~empty
        if not active.any():
            return True
        root = root[active]
        remaining = gram[np.ix_(active, active)]
    else:
        remaining = gram
    size = root.shape[0]
    scaled = remaining / (root[:, None] * root)
    # Diagonal entries of `scaled` are at most about _STACK_ROWS, hence the factor.
    margin = (bound + 2.0 * (size + 1) * _EPS * _STACK_ROWS) * size
    if num < size:  # rank at most num
        values = np.linalg.eigvalsh(scaled)
        if not values[size - num - 1] <= margin:
            return False
    scaled.ravel()[:: size + 1] += margin
    return lapack.dpotrf(scaled, lower=1, clean=0, overwrite_a=1)[1] == 0


def grid_unlearn(log_posterior: object, erased_log_likelihood: object) -> tf.Tensor:
    """Exact unlearning on a grid of parameter values.

    Computes log p(theta | D_r) = log p(theta | D) - log p(D_e | theta) + const at every
    grid point and normalises the result to a probability mass function over the grid
    cells, ``sum(exp(out)) == 1`` (divide by the cell volume for a density). The result
    is exact for the grid: it equals the normalised grid posterior computed from ``D_r``
    alone, up to rounding.

    Args:
        log_posterior: log p(theta | D) on the grid, up to an additive constant, any shape
            ``[...]``. ``-inf`` marks grid points of zero posterior mass (they stay at
            ``-inf``); NaN and ``+inf`` are errors.
        erased_log_likelihood: log p(D_e | theta) on the same grid, same shape, finite.

    Returns:
        The normalised log probabilities of the grid cells under p(theta | D_r), float64
        tensor with the shape of ``log_posterior``.

    Raises:
        ValueError: shapes differ, ``log_posterior`` has NaN / ``+inf`` or no finite entry,
            ``erased_log_likelihood`` has NaN or infinite entries.
    """
    log_posterior = _as_log_density(log_posterior, "log_posterior")
    erased = as_float64_array(erased_log_likelihood, "erased_log_likelihood")
    if erased.shape != log_posterior.shape:
        raise ValueError(
            f"erased_log_likelihood must have the shape of log_posterior "
            f"{list(log_posterior.shape)}, got {list(erased.shape)}"
        )
    unnormalised = log_posterior - erased
    result = unnormalised - special.logsumexp(unnormalised)
    if np.isnan(result).any() or (result == np.inf).any():
        raise ValueError("log_posterior - erased_log_likelihood overflows")
    return tf.constant(result, tf.float64)


def _as_log_density(value: object, name: str) -> np.ndarray:
    """Float64 array of log densities: ``-inf`` allowed, NaN / ``+inf`` not, some finite."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a numeric array, got {type(value).__name__}")
    array = np.asarray(value)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise TypeError(f"{name} must be a real numeric array, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if np.isnan(array).any() or (array == np.inf).any():
        raise ValueError(f"{name} contains NaN or +inf values (use -inf for zero mass)")
    if not np.isfinite(array).any():
        raise ValueError(f"{name} has no finite entry: the posterior has no mass on the grid")
    return array
