"""Log-likelihoods that depend on theta only through linear predictors.

The log-likelihood of many models is a sum of one-dimensional functions of linear
predictors of the parameters:

    log p(D | theta) = sum_i h_i(t_i),    t = theta A + b    (A [d, n], b [n]),

for example a generalised linear model (``t_i = x_i^T theta``) or a sparse GP whose
parameters are its inducing outputs (``t_i = k_u(x_i)^T K_uu^{-1} u + m(x_i)``, see
:func:`unlearnkit.gp.erased_log_likelihood`). Under a Gaussian belief
``theta ~ N(m, L L^T)`` every ``t_i`` is Gaussian, ``N(m^T a_i + b_i, ||L^T a_i||^2)``, so

    E_q[log p(D | theta)] = sum_i E_{t ~ N(mu_i, s_i^2)}[h_i(t)]

is a sum of ``n`` one-dimensional integrals, computed by quadrature to many more digits
than a Monte Carlo average over ``d`` dimensions would give. A log-likelihood that offers
this expectation as a method ``gaussian_expectation(loc, scale_tril)`` lets
:func:`unlearnkit.unlearn_eubo` replace sampling by quadrature: exactly at ``lam = 0``, and
as a control variate for ``lam > 0`` (see :mod:`unlearnkit.variational.evidence_upper_bound`).
:class:`LinearPredictorLogLikelihood` builds such a callable from ``A``, ``b`` and ``h``.

The logistic link needs care twice. ``log sigmoid(f)`` must be computed as
``-softplus(-f)``: written as ``log(1 - sigmoid(f))`` it is ``-inf`` for ``f`` above about
37 (``sigmoid`` rounds to 1), and an optimiser that meets such a point stops. And its
Gaussian expectation has no closed form: :func:`expected_log_sigmoid` computes it stably
for any variance, :func:`gauss_hermite_log_sigmoid` with a given number of nodes (the cheap
choice when the variance is small and fixed, as for a sparse GP's conditional variance).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from unlearnkit._validation import as_float64, check_positive_int, check_shape, check_theta

__all__ = [
    "LinearPredictorLogLikelihood",
    "gauss_hermite",
    "log_sigmoid",
    "gauss_hermite_log_sigmoid",
    "expected_log_sigmoid",
    "has_gaussian_expectation",
    "keeps_compiled_graphs",
]

DEFAULT_QUADRATURE_POINTS = 32
_LARGE_VARIANCE = 1.0  # above it, expected_log_sigmoid integrates the kink of log sigmoid apart
_PANELS = ((0.0, 4.0), (4.0, 12.0), (12.0, 40.0))  # where log1p(exp(-a)) > 4e-18
_PANEL_POINTS = 24


def gauss_hermite(num_points: int) -> Tuple[np.ndarray, np.ndarray]:
    """Nodes ``x_k`` and weights ``w_k`` with ``sum_k w_k g(x_k) ~ E_{x ~ N(0, 1)}[g(x)]``.

    Args:
        num_points: number of nodes ``K`` (exact for polynomials of degree ``2K - 1``).

    Returns:
        float64 NumPy arrays ``[K]`` and ``[K]`` (the weights sum to 1).
    """
    nodes, weights = _gauss_hermite(check_positive_int(num_points, "num_points"))
    return nodes.copy(), weights.copy()


@functools.lru_cache(maxsize=64)
def _gauss_hermite(num_points: int) -> Tuple[np.ndarray, np.ndarray]:
    # NumPy's rule costs ~0.4 ms (an eigenproblem); a sparse-GP likelihood asks once per point
    nodes, weights = np.polynomial.hermite.hermgauss(num_points)
    return nodes * math.sqrt(2.0), weights / math.sqrt(math.pi)


@tf.custom_gradient
def _log_sigmoid(f: tf.Tensor):
    e = tf.exp(tf.where(f > 0.0, -f, f))  # e^{-|f|} in (0, 1], with the slope of f at 0
    one_plus = 1.0 + e
    value = tf.minimum(f, 0.0) - tf.math.log(one_plus)

    def gradient(upstream: tf.Tensor) -> tf.Tensor:  # sigmoid(-f), from the same e
        return upstream * tf.where(f > 0.0, e, tf.ones_like(e)) / one_plus

    return value, gradient


def log_sigmoid(f: tf.Tensor) -> tf.Tensor:
    """``log sigmoid(f) = min(f, 0) - log(1 + e^{-|f|})`` elementwise, for any float64 ``f``.

    The values of ``-tf.math.softplus(-f)`` to within 1e-14 (absolute: ``1 + e^{-|f|}`` lies
    in [1, 2], where ``log`` loses no absolute accuracy, so the slow float64 ``log1p`` is not
    needed), and the same first and second derivatives; one exponential serves the value and
    the gradient ``sigmoid(-f)``. With its gradient, about a third cheaper than
    ``softplus``: it is the inner loop of the sparse-GP likelihoods' Monte Carlo terms.

    Args:
        f: float64 tensor of any shape.

    Returns:
        A float64 tensor of that shape, <= 0.
    """
    return _log_sigmoid(tf.convert_to_tensor(f, tf.float64))


def gauss_hermite_log_sigmoid(mean: tf.Tensor, variance: tf.Tensor, num_points: int) -> tf.Tensor:
    """``E[log sigmoid(f)]``, ``f ~ N(mean, variance)``, by ``num_points``-node Gauss-Hermite.

    Stable for any ``f`` (``log sigmoid(f) = -softplus(-f)``). Accurate when the variance is
    small: with 10 nodes the error is below 1e-6 for variances up to 1.2, with 20 nodes
    below 1e-9 up to 1; for larger variances use :func:`expected_log_sigmoid`.

    Args:
        mean: float64 tensor of any shape.
        variance: float64 tensor broadcastable against ``mean``, >= 0.
        num_points: Gauss-Hermite nodes ``K``; 1 gives ``log sigmoid(mean)``.

    Returns:
        A float64 tensor of the broadcast shape.
    """
    mean = tf.convert_to_tensor(mean, tf.float64)
    variance = tf.convert_to_tensor(variance, tf.float64)
    mean, variance = mean + tf.zeros_like(variance), variance + tf.zeros_like(mean)
    if num_points == 1:
        return -tf.math.softplus(-mean)
    nodes, weights = gauss_hermite(num_points)
    f = mean[..., None] + tf.sqrt(variance)[..., None] * tf.constant(nodes, tf.float64)
    return -tf.reduce_sum(tf.math.softplus(-f) * tf.constant(weights, tf.float64), axis=-1)


def _gauss_legendre_panels() -> Tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(_PANEL_POINTS)
    all_nodes, all_weights = [], []
    for low, high in _PANELS:
        half = 0.5 * (high - low)
        all_nodes.append(low + half * (nodes + 1.0))
        all_weights.append(half * weights)
    return np.concatenate(all_nodes), np.concatenate(all_weights)


_LEGENDRE_NODES, _LEGENDRE_WEIGHTS = _gauss_legendre_panels()
# Weights of the bump log(1 + e^{-a}) at the nodes, with the normal density's 1 / sqrt(2 pi).
_BUMP_WEIGHTS = _LEGENDRE_WEIGHTS * np.log1p(np.exp(-_LEGENDRE_NODES)) / math.sqrt(2.0 * math.pi)
_GH_NODES, _GH_WEIGHTS = gauss_hermite(32)


def expected_log_sigmoid(mean: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
    """``E[log sigmoid(f)]``, ``f ~ N(mean, variance)``, to about 1e-10 for any variance.

    Gauss-Hermite quadrature converges slowly for large variances, because ``log sigmoid``
    bends sharply at 0 on the scale of the Gaussian. For variances up to 1 this uses 32
    Gauss-Hermite nodes; above, it splits ``log sigmoid(f) = min(f, 0) - log(1 + e^{-|f|})``:
    the first term's expectation is in closed form,
    ``mean Phi(-mean / s) - s phi(mean / s)``, and the second, a bump of height ``log 2``
    that decays like ``e^{-|f|}``, is integrated against the Gaussian density on
    ``|f| < 40`` by Gauss-Legendre panels. Differentiable in both arguments.

    Args:
        mean: float64 tensor of any shape.
        variance: float64 tensor of the same shape, >= 0.

    Returns:
        A float64 tensor of that shape.
    """
    mean = tf.convert_to_tensor(mean, tf.float64)
    variance = tf.convert_to_tensor(variance, tf.float64)
    # Small variances: Gauss-Hermite.
    f = mean[..., None] + tf.sqrt(tf.minimum(variance, _LARGE_VARIANCE))[..., None] * _GH_NODES
    small = -tf.tensordot(tf.math.softplus(-f), _GH_WEIGHTS, axes=1)
    # Large variances: s >= 1 in every operation below, so neither branch makes NaNs.
    inverse_scale = tf.math.rsqrt(tf.maximum(variance, _LARGE_VARIANCE))
    c = mean * inverse_scale
    negative_part = (0.5 * c * tf.math.erfc(c / math.sqrt(2.0)) - tf.exp(-0.5 * c**2) / math.sqrt(
        2.0 * math.pi
    )) / inverse_scale  # E[min(f, 0)]
    u = inverse_scale[..., None] * _LEGENDRE_NODES  # |f| / s at the nodes
    c_abs = tf.abs(c)[..., None]
    # phi(u - c) + phi(u + c), without overflow: e^{-(u - |c|)^2 / 2} (1 + e^{-2 u |c|}).
    density = tf.exp(-0.5 * (u - c_abs) ** 2) * (1.0 + tf.exp(-2.0 * u * c_abs))
    large = negative_part - inverse_scale * tf.tensordot(density, _BUMP_WEIGHTS, axes=1)
    return tf.where(variance > _LARGE_VARIANCE, large, small)


def has_gaussian_expectation(log_likelihood: object) -> bool:
    """Whether ``log_likelihood`` offers ``gaussian_expectation(loc, scale_tril)``."""
    return callable(getattr(log_likelihood, "gaussian_expectation", None))


def keeps_compiled_graphs(log_likelihood: object) -> bool:
    """Whether graphs compiled for ``log_likelihood`` may be kept across calls.

    Only the package's own linear-predictor likelihoods (immutable once built, such as
    :func:`unlearnkit.gp.erased_log_likelihood`'s) qualify: a user's callable may change in
    place, which a reused graph would not see.
    """
    return isinstance(log_likelihood, LinearPredictorLogLikelihood)


PerPoint = Callable[[tf.Tensor], tf.Tensor]
ExpectedPerPoint = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


class LinearPredictorLogLikelihood:
    """``theta [S, d] -> sum_i h_i(t_i) [S]``, ``t = theta A + b``, with Gaussian expectations.

    Args:
        projection: ``A``, [d, n].
        offset: ``b``, [n].
        per_point: ``t [..., n] -> h_i(t_i) [..., n]`` (TensorFlow code).
        expected_per_point: ``(mean [n], variance [n]) -> E_{t ~ N(mean_i, variance_i)}[h_i(t)]
            [n]`` in closed form or by accurate quadrature; if omitted, Gauss-Hermite
            quadrature of ``per_point`` with ``num_quadrature_points`` nodes.
        num_quadrature_points: nodes of that default quadrature.
        name: names ``theta`` in error messages (for example ``"u"``).
        total: ``theta [S, d] -> sum_i h_i(t_i) [S]`` computed directly (TensorFlow code),
            when that is cheaper than summing ``per_point`` over the predictors; it must
            agree with the sum (to rounding). Default: the sum.

    Calling it checks the shape of ``theta`` (``ValueError`` naming ``name``) and works
    eagerly and inside a ``tf.function``; an eager call runs a compiled graph (traced on the
    first eager call), which is about twice as fast on large batches of samples.
    """

    def __init__(
        self,
        projection: object,
        offset: object,
        per_point: PerPoint,
        expected_per_point: Optional[ExpectedPerPoint] = None,
        *,
        num_quadrature_points: int = DEFAULT_QUADRATURE_POINTS,
        name: str = "theta",
        total: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
    ) -> None:
        self.projection = as_float64(projection, "projection", ndim=2)
        self.offset = as_float64(offset, "offset", shape=[self.projection.shape[1]])
        if not callable(per_point):
            raise TypeError(f"per_point must be callable, got {type(per_point).__name__}")
        if expected_per_point is not None and not callable(expected_per_point):
            raise TypeError(
                f"expected_per_point must be callable or None, got {type(expected_per_point).__name__}"
            )
        if total is not None and not callable(total):
            raise TypeError(f"total must be callable or None, got {type(total).__name__}")
        self.per_point = per_point
        self._expected_per_point = expected_per_point
        self._direct_total = total
        self.num_quadrature_points = check_positive_int(
            num_quadrature_points, "num_quadrature_points"
        )
        self.name = name
        self._compiled: Optional[Callable[[tf.Tensor], tf.Tensor]] = None

    @property
    def dim(self) -> int:
        """``d``, the dimension of ``theta``."""
        return int(self.projection.shape[0])

    @property
    def num_points(self) -> int:
        """``n``, the number of data points (linear predictors)."""
        return int(self.projection.shape[1])

    def _check(self, theta: object) -> tf.Tensor:
        # float64, [S, d], finite: a TypeError for float32 or complex, ValueError for NaN.
        return check_theta(theta, self.dim, self.name)

    def predictors(self, theta: tf.Tensor) -> tf.Tensor:
        """``t = theta A + b``; ``theta [S, d] -> [S, n]``."""
        return tf.matmul(self._check(theta), self.projection) + self.offset

    def per_point_values(self, theta: tf.Tensor) -> tf.Tensor:
        """``h_i(t_i)`` for every sample and point; ``theta [S, d] -> [S, n]``."""
        return self.per_point(self.predictors(theta))

    def _total(self, theta: tf.Tensor) -> tf.Tensor:
        if self._direct_total is not None:
            return self._direct_total(theta)
        return tf.reduce_sum(self.per_point(self.predictors(theta)), axis=-1)

    def __call__(self, theta: tf.Tensor) -> tf.Tensor:
        theta = self._check(theta)
        if not tf.executing_eagerly():  # inside someone's tf.function: trace the operations
            return self._total(theta)
        if self._compiled is None:  # eagerly: one compiled graph, traced on the first call
            self._compiled = tf.function(
                self._total,
                input_signature=[tf.TensorSpec([None, self.dim], tf.float64)],
                autograph=False,
            )
        try:
            return self._compiled(theta)
        except (TypeError, ValueError, NotImplementedError):  # per_point not traceable
            self._compiled = self._total
            return self._total(theta)

    def predictor_moments(self, loc: tf.Tensor, scale_tril: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Mean and variance ``[n]`` of ``t`` when ``theta ~ N(loc, scale_tril scale_tril^T)``."""
        loc = tf.convert_to_tensor(loc, tf.float64)
        scale_tril = tf.convert_to_tensor(scale_tril, tf.float64)
        check_shape(loc.shape.as_list(), "loc", 1, [self.dim])
        check_shape(scale_tril.shape.as_list(), "scale_tril", 2, [self.dim, self.dim])
        mean = tf.linalg.matvec(self.projection, loc, transpose_a=True) + self.offset
        variance = tf.reduce_sum(tf.matmul(scale_tril, self.projection, transpose_a=True) ** 2, axis=0)
        return mean, variance

    def expected_per_point(self, mean: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
        """``E_{t ~ N(mean_i, variance_i)}[h_i(t)]``, ``[n]``."""
        if self._expected_per_point is not None:
            return self._expected_per_point(mean, variance)
        nodes, weights = gauss_hermite(self.num_quadrature_points)
        t = mean[None, :] + tf.sqrt(variance)[None, :] * tf.constant(nodes, tf.float64)[:, None]
        return tf.linalg.matvec(self.per_point(t), tf.constant(weights, tf.float64), transpose_a=True)

    def gaussian_expectation(self, loc: tf.Tensor, scale_tril: tf.Tensor) -> tf.Tensor:
        """``E[log p(D | theta)]`` for ``theta ~ N(loc, scale_tril scale_tril^T)``: a scalar.

        Args:
            loc: ``[d]`` float64.
            scale_tril: ``[d, d]`` float64 (any square root of the covariance).

        Returns:
            A float64 scalar tensor, differentiable in ``loc`` and ``scale_tril``.
        """
        mean, variance = self.predictor_moments(loc, scale_tril)
        return tf.reduce_sum(self.expected_per_point(mean, variance))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.dim}, n={self.num_points})"
