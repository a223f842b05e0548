"""A model given by a per-datum log-likelihood and a log-prior, and its derivatives.

Forgetting needs only two callables from a user's model:

* ``log_likelihood(theta [S, d], points) -> [S, n]``: ``log p(z_i | theta_s)`` of every data
  point under every parameter vector (*per datum*: one column per point, not summed), and
* ``log_prior(theta [S, d]) -> [S]``: ``log p(theta_s)`` (up to a constant),

both written with TensorFlow operations. ``points`` is the data set: one float64 array
``[n, ...]`` (e.g. ``[n, D]`` points of a mixture), or a tuple of them with the same first
dimension ``n`` (e.g. ``(X [n, p], y [n])`` of a regression). Erasing data is choosing rows.

The energy of a parameter vector on a data set ``S`` is the negative log joint density,

    F(theta, S) = -sum_{z in S} log p(z | theta) - log p(theta),

and the *erased energy* of ``S'`` is ``-sum_{z in S'} log p(z | theta)``. :class:`PerDatumModel`
checks the callables once and gives, for a batch of parameter vectors at once, the gradients
and Hessians of these energies (automatic differentiation, compiled once per pair of callables),
and Hessian-vector products without forming the Hessians.

Automatic differentiation forms a Hessian with ``d`` vectorised reverse passes over every
(sample, datum) pair, which for many samples and data points is memory-bound and slow. A
model that knows its derivatives in closed form can pass them as
``log_likelihood_derivatives(theta [S, d], points) -> (gradient [S, d], hessian [S, d, d])`` of
``sum_i log p(z_i | theta_s)``; they are checked against automatic differentiation once, on a
few points, and then used instead.
"""

from __future__ import annotations

import collections
from typing import Callable, Tuple, Union

import numpy as np
import tensorflow as tf

from unlearnkit._validation import (
    as_float64,
    check_callable,
    check_erased_indices,
    check_theta,
    ensure_finite,
)

__all__ = ["PerDatumModel", "Points", "LogLikelihood", "LogPrior", "LogLikelihoodDerivatives"]

Points = Union[tf.Tensor, np.ndarray, Tuple[tf.Tensor, ...]]
"""A data set: one float64 array ``[n, ...]``, or a tuple of them sharing the first dimension."""

LogLikelihood = Callable[[tf.Tensor, Points], tf.Tensor]
"""``(theta [S, d], points [n, ...]) -> log p(z_i | theta_s)  [S, n]`` (per datum)."""

LogPrior = Callable[[tf.Tensor], tf.Tensor]
"""``theta [S, d] -> log p(theta_s)  [S]``."""

LogLikelihoodDerivatives = Callable[[tf.Tensor, Points], Tuple[tf.Tensor, tf.Tensor]]
"""``(theta [S, d], points) -> (gradient [S, d], hessian [S, d, d])`` of ``sum_i log p(z_i | theta_s)``."""

_CACHE_SIZE = 16
_COMPILED: "collections.OrderedDict[tuple, dict]" = collections.OrderedDict()


def _compiled_functions(log_likelihood, log_prior, derivatives, points_spec, dim: int) -> dict:
    """Compiled derivative functions of one set of callables and data layout (a small LRU cache).

    Bound methods compare equal when they belong to the same object, so a model's
    ``model.log_likelihood`` finds its compiled functions again on every call. The functions
    have input signatures with free sizes, so any number of samples and of data points shares
    one trace.
    """
    layout = (dim, tuple(tuple(spec.shape.as_list()) for spec in tf.nest.flatten(points_spec)),
              isinstance(points_spec, tuple))
    key = (log_likelihood, log_prior, derivatives, layout)
    try:
        functions = _COMPILED.pop(key)
    except (KeyError, TypeError):  # TypeError: an unhashable callable (compile, do not cache)
        functions = None
    if functions is None:
        functions = _build(log_likelihood, log_prior, derivatives, points_spec, dim)
    try:
        _COMPILED[key] = functions
        while len(_COMPILED) > _CACHE_SIZE:
            _COMPILED.popitem(last=False)
    except TypeError:
        pass
    return functions


def _build(log_likelihood, log_prior, derivatives, points_spec, dim: int) -> dict:
    # ``scale`` multiplies the data term (|S| / b for a minibatch of b points standing for S);
    # ``prior`` (0 or 1) says whether the log prior is part of the energy
    def log_joint_sums(theta, points, prior, scale):
        total = scale * tf.reduce_sum(log_likelihood(theta, points), axis=-1)
        return total + prior * log_prior(theta)

    def autodiff_gradient_and_hessian(theta, points, prior, scale):
        # rows of theta are independent: the gradient of the total is every row's gradient
        with tf.GradientTape() as outer:
            outer.watch(theta)
            with tf.GradientTape() as inner:
                inner.watch(theta)
                total = tf.reduce_sum(log_joint_sums(theta, points, prior, scale))
            gradient = inner.gradient(total, theta, unconnected_gradients="zero")
        hessian = outer.batch_jacobian(gradient, theta, unconnected_gradients="zero")
        return gradient, 0.5 * (hessian + tf.linalg.matrix_transpose(hessian))

    def prior_terms(theta):
        with tf.GradientTape() as outer:
            outer.watch(theta)
            with tf.GradientTape() as inner:
                inner.watch(theta)
                total = tf.reduce_sum(log_prior(theta))
            grad = inner.gradient(total, theta, unconnected_gradients="zero")
        hessian = outer.batch_jacobian(grad, theta, unconnected_gradients="zero")
        return grad, 0.5 * (hessian + tf.linalg.matrix_transpose(hessian))

    def data_gradient_and_hessian(theta, points, scale):
        """Of the (scaled) log-likelihood alone, no prior."""
        if derivatives is None:
            return autodiff_gradient_and_hessian(theta, points, tf.constant(0.0, tf.float64), scale)
        gradient, hessian = derivatives(theta, points)
        return scale * gradient, scale * hessian

    def gradient_and_hessian(theta, points, prior, scale):
        if derivatives is None:
            return autodiff_gradient_and_hessian(theta, points, prior, scale)
        gradient, hessian = derivatives(theta, points)
        prior_gradient, prior_hessian = prior_terms(theta)
        return scale * gradient + prior * prior_gradient, scale * hessian + prior * prior_hessian

    def gradient(theta, points, prior, scale):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            total = tf.reduce_sum(log_joint_sums(theta, points, prior, scale))
        return tape.gradient(total, theta, unconnected_gradients="zero")

    def hessian_vector(theta, vector, points, prior, scale):
        if derivatives is not None:
            _, hessian = gradient_and_hessian(theta, points, prior, scale)
            return tf.linalg.matvec(hessian, vector)
        with tf.autodiff.ForwardAccumulator(primals=theta, tangents=vector) as accumulator:
            with tf.GradientTape() as tape:
                tape.watch(theta)
                total = tf.reduce_sum(log_joint_sums(theta, points, prior, scale))
            grad = tape.gradient(total, theta, unconnected_gradients="zero")
        return accumulator.jvp(grad, unconnected_gradients="zero")

    theta_spec = tf.TensorSpec([None, dim], tf.float64)
    number = tf.TensorSpec([], tf.float64)
    one, zero = tf.constant(1.0, tf.float64), tf.constant(0.0, tf.float64)

    def compile_(fn, signature):
        return tf.function(fn, input_signature=signature, autograph=False)

    return {
        "log_likelihood_sums": compile_(
            lambda theta, points: log_joint_sums(theta, points, zero, one), [theta_spec, points_spec]
        ),
        "gradient_and_hessian": compile_(
            gradient_and_hessian, [theta_spec, points_spec, number, number]
        ),
        "data_gradient_and_hessian": compile_(data_gradient_and_hessian, [theta_spec, points_spec, number]),
        "autodiff_gradient_and_hessian": compile_(
            autodiff_gradient_and_hessian, [theta_spec, points_spec, number, number]
        ),
        "gradient": compile_(gradient, [theta_spec, points_spec, number, number]),
        "hessian_vector": compile_(hessian_vector, [theta_spec, theta_spec, points_spec, number, number]),
        "prior_terms": compile_(prior_terms, [theta_spec]),
    }


def _as_points(points: object) -> Tuple[Union[tf.Tensor, tuple], int]:
    """``points`` as a float64 tensor or a tuple of them, and their common first dimension."""
    if isinstance(points, (tuple, list)):
        if not points:
            raise ValueError("points must be an array [n, ...] or a non-empty tuple of them")
        leaves = tuple(as_float64(p, f"points[{i}]") for i, p in enumerate(points))
    else:
        leaves = (as_float64(points, "points"),)
    for i, leaf in enumerate(leaves):
        if leaf.shape.rank == 0:
            raise ValueError(f"points{'' if len(leaves) == 1 else f'[{i}]'} must have a first "
                             f"dimension n (one row per data point), got a scalar")
    n = int(leaves[0].shape[0])
    if any(int(leaf.shape[0]) != n for leaf in leaves):
        raise ValueError(
            f"every array in points must have the same first dimension, got "
            f"{[int(leaf.shape[0]) for leaf in leaves]}"
        )
    if n == 0:
        raise ValueError("points must hold at least one data point")
    return (leaves if isinstance(points, (tuple, list)) else leaves[0]), n


def _flag(value: bool) -> tf.Tensor:
    return tf.constant(1.0 if value else 0.0, tf.float64)


class PerDatumModel:
    """A model given by ``log_likelihood(theta, points) -> [S, n]`` and ``log_prior(theta) -> [S]``.

    Checks the callables on first use (shapes, dtype, and that the log-likelihood depends on
    ``theta`` through TensorFlow operations; closed-form derivatives against automatic
    differentiation), once per set of callables and layout of the data, then serves the
    derivatives that forgetting needs for subsets of the data, chosen by row indices.

    Args:
        log_likelihood: ``(theta [S, d], points) -> [S, n]``, per datum.
        log_prior: ``theta [S, d] -> [S]``.
        points: the data set ``S``: an array ``[n, ...]`` or a tuple of arrays ``[n, ...]``.
        dim: ``d``, the length of ``theta``.
        log_likelihood_derivatives: optional closed-form ``(theta [S, d], points) ->
            (gradient [S, d], hessian [S, d, d])`` of ``sum_i log p(z_i | theta_s)``.
        probe: optional ``[S, d]`` parameter vectors at which the callables are checked
            (default: zeros).
    """

    def __init__(
        self,
        log_likelihood: object,
        log_prior: object,
        points: object,
        dim: int,
        *,
        log_likelihood_derivatives: object = None,
        probe: object = None,
    ) -> None:
        self.log_likelihood = check_callable(
            log_likelihood, "log_likelihood", "(theta [S, d], points [n, ...]) -> [S, n]"
        )
        self.log_prior = check_callable(log_prior, "log_prior", "theta [S, d] -> [S]")
        if log_likelihood_derivatives is not None:
            check_callable(
                log_likelihood_derivatives,
                "log_likelihood_derivatives",
                "(theta [S, d], points) -> (gradient [S, d], hessian [S, d, d])",
            )
        self.derivatives = log_likelihood_derivatives
        self.points, self.num_points = _as_points(points)
        self.dim = int(dim)
        self.points_spec = tf.nest.map_structure(
            lambda x: tf.TensorSpec([None] + x.shape.as_list()[1:], tf.float64), self.points
        )
        self._functions = _compiled_functions(
            self.log_likelihood, self.log_prior, self.derivatives, self.points_spec, self.dim
        )
        if not self._functions.get("checked", False):  # once per callables and data layout
            if probe is None:
                probe = tf.zeros([2, self.dim], tf.float64)
            else:
                probe = tf.convert_to_tensor(probe, tf.float64)[:2]
                probe = tf.concat([probe, probe], 0)[:2]
            self._check_callables(probe)
            self._functions["checked"] = True

    def compiled(self, name: str, build: Callable[[dict], Callable]) -> Callable:
        """A compiled function cached with this model's callables and data layout.

        ``build(functions)`` makes it from the model's compiled derivative functions (e.g.
        ``functions["gradient_and_hessian"](theta, points, prior_weight, data_scale)``, the
        derivatives of the log joint density, see :func:`_build`); it is built once.
        """
        if name not in self._functions:
            self._functions[name] = build(self._functions)
        return self._functions[name]

    # --------------------------------------------------------------------- data
    def rows(self, indices: object) -> Union[tf.Tensor, tuple]:
        """The data points with the given row indices ``[m]`` (any order), same structure."""
        indices = tf.constant(np.asarray(indices, dtype=np.int64))
        return tf.nest.map_structure(lambda x: tf.gather(x, indices), self.points)

    def check_erased(self, erased: object, *, allow_empty: bool = True) -> np.ndarray:
        """``erased`` as checked row indices ``[m]`` into the data."""
        return check_erased_indices(erased, self.num_points, "erased", allow_empty=allow_empty)

    def check_theta(self, theta: object, name: str) -> tf.Tensor:
        """``theta`` as a finite float64 ``[S, d]`` tensor with ``S >= 1``."""
        theta = check_theta(theta, self.dim, name)
        if int(theta.shape[0]) == 0:
            raise ValueError(f"{name} must hold at least one parameter vector, got shape [0, {self.dim}]")
        return theta

    def _check_callables(self, probe: tf.Tensor) -> None:
        count = min(3, self.num_points)
        few = self.rows(np.arange(count))
        try:
            values = self.log_likelihood(probe, few)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
            message = getattr(err, "message", str(err)).splitlines()[0]
            raise ValueError(
                f"log_likelihood failed on theta of shape [2, {self.dim}] and {count} data points "
                f"(is d = {self.dim} the length of theta, the number of columns of the samples or "
                f"of the belief?): {message}"
            ) from None
        shape = getattr(values, "shape", None)
        if shape is None or tuple(shape) != (2, count):
            raise ValueError(
                f"log_likelihood must return [S, n] for theta [S, {self.dim}] and n points "
                f"(probed with S = 2, n = {count}), got {None if shape is None else list(shape)}"
            )
        if tf.as_dtype(values.dtype) != tf.float64:
            raise TypeError(f"log_likelihood must return float64 values, got {values.dtype.name}")
        values = self.log_prior(probe)
        shape = getattr(values, "shape", None)
        if shape is None or tuple(shape) != (2,):
            raise ValueError(
                f"log_prior must return [S] for theta [S, {self.dim}] (probed with S = 2), "
                f"got {None if shape is None else list(shape)}"
            )
        if tf.as_dtype(values.dtype) != tf.float64:
            raise TypeError(f"log_prior must return float64 values, got {values.dtype.name}")
        with tf.GradientTape() as tape:
            tape.watch(probe)
            total = tf.reduce_sum(self.log_likelihood(probe, few))
        if tape.gradient(total, probe) is None:
            raise ValueError(
                "log_likelihood has no gradient with respect to theta: it must be written with "
                "TensorFlow operations"
            )
        if self.derivatives is not None:
            self._check_derivatives(probe, few)

    def _check_derivatives(self, probe: tf.Tensor, few) -> None:
        outputs = self.derivatives(probe, few)
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
            raise TypeError("log_likelihood_derivatives must return a pair (gradient, hessian)")
        gradient, hessian = (tf.convert_to_tensor(x) for x in outputs)
        if gradient.shape.as_list() != [2, self.dim] or hessian.shape.as_list() != [2, self.dim, self.dim]:
            raise ValueError(
                f"log_likelihood_derivatives must return gradient [S, {self.dim}] and hessian "
                f"[S, {self.dim}, {self.dim}] (probed with S = 2), got {gradient.shape.as_list()} "
                f"and {hessian.shape.as_list()}"
            )
        auto_gradient, auto_hessian = self._functions["autodiff_gradient_and_hessian"](
            probe, few, tf.constant(0.0, tf.float64), tf.constant(1.0, tf.float64)
        )
        for name, given, auto in (("gradient", gradient, auto_gradient), ("hessian", hessian, auto_hessian)):
            scale = float(tf.reduce_max(tf.abs(auto))) + 1.0
            if float(tf.reduce_max(tf.abs(tf.cast(given, tf.float64) - auto))) > 1e-6 * scale:
                raise ValueError(
                    f"log_likelihood_derivatives returns a {name} that disagrees with automatic "
                    f"differentiation of log_likelihood"
                )

    # -------------------------------------------------------------- derivatives
    def log_likelihood_sums(self, theta: tf.Tensor, indices: object) -> tf.Tensor:
        """``sum_{i in indices} log p(z_i | theta_s)``, ``[S]``."""
        values = self._functions["log_likelihood_sums"](theta, self.rows(indices))
        return ensure_finite(values, "the log-likelihood of the data")

    def energy_derivatives(
        self, theta: tf.Tensor, indices: object, *, with_prior: bool, data_scale: float = 1.0
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        """Gradient ``[S, d]`` and Hessian ``[S, d, d]`` of the energy of the rows ``indices``.

        The energy is ``-data_scale * sum_{i in indices} log p(z_i | theta)``, minus
        ``log p(theta)`` when ``with_prior`` (then, with ``data_scale = 1``, it is
        ``F(theta, S)`` of the data subset ``S``; a minibatch of ``b`` rows standing for ``n``
        points takes ``data_scale = n / b``).
        """
        if len(indices) == 0 and not with_prior:
            zeros = tf.zeros_like(theta)
            return zeros, tf.zeros([int(theta.shape[0]), self.dim, self.dim], tf.float64)
        if len(indices) == 0:
            gradient, hessian = self._functions["prior_terms"](theta)
        else:
            gradient, hessian = self._functions["gradient_and_hessian"](
                theta, self.rows(indices), _flag(with_prior), tf.constant(data_scale, tf.float64)
            )
        gradient = ensure_finite(-gradient, "the gradient of the energy")
        return gradient, ensure_finite(-hessian, "the Hessian of the energy")

    def energy_gradient(
        self, theta: tf.Tensor, indices: object, *, with_prior: bool, data_scale: float = 1.0
    ) -> tf.Tensor:
        """Gradient ``[S, d]`` of the energy of the rows ``indices`` (see :meth:`energy_derivatives`)."""
        if len(indices) == 0:
            if not with_prior:
                return tf.zeros_like(theta)
            return ensure_finite(-self._functions["prior_terms"](theta)[0], "the gradient of the energy")
        gradient = self._functions["gradient"](
            theta, self.rows(indices), _flag(with_prior), tf.constant(data_scale, tf.float64)
        )
        return ensure_finite(-gradient, "the gradient of the energy")

    def energy_hessian_vector(
        self,
        theta: tf.Tensor,
        vector: tf.Tensor,
        indices: object,
        *,
        with_prior: bool,
        data_scale: float = 1.0,
    ) -> tf.Tensor:
        """Hessian-vector products ``[S, d]``: row ``s`` is ``hess energy(theta_s) @ vector_s``."""
        if len(indices) == 0:
            if not with_prior:
                return tf.zeros_like(theta)
            _, hessian = self._functions["prior_terms"](theta)
            return -tf.linalg.matvec(hessian, vector)
        product = self._functions["hessian_vector"](
            theta, vector, self.rows(indices), _flag(with_prior), tf.constant(data_scale, tf.float64)
        )
        return ensure_finite(-product, "the Hessian-vector product of the energy")
