"""Stochastic-gradient MCMC (SGLD, SGHMC) in TensorFlow, and forgetting applied to its samples.

Both samplers target the posterior exp(-F(theta, S)) with F(theta, S) = sum_i h(theta, z_i) + f(theta),
estimating the gradient of F from a minibatch of b points, U~(theta) = (n / b) sum_{batch} h + f.
Many chains run at once as one batch (theta ``[C, P]``); each chain draws its own minibatch
(with replacement) at every step. The whole run is one compiled ``tf.function``; its random
numbers come from stateless ops keyed by ``seed`` and the step number, so a seed reproduces
a run exactly.

* SGLD (Welling and Teh, 2011), constant step size eps:
  theta <- theta - (eps / 2) grad U~(theta) + N(0, eps I).
* SGHMC (Chen, Fox and Guestrin, 2014), in their "learning rate eta, momentum decay alpha"
  form with no estimate of the gradient noise (beta = 0):
  v <- (1 - alpha) v - eta grad U~(theta) + N(0, 2 alpha eta I),  theta <- theta + v,
  starting from v ~ N(0, eta I), the stationary distribution of v.

Forgetting applied to the samples lives in :mod:`unlearnkit.bif.forgetting`.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from unlearnkit._validation import (
    as_float64,
    check_callable,
    check_output_tensor,
    check_positive_int,
    check_positive_number,
    ensure_finite,
)
from unlearnkit.diagnostics import SamplerInfo
from unlearnkit.seeds import Seed, sanitize_seed

__all__ = ["SGLD", "SGHMC"]


class _StochasticGradientSampler:
    """Shared machinery: minibatch gradients, the compiled loop, input checks."""

    def __init__(
        self,
        h: Callable,
        f: Callable,
        *,
        batch_size: Optional[int],
        num_steps: int,
        record_every: int,
    ) -> None:
        self.h = check_callable(h, "h", "(theta [C, P], points [C, b, D]) -> [C, b]")
        self.f = check_callable(f, "f", "theta [C, P] -> [C]")
        self.batch_size = None if batch_size is None else check_positive_int(batch_size, "batch_size")
        self.num_steps = check_positive_int(num_steps, "num_steps")
        self.record_every = check_positive_int(record_every, "record_every")
        if num_steps % record_every:
            raise ValueError(
                f"num_steps ({num_steps}) must be a multiple of record_every ({record_every})"
            )
        spec = [
            tf.TensorSpec([None, None], tf.float64),
            tf.TensorSpec([None, None], tf.float64),
            tf.TensorSpec([2], tf.int32),
            tf.TensorSpec([], tf.int32),
            tf.TensorSpec([], tf.int32),
        ]
        # the numbers of steps are inputs, so runs of any length share one trace
        self._run = tf.function(self._run_impl, input_signature=spec)

    # -- to be provided by subclasses
    def _initial_aux(self, theta: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _update(self, theta, aux, gradient, seed) -> tuple:
        raise NotImplementedError

    # -- the loop
    def _gradient(self, theta: tf.Tensor, points: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        num_points = tf.shape(points)[0]
        if self.batch_size is None:
            batch, scale = points, tf.constant(1.0, tf.float64)
        else:
            index = tf.random.stateless_uniform(
                [tf.shape(theta)[0], self.batch_size], seed, 0, num_points, dtype=tf.int32
            )
            batch = tf.gather(points, index)  # [C, b, D]
            scale = tf.cast(num_points, tf.float64) / self.batch_size
        with tf.GradientTape() as tape:
            tape.watch(theta)
            energy = scale * tf.reduce_sum(self.h(theta, batch), -1) + self.f(theta)
            total = tf.reduce_sum(energy)  # chains are independent: one backward pass for all
        return tape.gradient(total, theta)

    def _run_impl(
        self,
        points: tf.Tensor,
        initial: tf.Tensor,
        seed: tf.Tensor,
        num_records: tf.Tensor,
        record_every: tf.Tensor,
    ) -> tuple:
        fold = tf.random.experimental.stateless_fold_in
        aux0 = self._initial_aux(initial, fold(seed, -1))

        def step(t, theta, aux):
            key = fold(seed, t)
            gradient = self._gradient(theta, points, fold(key, 0))
            theta, aux = self._update(theta, aux, gradient, fold(key, 1))
            return t + 1, theta, aux

        def record(carry, _):
            t, theta, aux = carry
            t, theta, aux = tf.while_loop(
                lambda i, *_: i < t + record_every, step, (t, theta, aux)
            )
            return t, theta, aux

        start = (tf.constant(0, tf.int32), initial, aux0)
        _, trace, _ = tf.scan(record, tf.range(num_records), start)
        return trace[-1], trace

    def _check_energies(self, points: tf.Tensor, initial: tf.Tensor) -> None:
        """Call h and f once, eagerly, with shapes that tell the axes apart (2 chains, 3
        points, repeating rows when there are fewer), so that a wrong-shaped energy fails
        here, clearly, whatever the number of chains and points."""
        chains = tf.gather(initial, [0, 1 % int(initial.shape[0])])  # [2, P]
        num_points, count = int(points.shape[0]), 3
        rows = tf.gather(points, [i % num_points for i in range(count)])  # [3, D]
        batch = rows if self.batch_size is None else tf.stack([rows] * 2)
        form = "[n, D]" if self.batch_size is None else "[C, b, D]"
        self._check_output(self.h(chains, batch), "h", (2, count),
                           f"[C, b] for theta [C, P] and points {form} (probed with C = 2, b = 3)")
        self._check_output(self.f(chains), "f", (2,), "[C] for theta [C, P] (probed with C = 2)")

    @staticmethod
    def _check_output(values: object, name: str, shape: tuple, expected: str) -> None:
        shape_of = getattr(values, "shape", None)
        if shape_of is None or tuple(shape_of) != shape:
            raise ValueError(
                f"{name} must return {expected}, got {None if shape_of is None else list(shape_of)}"
            )
        values = check_output_tensor(values, name, expected)
        if values.dtype != tf.float64:
            raise TypeError(f"{name} must return float64 values, got dtype {values.dtype.name}")
        ensure_finite(values, f"the output of {name} at initial")

    def sample(
        self,
        points: object,
        initial: object,
        *,
        num_steps: Optional[int] = None,
        record_every: Optional[int] = None,
        seed: Seed = None,
        return_info: bool = False,
    ) -> Union[tf.Tensor, Tuple[tf.Tensor, SamplerInfo]]:
        """Run ``C`` chains for ``num_steps`` steps.

        Args:
            points: ``[n, D]`` the data S.
            initial: ``[C, P]`` the starting state of every chain.
            num_steps: steps of every chain (default: the sampler's ``num_steps``).
            record_every: keep the state every this many steps in the trace (default: the
                sampler's ``record_every``); must divide ``num_steps``. Runs of any length
                share one compiled loop.
            seed: ``None``, an int or a stateless seed; the same seed gives the same run.
            return_info: also return a :class:`~unlearnkit.diagnostics.SamplerInfo` with the
                trace of the chains.

        Returns:
            ``[C, P]`` the last state of every chain (one sample per chain), and the info if
            requested.

        Raises:
            ValueError: bad shapes, non-finite inputs, or a run that diverged to NaN/inf
                (reduce the step size).
        """
        start = time.perf_counter()
        num_steps = self.num_steps if num_steps is None else check_positive_int(num_steps, "num_steps")
        record_every = (
            self.record_every if record_every is None else check_positive_int(record_every, "record_every")
        )
        if num_steps % record_every:
            raise ValueError(
                f"num_steps ({num_steps}) must be a multiple of record_every ({record_every})"
            )
        points = as_float64(points, "points", ndim=2)
        initial = as_float64(initial, "initial", ndim=2)
        if points.shape[0] == 0:
            raise ValueError("points must hold at least one point")
        if initial.shape[0] == 0 or initial.shape[1] == 0:
            raise ValueError(
                f"initial must have shape [C, P] with C, P >= 1, got {initial.shape.as_list()}"
            )
        self._check_energies(points, initial)
        try:
            samples, trace = self._run(
                points,
                initial,
                sanitize_seed(seed),
                tf.constant(num_steps // record_every, tf.int32),
                tf.constant(record_every, tf.int32),
            )
        except tf.errors.InvalidArgumentError as err:  # a compiled finiteness check failed
            raise ValueError(
                f"the sampler's states became NaN or infinite (the run diverged: reduce the step "
                f"size): {err.message.splitlines()[0]}"
            ) from None
        ensure_finite(trace, "the sampler's states (the run diverged: reduce the step size)")
        if not return_info:
            return samples
        info = SamplerInfo(trace.numpy(), num_steps, time.perf_counter() - start)
        return samples, info


class SGLD(_StochasticGradientSampler):
    """Stochastic-gradient Langevin dynamics with a constant step size.

    Args:
        h: ``(theta [C, P], points [C, b, D] or [n, D]) -> [C, b]`` (or ``[C, n]``), the energy
            h(theta, z) = -log p(z | theta) of every point for every chain.
        f: ``theta [C, P] -> [C]``, the prior energy f(theta) = -log p(theta).
        step_size: eps > 0.
        batch_size: minibatch size b (None: the full data every step, i.e. unadjusted
            Langevin).
        num_steps: number of steps of every chain.
        record_every: keep the state every this many steps in the trace.
    """

    def __init__(
        self,
        h: Callable,
        f: Callable,
        *,
        step_size: float,
        batch_size: Optional[int] = 100,
        num_steps: int = 1000,
        record_every: int = 10,
    ) -> None:
        self.step_size = check_positive_number(step_size, "step_size")
        super().__init__(h, f, batch_size=batch_size, num_steps=num_steps, record_every=record_every)

    def _initial_aux(self, theta, seed):
        return tf.zeros([0], tf.float64)  # SGLD carries no auxiliary state

    def _update(self, theta, aux, gradient, seed):
        noise = tf.random.stateless_normal(tf.shape(theta), seed, dtype=tf.float64)
        eps = self.step_size
        return theta - 0.5 * eps * gradient + np.sqrt(eps) * noise, aux


class SGHMC(_StochasticGradientSampler):
    """Stochastic-gradient Hamiltonian Monte Carlo with friction (Chen et al., 2014).

    Args:
        h, f, batch_size, num_steps, record_every: as in :class:`SGLD`.
        learning_rate: eta > 0 (eta = h^2 for a leapfrog step h and unit mass).
        momentum_decay: alpha in (0, 1] (alpha = h C for friction C).
    """

    def __init__(
        self,
        h: Callable,
        f: Callable,
        *,
        learning_rate: float,
        momentum_decay: float = 0.1,
        batch_size: Optional[int] = 100,
        num_steps: int = 1000,
        record_every: int = 10,
    ) -> None:
        self.learning_rate = check_positive_number(learning_rate, "learning_rate")
        alpha = check_positive_number(momentum_decay, "momentum_decay")
        if alpha > 1.0:
            raise ValueError(f"momentum_decay must lie in (0, 1], got {alpha}")
        self.momentum_decay = alpha
        super().__init__(h, f, batch_size=batch_size, num_steps=num_steps, record_every=record_every)

    def _initial_aux(self, theta, seed):
        noise = tf.random.stateless_normal(tf.shape(theta), seed, dtype=tf.float64)
        return np.sqrt(self.learning_rate) * noise

    def _update(self, theta, velocity, gradient, seed):
        noise = tf.random.stateless_normal(tf.shape(theta), seed, dtype=tf.float64)
        eta, alpha = self.learning_rate, self.momentum_decay
        velocity = (1.0 - alpha) * velocity - eta * gradient + np.sqrt(2.0 * alpha * eta) * noise
        return theta + velocity, velocity
