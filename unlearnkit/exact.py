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
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special
from scipy.linalg import lapack

from unlearnkit._validation import as_float64_array, check_positive_number

tfd = tfp.distributions

__all__ = ["BetaBernoulli", "LinearGaussian", "grid_unlearn"]

# Relative slack when checking that subtracted statistics are still statistics of some
# data set: rounding in sums of n products is far below 1e-8 of their scale for any n
# that fits in memory.
_RELATIVE_TOLERANCE = 1e-8
# Up to this many rows, X and y are stacked and multiplied once (cheaper than three products).
_STACK_ROWS = 4096
_PRIOR_FIELDS = (
    "prior_mean",
    "prior_cov",
    "noise_variance",
    "_prior_precision",
    "_prior_shift",
    "_slack_scale",
)


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value}")
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
    subtracts the counts of the erased data.

    Args:
        concentration1: prior pseudo-count of ones (Beta's ``a``), positive.
        concentration0: prior pseudo-count of zeros (Beta's ``b``), positive.
        num_ones: ones observed so far (keyword only; normally left at 0 and grown by
            :meth:`observe`).
        num_zeros: zeros observed so far (keyword only).

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
        log B(a + ones, b + zeros) - log B(a, b)."""
        a, b = self.concentration1, self.concentration0
        return _log_beta(a + self.num_ones, b + self.num_zeros) - _log_beta(a, b)


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _count_binary(x: object, name: str) -> Tuple[int, int]:
    """(number of ones, number of zeros) of a vector of labels in {0, 1}."""
    labels = as_float64_array(x, name, ndim=1)
    ones = int(np.count_nonzero(labels == 1.0))
    zeros = int(np.count_nonzero(labels == 0.0))
    if ones + zeros != labels.shape[0]:
        raise ValueError(f"{name} must contain only the labels 0 and 1")
    return ones, zeros


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
    _gram: np.ndarray = dataclasses.field(init=False, repr=False)
    _num_observations: int = dataclasses.field(init=False, repr=False)
    _prior_precision: np.ndarray = dataclasses.field(init=False, repr=False)
    _prior_shift: np.ndarray = dataclasses.field(init=False, repr=False)
    _slack_scale: np.ndarray = dataclasses.field(init=False, repr=False)

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
        precision, _ = lapack.dpotri(chol, lower=1)  # inverse from the Cholesky factor
        precision = np.tril(precision) + np.tril(precision, -1).T
        noise = check_positive_number(self.noise_variance, "noise_variance")
        values = {
            "prior_mean": _read_only(mean),
            "prior_cov": _read_only(cov),
            "noise_variance": noise,
            "_gram": _read_only(np.zeros((dim + 1, dim + 1))),
            "_num_observations": 0,
            "_prior_precision": _read_only(precision),
            "_prior_shift": _read_only(precision @ mean),
            "_slack_scale": _read_only(1.0 + _RELATIVE_TOLERANCE * np.eye(dim + 1)),
        }
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
        """
        gram = self._gram + self._statistics(X, y)
        return self._with_statistics(gram, self._num_observations + np.shape(X)[0])

    def unlearn(self, X: object, y: object) -> "LinearGaussian":
        """Remove rows that were observed before (exact unlearning).

        Args:
            X: erased inputs, [m, d].
            y: erased targets, [m].

        Returns:
            A new :class:`LinearGaussian` whose posterior is the one on the remaining rows.
            Costs O(m d^2 + d^3), whatever the number of rows observed.

        Raises:
            ValueError: more rows than were observed, or statistics that no data set can
                have after the subtraction (the erased rows were not among the observed).
        """
        statistics = self._statistics(X, y)
        gram = self._gram - statistics
        rows = np.shape(X)[0]
        num = self._num_observations - rows
        if num < 0:
            raise ValueError(
                f"X cannot be unlearned: it has {rows} rows but only "
                f"{self._num_observations} were observed"
            )
        if not self._is_possible(gram, self._gram * self._slack_scale - statistics, num):
            raise ValueError(
                "X, y cannot be unlearned: the remaining sufficient statistics are not those "
                "of any data set, so these rows were not all observed"
            )
        if num == 0:
            gram = np.zeros_like(gram)  # the only statistics of no data
        return self._with_statistics(gram, num)

    def _is_possible(self, gram: np.ndarray, shifted: np.ndarray, num: int) -> bool:
        """Whether ``gram`` can be the statistics of ``num`` rows: a positive semi-definite
        matrix (zero for no rows), up to rounding relative to the statistics it was
        subtracted from; ``shifted`` is ``gram`` plus that slack on its diagonal."""
        if lapack.dpotrf(shifted, lower=1, clean=0, overwrite_a=1)[1] != 0:
            # A zero pivot is legitimate for a column that is zero in every observed row.
            slack = _RELATIVE_TOLERANCE * self._gram.diagonal() + 1e-300
            if lapack.dpotrf(gram + np.diag(slack), lower=1, clean=0, overwrite_a=1)[1] != 0:
                return False
        if num > 0:
            return True
        return bool(np.all(gram.diagonal() <= _RELATIVE_TOLERANCE * self._gram.diagonal()))

    def _statistics(self, X: object, y: object) -> np.ndarray:
        """``[X y]^T [X y]``, [d + 1, d + 1], after checking the arguments."""
        dim = self.dim
        # NaN / inf anywhere in a column makes its diagonal entry of the Gram matrix
        # non-finite, so checking that diagonal replaces an O(n d) scan of the rows.
        X = as_float64_array(X, "X", shape=[None, dim], check_finite=False)
        y = as_float64_array(y, "y", shape=[X.shape[0]], check_finite=False)
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            if X.shape[0] <= _STACK_ROWS:  # few rows: one product of the stacked rows
                stacked = np.empty((X.shape[0], dim + 1))
                stacked[:, :dim] = X
                stacked[:, dim] = y
                gram = stacked.T.dot(stacked)
            else:  # many rows: avoid copying them
                gram = np.empty((dim + 1, dim + 1))
                gram[:dim, :dim] = X.T @ X
                gram[:dim, dim] = gram[dim, :dim] = y @ X
                gram[dim, dim] = y @ y
        if not math.isfinite(gram.trace()):
            name = "y" if np.isfinite(gram.diagonal()[:dim]).all() else "X"
            raise ValueError(
                f"{name} contains NaN or infinite values, or values whose squares overflow"
            )
        return gram

    def _with_statistics(self, gram: np.ndarray, num: int) -> "LinearGaussian":
        """A copy with the same prior and new statistics (no re-validation of the prior)."""
        new = object.__new__(LinearGaussian)
        gram.flags.writeable = False
        mine = self.__dict__  # frozen: write the instance dictionary directly
        new.__dict__.update(
            {name: mine[name] for name in _PRIOR_FIELDS}, _gram=gram, _num_observations=num
        )
        return new

    @functools.cached_property
    def _posterior(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Posterior (mean [d], Cholesky factor of the precision [d, d], covariance [d, d])."""
        dim = self.dim
        precision = self._prior_precision + self._gram[:dim, :dim] / self.noise_variance
        chol, info = lapack.dpotrf(precision, lower=1, clean=1)
        if info != 0:  # pragma: no cover - prevented by the checks in unlearn
            raise ValueError("the posterior precision is not positive definite")
        shift = self._prior_shift + self._gram[:dim, dim] / self.noise_variance
        mean, _ = lapack.dpotrs(chol, shift, lower=1)
        cov, _ = lapack.dpotri(chol, lower=1)
        cov = np.tril(cov) + np.tril(cov, -1).T
        for array in (mean, chol, cov):
            array.flags.writeable = False
        return mean, chol, cov

    @property
    def posterior_mean(self) -> np.ndarray:
        """Posterior mean of theta, [d] (read-only NumPy array)."""
        return self._posterior[0]

    @property
    def posterior_covariance(self) -> np.ndarray:
        """Posterior covariance of theta, [d, d] (read-only NumPy array)."""
        return self._posterior[2]

    @functools.cached_property
    def distribution(self) -> tfd.MultivariateNormalTriL:
        """The posterior over theta, a float64 ``tfd.MultivariateNormalTriL`` with event [d]."""
        mean, _, cov = self._posterior
        scale_tril = np.linalg.cholesky(cov)
        return tfd.MultivariateNormalTriL(
            loc=tf.constant(mean, tf.float64), scale_tril=tf.constant(scale_tril, tf.float64)
        )

    def log_marginal_likelihood(self) -> float:
        """Log density of the observed targets given the inputs, log p(y | X), with theta
        integrated out: y ~ N(X prior_mean, X prior_cov X^T + noise_variance I)."""
        dim, noise, n = self.dim, self.noise_variance, self._num_observations
        mean, chol, _ = self._posterior
        prior_chol = np.linalg.cholesky(self._prior_precision)
        log_det_ratio = np.sum(np.log(np.diag(prior_chol))) - np.sum(np.log(np.diag(chol)))
        shift = self._prior_shift + self._gram[:dim, dim] / noise
        quadratic = (
            self._gram[dim, dim] / noise
            + self.prior_mean @ self._prior_shift
            - mean @ shift
        )
        return float(-0.5 * n * math.log(2.0 * math.pi * noise) + log_det_ratio - 0.5 * quadratic)


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
