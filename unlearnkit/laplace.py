"""The Laplace approximation: a Gaussian at the minimiser of an energy.

At a minimiser ``gamma*`` of an energy ``F`` (the negative log joint density of a model), the
Laplace approximation of the posterior is ``N(gamma*, H^{-1})`` with ``H`` the Hessian of ``F``
at ``gamma*``. It is exact for a Gaussian posterior (Bayesian linear regression). The package
uses it in two places: as the starting belief of Gaussian variational inference, and as the
posterior of a MAP model in influence-function removal.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit import linalg
from unlearnkit._validation import as_float64_vector, ensure_finite
from unlearnkit.derivatives import Energy, energy_hessian

tfd = tfp.distributions

__all__ = ["laplace_approximation"]


def laplace_approximation(energy: Energy, params: object) -> tfd.MultivariateNormalTriL:
    """The Gaussian ``N(params, H^{-1})``, ``H = hess energy(params)``.

    Args:
        energy: ``gamma [d] -> scalar``, the negative log joint density (up to a constant).
        params: ``[d]`` float64, a minimiser of ``energy`` (the Hessian there must be positive
            definite).

    Returns:
        A float64 ``tfd.MultivariateNormalTriL`` over ``[d]``.

    Raises:
        NotPositiveDefiniteError: the Hessian at ``params`` is not positive definite
            (``params`` is not a minimiser).
    """
    params = as_float64_vector(params, "params")
    hessian = energy_hessian(energy, params)
    factor = linalg.cholesky(hessian, "the Hessian of energy at params")
    dim = int(params.shape[0])
    covariance = tf.linalg.cholesky_solve(factor, tf.eye(dim, dtype=tf.float64))
    scale = linalg.cholesky(covariance, "the inverse Hessian")
    return tfd.MultivariateNormalTriL(loc=params, scale_tril=ensure_finite(scale, "the covariance"))
