"""Derivatives of energies: gradients, Hessians and Hessian-vector products.

An *energy* is a callable ``gamma [d] -> F(gamma)`` returning a float64 scalar built from
TensorFlow operations: the negative log posterior of a MAP model, the negative ELBO of a
variational fit, the potential of a sampler (Fu et al., Bayesian Inference Forgetting).
Influence-function removal (:mod:`unlearnkit.bif`) and the Laplace approximation
(:mod:`unlearnkit.laplace`) need its first and second derivatives; they are here, once.
"""

from __future__ import annotations

import weakref
from typing import Callable

import tensorflow as tf

from unlearnkit._validation import as_float64_vector, check_callable, ensure_finite

__all__ = [
    "Energy",
    "energy_gradient",
    "energy_hessian",
    "hessian_vector_product",
    "compiled_hessian_vector_product",
    "traceable_hessian_vector_product",
    "taped_gradient",
]

Energy = Callable[[tf.Tensor], tf.Tensor]
"""``gamma [d] -> F(gamma)``, a float64 scalar built from TensorFlow operations."""


def _check_energy_value(value: object, name: str) -> tf.Tensor:
    if not isinstance(value, (tf.Tensor, tf.Variable)):
        raise TypeError(f"{name} must return a float64 scalar tf.Tensor, got {type(value).__name__}")
    if value.dtype != tf.float64:
        raise TypeError(f"{name} must return a float64 scalar, got dtype {value.dtype.name}")
    if value.shape.rank != 0:
        raise ValueError(f"{name} must return a scalar, got shape {value.shape.as_list()}")
    return ensure_finite(value, f"the value of {name}")


def taped_gradient(energy: Energy, params: tf.Tensor, name: str = "energy") -> tf.Tensor:
    """``grad energy(params)`` on a tape of its own (an enclosing tape records it too).

    Checks the value (a finite float64 scalar) and that it depends on ``params``.
    """
    with tf.GradientTape() as tape:
        tape.watch(params)
        value = _check_energy_value(energy(params), name)
    gradient = tape.gradient(value, params)
    if gradient is None:
        raise ValueError(
            f"{name} does not depend on params through TensorFlow operations (it has no gradient)"
        )
    return gradient


def energy_gradient(energy: Energy, params: object, *, name: str = "energy") -> tf.Tensor:
    """Gradient of a scalar energy.

    Args:
        energy: ``gamma [d] -> scalar``.
        params: ``[d]`` float64.
        name: the energy's argument name, for error messages.

    Returns:
        ``grad energy(params)``, ``[d]``.

    Raises:
        TypeError: ``energy`` is not callable, or does not return a float64 tensor.
        ValueError: the energy is not a finite scalar, or does not depend on ``params``
            through TensorFlow operations.
    """
    check_callable(energy, name, "gamma [d] -> scalar")
    params = as_float64_vector(params, "params")
    return ensure_finite(taped_gradient(energy, params, name), f"the gradient of {name}")


def energy_hessian(energy: Energy, params: object, *, name: str = "energy") -> tf.Tensor:
    """Dense Hessian ``[d, d]`` of a scalar energy (symmetrised).

    The rows come from reverse-over-reverse differentiation on a persistent tape, one
    reverse pass per row: fast for the small ``d`` that a dense Hessian is meant for.

    Args:
        energy: ``gamma [d] -> scalar``.
        params: ``[d]`` float64.
        name: the energy's argument name, for error messages.
    """
    check_callable(energy, name, "gamma [d] -> scalar")
    params = as_float64_vector(params, "params")
    dim = params.shape[0]
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(params)
        gradient = taped_gradient(energy, params, name)
        entries = [gradient[i] for i in range(dim)]
    zero = tf.zeros_like(params)
    rows = [outer.gradient(entry, params, unconnected_gradients="zero") for entry in entries]
    del outer
    hessian = tf.stack([zero if row is None else row for row in rows])
    hessian = 0.5 * (hessian + tf.transpose(hessian))
    return ensure_finite(hessian, f"the Hessian of {name}")


def traceable_hessian_vector_product(
    energy: Energy, params: tf.Tensor, vector: tf.Tensor
) -> tf.Tensor:
    """``hess energy(params) @ vector`` with no input checks, for use inside a ``tf.function``."""
    with tf.autodiff.ForwardAccumulator(primals=params, tangents=vector) as accumulator:
        with tf.GradientTape() as tape:
            tape.watch(params)
            value = energy(params)
        gradient = tape.gradient(value, params)
    return accumulator.jvp(gradient, unconnected_gradients="zero")


# Compiled Hessian-vector products, one per energy callable, so that conjugate gradients (and
# repeated calls with the same energy) pay TensorFlow's tracing cost once. The traced function
# holds the energy only weakly, so the cache never keeps an energy alive.
_COMPILED_HVPS: "weakref.WeakKeyDictionary[Callable, Callable]" = weakref.WeakKeyDictionary()


def compiled_hessian_vector_product(energy: Energy) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """A compiled ``(params [d], vector [d]) -> hess energy(params) @ vector`` (cached per energy)."""
    try:
        return _COMPILED_HVPS[energy]
    except (KeyError, TypeError):
        pass
    try:
        getter = weakref.ref(energy)  # the compiled function must not keep the energy alive
        cache = True
    except TypeError:  # not weakly referenceable: hold it, and compile without caching
        getter, cache = _holder(energy), False

    @tf.function(reduce_retracing=True, autograph=False)
    def product(params: tf.Tensor, vector: tf.Tensor) -> tf.Tensor:
        return traceable_hessian_vector_product(getter(), params, vector)

    if cache:
        _COMPILED_HVPS[energy] = product
    return product


def _holder(energy: Energy) -> Callable[[], Energy]:
    return lambda: energy


def hessian_vector_product(
    energy: Energy, params: object, vector: object, *, name: str = "energy"
) -> tf.Tensor:
    """Hessian-vector product ``hess energy(params) @ vector`` without forming the Hessian.

    Forward-over-reverse: a forward-mode directional derivative (along ``vector``) of the
    reverse-mode gradient, costing a small multiple of one gradient evaluation.

    Args:
        energy: ``gamma [d] -> scalar``.
        params: ``[d]`` float64.
        vector: ``[d]`` float64.
        name: the energy's argument name, for error messages.

    Returns:
        ``[d]``.
    """
    params = as_float64_vector(params, "params")
    vector = as_float64_vector(vector, "vector", size=int(params.shape[0]))
    energy_gradient(energy, params, name=name)  # checks the value and the dependence on params
    product = traceable_hessian_vector_product(energy, params, vector)
    return ensure_finite(product, f"the Hessian-vector product of {name}")
