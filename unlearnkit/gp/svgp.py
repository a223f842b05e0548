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
``kind="conditional_mean"``, ``log p(y_i | f = m(x_i) + k_u(x_i)ᵀ K_uu⁻¹ u)``, is the likelihood
of the model whose latent function is the conditional mean (no conditional variance), as in
the reference code of Nguyen et al. (2020); :func:`fit_inducing_posterior` and
:func:`conditional_predictive_mean` take the same ``kind``.

Speed. Each of these likelihoods depends on u only through the linear predictors
``k_u(x_i)ᵀ K_uu⁻¹ u``, so it is a
:class:`~unlearnkit.variational.linear_predictor.LinearPredictorLogLikelihood`: its expectation
under a Gaussian belief is a sum of one-dimensional integrals, which the EUBO uses instead
of sampling. For the logistic link (GPflow's ``Bernoulli(invlink=tf.sigmoid)``) the log
density is computed stably, and each point's integral over f uses only as many
Gauss-Hermite nodes as its conditional variance needs (:data:`LOGISTIC_TOLERANCE`).

:func:`conditional_predictive_mean` gives E[y | x, u], which is what Monte Carlo predictives
(such as :func:`unlearnkit.metrics.predictive_probabilities`) average over samples of u.

Only single-output SVGPs (``num_latent_gps == 1``) with a single-output kernel are supported.
"""

from __future__ import annotations

import functools
import time
import warnings
import weakref
from typing import Callable, Optional, Tuple, TypeVar, Union

import gpflow
import numpy as np
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
from unlearnkit.variational.linear_predictor import (
    LinearPredictorLogLikelihood,
    expected_log_sigmoid,
    gauss_hermite,
    gauss_hermite_log_sigmoid,
    log_sigmoid,
)

tfd = tfp.distributions
_T = TypeVar("_T")

__all__ = [
    "inducing_posterior",
    "erased_log_likelihood",
    "with_inducing_posterior",
    "conditional_predictive_mean",
    "fit_inducing_posterior",
    "is_logistic_bernoulli",
    "logistic_gauss_hermite_points",
    "SVGPLogLikelihood",
    "KINDS",
    "LOGISTIC_TOLERANCE",
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


def _conditional_moments(model: gpflow.models.SVGP, X: tf.Tensor):
    """``(A = K_uu⁻¹ K_uf [M, n], v = k_ff − diag(K_fu A) [n], m(X) [n, 1])``."""
    chol = _kuu_cholesky(model)
    kuf = gpflow.covariances.Kuf(model.inducing_variable, model.kernel, X)  # [M, n]
    projection = tf.linalg.cholesky_solve(chol, kuf)
    kff = model.kernel(X, full_cov=False)  # [n]
    variance = kff - tf.reduce_sum(kuf * projection, axis=0)
    return projection, variance, tf.convert_to_tensor(model.mean_function(X))


def _without_autograph_if_possible(trace: Callable[[bool], _T]) -> _T:
    """``trace(autograph=False)``, or ``trace(autograph=True)`` if the model's code needs it.

    Converting GPflow's source with autograph costs seconds on a process's first trace (about
    a second after), and GPflow's kernels, mean functions, likelihoods and ELBOs need no Python
    control flow on tensors. Code that does cannot be traced without autograph: TensorFlow
    raises ``OperatorNotAllowedInGraphError`` (a ``TypeError``) while tracing, before any
    operation runs, so nothing has been assigned when ``trace`` is called again.
    """
    try:
        return trace(False)
    except TypeError:
        return trace(True)


def _compile_without_autograph(function: Callable, *signature: tf.TensorSpec) -> Callable:
    """``function`` as a ``tf.function`` of ``signature``, traced now (without autograph if
    possible: :func:`_without_autograph_if_possible`)."""

    def trace(autograph: bool) -> Callable:
        compiled = tf.function(function, input_signature=list(signature), autograph=autograph)
        compiled.get_concrete_function()
        return compiled

    return _without_autograph_if_possible(trace)


_COMPILED_CONDITIONALS: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()
""":func:`_conditional_moments` compiled per model, kept while the model lives."""


def _compiled_conditional_moments(model: gpflow.models.SVGP, X: tf.Tensor):
    """:func:`_conditional_moments` as one compiled graph, traced once per model (and input
    dimension) and kept while the model lives: GPflow's eager kernel code costs tens of
    milliseconds, the graph one. The graph reads the model's variables when it runs, so it
    follows ``assign``; the cache key holds the identity of every variable of the model, so
    a replaced kernel, inducing variable or parameter gets a new graph."""
    variables = tuple(id(v) for v in model.variables)
    cache = _COMPILED_CONDITIONALS.setdefault(model, {})
    key = (variables, int(X.shape[1]))
    if key not in cache:
        cache.clear()  # graphs of replaced variables are stale
        reference = weakref.ref(model)
        function = _compile_without_autograph(
            lambda X: _conditional_moments(reference(), X),
            tf.TensorSpec([None, int(X.shape[1])], tf.float64),
        )
        function._omit_frequent_tracing_warning = True  # one trace per model, not retracing
        cache[key] = function
    return cache[key](X)


class _LatentGivenInducing:
    """The conditional p(f(X) | u) = N(m(X) + Aᵀ u, diag(k_ff − diag(K_fu A))), A = K_uu⁻¹ K_uf.

    Computed once for fixed inputs X [n, D] from the model's current hyperparameters (by a
    graph compiled once per model: see :func:`_compiled_conditional_moments`).
    """

    def __init__(self, model: gpflow.models.SVGP, X: tf.Tensor) -> None:
        try:
            projection, var, prior_mean = _compiled_conditional_moments(model, X)
        except (TypeError, ValueError, NotImplementedError):  # a kernel that cannot be traced
            projection, var, prior_mean = _conditional_moments(model, X)
        self.projection = projection  # A: [M, n]
        self.variance = tf.maximum(var, 0.0)[:, None]  # [n, 1]
        self.prior_mean = prior_mean  # [n, 1]
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


LOGISTIC_TOLERANCE = 1e-5
"""Largest error (nats), per point and sample of u, of the Gauss-Hermite rule that
:func:`erased_log_likelihood` picks for a logistic link: far below the Monte Carlo error of
any average over samples of u, and it saves most of the nodes (about four per point on the
moons instead of GPflow's twenty)."""
_CANDIDATE_POINTS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32)
_PREDICTIVE_POINTS = 20
KINDS = ("variational", "predictive", "conditional_mean")


def is_logistic_bernoulli(likelihood: object) -> bool:
    """Whether ``likelihood`` is a GPflow ``Bernoulli`` with the logistic link ``tf.sigmoid``.

    GPflow computes its log density as ``log(1 - sigmoid(f))`` for label 0, which is
    ``-inf`` for ``f`` above about 37; unlearnkit computes it as ``-softplus(f)``.
    """
    return isinstance(likelihood, gpflow.likelihoods.Bernoulli) and likelihood.invlink in (
        tf.math.sigmoid,
        tf.nn.sigmoid,
    )


_DEFAULT_NODE_TABLE = (
    (1, 7.943282347242822e-05),
    (2, 0.02818382931264455),
    (3, 0.1778279410038923),
    (4, 0.39810717055349776),
    (5, 0.6309573444801942),
    (6, 0.8912509381337459),
    (8, 1.5848931924611174),
    (10, 2.2387211385683377),
    (12, 2.818382931264461),
    (16, 3.981071705534969),
    (20, 5.623413251903491),
    (24, 7.079457843841373),
    (32, 10.0),
)
"""``_largest_variances(LOGISTIC_TOLERANCE)``, stored (tests/test_gp.py recomputes it)."""


def _largest_variances(tolerance: float) -> Tuple[Tuple[int, float], ...]:
    """See :func:`_compute_largest_variances`; the default tolerance's table is stored."""
    if tolerance == LOGISTIC_TOLERANCE:
        return _DEFAULT_NODE_TABLE
    return _compute_largest_variances(tolerance)


@functools.lru_cache(maxsize=8)
def _compute_largest_variances(tolerance: float) -> Tuple[Tuple[int, float], ...]:
    """For each candidate number of nodes K, the largest variance (on a log grid) up to which
    K-node Gauss-Hermite integrates ``log sigmoid`` within ``tolerance`` (the error grows
    with the variance). Computed once per tolerance."""
    means = tf.constant(np.linspace(-30.0, 30.0, 241)[:, None], tf.float64)  # [T, 1]
    grid = np.concatenate([[0.0], np.logspace(-8, 2, 201)])
    variance = tf.constant(grid[None, :], tf.float64) + 0.0 * means  # [T, V]
    reference = expected_log_sigmoid(means + 0.0 * variance, variance)
    table = []
    for num_points in _CANDIDATE_POINTS:
        approx = gauss_hermite_log_sigmoid(means, variance, num_points)
        error = tf.reduce_max(tf.abs(approx - reference), axis=0).numpy()
        bad = np.flatnonzero(error > tolerance)
        largest = grid[-1] if bad.size == 0 else (grid[bad[0] - 1] if bad[0] > 0 else -1.0)
        table.append((num_points, float(largest)))
    return tuple(table)


def logistic_gauss_hermite_points(
    variances: object, tolerance: float = LOGISTIC_TOLERANCE
) -> np.ndarray:
    """For each variance, the fewest Gauss-Hermite nodes that integrate ``log sigmoid`` within
    ``tolerance``.

    Checked against :func:`~unlearnkit.variational.linear_predictor.expected_log_sigmoid`
    on means in [-30, 30] and a grid of variances (the variance is rounded up to the grid).
    0 where 32 nodes are not enough (there, use ``expected_log_sigmoid``).

    Args:
        variances: [n] variances >= 0.
        tolerance: largest absolute error allowed.

    Returns:
        An int array [n].
    """
    variances = np.atleast_1d(np.asarray(variances, dtype=np.float64))
    chosen = np.zeros(variances.shape, dtype=int)
    for num_points, largest in _largest_variances(float(tolerance)):
        chosen[(chosen == 0) & (variances <= largest)] = num_points
    return chosen


def _log_sigmoid_expectation(
    signs: tf.Tensor, variance: tf.Tensor, points: np.ndarray, projection: tf.Tensor,
    prior_mean: tf.Tensor,
) -> Tuple[Callable[[tf.Tensor], tf.Tensor], Callable[[tf.Tensor], tf.Tensor]]:
    """``per_point``: ``t [..., n] -> E_{f ~ N(t_i, v_i)}[log sigmoid(s_i f)] [..., n]``, point
    i with ``points[i]`` Gauss-Hermite nodes (0: :func:`expected_log_sigmoid`); and ``total``:
    ``u [S, M] -> [S]``, the sum over the points at ``t = u A + b``.

    All nodes of all points are laid out side by side: ``f_j = s_{p(j)} t_{p(j)} +
    s_{p(j)} sqrt(v_{p(j)}) x_j`` for node j of point p(j). In ``per_point`` one matrix
    product spreads the predictors over the nodes and another sums the weighted values back
    into points (with a few dozen points, products are cheaper than a gather and its
    gradient). ``total`` folds the projection into the nodes, ``f = u (A_{:, p} s_p) +
    (s_p b_p + s_p sqrt(v_p) x)``: one ``[S, M] x [M, nodes]`` product and a weighted sum over
    the nodes instead of three products through the ``[S, n]`` predictors (half the time for
    20 erased points). A handful of operations whatever the mix of node counts (cheap to
    trace).
    """
    signs_np, variance_np = signs.numpy(), variance.numpy()
    A, b = projection.numpy(), prior_mean.numpy()
    owner, offset, weight = [], [], []
    for i, num_points in enumerate(points):
        if num_points == 0:
            continue
        nodes, weights = gauss_hermite(int(num_points))
        owner += [i] * len(nodes)
        offset += list(signs_np[i] * np.sqrt(variance_np[i]) * nodes)
        weight += list(weights)
    owner, offset, weight = np.array(owner, dtype=np.int64), np.array(offset), np.array(weight)
    columns = np.arange(len(owner))
    spreading = np.zeros((len(points), len(owner)))
    spreading[owner, columns] = signs_np[owner]  # [n, nodes]: the signed predictor of each node
    summing = np.zeros((len(owner), len(points)))
    summing[columns, owner] = weight  # [nodes, n]
    node_offset = tf.constant(offset)
    spreading, summing = tf.constant(spreading), tf.constant(summing)
    node_projection = tf.constant(A[:, owner] * signs_np[owner])  # [M, nodes]
    folded_offset = tf.constant(b[owner] * signs_np[owner] + offset)  # [nodes]
    node_weight = tf.constant(weight)  # [nodes]
    exact = np.flatnonzero(points == 0)  # points whose variance needs the accurate rule
    exact_sum = np.zeros((len(exact), len(points)))
    exact_sum[np.arange(len(exact)), exact] = 1.0
    exact_sum = tf.constant(exact_sum)
    exact_signs, exact_variance = tf.gather(signs, exact), tf.gather(variance, exact)
    exact_projection = tf.constant(A[:, exact] * signs_np[exact])  # [M, n_exact]
    exact_offset = tf.constant(b[exact] * signs_np[exact])

    def per_point(t: tf.Tensor) -> tf.Tensor:
        values = 0.0
        if len(owner):
            f = tf.tensordot(t, spreading, axes=1) + node_offset  # [..., nodes], signed
            values = tf.tensordot(log_sigmoid(f), summing, axes=1)
        if len(exact):
            signed = exact_signs * tf.gather(t, exact, axis=-1)
            values += tf.tensordot(expected_log_sigmoid(signed, exact_variance + 0.0 * signed), exact_sum, axes=1)
        return values

    def total(u: tf.Tensor) -> tf.Tensor:
        values = tf.zeros_like(u[:, 0])
        if len(owner):
            f = tf.matmul(u, node_projection) + folded_offset  # [S, nodes], signed
            values += tf.linalg.matvec(log_sigmoid(f), node_weight)
        if len(exact):
            signed = tf.matmul(u, exact_projection) + exact_offset  # [S, n_exact]
            values += tf.reduce_sum(expected_log_sigmoid(signed, exact_variance + 0.0 * signed), axis=-1)
        return values

    return per_point, total


class SVGPLogLikelihood(LinearPredictorLogLikelihood):
    """The log-likelihood of data (X, y) as a function of an SVGP's inducing outputs u.

    ``u [S, M] -> [S]``, built by :func:`erased_log_likelihood`; a
    :class:`~unlearnkit.variational.linear_predictor.LinearPredictorLogLikelihood` with
    ``A = K_uu^{-1} K_uf`` and ``b = m(X)``, so that its expectation under a Gaussian belief
    (:meth:`gaussian_expectation`) is a sum of one-dimensional integrals.

    Attributes:
        kind: ``"variational"``, ``"predictive"`` or ``"conditional_mean"``.
        conditional_variance: ``k(x, x) - k_u(x)^T K_uu^{-1} k_u(x)`` at the inputs, [n].
        quadrature_points_per_sample: [n] ints, the Gauss-Hermite nodes of each point, for
            the variational kind with a logistic link; 0 where the accurate
            :func:`~unlearnkit.variational.linear_predictor.expected_log_sigmoid` is used,
            GPflow's own quadrature or closed form is used, or no integral is needed.
    """

    def __init__(self, projection, offset, per_point, expected_per_point, *, kind,
                 conditional_variance, num_quadrature_points, total=None) -> None:
        super().__init__(projection, offset, per_point, expected_per_point, name="u", total=total)
        self.kind = kind
        self.conditional_variance = conditional_variance
        self.quadrature_points_per_sample = num_quadrature_points

    def __repr__(self) -> str:
        return f"SVGPLogLikelihood(kind={self.kind!r}, M={self.dim}, n={self.num_points})"


def _logistic_functions(signs, variance, kind, num_points, conditional):
    """per_point(t [..., n]), expected_per_point(mean [n], var [n]) and the direct total
    (``None``: the sum of per_point) for a logistic link.

    ``num_points``: Gauss-Hermite nodes of the variational kind, one per point ([n] ints);
    ``conditional``: the points' :class:`_LatentGivenInducing`.
    """
    if kind == "conditional_mean":
        per_point = lambda t: log_sigmoid(signs * t)  # noqa: E731
        expected = lambda mean, var: expected_log_sigmoid(signs * mean, var)  # noqa: E731
        return per_point, expected, None
    if kind == "variational":
        per_point, total = _log_sigmoid_expectation(
            signs, variance, num_points, conditional.projection, conditional.prior_mean[:, 0])
        expected = lambda mean, var: expected_log_sigmoid(signs * mean, var + variance)  # noqa: E731
        return per_point, expected, total
    nodes, weights = gauss_hermite(_PREDICTIVE_POINTS)  # predictive: log E sigmoid(s f)

    def per_point(t):
        f = t[..., None] + tf.sqrt(variance)[..., None] * tf.constant(nodes, tf.float64)
        log_terms = -tf.math.softplus(-signs[..., None] * f) + tf.constant(np.log(weights), tf.float64)
        return tf.reduce_logsumexp(log_terms, axis=-1)

    return per_point, None, None


def _gpflow_functions(likelihood, X, y, variance, kind):
    """per_point and expected_per_point from the GPflow likelihood's own methods."""
    var = variance[:, None]  # [n, 1]

    def per_point(t):
        F = t[..., None]
        if kind == "variational":
            return likelihood.variational_expectations(X, F, var + 0.0 * F, y)
        if kind == "predictive":
            return likelihood.predict_log_density(X, F, var + 0.0 * F, y)
        return likelihood.log_prob(X, F, y + 0.0 * F)

    if kind == "predictive":
        return per_point, None

    def expected(mean, var_t):
        extra = var if kind == "variational" else 0.0
        return likelihood.variational_expectations(X, mean[:, None], var_t[:, None] + extra, y)

    return per_point, expected


def erased_log_likelihood(
    model: gpflow.models.SVGP,
    X_e: object,
    y_e: object,
    *,
    kind: str = "variational",
    num_quadrature_points: Optional[int] = None,
) -> SVGPLogLikelihood:
    """The log-likelihood of erased data as a function of the inducing outputs u.

    With p(f | x, u) the SVGP's conditional (mean m(x) + k_u(x)ᵀ K_uu⁻¹ u, variance
    v(x) = k(x, x) − k_u(x)ᵀ K_uu⁻¹ k_u(x)) and the model's own likelihood p(y | f):

    - ``kind="variational"`` (default): ``Σ_i E_p(f | x_i, u)[log p(y_i | f)]``, the term the
      SVGP's ELBO uses (``variational_expectations``), so that dividing q(u | D) by it
      targets the SVGP retrained on the remaining data (see the module docstring);
    - ``kind="predictive"``: ``Σ_i log ∫ p(y_i | f) p(f | x_i, u) df`` (``predict_log_density``);
    - ``kind="conditional_mean"``: ``Σ_i log p(y_i | f = E[f | x_i, u])``, the likelihood of
      a model whose latent function is the conditional mean, with no conditional variance
      (the model of the reference code of Nguyen et al., 2020).

    K_uu⁻¹ K_uf is computed once here, from the model's hyperparameters at call time, so
    each evaluation costs one matmul and the likelihood. For a Bernoulli likelihood with
    the logistic link (``Bernoulli(invlink=tf.sigmoid)``) everything is computed stably
    (``log sigmoid(f) = -softplus(-f)``; GPflow's own ``log(1 - sigmoid(f))`` is ``-inf``
    for f above about 37), and the variational kind integrates over f with the fewest
    Gauss-Hermite nodes that keep the error below :data:`LOGISTIC_TOLERANCE` at each point's
    conditional variance (points that need the same number are computed together). Other
    likelihoods use GPflow's methods.

    The result also has ``gaussian_expectation(loc, scale_tril)``: the expected
    log-likelihood under a Gaussian belief over u, a sum of one-dimensional integrals (for
    the variational kind the SVGP's own expected log-likelihood, in closed form or by
    accurate quadrature), which :func:`unlearnkit.unlearn_eubo` uses instead of sampling.

    Args:
        model: a ``gpflow.models.SVGP`` with one latent GP and M inducing points (unchanged).
        X_e: erased inputs, [n, D].
        y_e: erased outputs, [n] or [n, 1]; labels in {0, 1} for a Bernoulli likelihood.
        kind: ``"variational"``, ``"predictive"`` or ``"conditional_mean"``.
        num_quadrature_points: Gauss-Hermite nodes per point and sample for the logistic
            link's variational kind; ``None`` chooses them point by point as described above.

    Returns:
        An :class:`SVGPLogLikelihood`: a callable ``u [S, M] -> log p(D_e | u) [S]``
        (TensorFlow code, traceable and differentiable).
    """
    model = _check_svgp(model)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    if num_quadrature_points is not None:
        num_quadrature_points = check_positive_int(num_quadrature_points, "num_quadrature_points")
    X_e = _check_inputs(model, X_e, "X_e")
    y_e = _check_outputs(model, y_e, X_e.shape[0], "y_e", "X_e")
    conditional = _LatentGivenInducing(model, X_e)
    variance = conditional.variance[:, 0]  # [n]
    likelihood = gpflow.utilities.deepcopy(model.likelihood)  # a snapshot, like the kernel
    points = np.zeros(X_e.shape[0], dtype=int)
    if is_logistic_bernoulli(likelihood):
        if kind == "variational":
            points = (
                logistic_gauss_hermite_points(variance.numpy())
                if num_quadrature_points is None
                else np.full(X_e.shape[0], num_quadrature_points)
            )
        signs = 2.0 * y_e[:, 0] - 1.0
        per_point, expected, total = _logistic_functions(signs, variance, kind, points, conditional)
    else:
        per_point, expected = _gpflow_functions(likelihood, X_e, y_e, variance, kind)
        total = None  # the sum of per_point over the points
    return SVGPLogLikelihood(
        conditional.projection,
        conditional.prior_mean[:, 0],
        per_point,
        expected,
        kind=kind,
        conditional_variance=variance,
        num_quadrature_points=points,
        total=total,
    )


def conditional_predictive_mean(
    model: gpflow.models.SVGP, X: object, *, kind: str = "variational"
) -> Callable[[tf.Tensor], tf.Tensor]:
    """E[y | x, u] at fixed inputs, as a function of the inducing outputs u.

    For a Bernoulli likelihood this is p(y = 1 | x, u). Averaging it over samples of u from a
    belief q(u) gives the Monte Carlo predictive q(y | x) (exactly: the predictive of the
    model returned by :func:`with_inducing_posterior`).

    Args:
        model: a ``gpflow.models.SVGP`` with one latent GP and M inducing points (unchanged).
        X: inputs, [n, D].
        kind: ``"variational"`` or ``"predictive"`` (the SVGP's model: f given u has the
            conditional variance, ``E[y | x, u] = ∫ E[y | f] p(f | x, u) df``), or
            ``"conditional_mean"`` (``E[y | f = E[f | x, u]]``, the model of
            ``erased_log_likelihood(..., kind="conditional_mean")``).

    Returns:
        A callable ``u [S, M] -> E[y | x_i, u]  [S, n]``.
    """
    model = _check_svgp(model)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    X = _check_inputs(model, X, "X")
    num_inducing = _num_inducing(model)
    conditional = _LatentGivenInducing(model, X)
    variance = conditional.variance if kind != "conditional_mean" else 0.0 * conditional.variance
    likelihood = gpflow.utilities.deepcopy(model.likelihood)
    check_u = _u_checker(num_inducing)

    bernoulli = isinstance(likelihood, gpflow.likelihoods.Bernoulli)

    def _mean(u: tf.Tensor) -> tf.Tensor:
        mean, _ = likelihood.predict_mean_and_var(X, conditional.mean(u), variance)
        if bernoulli:  # quadrature weights sum to 1 only up to rounding: keep p in [0, 1]
            mean = tf.clip_by_value(mean, 0.0, 1.0)
        return mean[..., 0]

    _predictive_mean = _compile_without_autograph(_mean, tf.TensorSpec([None, num_inducing], tf.float64))

    def predictive_mean(u: tf.Tensor) -> tf.Tensor:
        return _predictive_mean(check_u(u))

    return predictive_mean


class _StableLogisticBernoulli(gpflow.likelihoods.Bernoulli):
    """GPflow's ``Bernoulli(invlink=tf.sigmoid)`` with ``log p(y | f) = log sigmoid((2y - 1) f)``
    computed by :func:`~unlearnkit.variational.linear_predictor.log_sigmoid`.

    Mathematically the same likelihood; GPflow's own log density, ``log(1 - sigmoid(f))``
    for label 0, is ``-inf`` (and its gradient NaN) for f above about 37.
    """

    def __init__(self) -> None:
        super().__init__(invlink=tf.sigmoid)

    def _scalar_log_prob(self, X: tf.Tensor, F: tf.Tensor, Y: tf.Tensor) -> tf.Tensor:
        return log_sigmoid((2.0 * Y - 1.0) * F)


def _conditional_mean_loss(model: gpflow.models.SVGP, X: tf.Tensor, y: tf.Tensor) -> Callable:
    """Negative ELBO of the conditional-mean model: f(x) = E[f | x, u], no conditional variance."""
    conditional_variance = _LatentGivenInducing(model, X).variance  # [n, 1], fixed hyperparameters
    likelihood = model.likelihood
    signs = 2.0 * y - 1.0

    def loss() -> tf.Tensor:
        mean, variance = model.predict_f(X)  # includes the conditional variance: remove it
        variance = tf.maximum(variance - conditional_variance, 0.0)
        if is_logistic_bernoulli(likelihood):
            expected = expected_log_sigmoid(signs * mean, variance)
        else:
            expected = likelihood.variational_expectations(X, mean, variance, y)
        return model.prior_kl() - tf.reduce_sum(expected)

    return loss


def _minimize_scipy(loss: Callable[[], tf.Tensor], variables: list, max_iterations: int):
    """``gpflow.optimizers.Scipy().minimize``, its loss and gradient compiled without autograph
    if possible (:func:`_without_autograph_if_possible`; L-BFGS's first call traces them)."""
    return _without_autograph_if_possible(
        lambda autograph: gpflow.optimizers.Scipy().minimize(
            loss, variables, options={"maxiter": max_iterations}, tf_fun_args={"autograph": autograph}
        )
    )


def fit_inducing_posterior(
    model: gpflow.models.SVGP,
    X: object,
    y: object,
    *,
    kind: str = "variational",
    max_iterations: int = 1000,
    return_info: bool = False,
) -> Union[gpflow.models.SVGP, Tuple[gpflow.models.SVGP, OptimizationInfo]]:
    """Retrain only q(u) on the data (X, y): the baseline that unlearning approximates.

    A copy of ``model`` whose q_mu and q_sqrt maximise the ELBO on (X, y), found by
    L-BFGS (``gpflow.optimizers.Scipy``) starting from the model's own q(u). Kernel,
    likelihood, inducing inputs and mean function are held fixed whatever their trainable
    flags, so the result is the exact target of unlearning data from ``model``.

    For ``Bernoulli(invlink=tf.sigmoid)`` the ELBO is evaluated with a stable log density
    (``-softplus``): GPflow's own is ``-inf`` for f above about 37 (its Gauss-Hermite nodes
    reach such values when q(u) is far out), where L-BFGS would see an infinite loss and a
    NaN gradient. The returned model keeps the likelihood object it was given.

    Args:
        model: a ``gpflow.models.SVGP`` with one latent GP (unchanged).
        X: inputs, [n, D].
        y: outputs, [n] or [n, 1]; labels in {0, 1} for a Bernoulli likelihood.
        kind: ``"variational"``: the SVGP's ELBO (``model.elbo``), whose likelihood term is
            ``erased_log_likelihood``'s default kind; ``"conditional_mean"``: the ELBO of the
            model with ``f(x) = E[f | x, u]`` (no conditional variance), matching
            ``erased_log_likelihood(..., kind="conditional_mean")``.
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
    if kind not in ("variational", "conditional_mean"):
        raise ValueError(f'kind must be "variational" or "conditional_mean", got {kind!r}')
    X = _check_inputs(model, X, "X")
    y = _check_outputs(model, y, X.shape[0], "y", "X")
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    new = gpflow.utilities.deepcopy(model)
    if new.num_data is not None:
        new.num_data = X.shape[0]
    own_likelihood = new.likelihood
    if is_logistic_bernoulli(own_likelihood):
        new.likelihood = _StableLogisticBernoulli()
    if kind == "variational":
        loss = new.training_loss_closure((X, y), compile=False)
    else:
        loss = _conditional_mean_loss(new, X, y)
    try:
        result = _minimize_scipy(
            loss, [new.q_mu.unconstrained_variable, new.q_sqrt.unconstrained_variable], max_iterations
        )
    finally:
        new.likelihood = own_likelihood
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
