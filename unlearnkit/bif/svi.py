"""Stochastic variational inference (SVI): a Gaussian fit by minibatch stochastic gradients.

:func:`fit_svi` fits ``q(theta) = N(m, L L^T)`` to the posterior of any per-datum model (see
:mod:`unlearnkit.bif.per_datum`) by maximising the evidence lower bound

    ELBO(q) = E_q[sum_{z in S} log p(z | theta) + log p(theta)] + H[q]

with stochastic gradients, as SVI does (Hoffman et al., 2013): at every step a minibatch of
``b`` points (drawn with replacement) stands for the data, scaled by ``n / b``, and ``M`` fresh
draws ``theta = m + L eps`` (the reparameterisation trick) stand for the expectation; the
entropy ``H[q] = sum_i log L_ii + const`` is exact. The parameters ``gamma = (m, rho)`` (the
scale's diagonal is ``softplus(rho)``) follow Adam (with ``beta_2 = 0.99``); the result is the average of the iterates
over the last part of the run (Polyak-Ruppert averaging), which removes most of the noise of
the last iterate. The whole run is one compiled TensorFlow loop.

The fit approximately minimises the *exact* negative ELBO, not a fixed-noise estimate of it,
so :func:`unlearnkit.bif.forget_variational` estimates the expectations of the erased and the
remaining energy with its own draws of ``q``.
"""

from __future__ import annotations

import time
from typing import Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_gaussian_belief,
    check_positive_int,
    check_positive_number,
    check_unit_interval,
    ensure_finite,
)
from unlearnkit.bif.per_datum import PerDatumModel
from unlearnkit.diagnostics import OptimizationInfo
from unlearnkit.seeds import Seed, sanitize_seed

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["fit_svi"]

_FAMILIES = ("diagonal", "full")
# Adam with a short memory of squared gradients (beta_2 = 0.99 rather than 0.999): the early,
# large gradients of a too-wide starting belief are forgotten within ~100 steps, so the steps
# in the scales do not stay small for thousands of steps near the optimum.
_BETA1, _BETA2, _ADAM_EPSILON = 0.9, 0.99, 1e-8


def _bijector(dim: int, diagonal: bool):
    if diagonal:
        return lambda raw: tf.linalg.diag(tf.math.softplus(raw)), lambda scale: tfp.math.softplus_inverse(
            tf.linalg.diag_part(scale)
        )
    bijector = tfb.FillScaleTriL(diag_bijector=tfb.Softplus(), diag_shift=None)
    return bijector.forward, bijector.inverse


class _Run:
    """The compiled loop of one (model, family, sizes) combination."""

    def __init__(self, model: PerDatumModel, diagonal: bool, batch_size: int, num_samples: int):
        self.model = model
        dim = model.dim
        to_scale, _ = _bijector(dim, diagonal)
        num_points = model.num_points
        scale_data = float(num_points) / batch_size

        def loss(gamma, batch, eps):
            scale = to_scale(gamma[dim:])
            theta = gamma[:dim] + tf.matmul(eps, scale, transpose_b=True)  # [M, d]
            data = tf.reduce_mean(tf.reduce_sum(model.log_likelihood(theta, batch), -1))
            prior = tf.reduce_mean(model.log_prior(theta))
            entropy = tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(scale))))
            return -(scale_data * data + prior + entropy)

        def run(points, gamma0, seed, num_steps, learning_rate, average_from, record_every):
            fold = tf.random.experimental.stateless_fold_in

            def step(t, gamma, first, second, total, count, trace_loss):
                key = fold(seed, t)
                index = tf.random.stateless_uniform(
                    [batch_size], fold(key, 0), 0, num_points, dtype=tf.int32
                )
                batch = tf.nest.map_structure(lambda x: tf.gather(x, index), points)
                eps = tf.random.stateless_normal([num_samples, dim], fold(key, 1), dtype=tf.float64)
                with tf.GradientTape() as tape:
                    tape.watch(gamma)
                    value = loss(gamma, batch, eps)
                grad = tape.gradient(value, gamma)
                tf.debugging.assert_all_finite(grad, "the SVI gradient became NaN or infinite")
                first = _BETA1 * first + (1.0 - _BETA1) * grad
                second = _BETA2 * second + (1.0 - _BETA2) * grad**2
                k = tf.cast(t + 1, tf.float64)
                corrected = (first / (1.0 - _BETA1**k)) / (
                    tf.sqrt(second / (1.0 - _BETA2**k)) + _ADAM_EPSILON
                )
                gamma = gamma - learning_rate * corrected
                averaging = t >= average_from
                total = tf.where(averaging, total + gamma, total)
                count = count + tf.cast(averaging, tf.float64)
                trace_loss = trace_loss + value
                return t + 1, gamma, first, second, total, count, trace_loss

            def record(carry, _):
                t, gamma, first, second, total, count, _ = carry
                zero = tf.constant(0.0, tf.float64)
                return tf.while_loop(
                    lambda i, *_: i < t + record_every,
                    step,
                    (t, gamma, first, second, total, count, zero),
                )

            zeros = tf.zeros_like(gamma0)
            start = (tf.constant(0), gamma0, zeros, zeros, zeros, tf.constant(0.0, tf.float64),
                     tf.constant(0.0, tf.float64))
            outputs = tf.scan(record, tf.range(num_steps // record_every), start)
            gammas, totals, counts, losses = outputs[1], outputs[4], outputs[5], outputs[6]
            average = totals[-1] / counts[-1]
            return average, gammas, losses / tf.cast(record_every, tf.float64)

        self.run = tf.function(run, autograph=False, reduce_retracing=True)


_RUNS: dict = {}


def fit_svi(
    log_likelihood: object,
    log_prior: object,
    points: object,
    initial: object,
    *,
    family: str = "diagonal",
    batch_size: int = 100,
    num_samples: int = 4,
    num_steps: int = 3000,
    learning_rate: float = 0.01,
    average_fraction: float = 0.5,
    record_every: int = 10,
    seed: Seed = None,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalTriL, Tuple[tfd.MultivariateNormalTriL, OptimizationInfo]]:
    """Fit a Gaussian ``q(theta)`` to ``p(theta | S)`` by stochastic variational inference.

    Args:
        log_likelihood: ``(theta [S, d], points) -> [S, n]``, ``log p(z_i | theta_s)`` per datum.
        log_prior: ``theta [S, d] -> [S]``.
        points: the data ``S``: an array ``[n, ...]`` or a tuple of arrays ``[n, ...]``.
        initial: the starting belief, a float64 multivariate normal over ``theta [d]`` (its
            mean and scale; for ``family="diagonal"`` only the scale's diagonal is used).
        family: ``"diagonal"`` (mean field, the default) or ``"full"`` covariance.
        batch_size: ``b``, points per minibatch (drawn with replacement).
        num_samples: ``M``, draws of ``theta`` per step.
        num_steps: Adam steps; a multiple of ``record_every``.
        learning_rate: Adam's step size.
        average_fraction: the result averages the iterates of this last fraction of the run
            (in (0, 1]; 1 / num_steps or less: the last iterate).
        record_every: keep ``gamma`` every this many steps in the info's ``path``.
        seed: ``None``, an int or a stateless seed; the same seed gives the same fit.
        return_info: also return an :class:`~unlearnkit.diagnostics.OptimizationInfo`
            (``objective``: the minibatch estimate of the negative ELBO averaged over the last
            recorded block of steps; ``path``: ``gamma`` every ``record_every`` steps, with the
            scale's raw parameters after the mean). SVI has no convergence test:
            ``converged`` is True when the run finished with finite values.

    Returns:
        ``q``, a new ``tfd.MultivariateNormalTriL``, and the info if requested.

    Raises:
        ValueError: bad shapes or settings, or a run whose gradients became NaN / infinite
            (lower the learning rate).
    """
    start = time.perf_counter()
    if family not in _FAMILIES:
        raise ValueError(f"family must be one of {_FAMILIES}, got {family!r}")
    initial = as_gaussian_belief(initial, "initial")
    dim = int(initial.event_shape[0])
    model = PerDatumModel(log_likelihood, log_prior, points, dim, probe=initial.loc[None])
    batch_size = check_positive_int(batch_size, "batch_size")
    num_samples = check_positive_int(num_samples, "num_samples")
    num_steps = check_positive_int(num_steps, "num_steps")
    record_every = check_positive_int(record_every, "record_every")
    if num_steps % record_every:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of record_every ({record_every})")
    learning_rate = check_positive_number(learning_rate, "learning_rate")
    average_fraction = check_unit_interval(average_fraction, "average_fraction")
    if average_fraction == 0.0:
        raise ValueError("average_fraction must be positive")
    diagonal = family == "diagonal"
    _, to_raw = _bijector(dim, diagonal)
    scale = initial.scale.to_dense()
    if diagonal:
        scale = tf.linalg.diag(tf.linalg.diag_part(scale))
    gamma0 = tf.concat([initial.loc, tf.reshape(to_raw(scale), [-1])], 0)
    key = (model.log_likelihood, model.log_prior, model.num_points, diagonal, batch_size, num_samples)
    try:
        run = _RUNS[key]
    except (KeyError, TypeError):
        run = _Run(model, diagonal, batch_size, num_samples)
        try:
            if len(_RUNS) > 16:
                _RUNS.clear()
            _RUNS[key] = run
        except TypeError:
            pass
    average_from = min(num_steps - 1, int(round((1.0 - average_fraction) * num_steps)))
    try:
        gamma, path, losses = run.run(
            model.points,
            gamma0,
            sanitize_seed(seed),
            tf.constant(num_steps),
            tf.constant(learning_rate, tf.float64),
            tf.constant(average_from),
            tf.constant(record_every),
        )
    except tf.errors.InvalidArgumentError as err:
        raise ValueError(
            f"stochastic variational inference diverged (lower the learning rate): "
            f"{err.message.splitlines()[0]}"
        ) from None
    gamma = ensure_finite(gamma, "the fitted variational parameters")
    to_scale, _ = _bijector(dim, diagonal)
    belief = tfd.MultivariateNormalTriL(loc=gamma[:dim], scale_tril=to_scale(gamma[dim:]))
    if not return_info:
        return belief
    info = OptimizationInfo(
        objective=float(losses[-1]),
        num_iterations=num_steps,
        num_evaluations=num_steps,
        converged=True,
        message=f"{num_steps} Adam steps, iterates averaged over the last {num_steps - average_from}",
        seconds=time.perf_counter() - start,
        path=np.concatenate([gamma0.numpy()[None], path.numpy()]),
    )
    return belief, info
