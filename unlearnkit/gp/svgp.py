"""Unlearning for GPflow sparse variational Gaussian processes (SVGP).

An SVGP summarises what it learned from the data in its belief q(u) over the M inducing
outputs u = g(Z), the latent function's values at the inducing inputs Z (without the mean
function). With the kernel hyperparameters and Z held fixed, u is a finite-dimensional
parameter, the training objective splits into one term per data point given u, and every
unlearning routine of :mod:`unlearnkit` applies with theta = u:

1. :func:`inducing_posterior` reads q(u) off a trained model as a
   ``tfd.MultivariateNormalTriL`` (for a whitened model it maps the whitened belief back to
   u-space),
2. :func:`erased_log_likelihood` builds the callable ``u [S, M] -> log p(D_e | u) [S]``,
3. :func:`with_inducing_posterior` puts an unlearned belief back into a copy of the model,
   ready for ``predict_f`` / ``predict_y``.

:func:`fit_inducing_posterior` is the baseline they are measured against: retraining q(u)
on the remaining data with everything else held fixed.

Which likelihood of u? Training an SVGP maximises::

    ELBO(q) = Σ_i E_q(u)[ℓ_i(u)] − KL[q(u) ‖ p(u)],   ℓ_i(u) = E_p(f | x_i, u)[log p(y_i | f)],
    p(f | x, u) = N(m(x) + k_u(x)ᵀ K_uu⁻¹ u,  k(x, x) − k_u(x)ᵀ K_uu⁻¹ k_u(x)).

This is the Gaussian variational objective for the posterior ``p(u | D) ∝ p(u) Π_i exp ℓ_i(u)``:
to the SVGP, the likelihood of u from point i is ``exp ℓ_i(u)``, and retraining on D_r
targets ``p(u | D) / Π_{i in D_e} exp ℓ_i(u)``. So :func:`erased_log_likelihood` returns
``Σ_{i in D_e} ℓ_i(u)`` by default (GPflow's ``variational_expectations``); for a Gaussian
likelihood, where ``ℓ_i`` is quadratic in u and q(u | D) is exact, unlearning with it
reproduces retraining exactly. The alternative ``kind="predictive"``,
``log ∫ p(y_i | f) p(f | x_i, u) df`` (GPflow's ``predict_log_density``), is the likelihood
of a model whose latent values are independent given u; it exceeds ``ℓ_i(u)`` by a Jensen
gap that grows with the conditional variance, and is not what the SVGP was trained with.

:func:`conditional_predictive_mean` gives E[y | x, u], which is what Monte Carlo predictives
(such as :func:`unlearnkit.metrics.predictive_probabilities`) average over samples of u.

Only single-output SVGPs (``num_latent_gps == 1``) with a single-output kernel are supported.
"""

from __future__ import annotations

import time
import warnings
from typing import Callable, Tuple, Union

import gpflow
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_float64,
    as_gaussian_belief,
    check_binary_labels,
    check_positive_int,
    check_theta,
    ensure_finite,
)
from unlearnkit.diagnostics import OptimizationInfo
from unlearnkit.errors import ConvergenceWarning

tfd = tfp.distributions

__all__ = [
    "inducing_posterior",
    "erased_log_likelihood",
    "with_inducing_posterior",
    "conditional_predictive_mean",
    "fit_inducing_posterior",
]


def _check_svgp(model: object, name: str = "model") -> gpflow.models.SVGP:
    """Return ``model`` after checking it is a single-output float64 GPflow SVGP."""
    if not isinstance(model, gpflow.models.SVGP):
        raise TypeError(f"{name} must be a gpflow.models.SVGP, got {type(model).__name__}")
    if isinstance(model.kernel, gpflow.kernels.MultioutputKernel) or isinstance(
        model.inducing_variable, gpflow.inducing_variables.MultioutputInducingVariables
    ):
        raise ValueError(f"{name} must use a single-output kernel and inducing variable")
    if model.num_latent_gps != 1 or model.q_mu.shape[-1] != 1:
        raise ValueError(
            f"{name} must have a single latent GP (num_latent_gps == 1), "
            f"got {model.num_latent_gps}"
        )
    if model.q_mu.dtype != tf.float64:
        raise TypeError(f"{name} must use float64 parameters, got {model.q_mu.dtype.name}")
    return model


def _num_inducing(model: gpflow.models.SVGP) -> int:
    return int(model.q_mu.shape[0])


def _kuu_cholesky(model: gpflow.models.SVGP) -> tf.Tensor:
    """Cholesky factor L of K_uu (with GPflow's default jitter, as in its conditionals): [M, M]."""
    kuu = gpflow.covariances.Kuu(
        model.inducing_variable, model.kernel, jitter=gpflow.config.default_jitter()
    )
    return tf.linalg.cholesky(kuu)


def _q_sqrt_matrix(model: gpflow.models.SVGP) -> tf.Tensor:
    """The model's q_sqrt as a lower-triangular [M, M] matrix (a diagonal one if q_diag)."""
    q_sqrt = tf.convert_to_tensor(model.q_sqrt)
    if q_sqrt.shape.rank == 2:  # q_diag: [M, 1] standard deviations
        return tf.linalg.diag(q_sqrt[:, 0])
    return q_sqrt[0]


def inducing_posterior(model: gpflow.models.SVGP) -> tfd.MultivariateNormalTriL:
    """The SVGP's belief q(u) over its inducing outputs, in u-space.

    For a whitened model (``model.whiten``) GPflow stores q(v) = N(m, S), S = q_sqrt q_sqrtᵀ,
    over v with u = L v, L = chol(K_uu); then q(u) = N(L m, L S Lᵀ), with scale L q_sqrt.

    Args:
        model: a trained ``gpflow.models.SVGP`` with one latent GP and M inducing points.
            It is not modified.

    Returns:
        A float64 ``tfd.MultivariateNormalTriL`` with event shape [M].
    """
    model = _check_svgp(model)
    loc = tf.convert_to_tensor(model.q_mu)[:, 0]  # [M]
    scale = _q_sqrt_matrix(model)  # [M, M]
    if model.whiten:
        chol = _kuu_cholesky(model)
        loc = tf.linalg.matvec(chol, loc)
        scale = tf.matmul(chol, scale)  # product of lower-triangular matrices
    loc = ensure_finite(loc, "the inducing posterior's mean")
    scale = ensure_finite(scale, "the inducing posterior's scale")
    return tfd.MultivariateNormalTriL(loc=loc, scale_tril=scale)


def with_inducing_posterior(model: gpflow.models.SVGP, q: object) -> gpflow.models.SVGP:
    """A copy of ``model`` whose belief over the inducing outputs is ``q``.

    The copy shares nothing with ``model`` (``gpflow.utilities.deepcopy``); kernel,
    likelihood, inducing inputs, mean function and trainable flags are the same. For a
    whitened model q(u) = N(m_u, S_u) is stored as q(v) with m_v = L⁻¹ m_u and
    q_sqrt = L⁻¹ scale(q), so that S_v = L⁻¹ S_u L⁻ᵀ. A model built with ``q_diag=True``
    comes back with a full lower-triangular ``q_sqrt``, since an unlearned belief is
    generally correlated.

    Args:
        model: a ``gpflow.models.SVGP`` with one latent GP and M inducing points (unchanged).
        q: a float64 multivariate normal over u, event shape [M].

    Returns:
        A new ``gpflow.models.SVGP``.
    """
    model = _check_svgp(model)
    q = as_gaussian_belief(q, "q")
    num_inducing = _num_inducing(model)
    if q.event_shape.as_list() != [num_inducing]:
        raise ValueError(
            f"q must have event shape [{num_inducing}] (the model's number of inducing "
            f"points), got {q.event_shape.as_list()}"
        )
    loc = tf.convert_to_tensor(q.loc)
    scale = q.scale.to_dense()
    if model.whiten:
        chol = _kuu_cholesky(model)
        loc = tf.linalg.triangular_solve(chol, loc[:, None], lower=True)[:, 0]
        scale = tf.linalg.triangular_solve(chol, scale, lower=True)  # lower-triangular
    new = gpflow.utilities.deepcopy(model)
    new.q_mu.assign(loc[:, None])
    if new.q_sqrt.shape.rank == 2:  # q_diag: replace by a full triangular parameter
        new.q_sqrt = gpflow.Parameter(
            scale[None],
            transform=gpflow.utilities.triangular(),
            trainable=model.q_sqrt.trainable,
            name="q_sqrt",
        )
    else:
        new.q_sqrt.assign(scale[None])
    return new


class _LatentGivenInducing:
    """The conditional p(f(X) | u) = N(m(X) + Aᵀ u, diag(k_ff − diag(K_fu A))), A = K_uu⁻¹ K_uf.

    Computed once for fixed inputs X [n, D] from the model's current hyperparameters.
    """

    def __init__(self, model: gpflow.models.SVGP, X: tf.Tensor) -> None:
        chol = _kuu_cholesky(model)
        kuf = gpflow.covariances.Kuf(model.inducing_variable, model.kernel, X)  # [M, n]
        self.projection = tf.linalg.cholesky_solve(chol, kuf)  # A: [M, n]
        kff = model.kernel(X, full_cov=False)  # [n]
        var = kff - tf.reduce_sum(kuf * self.projection, axis=0)
        self.variance = tf.maximum(var, 0.0)[:, None]  # [n, 1]
        self.prior_mean = tf.convert_to_tensor(model.mean_function(X))  # [n, 1]
        ensure_finite(self.projection, "K_uu⁻¹ K_uf")

    def mean(self, u: tf.Tensor) -> tf.Tensor:
        """u [S, M] -> conditional mean of f(X), [S, n, 1]."""
        return tf.matmul(u, self.projection)[..., None] + self.prior_mean


def _check_inputs(model: gpflow.models.SVGP, X: object, name: str) -> tf.Tensor:
    X = as_float64(X, name, ndim=2)
    if X.shape[0] == 0:
        raise ValueError(f"{name} must contain at least one input")
    Z = getattr(model.inducing_variable, "Z", None)
    if Z is not None and Z.shape[-1] != X.shape[1]:
        raise ValueError(
            f"{name} must have {Z.shape[-1]} columns (the inducing inputs' dimension), "
            f"got shape {X.shape.as_list()}"
        )
    return X


def _check_outputs(
    model: gpflow.models.SVGP, y: object, num_data: int, name: str, inputs_name: str
) -> tf.Tensor:
    """Outputs as float64 [n, 1]; labels in {0, 1} for a Bernoulli likelihood."""
    if isinstance(model.likelihood, gpflow.likelihoods.Bernoulli):
        y = check_binary_labels(y, name)
    else:
        y = as_float64(y, name)
    if y.shape.rank == 1:
        y = y[:, None]
    if y.shape.as_list() != [num_data, 1]:
        raise ValueError(
            f"{name} must have shape [{num_data}] or [{num_data}, 1] to match {inputs_name}, "
            f"got {y.shape.as_list()}"
        )
    return y


def _u_checker(num_inducing: int) -> Callable[[object], tf.Tensor]:
    def check(u: object) -> tf.Tensor:
        return check_theta(u, num_inducing, "u")  # float64 [S, M], finite

    return check


def erased_log_likelihood(
    model: gpflow.models.SVGP, X_e: object, y_e: object, *, kind: str = "variational"
) -> Callable[[tf.Tensor], tf.Tensor]:
    """The log-likelihood of erased data as a function of the inducing outputs u.

    With p(f | x, u) the SVGP's conditional (mean m(x) + k_u(x)ᵀ K_uu⁻¹ u, variance
    k(x, x) − k_u(x)ᵀ K_uu⁻¹ k_u(x)) and the model's own likelihood p(y | f):

    - ``kind="variational"`` (default): ``Σ_i E_p(f | x_i, u)[log p(y_i | f)]``, the term the
      SVGP's ELBO uses (``variational_expectations``), so that dividing q(u | D) by it
      targets the SVGP retrained on the remaining data (see the module docstring);
    - ``kind="predictive"``: ``Σ_i log ∫ p(y_i | f) p(f | x_i, u) df`` (``predict_log_density``).

    Both are in closed form for a Gaussian likelihood, the predictive one also for Bernoulli
    with probit link; otherwise GPflow's Gauss–Hermite quadrature computes them. K_uu⁻¹ K_uf is computed once here, from the model's
    hyperparameters at call time, so each evaluation costs one matmul and the likelihood.

    Args:
        model: a ``gpflow.models.SVGP`` with one latent GP and M inducing points (unchanged).
        X_e: erased inputs, [n, D].
        y_e: erased outputs, [n] or [n, 1]; labels in {0, 1} for a Bernoulli likelihood.
        kind: ``"variational"`` or ``"predictive"``.

    Returns:
        A callable ``u [S, M] -> log p(D_e | u) [S]`` (TensorFlow-traceable, differentiable).
    """
    model = _check_svgp(model)
    if kind not in ("variational", "predictive"):
        raise ValueError(f'kind must be "variational" or "predictive", got {kind!r}')
    X_e = _check_inputs(model, X_e, "X_e")
    y_e = _check_outputs(model, y_e, X_e.shape[0], "y_e", "X_e")
    num_inducing = _num_inducing(model)
    conditional = _LatentGivenInducing(model, X_e)
    likelihood = gpflow.utilities.deepcopy(model.likelihood)  # a snapshot, like the kernel
    per_point = (
        likelihood.variational_expectations
        if kind == "variational"
        else likelihood.predict_log_density
    )
    check_u = _u_checker(num_inducing)

    @tf.function(input_signature=[tf.TensorSpec([None, num_inducing], tf.float64)])
    def _log_likelihood(u: tf.Tensor) -> tf.Tensor:
        values = per_point(X_e, conditional.mean(u), conditional.variance, y_e)  # [S, n]
        return tf.reduce_sum(values, axis=-1)

    def log_likelihood(u: tf.Tensor) -> tf.Tensor:
        return _log_likelihood(check_u(u))

    return log_likelihood


def conditional_predictive_mean(
    model: gpflow.models.SVGP, X: object
) -> Callable[[tf.Tensor], tf.Tensor]:
    """E[y | x, u] at fixed inputs, as a function of the inducing outputs u.

    For a Bernoulli likelihood this is p(y = 1 | x, u). Averaging it over samples of u from a
    belief q(u) gives the Monte Carlo predictive q(y | x) (exactly: the predictive of the
    model returned by :func:`with_inducing_posterior`).

    Args:
        model: a ``gpflow.models.SVGP`` with one latent GP and M inducing points (unchanged).
        X: inputs, [n, D].

    Returns:
        A callable ``u [S, M] -> E[y | x_i, u]  [S, n]``.
    """
    model = _check_svgp(model)
    X = _check_inputs(model, X, "X")
    num_inducing = _num_inducing(model)
    conditional = _LatentGivenInducing(model, X)
    likelihood = gpflow.utilities.deepcopy(model.likelihood)
    check_u = _u_checker(num_inducing)

    @tf.function(input_signature=[tf.TensorSpec([None, num_inducing], tf.float64)])
    def _predictive_mean(u: tf.Tensor) -> tf.Tensor:
        mean, _ = likelihood.predict_mean_and_var(X, conditional.mean(u), conditional.variance)
        return mean[..., 0]

    def predictive_mean(u: tf.Tensor) -> tf.Tensor:
        return _predictive_mean(check_u(u))

    return predictive_mean


def fit_inducing_posterior(
    model: gpflow.models.SVGP,
    X: object,
    y: object,
    *,
    max_iterations: int = 1000,
    return_info: bool = False,
) -> Union[gpflow.models.SVGP, Tuple[gpflow.models.SVGP, OptimizationInfo]]:
    """Retrain only q(u) on the data (X, y): the baseline that unlearning approximates.

    A copy of ``model`` whose q_mu and q_sqrt maximise the ELBO on (X, y), found by
    L-BFGS (``gpflow.optimizers.Scipy``) starting from the model's own q(u). Kernel,
    likelihood, inducing inputs and mean function are held fixed whatever their trainable
    flags, so the result is the exact target of unlearning data from ``model``.

    Args:
        model: a ``gpflow.models.SVGP`` with one latent GP (unchanged).
        X: inputs, [n, D].
        y: outputs, [n] or [n, 1]; labels in {0, 1} for a Bernoulli likelihood.
        max_iterations: L-BFGS iteration cap.
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Returns:
        A new ``gpflow.models.SVGP`` (``num_data`` set to n if the model had it set), and
        the info if requested.

    Warns:
        ConvergenceWarning: L-BFGS stopped before convergence.
    """
    start = time.perf_counter()
    model = _check_svgp(model)
    X = _check_inputs(model, X, "X")
    y = _check_outputs(model, y, X.shape[0], "y", "X")
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    new = gpflow.utilities.deepcopy(model)
    if new.num_data is not None:
        new.num_data = X.shape[0]
    result = gpflow.optimizers.Scipy().minimize(
        new.training_loss_closure((X, y)),
        [new.q_mu.unconstrained_variable, new.q_sqrt.unconstrained_variable],
        options={"maxiter": max_iterations},
    )
    ensure_finite(new.q_mu, "the retrained q_mu")
    ensure_finite(new.q_sqrt, "the retrained q_sqrt")
    if not result.success:
        warnings.warn(
            f"retraining q(u) stopped before convergence after {result.nit} iterations "
            f"({result.message})",
            ConvergenceWarning,
            stacklevel=2,
        )
    info = OptimizationInfo(
        objective=float(result.fun),
        num_iterations=int(result.nit),
        num_evaluations=int(result.nfev),
        converged=bool(result.success),
        message=str(result.message),
        seconds=time.perf_counter() - start,
    )
    return (new, info) if return_info else new
