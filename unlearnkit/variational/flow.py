"""Unlearning with normalising-flow beliefs: a masked autoregressive flow (MAF).

The Gaussian family cannot describe a skewed or curved posterior. A masked autoregressive
flow (Papamakarios et al., 2017) can: ``theta = loc + L T_K(P T_{K-1}(... T_1(z)))`` with
``z ~ N(0, I)``, ``P`` the reversal permutation, and each ``T_k`` an autoregressive affine map
``y_i = x_i exp(s_i(y_<i)) + m_i(y_<i)`` whose shift ``m`` and log-scale ``s`` come from a
MADE network (masked dense layers; Germain et al., 2015). The belief is a TFP
``tfd.TransformedDistribution`` (float64); its parameters are one flat ``tf.Variable``. The
networks' output layers start at zero, so a new flow is exactly the Gaussian
``N(loc, L L^T)`` it is built from, and every fit below starts from a belief, not from noise.

Its density is exact, but its moments and its mode are not available in closed form, so the
unlearning objectives of :mod:`~unlearnkit.variational.evidence_upper_bound` and
:mod:`~unlearnkit.variational.reverse_kl` are estimated by sampling:

- **The EUBO** (:func:`unlearn_eubo_flow`): with fixed base samples ``z_s`` (common random
  numbers), ``theta_s = T_phi(z_s)`` and

      U~(phi) = mean_s [log p_adj(D_e | theta_s; lam) + log q_phi(theta_s) - log q(theta_s | D)],

  a deterministic function of the flow's parameters ``phi``, minimised by L-BFGS
  (:func:`unlearnkit.optimize.minimize_lbfgs`) from ``q(theta | D)`` itself.
- **The reverse KL** (:func:`unlearn_reverse_kl_flow`): ``KL[p~_adj || q_phi]`` is, up to a
  constant, ``-E_{p~_adj}[log q_phi(theta)]``. With samples ``theta_s`` of a proposal and
  self-normalised importance weights ``w_s ∝ q(theta_s | D) / (p_adj(D_e | theta_s) proposal(theta_s))``
  it becomes a weighted maximum-likelihood fit, ``max_phi sum_s w_s log q_phi(theta_s)``,
  again by L-BFGS on the fixed weighted sample. For a Gaussian family its maximiser is the
  weighted moment match of :func:`~unlearnkit.variational.reverse_kl.unlearn_reverse_kl`.

**The adjusted likelihood for a flow.** The trusted region is, as for a Gaussian, where
``q(theta | D) > lam * max q(theta | D)``. The flow's maximum is found numerically (the best
of a few thousand samples, then L-BFGS on ``-log q``). Writing
``m(theta)^2 = 2 (log max q - log q(theta))`` (for a Gaussian: the squared Mahalanobis
distance), the region is ``m^2 < -2 ln lam``, and the smooth step used during the EUBO's
optimisation is the Gaussian one, ``sigmoid((1 - m / r) / width)``.

:func:`fit_flow_vi` fits a flow to a posterior by maximising the ELBO with the same common
random numbers; it gives ``q(theta | D)`` and the retrained ``q(theta | D_r)``.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_gaussian_belief,
    check_callable,
    check_differentiable,
    check_log_likelihood_values,
    check_nonnegative_number,
    check_positive_int,
    check_theta,
    check_unit_interval,
    ensure_finite,
)
from unlearnkit.diagnostics import ImportanceInfo, OptimizationInfo
from unlearnkit.errors import ConvergenceWarning, DegenerateWeightsError
from unlearnkit.likelihoods import LogLikelihood
from unlearnkit.linalg import check_tolerance
from unlearnkit.optimize import minimize_lbfgs
from unlearnkit.seeds import Seed, sanitize_seed, split_seed
from unlearnkit.variational.adjusted import (
    adjusted_region_radius_squared,
    smooth_region_weight,
)
from unlearnkit.variational.reverse_kl import importance_ess

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "make_maf_belief",
    "is_maf_belief",
    "fit_flow_vi",
    "flow_eubo",
    "unlearn_eubo_flow",
    "unlearn_eubo_flow_grid",
    "unlearn_reverse_kl_flow",
    "flow_mode_log_prob",
    "DEFAULT_HIDDEN_UNITS",
    "DEFAULT_NUM_BIJECTORS",
]

DEFAULT_HIDDEN_UNITS = (16,)
DEFAULT_NUM_BIJECTORS = 2
DEFAULT_NUM_SAMPLES = 1_000
"""Base samples of the ELBO and the EUBO (each objective evaluation runs the flow's ``d``
sequential passes on them)."""
DEFAULT_NUM_SAMPLES_REVERSE = 5_000
DEFAULT_BOUNDARY_SMOOTHING = 0.02
_MODE_SAMPLES = 4_096


class _MAFNetwork(tf.Module):
    """The parameters of a MAF belief and the pure functions that use them.

    ``params`` is one flat float64 vector: ``loc [d]``, the packed lower-triangular scale
    ``[d (d + 1) / 2]`` (diagonal through ``exp``), then for each bijector the weights and
    biases of its MADE network, layer by layer.
    """

    def __init__(
        self,
        dim: int,
        hidden_units: Tuple[int, ...],
        num_bijectors: int,
        params: tf.Variable,
    ) -> None:
        super().__init__(name="maf_network")
        self.dim = dim
        self.hidden_units = hidden_units
        self.num_bijectors = num_bijectors
        self.params = params
        self.masks = _made_masks(dim, hidden_units)
        self.shapes: List[Tuple[int, int]] = []
        sizes = [dim, *hidden_units, 2 * dim]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            self.shapes.append((fan_in, fan_out))
        per_bijector = sum(a * b + b for a, b in self.shapes)
        self.head = dim + dim * (dim + 1) // 2
        self.size = self.head + num_bijectors * per_bijector
        self.per_bijector = per_bijector

    def affine(self, params: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        loc = params[: self.dim]
        scale = tfb.FillScaleTriL(diag_bijector=tfb.Exp(), diag_shift=None).forward(
            params[self.dim : self.head]
        )
        return loc, scale

    def shift_and_log_scale(self, params: tf.Tensor, k: int, x: tf.Tensor):
        """MADE of bijector ``k``: ``x [..., d] -> (shift, log_scale)``, each ``[..., d]``."""
        offset = self.head + k * self.per_bijector
        h = x
        last = len(self.shapes) - 1
        for i, ((fan_in, fan_out), mask) in enumerate(zip(self.shapes, self.masks)):
            w = tf.reshape(params[offset : offset + fan_in * fan_out], [fan_in, fan_out])
            offset += fan_in * fan_out
            b = params[offset : offset + fan_out]
            offset += fan_out
            h = tf.tensordot(h, w * mask, axes=1) + b
            if i < last:
                h = tf.tanh(h)
        shift, log_scale = h[..., : self.dim], h[..., self.dim :]
        return shift, log_scale

    def bijector(self, params: tf.Tensor) -> tfb.Bijector:
        """The flow's bijector at ``params`` (a tensor, or the network's own variable)."""
        steps: List[tfb.Bijector] = []
        reverse = list(range(self.dim))[::-1]
        for k in range(self.num_bijectors):
            if k > 0:
                steps.append(tfb.Permute(permutation=reverse))
            steps.append(
                tfb.MaskedAutoregressiveFlow(
                    shift_and_log_scale_fn=_MADELayer(self, params, k), name=f"maf_{k}"
                )
            )
        if isinstance(params, tf.Variable):
            loc = tfp.util.DeferredTensor(params, lambda p: self.affine(p)[0], shape=[self.dim])
            scale = tfp.util.DeferredTensor(
                params, lambda p: self.affine(p)[1], shape=[self.dim, self.dim]
            )
        else:
            loc, scale = self.affine(params)
        affine = [tfb.Shift(loc), tfb.ScaleMatvecTriL(scale)]
        return tfb.Chain(affine + steps[::-1])

    def base(self) -> tfd.Distribution:
        return tfd.MultivariateNormalDiag(loc=tf.zeros([self.dim], tf.float64))

    def distribution(self, params: tf.Tensor) -> tfd.Distribution:
        return tfd.TransformedDistribution(self.base(), self.bijector(params), name="MAFBelief")

    def sample_and_log_prob(self, params: tf.Tensor, eps: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """``theta = T(eps) [S, d]`` and ``log q(theta) [S]``, reparameterised.

        The same map as :meth:`bijector` (tests check it), written out: each autoregressive
        bijector takes ``d`` passes of its network, and the log-determinant is collected
        on the way instead of by a second pass.
        """
        x = eps
        log_det = tf.zeros(tf.shape(eps)[:1], tf.float64)
        for k in range(self.num_bijectors):
            if k > 0:
                x = tf.reverse(x, axis=[-1])
            y = tf.zeros_like(x)
            for _ in range(self.dim):
                shift, log_scale = self.shift_and_log_scale(params, k, y)
                y = x * tf.exp(log_scale) + shift
            log_det += tf.reduce_sum(log_scale, axis=-1)
            x = y
        loc, scale = self.affine(params)
        theta = loc + tf.matmul(x, scale, transpose_b=True)
        log_det += tf.reduce_sum(tf.math.log(tf.linalg.diag_part(scale)))
        return theta, self.base().log_prob(eps) - log_det

    def log_prob(self, params: tf.Tensor, theta: tf.Tensor) -> tf.Tensor:
        """``log q(theta) [S]`` at ``theta [S, d]``: one pass of each network."""
        loc, scale = self.affine(params)
        x = tf.transpose(tf.linalg.triangular_solve(scale, tf.transpose(theta - loc), lower=True))
        log_det = tf.reduce_sum(tf.math.log(tf.linalg.diag_part(scale)))
        for k in reversed(range(self.num_bijectors)):
            shift, log_scale = self.shift_and_log_scale(params, k, x)
            x = (x - shift) * tf.exp(-log_scale)
            log_det += tf.reduce_sum(log_scale, axis=-1)
            if k > 0:
                x = tf.reverse(x, axis=[-1])
        return self.base().log_prob(x) - log_det

    def copy(self, params: Optional[tf.Tensor] = None) -> "_MAFNetwork":
        value = self.params if params is None else params
        variable = tf.Variable(tf.identity(value), dtype=tf.float64, name="maf_parameters")
        return _MAFNetwork(self.dim, self.hidden_units, self.num_bijectors, variable)


class _MADELayer(tf.Module):
    """``shift_and_log_scale_fn`` of one bijector: the network's MADE ``k`` at ``params``."""

    def __init__(self, network: _MAFNetwork, params: tf.Tensor, k: int) -> None:
        super().__init__(name=f"made_{k}")
        self.network = network
        self.params = params
        self.k = k

    def __call__(self, x: tf.Tensor):
        return self.network.shift_and_log_scale(self.params, self.k, x)


def _made_masks(dim: int, hidden_units: Tuple[int, ...]) -> List[tf.Tensor]:
    """MADE masks: input ``i`` has degree ``i + 1``; hidden units get degrees ``1 .. d - 1``
    in turn; a hidden unit sees inputs of degree <= its own, an output of degree ``j``
    (shift and log-scale of ``y_j``) sees hidden units of degree < ``j``."""
    degrees_in = np.arange(1, dim + 1)
    masks = []
    previous = degrees_in
    for units in hidden_units:
        degrees = (np.arange(units) % max(dim - 1, 1)) + 1
        masks.append((degrees[None, :] >= previous[:, None]).astype(np.float64))
        previous = degrees
    out = np.concatenate([degrees_in, degrees_in])
    masks.append((out[None, :] > previous[:, None]).astype(np.float64))
    if not hidden_units:  # a direct masked linear map: strict autoregression
        masks[-1] = (out[None, :] > degrees_in[:, None]).astype(np.float64)
    return [tf.constant(m) for m in masks]


def _check_hidden_units(hidden_units: object) -> Tuple[int, ...]:
    if isinstance(hidden_units, (int, np.integer)) and not isinstance(hidden_units, bool):
        hidden_units = (hidden_units,)
    if isinstance(hidden_units, (str, bytes)) or not hasattr(hidden_units, "__iter__"):
        raise TypeError(
            f"hidden_units must be a sequence of positive ints, got {type(hidden_units).__name__}"
        )
    return tuple(check_positive_int(units, "hidden_units") for units in hidden_units)


def _network_of(q: object, name: str) -> _MAFNetwork:
    """The :class:`_MAFNetwork` of a belief made by :func:`make_maf_belief`."""
    if not isinstance(q, tfd.Distribution):
        raise TypeError(
            f"{name} must be a MAF belief from make_maf_belief (a tfd.TransformedDistribution), "
            f"got {type(q).__name__}"
        )
    networks = [m for m in q.submodules if isinstance(m, _MAFNetwork)]
    if not networks:
        raise TypeError(
            f"{name} must be a MAF belief made by unlearnkit.variational.make_maf_belief, got a "
            f"{type(q).__name__} without one"
        )
    network = networks[0]
    ensure_finite(tf.convert_to_tensor(network.params), f"the parameters of {name}")
    return network


def is_maf_belief(q: object) -> bool:
    """Whether ``q`` is a MAF belief made by :func:`make_maf_belief` (or returned by this module)."""
    return isinstance(q, tfd.Distribution) and any(
        isinstance(m, _MAFNetwork) for m in q.submodules
    )


def _initial_parameters(
    dim: int, hidden_units: Tuple[int, ...], num_bijectors: int, initial: Optional[object], seed: Seed
) -> tf.Tensor:
    probe = _MAFNetwork(dim, hidden_units, num_bijectors, tf.zeros([0], tf.float64))
    if initial is None:
        loc = tf.zeros([dim], tf.float64)
        packed = tf.zeros([dim * (dim + 1) // 2], tf.float64)
    else:
        loc = tf.convert_to_tensor(initial.loc)
        packed = tfb.FillScaleTriL(diag_bijector=tfb.Exp(), diag_shift=None).inverse(
            initial.scale.to_dense()
        )
    parts = [loc, packed]
    seeds = split_seed(seed, max(num_bijectors * len(probe.shapes), 1))
    index = 0
    last = len(probe.shapes) - 1
    for _ in range(num_bijectors):
        for i, (fan_in, fan_out) in enumerate(probe.shapes):
            if i == last:  # the output layer starts at zero: the flow is the Gaussian
                parts.append(tf.zeros([fan_in * fan_out + fan_out], tf.float64))
            else:
                w = tf.random.stateless_normal(
                    [fan_in * fan_out], seed=seeds[index], dtype=tf.float64
                ) / math.sqrt(fan_in)
                parts += [w, tf.zeros([fan_out], tf.float64)]
            index += 1
    return tf.concat(parts, axis=0)


def make_maf_belief(
    dim: int,
    *,
    hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
    num_bijectors: int = DEFAULT_NUM_BIJECTORS,
    initial: Optional[object] = None,
    seed: Seed = None,
) -> tfd.Distribution:
    """A masked-autoregressive-flow belief over ``R^d`` (float64), equal to a Gaussian at first.

    ``theta = loc + L T_K(P ... T_1(z))``, ``z ~ N(0, I_d)``; each ``T_k`` is
    ``tfb.MaskedAutoregressiveFlow`` driven by a MADE network with ``tanh`` hidden layers of
    ``hidden_units`` units, ``P`` reverses the coordinates between bijectors. The output
    layers start at zero, so the new belief is exactly ``initial`` (default ``N(0, I)``).

    Args:
        dim: ``d``, a positive int.
        hidden_units: units of each hidden layer of every MADE network.
        num_bijectors: number ``K`` of autoregressive bijectors.
        initial: a float64 ``tfd.MultivariateNormalLinearOperator`` [d] to start from
            (for example the Gaussian-VI or Laplace belief). Not modified.
        seed: ``None``, an int or a stateless seed; fixes the hidden layers' random start.

    Returns:
        A ``tfd.TransformedDistribution`` with event shape [d]; its parameters are its one
        trainable variable.

    Raises:
        TypeError, ValueError: bad ``dim``, ``hidden_units``, ``num_bijectors`` or ``initial``.
    """
    dim = check_positive_int(dim, "dim")
    hidden_units = _check_hidden_units(hidden_units)
    num_bijectors = check_positive_int(num_bijectors, "num_bijectors")
    if initial is not None:
        initial = as_gaussian_belief(initial, "initial")
        if int(initial.event_shape[0]) != dim:
            raise ValueError(
                f"initial must have event shape [{dim}], got {initial.event_shape.as_list()}"
            )
    params = _initial_parameters(dim, hidden_units, num_bijectors, initial, sanitize_seed(seed))
    variable = tf.Variable(params, dtype=tf.float64, name="maf_parameters")
    network = _MAFNetwork(dim, hidden_units, num_bijectors, variable)
    return network.distribution(network.params)


def _belief(network: _MAFNetwork, params: tf.Tensor) -> tfd.Distribution:
    """A new belief with the network's structure and a copy of ``params``."""
    fresh = network.copy(params)
    return fresh.distribution(fresh.params)


def _base_samples(num_samples: int, dim: int, seed: Seed) -> tf.Tensor:
    return tf.random.stateless_normal(
        [num_samples, dim], seed=sanitize_seed(seed), dtype=tf.float64
    )


def _minimize(
    objective: Callable[[tf.Tensor], tf.Tensor],
    x0: tf.Tensor,
    max_iterations: int,
    tolerance: float,
    name: str,
    start: float,
) -> Tuple[tf.Tensor, OptimizationInfo]:
    x, info = minimize_lbfgs(
        objective, x0, max_iterations=max_iterations, tolerance=tolerance, name=name
    )
    ensure_finite(x, f"the minimiser of {name}")
    return x, OptimizationInfo(
        objective=info.objective,
        num_iterations=info.num_iterations,
        num_evaluations=info.num_evaluations,
        converged=info.converged,
        message=info.message,
        seconds=time.perf_counter() - start,
    )


def _checked_log_likelihood(log_likelihood: LogLikelihood, name: str, dim: int) -> LogLikelihood:
    check_callable(log_likelihood, name, "theta [S, d] -> [S]")
    probe = tf.concat([tf.zeros([1, dim], tf.float64), 0.1 * tf.ones([1, dim], tf.float64)], 0)
    check_log_likelihood_values(log_likelihood(probe), 2, name)
    check_differentiable(log_likelihood, probe, name)
    return log_likelihood


def fit_flow_vi(
    log_likelihood: LogLikelihood,
    prior: object,
    initial: object,
    *,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    return_info: bool = False,
) -> Union[tfd.Distribution, Tuple[tfd.Distribution, OptimizationInfo]]:
    """Fit a MAF belief to ``p(theta | D)`` by maximising the ELBO.

    ``ELBO(phi) = mean_s [log p(D | theta_s) + log p(theta_s) - log q_phi(theta_s)]`` with
    ``theta_s = T_phi(z_s)`` for fixed base samples ``z_s``, maximised by L-BFGS from
    ``initial``.

    Args:
        log_likelihood: ``theta [S, d] -> log p(D | theta) [S]`` (TensorFlow code).
        prior: ``p(theta)``, any float64 TFP distribution with event shape [d] (its
            ``log_prob`` is differentiated).
        initial: the MAF belief to start from (:func:`make_maf_belief`, for example built
            on the Gaussian-VI belief). Not modified; its structure is kept.
        seed: ``None``, an int or a stateless seed; fixes the base samples.
        num_samples: base samples ``S``.
        max_iterations, tolerance: L-BFGS options (see :func:`unlearnkit.optimize.minimize_lbfgs`).
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Returns:
        A new MAF belief [d], and the info if requested.

    Raises:
        TypeError, ValueError: bad inputs; a callable with the wrong output or no gradient;
            a non-finite objective or result.

    Warns:
        ConvergenceWarning: L-BFGS stopped before convergence.
    """
    start = time.perf_counter()
    network = _network_of(initial, "initial")
    dim = network.dim
    if not isinstance(prior, tfd.Distribution):
        raise TypeError(f"prior must be a TFP distribution, got {type(prior).__name__}")
    if prior.event_shape.as_list() != [dim]:
        raise ValueError(f"prior must have event shape [{dim}], got {prior.event_shape.as_list()}")
    _checked_log_likelihood(log_likelihood, "log_likelihood", dim)
    num_samples = check_positive_int(num_samples, "num_samples")
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = check_tolerance(tolerance)
    eps = _base_samples(num_samples, dim, seed)

    def objective(x: tf.Tensor) -> tf.Tensor:
        theta, log_q = network.sample_and_log_prob(x, eps)
        values = tf.cast(log_likelihood(theta), tf.float64) + prior.log_prob(theta)
        return tf.reduce_mean(log_q - values)

    x, info = _minimize(
        objective,
        tf.convert_to_tensor(network.params),
        max_iterations,
        tolerance,
        "the negative ELBO",
        start,
    )
    result = _belief(network, x)
    return (result, info) if return_info else result


def flow_mode_log_prob(q: object, *, seed: Seed = None, max_iterations: int = 200) -> float:
    """``log max_theta q(theta)`` of a MAF belief, found numerically.

    The best of 4,096 samples, then L-BFGS on ``-log q(theta)`` from it.

    Args:
        q: a MAF belief (:func:`make_maf_belief`).
        seed: ``None``, an int or a stateless seed (the samples).
        max_iterations: L-BFGS iteration cap.

    Returns:
        The largest log-density found (a float).
    """
    network = _network_of(q, "q")
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    params = tf.convert_to_tensor(network.params)
    theta, log_q = network.sample_and_log_prob(
        params, _base_samples(_MODE_SAMPLES, network.dim, seed)
    )
    best = theta[int(tf.argmax(log_q))]
    with warnings.catch_warnings():  # the best point found is what matters, not convergence
        warnings.simplefilter("ignore", ConvergenceWarning)
        mode, _ = minimize_lbfgs(
            lambda t: -network.log_prob(params, t[None, :])[0],
            best,
            max_iterations=max_iterations,
            tolerance=1e-8,
            name="the flow's negative log-density",
        )
    return float(max(float(tf.reduce_max(log_q)), float(network.log_prob(params, mode[None, :])[0])))


def flow_eubo(
    q_u: object,
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: Seed = None,
) -> tf.Tensor:
    """Monte Carlo estimate of ``U~ = E_{q_u}[log p_adj(D_e | theta; lam) + log q_u - log q_full]``.

    With the same ``num_samples`` and ``seed`` (and ``boundary_smoothing=0``) this is the
    objective :func:`unlearn_eubo_flow` minimises.

    Args:
        q_u: the candidate MAF belief [d].
        q_full: ``q(theta | D)``, a MAF belief [d] (it defines the trusted region).
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lam: adjusted-likelihood threshold in [0, 1].
        num_samples: base samples ``S``.
        seed: ``None``, an int or a stateless seed (base samples and the mode search).

    Returns:
        A float64 scalar tensor.
    """
    network_u = _network_of(q_u, "q_u")
    network = _network_of(q_full, "q_full")
    if network_u.dim != network.dim:
        raise ValueError(f"q_u must have event shape [{network.dim}], got [{network_u.dim}]")
    lam = check_unit_interval(lam, "lam")
    _checked_log_likelihood(erased_log_likelihood, "erased_log_likelihood", network.dim)
    num_samples = check_positive_int(num_samples, "num_samples")
    problem = _FlowEUBO.build(network, erased_log_likelihood, [lam], num_samples, seed, 0.0)
    problem.network = network_u  # samples of q_u; q_full still defines the region
    value = problem.value(tf.convert_to_tensor(network_u.params), problem.radius_squared(lam))
    return ensure_finite(value, "the EUBO")


def _adjusted(values, log_full, log_max, radius_squared, smoothing):
    """``log p_adj`` from ``log p(D_e | theta)`` [S]: the region is
    ``m^2 = 2 (log_max - log q_full) < radius_squared`` (``None``: everywhere), its indicator
    replaced by ``sigmoid((1 - m / r) / smoothing)`` when ``smoothing > 0``."""
    if radius_squared is None:
        return values
    distance_squared = tf.maximum(2.0 * (log_max - log_full), 0.0)
    if smoothing == 0.0:
        return tf.cast(distance_squared < radius_squared, tf.float64) * values
    return smooth_region_weight(distance_squared, radius_squared, smoothing) * values


class _FlowEUBO:
    """``U~`` of a flow as a compiled function of ``(params, radius_squared)``, shared by
    every ``lam`` of a grid (traced once for ``lam = 0`` and once for all ``lam`` in (0, 1))."""

    def __init__(self, network, erased_log_likelihood, eps, log_max, smoothing) -> None:
        self.network = network  # the belief being optimised (starts as q_full's network)
        self.full = network  # q_full: it defines the region and the KL's reference
        self.erased = erased_log_likelihood
        self.eps = eps
        self.log_max = log_max
        self.smoothing = smoothing
        self.full_params = tf.identity(tf.convert_to_tensor(network.params))
        self._compiled = {}

    @classmethod
    def build(cls, network, erased_log_likelihood, lams, num_samples, seed, smoothing):
        """Base samples and (when some ``lam`` is in (0, 1)) the mode of ``q_full``."""
        eps_seed, mode_seed = split_seed(seed, 2)
        log_max = 0.0
        if any(0.0 < lam < 1.0 for lam in lams):
            log_max = flow_mode_log_prob(network.distribution(network.params), seed=mode_seed)
        eps = _base_samples(num_samples, network.dim, eps_seed)
        return cls(network, erased_log_likelihood, eps, tf.constant(log_max, tf.float64), smoothing)

    @staticmethod
    def radius_squared(lam: float) -> Optional[tf.Tensor]:
        """The region's squared radius as a tensor; ``None`` for ``lam = 0``."""
        return None if lam == 0.0 else tf.constant(adjusted_region_radius_squared(lam), tf.float64)

    def value(self, x: tf.Tensor, radius_squared: Optional[tf.Tensor]) -> tf.Tensor:
        theta, log_q = self.network.sample_and_log_prob(x, self.eps)
        log_full = self.full.log_prob(self.full_params, theta)
        values = _adjusted(
            tf.cast(self.erased(theta), tf.float64),
            log_full,
            self.log_max,
            radius_squared,
            self.smoothing,
        )
        return tf.reduce_mean(values + log_q - log_full)

    def objective(self, lam: float) -> Callable[[tf.Tensor], tf.Tensor]:
        plain = lam == 0.0
        radius_squared = self.radius_squared(lam)
        if plain not in self._compiled:
            self._compiled[plain] = self._compile(plain)
        function, traced = self._compiled[plain]
        if not traced:
            return lambda x: self.value(x, radius_squared)

        @tf.custom_gradient
        def objective(x: tf.Tensor):
            value, gradient = function(x, radius_squared)
            return value, lambda upstream: upstream * gradient

        return objective

    def _compile(self, plain: bool):
        def value_and_gradient(x, radius_squared):
            with tf.GradientTape() as tape:
                tape.watch(x)
                result = self.value(x, radius_squared)
            gradient = tape.gradient(result, x)
            if gradient is None:
                raise ValueError("the EUBO has no gradient (write the likelihood with TensorFlow)")
            return result, gradient

        scalar = None if plain else tf.TensorSpec([], tf.float64)
        function = tf.function(value_and_gradient, autograph=False)
        try:
            function.get_concrete_function(tf.TensorSpec([self.network.size], tf.float64), scalar)
        except Exception:  # noqa: BLE001 - not traceable: minimize_lbfgs runs it eagerly
            return None, False
        return function, True


def unlearn_eubo_flow_grid(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lams: Sequence[float],
    *,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    boundary_smoothing: float = DEFAULT_BOUNDARY_SMOOTHING,
    return_info: bool = False,
) -> Union[List[tfd.Distribution], Tuple[List[tfd.Distribution], List[OptimizationInfo]]]:
    """:func:`unlearn_eubo_flow` for several ``lam``, sharing the base samples, the search
    for ``q_full``'s mode and the compiled objective.

    The result for each ``lam`` is what ``unlearn_eubo_flow(q_full, erased_log_likelihood,
    lam, ...)`` returns with the same arguments.

    Args:
        q_full, erased_log_likelihood: as for :func:`unlearn_eubo_flow`.
        lams: thresholds in [0, 1], in any order.
        seed, num_samples, max_iterations, tolerance, boundary_smoothing: as for
            :func:`unlearn_eubo_flow`.
        return_info: also return one :class:`~unlearnkit.diagnostics.OptimizationInfo`
            per ``lam``.

    Returns:
        A list of new MAF beliefs, one per ``lam``, and the list of infos if requested.

    Raises:
        TypeError, ValueError: as :func:`unlearn_eubo_flow`; ``lams`` empty.

    Warns:
        ConvergenceWarning: L-BFGS stopped before convergence for some ``lam``.
    """
    network = _network_of(q_full, "q_full")
    if isinstance(lams, (str, bytes)) or not hasattr(lams, "__iter__"):
        raise TypeError(f"lams must be a sequence of numbers in [0, 1], got {type(lams).__name__}")
    lams = [check_unit_interval(lam, "lams") for lam in lams]
    if not lams:
        raise ValueError("lams must contain at least one value")
    _checked_log_likelihood(erased_log_likelihood, "erased_log_likelihood", network.dim)
    num_samples = check_positive_int(num_samples, "num_samples")
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = check_tolerance(tolerance)
    smoothing = check_nonnegative_number(boundary_smoothing, "boundary_smoothing")
    x0 = tf.identity(tf.convert_to_tensor(network.params))
    problem = _FlowEUBO.build(network, erased_log_likelihood, lams, num_samples, seed, smoothing)
    beliefs, infos = [], []
    for lam in lams:
        start = time.perf_counter()
        if lam == 1.0:
            beliefs.append(_belief(network, x0))
            infos.append(OptimizationInfo(0.0, 0, 1, True, "lam = 1: nothing to unlearn", 0.0))
            continue
        x, info = _minimize(
            problem.objective(lam), x0, max_iterations, tolerance, f"the EUBO (lam = {lam:g})", start
        )
        beliefs.append(_belief(network, x))
        infos.append(info)
    return (beliefs, infos) if return_info else beliefs


def unlearn_eubo_flow(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    boundary_smoothing: float = DEFAULT_BOUNDARY_SMOOTHING,
    return_info: bool = False,
) -> Union[tfd.Distribution, Tuple[tfd.Distribution, OptimizationInfo]]:
    """Unlearn ``D_e`` from a MAF belief: the flow ``q_u`` minimising the EUBO ``U~``.

    The flow counterpart of :func:`~unlearnkit.variational.evidence_upper_bound.unlearn_eubo`:
    same objective, same arguments, same adjusted likelihood (the trusted region is where
    ``q_full > lam * max q_full``, the maximum found numerically), estimated with fixed base
    samples pushed through the flow and minimised by L-BFGS over the flow's parameters
    from ``q_full`` (module docstring). For several ``lam``, :func:`unlearn_eubo_flow_grid`
    shares the work.

    Args:
        q_full: ``q(theta | D)``, a MAF belief (:func:`make_maf_belief`, :func:`fit_flow_vi`).
            Not modified.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]`` (TensorFlow code).
        lam: adjusted-likelihood threshold in [0, 1]; 1 returns a copy of ``q_full``.
        seed: ``None``, an int or a stateless seed; fixes the base samples and the search
            for the mode.
        num_samples: base samples ``S``.
        max_iterations, tolerance: L-BFGS options.
        boundary_smoothing: width of the smooth step replacing the region's indicator
            during the optimisation, relative to its radius (0: the indicator).
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`.

    Returns:
        A new MAF belief [d] with the structure of ``q_full``, and the info if requested.

    Raises:
        TypeError, ValueError: bad inputs; a callable with the wrong output shape,
            non-finite values or no gradient; a non-finite objective or result.

    Warns:
        ConvergenceWarning: L-BFGS stopped before convergence.
    """
    lam = check_unit_interval(lam, "lam")
    beliefs, infos = unlearn_eubo_flow_grid(
        q_full,
        erased_log_likelihood,
        [lam],
        seed=seed,
        num_samples=num_samples,
        max_iterations=max_iterations,
        tolerance=tolerance,
        boundary_smoothing=boundary_smoothing,
        return_info=True,
    )
    return (beliefs[0], infos[0]) if return_info else beliefs[0]


def unlearn_reverse_kl_flow(
    q_full: object,
    erased_log_likelihood: LogLikelihood,
    lam: float = 0.0,
    *,
    seed: Seed = None,
    num_samples: int = DEFAULT_NUM_SAMPLES_REVERSE,
    proposal: Optional[object] = None,
    defensive_weight: float = 0.1,
    target_ess: Optional[float] = None,
    max_iterations: int = 100,
    tolerance: float = 1e-5,
    return_info: bool = False,
) -> Union[tfd.Distribution, Tuple[tfd.Distribution, Tuple[ImportanceInfo, OptimizationInfo]]]:
    """Unlearn ``D_e`` from a MAF belief by the reverse KL: a weighted maximum-likelihood fit.

    The flow counterpart of :func:`~unlearnkit.variational.reverse_kl.unlearn_reverse_kl`.
    ``theta_s`` are drawn from ``q_full`` (``proposal=None``) or from the mixture
    ``defensive_weight * q_full + (1 - defensive_weight) * proposal``; the self-normalised
    weights are ``w_s ∝ q_full(theta_s) / (p_adj(D_e | theta_s; lam) proposal(theta_s))``; the
    flow maximising ``sum_s w_s log q_phi(theta_s)`` is found by L-BFGS from ``q_full``.

    Args:
        q_full: ``q(theta | D)``, a MAF belief. Not modified.
        erased_log_likelihood: ``theta [S, d] -> log p(D_e | theta) [S]``.
        lam: adjusted-likelihood threshold in [0, 1]; 1 returns a copy of ``q_full``.
        seed: ``None``, an int or a stateless seed (samples, mode search).
        num_samples: samples ``S``.
        proposal: optional float64 TFP distribution [d] with ``sample`` and ``log_prob``
            (for example a widened Gaussian from ``unlearn_reverse_kl``) that reaches where
            the target's mass is when ``q_full``'s samples do not.
        defensive_weight: share in [0, 1] of the samples drawn from ``q_full`` when a
            proposal is given (ignored otherwise).
        target_ess: the effective sample size the weights must reach; default
            ``max(10 (d + 1), S / 100)``: a flexible family needs more than ``d + 1``
            effective samples to be fitted.
        max_iterations, tolerance: L-BFGS options.
        return_info: also return ``(ImportanceInfo, OptimizationInfo)``.

    Returns:
        A new MAF belief [d], and the two infos if requested.

    Raises:
        TypeError, ValueError: bad inputs; a callable with the wrong output or non-finite
            values; a non-finite objective or result.
        DegenerateWeightsError: the weights' effective sample size is below ``target_ess``.

    Warns:
        ConvergenceWarning: L-BFGS stopped before convergence.
    """
    start = time.perf_counter()
    network = _network_of(q_full, "q_full")
    dim = network.dim
    lam = check_unit_interval(lam, "lam")
    _checked_log_likelihood(erased_log_likelihood, "erased_log_likelihood", dim)
    num_samples = check_positive_int(num_samples, "num_samples")
    defensive_weight = check_unit_interval(defensive_weight, "defensive_weight")
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = check_tolerance(tolerance)
    if target_ess is None:
        target = max(10.0 * (dim + 1), num_samples / 100.0)
    else:
        target = check_nonnegative_number(target_ess, "target_ess")
        if target > num_samples:
            raise ValueError(f"target_ess must not exceed num_samples = {num_samples}, got {target:g}")
    if proposal is not None:
        if not isinstance(proposal, tfd.Distribution):
            raise TypeError(f"proposal must be a TFP distribution, got {type(proposal).__name__}")
        if proposal.event_shape.as_list() != [dim] or proposal.dtype != tf.float64:
            raise ValueError(
                f"proposal must be a float64 distribution with event shape [{dim}], got "
                f"{proposal.dtype.name} {proposal.event_shape.as_list()}"
            )
    x0 = tf.identity(tf.convert_to_tensor(network.params))
    if lam == 1.0:
        result = _belief(network, x0)
        infos = (
            ImportanceInfo(float(num_samples), num_samples, 1, 0.0, 0.0, ()),
            OptimizationInfo(0.0, 0, 1, True, "lam = 1: nothing to unlearn", 0.0),
        )
        return (result, infos) if return_info else result
    full_seed, proposal_seed, mode_seed = split_seed(seed, 3)
    if proposal is None:
        theta, log_full = network.sample_and_log_prob(
            x0, _base_samples(num_samples, dim, full_seed)
        )
        log_proposal = log_full
    else:
        num_defensive = int(round(defensive_weight * num_samples))
        parts = []
        if num_defensive:
            parts.append(
                network.sample_and_log_prob(x0, _base_samples(num_defensive, dim, full_seed))[0]
            )
        parts.append(
            tf.cast(proposal.sample(num_samples - num_defensive, seed=proposal_seed), tf.float64)
        )
        theta = tf.concat(parts, axis=0)
        log_full = network.log_prob(x0, theta)
        terms = [proposal.log_prob(theta) + math.log(max(1.0 - defensive_weight, 1e-300))]
        if defensive_weight > 0.0:
            terms.append(log_full + math.log(defensive_weight))
        log_proposal = tf.reduce_logsumexp(tf.stack(terms), axis=0)
    theta = tf.stop_gradient(theta)
    values = check_log_likelihood_values(
        erased_log_likelihood(check_theta(theta, dim)), num_samples, "erased_log_likelihood"
    )
    log_max = 0.0
    if lam > 0.0:
        log_max = flow_mode_log_prob(network.distribution(network.params), seed=mode_seed)
    log_adjusted = _adjusted(
        tf.cast(values, tf.float64), log_full, log_max, _FlowEUBO.radius_squared(lam), 0.0
    )
    log_weights = ensure_finite(
        log_full - log_adjusted - log_proposal, "the importance log-weights"
    )
    log_weights = log_weights - tf.reduce_logsumexp(log_weights)
    ess = importance_ess(log_weights)
    if ess < target:
        raise DegenerateWeightsError(
            f"the importance weights are degenerate: effective sample size {ess:.3g} < "
            f"{target:.3g} needed to fit the flow (d = {dim}, num_samples = {num_samples}); "
            f"increase num_samples or lam, or pass a proposal closer to the target"
        )
    weights = tf.exp(log_weights)
    optimization_start = time.perf_counter()

    def objective(x: tf.Tensor) -> tf.Tensor:
        return -tf.reduce_sum(weights * network.log_prob(x, theta))

    x, info = _minimize(
        objective, x0, max_iterations, tolerance, "the weighted negative log-likelihood",
        optimization_start,
    )
    result = _belief(network, x)
    if not return_info:
        return result
    importance = ImportanceInfo(
        effective_sample_size=ess,
        num_samples=num_samples,
        num_rounds=1,
        jitter=0.0,
        seconds=time.perf_counter() - start,
        ess_history=(ess,),
    )
    return result, (importance, info)
