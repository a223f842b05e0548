"""Energy functions of a Gaussian mixture model, for Bayesian inference forgetting.

BIF writes the quantity an inference method minimises as an *energy*

    F(gamma, S) = sum_{z in S} h(gamma, z) + f(gamma),

so that removing data is subtracting terms: F(gamma, S - S') = F(gamma, S) - sum_{z in S'} h(gamma, z).
This module gives ``h``, ``f`` and ``F`` of one model, a mixture of ``K`` Gaussians with
identity covariance and equal weights 1/K in ``R^D`` whose unknown centres
``mu_1, ..., mu_K`` have the prior ``N(0, prior_scale^2 I)``. The centres are stored as one
flat vector ``theta = (mu_1, ..., mu_K)`` of length ``K D``.

Two readings of the energy, one per kind of inference:

* Sampling (SGLD, SGHMC): gamma is one posterior sample theta, h(theta, z) = -log p(z | theta)
  and f(theta) = -log p(theta). Functions here take a batch of ``C`` samples (chains) at once.
* Stochastic variational inference (SVI): gamma = (m, rho) parameterises the mean-field
  q(theta) = N(m, diag(softplus(rho)^2)); h(gamma, z) = -E_q[log p(z | theta)] estimated with
  *fixed* base noise eps (theta_s = m + softplus(rho) * eps_s), so F is a deterministic,
  smooth function of gamma; f(gamma) = KL(q || prior) in closed form. F is the negative
  evidence lower bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.cluster.vq
import tensorflow as tf
import tensorflow_probability as tfp
from scipy.optimize import linear_sum_assignment

from unlearnkit._validation import (
    as_float64,
    as_positive_scalar,
    check_positive_int,
    ensure_finite,
)
from unlearnkit.seeds import Seed, numpy_seed, sanitize_seed

__all__ = [
    "GaussianMixtureModel",
    "svi_noise",
    "kmeans_centres",
    "match_permutation",
    "match_centres",
    "centre_distance",
]


@dataclass(frozen=True)
class GaussianMixtureModel:
    """Equal-weight mixture of unit-covariance Gaussians with unknown centres.

    Args:
        num_components: K, the number of components.
        dim: D, the dimension of a data point.
        prior_scale: standard deviation sigma_0 of the prior N(0, sigma_0^2 I) on every centre.

    Shapes: ``theta [C, K*D]`` (C samples of the flattened centres), ``points [n, D]`` (or
    ``[C, b, D]``: a separate minibatch for every sample), ``gamma [2*K*D]`` = ``(m, rho)``,
    ``noise [M, K*D]``.
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

    def check_gamma(self, gamma: object, name: str = "gamma") -> tf.Tensor:
        """``gamma`` as a finite float64 ``[2*K*D]`` vector of variational parameters."""
        return as_float64(gamma, name, shape=[2 * self.num_params])

    def check_noise(self, noise: object, name: str = "noise") -> tf.Tensor:
        """``noise`` as a finite float64 ``[M, K*D]`` tensor of base samples, M >= 1."""
        noise = as_float64(noise, name, shape=[None, self.num_params])
        if noise.shape[0] == 0:
            raise ValueError(f"{name} must hold at least one base sample")
        return noise

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

    def energy_derivatives(self, theta: tf.Tensor, points: tf.Tensor) -> tuple:
        """Gradient ``[C, K*D]`` and Hessian ``[C, K*D, K*D]`` of F(theta, S), in closed form."""
        gradient, hessian = self.h_derivatives(theta, points)
        precision = 1.0 / self.prior_scale**2
        eye = tf.eye(self.num_params, dtype=tf.float64)
        return gradient + precision * self.check_theta(theta), hessian + precision * eye

    # ------------------------------------------------------------ SVI energies
    def svi_scales(self, gamma: tf.Tensor) -> tf.Tensor:
        """Standard deviations softplus(rho) of q: ``gamma [..., 2*K*D] -> [..., K*D]``."""
        return tf.math.softplus(gamma[..., self.num_params :])

    def svi_samples(self, gamma: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        """theta_s = m + softplus(rho) * eps_s: ``gamma [2*K*D], noise [M, K*D] -> [M, K*D]``."""
        gamma, noise = self.check_gamma(gamma), self.check_noise(noise)
        return gamma[: self.num_params] + self.svi_scales(gamma) * noise

    def svi_h(self, gamma: tf.Tensor, points: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        """h(gamma, z) = -(1/M) sum_s log p(z | theta_s): ``[n]``."""
        return tf.reduce_mean(self.h(self.svi_samples(gamma, noise), points), axis=0)

    def svi_f(self, gamma: tf.Tensor) -> tf.Tensor:
        """f(gamma) = KL(q_gamma || N(0, sigma_0^2 I)) in closed form: scalar."""
        gamma = self.check_gamma(gamma)
        mean, scale = gamma[: self.num_params], self.svi_scales(gamma)
        ratio = (scale / self.prior_scale) ** 2
        return 0.5 * tf.reduce_sum(ratio + (mean / self.prior_scale) ** 2 - 1.0 - tf.math.log(ratio))

    def svi_energy(self, gamma: tf.Tensor, points: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
        """F(gamma, S) = sum_i h(gamma, z_i) + KL(q_gamma || prior), the negative ELBO: scalar."""
        return tf.reduce_sum(self.svi_h(gamma, points, noise)) + self.svi_f(gamma)

    def svi_h_derivatives(self, gamma: tf.Tensor, points: tf.Tensor, noise: tf.Tensor) -> tuple:
        """Gradient ``[2*K*D]`` and Hessian ``[2*K*D, 2*K*D]`` of sum_i h(gamma, z_i), closed form.

        Chain rule through theta_s = m + s * eps_s, s = softplus(rho), from the per-sample
        derivatives g_s, H_s of :meth:`h_derivatives` (means over the M base samples):

            grad_m = <g_s>,  grad_rho = <g_s * eps_s> s',
            hess_mm = <H_s>,  hess_m,rho = <H_s diag(eps_s)> diag(s'),
            hess_rho,rho = diag(s') <diag(eps_s) H_s diag(eps_s)> diag(s') + diag(<g_s * eps_s> s'').
        """
        gamma, noise = self.check_gamma(gamma), self.check_noise(noise)
        rho = gamma[self.num_params :]
        ds, d2s = tf.math.sigmoid(rho), tf.math.sigmoid(rho) * tf.math.sigmoid(-rho)
        g, hs = self.h_derivatives(self.svi_samples(gamma, noise), points)  # [M, P], [M, P, P]
        g_eps = tf.reduce_mean(g * noise, 0)
        h_mm = tf.reduce_mean(hs, 0)
        h_m_eps = tf.reduce_mean(hs * noise[:, None, :], 0)  # <H_s diag(eps_s)>
        h_eps_eps = tf.reduce_mean(noise[:, :, None] * hs * noise[:, None, :], 0)
        h_mr = h_m_eps * ds[None, :]
        h_rr = ds[:, None] * h_eps_eps * ds[None, :] + tf.linalg.diag(g_eps * d2s)
        gradient = tf.concat([tf.reduce_mean(g, 0), g_eps * ds], 0)
        hessian = tf.concat(
            [tf.concat([h_mm, h_mr], 1), tf.concat([tf.transpose(h_mr), h_rr], 1)], 0
        )
        return gradient, hessian

    def svi_f_derivatives(self, gamma: tf.Tensor) -> tuple:
        """Gradient ``[2*K*D]`` and Hessian ``[2*K*D, 2*K*D]`` of KL(q_gamma || prior), closed form."""
        gamma = self.check_gamma(gamma)
        mean, rho = gamma[: self.num_params], gamma[self.num_params :]
        s, ds = tf.math.softplus(rho), tf.math.sigmoid(rho)
        d2s = ds * tf.math.sigmoid(-rho)
        precision = 1.0 / self.prior_scale**2
        d_s = precision * s - 1.0 / s  # dKL/ds
        d2_s = precision + 1.0 / s**2  # d2KL/ds2
        gradient = tf.concat([precision * mean, d_s * ds], 0)
        diagonal = tf.concat(
            [tf.fill([self.num_params], tf.constant(precision, tf.float64)), d2_s * ds**2 + d_s * d2s], 0
        )
        return gradient, tf.linalg.diag(diagonal)

    def svi_gamma(self, mean: object, scale: object) -> tf.Tensor:
        """Pack a mean ``[K*D]`` and positive standard deviations ``[K*D]`` into gamma ``[2*K*D]``."""
        mean = as_float64(mean, "mean", shape=[self.num_params])
        scale = as_float64(scale, "scale", shape=[self.num_params])
        if not bool(tf.reduce_all(scale > 0.0)):
            raise ValueError("scale must be positive")
        rho = tfp.math.softplus_inverse(scale)
        return tf.concat([mean, rho], 0)


def _eagerly_finite(values: tf.Tensor, name: str) -> tf.Tensor:
    """``values``, checked for overflow when running eagerly (a sampler's compiled loop
    checks its states itself)."""
    return ensure_finite(values, name) if tf.executing_eagerly() else values


def svi_noise(model: GaussianMixtureModel, num_samples: int, *, seed: Seed = None) -> tf.Tensor:
    """Fixed base noise eps ``[M, K*D]`` for the SVI energies (common random numbers).

    The samples come in antithetic pairs (eps, -eps), so their mean is exactly zero. For a
    quadratic log-likelihood the Monte Carlo energy then separates into a part in the means
    m and a part in the scales, as the exact expectation does, instead of coupling them
    through the sample mean of the noise; for the mixture the coupling becomes small. (With
    plain draws, F(., S - S') of the structured removal has negative curvature in rho at
    gamma_S.)

    Args:
        model: the mixture model (sets K*D).
        num_samples: M, an even number of Monte Carlo samples of theta.
        seed: ``None``, an int or a stateless seed; the same seed gives the same noise.
    """
    check_positive_int(num_samples, "num_samples")
    if num_samples % 2:
        raise ValueError(f"num_samples must be even (antithetic pairs), got {num_samples}")
    half = tf.random.stateless_normal(
        [num_samples // 2, model.num_params], seed=sanitize_seed(seed), dtype=tf.float64
    )
    return tf.concat([half, -half], axis=0)


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
