"""The Gaussian-mixture model of the Bayesian inference forgetting experiment.

A mixture of ``K`` Gaussians with identity covariance and equal weights 1/K in ``R^D`` whose
unknown centres ``mu_1, ..., mu_K`` have the prior ``N(0, prior_scale^2 I)``; the centres are
stored as one flat vector ``theta = (mu_1, ..., mu_K)`` of length ``K D``. The model is a
user of the generic forgetting interface (:mod:`unlearnkit.bif.per_datum`): it gives the
per-datum :meth:`~GaussianMixtureModel.log_likelihood`, the
:meth:`~GaussianMixtureModel.log_prior`, and, to save automatic differentiation, the
closed-form :meth:`~GaussianMixtureModel.log_likelihood_derivatives`. For the samplers,
:meth:`~GaussianMixtureModel.h` and :meth:`~GaussianMixtureModel.f` are the energies
``h(theta, z) = -log p(z | theta)`` and ``f(theta) = -log p(theta)``, and
``F(theta, S) = sum_{z in S} h(theta, z) + f(theta)`` (:meth:`~GaussianMixtureModel.energy`).

Mixture components are exchangeable (label switching), so results are compared only after
their components are paired up: :func:`match_permutation`, :func:`align_components`, and the
comparisons of a processed result with the retrained one, :func:`compare_samples` and
:func:`compare_beliefs` (centre distances, spreads and the KL divergence epsilon).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import scipy.cluster.vq
import tensorflow as tf
import tensorflow_probability as tfp
from scipy.optimize import linear_sum_assignment

from unlearnkit._validation import (
    as_float64,
    as_gaussian_belief,
    as_positive_scalar,
    check_positive_int,
    ensure_finite,
)
from unlearnkit.errors import DegenerateWeightsError
from unlearnkit.metrics import gaussian_kl, gaussian_moment_kl, knn_kl
from unlearnkit.seeds import Seed, numpy_seed

tfd = tfp.distributions

__all__ = [
    "GaussianMixtureModel",
    "kmeans_centres",
    "match_permutation",
    "match_centres",
    "centre_distance",
    "align_components",
    "Comparison",
    "compare_samples",
    "compare_beliefs",
]


@dataclass(frozen=True)
class GaussianMixtureModel:
    """Equal-weight mixture of unit-covariance Gaussians with unknown centres.

    Args:
        num_components: K, the number of components.
        dim: D, the dimension of a data point.
        prior_scale: standard deviation sigma_0 of the prior N(0, sigma_0^2 I) on every centre.

    Shapes: ``theta [C, K*D]`` (C samples of the flattened centres), ``points [n, D]`` (or
    ``[C, b, D]``: a separate minibatch for every sample).
    """

    num_components: int = 4
    dim: int = 2
    prior_scale: float = 10.0

    def __post_init__(self) -> None:
        check_positive_int(self.num_components, "num_components")
        check_positive_int(self.dim, "dim")
        scale = as_positive_scalar(self.prior_scale, "prior_scale")
        if not 1e-150 <= scale <= 1e150:  # its square, 2 pi times it and logs stay finite
            raise ValueError(f"prior_scale must lie in [1e-150, 1e150], got {scale}")
        object.__setattr__(self, "prior_scale", scale)

    @property
    def num_params(self) -> int:
        """Length K*D of theta."""
        return self.num_components * self.dim

    # ----------------------------------------------------------------- checks
    def check_theta(self, theta: object, name: str = "theta") -> tf.Tensor:
        """``theta`` as a finite float64 ``[C, K*D]`` tensor."""
        return as_float64(theta, name, shape=[None, self.num_params])

    def check_points(self, points: object, name: str = "points") -> tf.Tensor:
        """``points`` as a finite float64 ``[n, D]`` tensor."""
        return as_float64(points, name, shape=[None, self.dim])

    def centres(self, theta: tf.Tensor) -> tf.Tensor:
        """Reshape flat parameters ``[..., K*D]`` into centres ``[..., K, D]``."""
        theta = tf.convert_to_tensor(theta, tf.float64)
        return tf.reshape(theta, tf.concat([tf.shape(theta)[:-1], [self.num_components, self.dim]], 0))

    # ------------------------------------------------------- sampling energies
    # Every method checks shapes; values are checked for NaN / inf only when running
    # eagerly (inside a tf.function, e.g. a sampler's loop, they are not known yet).
    def log_likelihood(self, theta: tf.Tensor, points: tf.Tensor) -> tf.Tensor:
        """log p(z | theta) of every point under every sample.

        Args:
            theta: ``[C, K*D]``.
            points: ``[n, D]`` (the same points for every sample) or ``[C, b, D]``.

        Returns:
            ``[C, n]`` (or ``[C, b]``).
        """
        theta = self.check_theta(theta)
        if not isinstance(points, (tf.Tensor, tf.Variable)):
            points = as_float64(points, "points")
        if points.shape.rank not in (2, 3):
            raise ValueError(f"points must have shape [n, {self.dim}] or [C, b, {self.dim}], "
                             f"got {points.shape.as_list()}")
        points = as_float64(points, "points", shape=[None] * (points.shape.rank - 1) + [self.dim])
        mu = self.centres(theta)[:, None, :, :]  # [C, 1, K, D]
        diff = points[..., None, :] - mu  # [C, n, K, D]
        log_norm = -math.log(self.num_components) - 0.5 * self.dim * math.log(2.0 * math.pi)
        values = tf.reduce_logsumexp(log_norm - 0.5 * tf.reduce_sum(diff**2, -1), axis=-1)
        return _eagerly_finite(values, "log p(z | theta) (theta or points too large)")

    def h(self, theta: tf.Tensor, points: tf.Tensor) -> tf.Tensor:
        """h(theta, z) = -log p(z | theta): ``theta [C, K*D], points [n, D] -> [C, n]``."""
        return -self.log_likelihood(theta, points)

    def f(self, theta: tf.Tensor) -> tf.Tensor:
        """f(theta) = -log p(theta), the negative log prior density: ``[C, K*D] -> [C]``."""
        theta = self.check_theta(theta)
        var = self.prior_scale**2
        values = 0.5 * tf.reduce_sum(theta**2, -1) / var + 0.5 * self.num_params * math.log(
            2.0 * math.pi * var
        )
        return _eagerly_finite(values, "f(theta) (theta too large)")

    def log_prior(self, theta: tf.Tensor) -> tf.Tensor:
        """log p(theta) = -f(theta): ``[C, K*D] -> [C]``."""
        return -self.f(theta)

    def energy(self, theta: tf.Tensor, points: tf.Tensor) -> tf.Tensor:
        """F(theta, S) = sum_i h(theta, z_i) + f(theta), the negative log joint: ``[C]``.

        Args:
            theta: ``[C, K*D]``.
            points: ``[n, D]``, the data set S (may be empty).
        """
        return tf.reduce_sum(self.h(theta, points), -1) + self.f(theta)

    def h_derivatives(self, theta: tf.Tensor, points: tf.Tensor) -> tuple:
        """Gradient and Hessian of sum_i h(theta, z_i) in closed form, for every sample.

        With u_ik = z_i - mu_k and responsibilities r_ik = p(component k | z_i, theta),

            grad_{mu_k} = -sum_i r_ik u_ik,
            hess_{mu_k mu_l} = sum_i [delta_kl r_ik (I - u_ik u_ik^T) + r_ik r_il u_ik u_il^T].

        One pass over the data, instead of K*D reverse passes of automatic differentiation.

        Args:
            theta: ``[C, K*D]``.
            points: ``[n, D]``.

        Returns:
            ``(gradient [C, K*D], hessian [C, K*D, K*D])``.
        """
        theta = self.check_theta(theta)
        points = self.check_points(points)
        num, k, d = tf.shape(theta)[0], self.num_components, self.dim
        u = points[None, :, None, :] - self.centres(theta)[:, None, :, :]  # [C, n, K, D]
        r = tf.nn.softmax(-0.5 * tf.reduce_sum(u**2, -1), axis=-1)  # [C, n, K]
        weighted = r[..., None] * u  # r_ik u_ik, [C, n, K, D]
        gradient = -tf.reshape(tf.reduce_sum(weighted, 1), [num, k * d])
        cross = tf.einsum("cnkd,cnle->ckdle", weighted, weighted)
        own = tf.einsum("cnk,de->ckde", r, tf.eye(d, dtype=tf.float64)) - tf.einsum(
            "cnkd,cnke->ckde", weighted, u
        )
        block_diagonal = own[:, :, :, None, :] * tf.eye(k, dtype=tf.float64)[None, :, None, :, None]
        hessian = tf.reshape(cross + block_diagonal, [num, k * d, k * d])
        return gradient, 0.5 * (hessian + tf.linalg.matrix_transpose(hessian))

    def log_likelihood_derivatives(self, theta: tf.Tensor, points: tf.Tensor) -> tuple:
        """Gradient ``[C, K*D]`` and Hessian ``[C, K*D, K*D]`` of sum_i log p(z_i | theta), closed form.

        The ``log_likelihood_derivatives`` that :func:`unlearnkit.bif.forget_samples` and its
        relatives accept: the negatives of :meth:`h_derivatives`.
        """
        gradient, hessian = self.h_derivatives(theta, points)
        return -gradient, -hessian

    def energy_derivatives(self, theta: tf.Tensor, points: tf.Tensor) -> tuple:
        """Gradient ``[C, K*D]`` and Hessian ``[C, K*D, K*D]`` of F(theta, S), in closed form."""
        gradient, hessian = self.h_derivatives(theta, points)
        precision = 1.0 / self.prior_scale**2
        eye = tf.eye(self.num_params, dtype=tf.float64)
        return gradient + precision * self.check_theta(theta), hessian + precision * eye


def _eagerly_finite(values: tf.Tensor, name: str) -> tf.Tensor:
    """``values``, checked for overflow when running eagerly (a sampler's compiled loop
    checks its states itself)."""
    return ensure_finite(values, name) if tf.executing_eagerly() else values


def kmeans_centres(points: object, num_components: int = 4, *, seed: Seed = 0) -> np.ndarray:
    """Initial centres ``[K, D]``: k-means (``scipy.cluster.vq.kmeans2``, k-means++ seeding).

    Every inference method starts its centres here, in one mode of the (label-switching)
    posterior, so that the chains and the variational fit stay in that mode.

    Args:
        points: ``[n, D]`` the data, with at least ``K`` distinct rows.
        num_components: K.
        seed: seed of the NumPy generator of the k-means++ seeding (None or an int, see
            :func:`unlearnkit.seeds.numpy_seed`).

    Raises:
        ValueError: fewer than ``K`` distinct points.
    """
    x = as_float64(points, "points", ndim=2).numpy()
    check_positive_int(num_components, "num_components")
    seed = numpy_seed(seed)
    if np.unique(x, axis=0).shape[0] < num_components:
        raise ValueError(
            f"points must hold at least num_components={num_components} distinct rows"
        )
    centres, _ = scipy.cluster.vq.kmeans2(
        x, num_components, minit="++", seed=np.random.default_rng(seed)
    )
    return centres


def match_permutation(centres: object, reference: object) -> np.ndarray:
    """The pairing ``[K]`` of components of ``centres [K, D]`` with those of ``reference [K, D]``.

    Mixture components are exchangeable (label switching), so two fits are compared only
    after their components are paired up; the pairing (Hungarian algorithm) minimises the
    total squared distance. ``centres[perm[k]]`` is paired with ``reference[k]``.
    """
    a = as_float64(centres, "centres", ndim=2).numpy()
    b = as_float64(reference, "reference", ndim=2, shape=list(a.shape)).numpy()
    cost = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    _, columns = linear_sum_assignment(cost)
    return columns


def match_centres(centres: object, reference: object) -> np.ndarray:
    """Reorder ``centres [K, D]`` to best match ``reference [K, D]`` (see :func:`match_permutation`).

    Returns:
        A new array ``[K, D]``: row k is the centre paired with ``reference[k]``.
    """
    a = as_float64(centres, "centres", ndim=2).numpy()
    return a[match_permutation(a, reference)]


def centre_distance(centres: object, reference: object) -> float:
    """Root of the total squared distance between matched centres ``[K, D]``."""
    matched = match_centres(centres, reference)
    return float(np.sqrt(((matched - np.asarray(reference, dtype=np.float64)) ** 2).sum()))


def align_components(theta: object, perm: object, dim: int) -> np.ndarray:
    """Reorder the components of flat parameters ``[..., K*D]``: component ``k`` of the result
    is component ``perm[k]`` of ``theta`` (``perm`` from :func:`match_permutation`)."""
    theta = np.asarray(theta, dtype=np.float64)
    perm = np.asarray(perm)
    index = (perm[:, None] * dim + np.arange(dim)[None, :]).reshape(-1)
    return theta[..., index]


class Comparison(NamedTuple):
    """How close a processed result is to the retrained one (components paired up).

    Fields (the tuple's entries, in order; documented here and not as attributes, so that
    the API page lists each once):

    - ``distance_ratio``: distance from the processed centres to the retrained ones over the
      distance from the original centres to the retrained ones (0: perfect, 1: nothing
      forgotten); centres are the sample (or weighted, or variational) means.
    - ``sd_ratio``: ``[K]`` per component, the processed over the retrained standard
      deviation (root mean square over the ``D`` coordinates).
    - ``epsilon``: ``KL[processed || retrained]``: closed form for Gaussian beliefs; for
      samples, between the Gaussians that match each component's mean and covariance (the
      centres are nearly independent a posteriori), ``inf`` when weights leave too few
      samples.
    - ``epsilon_knn``: for samples, the k-nearest-neighbour estimate of the same KL in all
      ``K*D`` dimensions (:func:`unlearnkit.metrics.knn_kl`); ``nan`` otherwise.
    """

    distance_ratio: float
    sd_ratio: np.ndarray
    epsilon: float
    epsilon_knn: float


def _weighted_moments(x: np.ndarray, weights: Optional[np.ndarray]) -> tuple:
    w = np.full(x.shape[0], 1.0 / x.shape[0]) if weights is None else weights / weights.sum()
    mean = w @ x
    return mean, np.sqrt(w @ (x - mean) ** 2)


def _rms(sd: np.ndarray, dim: int) -> np.ndarray:
    return np.sqrt(np.mean(sd.reshape(-1, dim) ** 2, axis=-1))


def compare_samples(
    processed: object,
    retrained: object,
    original: object,
    *,
    dim: int = 2,
    weights: object = None,
) -> Comparison:
    """Compare processed samples ``[C, K*D]`` with retrained samples ``[C', K*D]``.

    The retrained chains may label the components differently: their components are
    paired with the processed ones first (by the sample means). ``original`` ``[C'', K*D]``
    (the samples before forgetting, labelled like ``processed``) sets the scale of the
    distance ratio. ``weights`` ``[C]`` weigh the processed samples (importance reweighting).
    """
    processed = as_float64(processed, "processed", ndim=2).numpy()
    retrained = as_float64(retrained, "retrained", ndim=2).numpy()
    original = as_float64(original, "original", ndim=2).numpy()
    w = None if weights is None else as_float64(weights, "weights", shape=[processed.shape[0]]).numpy()
    mean, sd = _weighted_moments(processed, w)
    k = processed.shape[1] // dim
    perm = match_permutation(retrained.mean(0).reshape(k, dim), mean.reshape(k, dim))
    retrained = align_components(retrained, perm, dim)
    target, target_sd = retrained.mean(0), retrained.std(0)
    ratio = np.linalg.norm(mean - target) / np.linalg.norm(original.mean(0) - target)
    try:
        epsilon = gaussian_moment_kl(processed, retrained, weights_p=w, block_size=dim)
    except DegenerateWeightsError:
        epsilon = math.inf
    epsilon_knn = math.nan if w is not None else knn_kl(processed, retrained)
    return Comparison(float(ratio), _rms(sd, dim) / _rms(target_sd, dim), epsilon, epsilon_knn)


def compare_beliefs(processed: object, retrained: object, original: object, *, dim: int = 2) -> Comparison:
    """Compare Gaussian beliefs over ``theta [K*D]`` (variational fits); epsilon in closed form."""
    processed = as_gaussian_belief(processed, "processed")
    retrained = as_gaussian_belief(retrained, "retrained")
    original = as_gaussian_belief(original, "original")
    mean = processed.mean().numpy()
    k = mean.shape[0] // dim
    perm = match_permutation(retrained.mean().numpy().reshape(k, dim), mean.reshape(k, dim))
    index = (np.asarray(perm)[:, None] * dim + np.arange(dim)[None, :]).reshape(-1)
    covariance = retrained.covariance().numpy()[np.ix_(index, index)]
    aligned = tfd.MultivariateNormalTriL(
        loc=tf.constant(retrained.mean().numpy()[index]),
        scale_tril=tf.constant(np.linalg.cholesky(covariance)),
    )
    target = aligned.mean().numpy()
    ratio = np.linalg.norm(mean - target) / np.linalg.norm(original.mean().numpy() - target)
    sd_ratio = _rms(processed.stddev().numpy(), dim) / _rms(aligned.stddev().numpy(), dim)
    return Comparison(float(ratio), sd_ratio, float(gaussian_kl(processed, aligned)), math.nan)
