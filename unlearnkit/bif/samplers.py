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

Forgetting (:func:`forget_samples`) moves every sample theta_j by an influence step
theta_j + H_j^{-1} grad sum_{z in S'} h(theta_j, z), one batched solve for all samples.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from unlearnkit._validation import (
    as_float64,
    check_callable,
    check_positive_int,
    ensure_finite,
)
from unlearnkit._validation import check_erased_indices

__all__ = [
    "SamplerResult",
    "SGLD",
    "SGHMC",
    "influence_steps",
    "influence_hessians",
    "forget_samples",
    "erasure_chunks",
]

Seed = Union[int, Sequence[int]]


class SamplerResult(NamedTuple):
    """Output of a sampler run: ``(samples, trace)``."""

    samples: tf.Tensor
    trace: tf.Tensor


SamplerResult.samples.__doc__ = "``[C, P]`` the last state of every chain (one sample per chain)."
SamplerResult.trace.__doc__ = "``[T, C, P]`` the states every ``record_every`` steps (last row: ``samples``)."


def _seed_pair(seed: Seed) -> tf.Tensor:
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be an integer or a pair of integers, got bool")
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    if (
        isinstance(seed, (tuple, list))
        and len(seed) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seed)
    ):
        return tf.constant([int(s) for s in seed], dtype=tf.int64)
    raise TypeError(f"seed must be an integer or a pair of integers, got {seed!r}")


def _positive_float(value: object, name: str) -> float:
    value = float(as_float64(value, name, ndim=0))
    if value <= 0.0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


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
            tf.TensorSpec([2], tf.int64),
        ]
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

    def _run_impl(self, points: tf.Tensor, init: tf.Tensor, seed: tf.Tensor) -> tuple:
        fold = tf.random.experimental.stateless_fold_in
        aux0 = self._initial_aux(init, fold(seed, -1))

        def step(t, theta, aux):
            key = fold(seed, t)
            gradient = self._gradient(theta, points, fold(key, 0))
            theta, aux = self._update(theta, aux, gradient, fold(key, 1))
            return t + 1, theta, aux

        def record(carry, _):
            t, theta, aux = carry
            t, theta, aux = tf.while_loop(
                lambda i, *_: i < t + self.record_every, step, (t, theta, aux)
            )
            return t, theta, aux

        start = (tf.constant(0, tf.int32), init, aux0)
        _, trace, _ = tf.scan(record, tf.range(self.num_steps // self.record_every), start)
        return trace[-1], trace

    def _check_energies(self, points: tf.Tensor, init: tf.Tensor) -> None:
        """Call h and f once, eagerly, so that a shape mismatch fails here, clearly."""
        values = self.h(init[:1], points[:1])
        if tuple(values.shape) != (1, 1):
            raise ValueError(f"h must return [C, b] for init [C, P], got {values.shape.as_list()}")
        values = self.f(init[:1])
        if tuple(values.shape) != (1,):
            raise ValueError(f"f must return [C] for init [C, P], got {values.shape.as_list()}")

    def sample(self, points: object, init: object, seed: Seed = 0) -> SamplerResult:
        """Run ``C`` chains for ``num_steps`` steps.

        Args:
            points: ``[n, D]`` the data S.
            init: ``[C, P]`` the starting state of every chain.
            seed: an integer or a pair of integers; the same seed gives the same run.

        Returns:
            A :class:`SamplerResult`.

        Raises:
            ValueError: bad shapes, non-finite inputs, or a run that diverged to NaN/inf
                (reduce the step size).
        """
        points = as_float64(points, "points", ndim=2)
        init = as_float64(init, "init", ndim=2)
        if points.shape[0] == 0:
            raise ValueError("points must hold at least one point")
        if init.shape[0] == 0 or init.shape[1] == 0:
            raise ValueError(f"init must have shape [C, P] with C, P >= 1, got {init.shape.as_list()}")
        self._check_energies(points, init)
        samples, trace = self._run(points, init, _seed_pair(seed))
        ensure_finite(trace, "the sampler's states (the run diverged: reduce the step size)")
        return SamplerResult(samples, trace)


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
        self.step_size = _positive_float(step_size, "step_size")
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
        self.learning_rate = _positive_float(learning_rate, "learning_rate")
        alpha = _positive_float(momentum_decay, "momentum_decay")
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


# ------------------------------------------------------------------------------- forgetting


def influence_steps(
    gradients: tf.Tensor, hessians: tf.Tensor, damping: float = 0.0
) -> tf.Tensor:
    """Batched influence steps ``(H_j + damping I)^{-1} g_j`` after checking positive definiteness.

    Args:
        gradients: ``[C, P]`` the gradients g_j of the erased energy.
        hessians: ``[C, P, P]`` the Hessians H_j.
        damping: non-negative multiple of the identity added to every H_j.

    Returns:
        ``[C, P]``.

    Raises:
        ValueError: some H_j + damping I is not positive definite; the message says how many
            and how much damping would make all of them positive definite.
    """
    damping = float(as_float64(damping, "damping", ndim=0))
    if damping < 0.0:
        raise ValueError(f"damping must be non-negative, got {damping}")
    size = int(hessians.shape[-1])
    system = hessians + damping * tf.eye(size, dtype=tf.float64)
    smallest = tf.reduce_min(tf.linalg.eigvalsh(system), axis=-1).numpy()
    scale = np.abs(tf.linalg.diag_part(system).numpy()).max(-1)
    bad = smallest <= size * np.finfo(np.float64).eps * scale
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {bad.size} Hessians (+ damping {damping:g} I) are not positive "
            f"definite (smallest eigenvalue {smallest.min():.3g}); pass damping > "
            f"{max(damping - smallest.min(), 0.0):.3g} to solve with H + damping I instead"
        )
    chol = tf.linalg.cholesky(system)
    return tf.linalg.cholesky_solve(chol, gradients[..., None])[..., 0]


def erasure_chunks(erased: object, num_points: int, num_chunks: int) -> list:
    """Split erased indices ``[m]`` into ``num_chunks`` consecutive, nearly equal chunks.

    The order of ``erased`` is kept: shuffle it first to remove points in random order.
    """
    erased = check_erased_indices(erased, num_points)
    check_positive_int(num_chunks, "num_chunks")
    if num_chunks > max(erased.size, 1):
        raise ValueError(f"num_chunks={num_chunks} exceeds the {erased.size} erased points")
    return np.array_split(erased, num_chunks)


def _check_hessian_choice(hessian: object) -> str:
    """``hessian`` must be ``"after"`` or ``"before"`` (which energy's Hessian a step uses)."""
    if hessian not in ("after", "before"):
        raise ValueError(f"hessian must be 'after' or 'before', got {hessian!r}")
    return hessian


_DERIVATIVES: dict = {}


def _sample_derivatives(model):
    """Compiled ``(theta, remaining, removed) -> (g_removed, H_remaining + H_prior, H_removed)``."""
    if model not in _DERIVATIVES:
        spec = [
            tf.TensorSpec([None, model.num_params], tf.float64),
            tf.TensorSpec([None, model.dim], tf.float64),
            tf.TensorSpec([None, model.dim], tf.float64),
        ]

        @tf.function(input_signature=spec)
        def derivatives(theta, remaining, removed):
            _, hess_remaining = model.energy_derivatives(theta, remaining)
            grad_removed, hess_removed = model.h_derivatives(theta, removed)
            return grad_removed, hess_remaining, hess_removed

        _DERIVATIVES[model] = derivatives
    return _DERIVATIVES[model]


def _forget_chunks(derivatives, params, points, erased, num_chunks, hessian, damping):
    """The sequential influence steps shared by samples and SVI (see :func:`forget_samples`)."""
    hessian = _check_hessian_choice(hessian)
    num_points = int(points.shape[0])
    chunks = erasure_chunks(erased, num_points, num_chunks)
    keep = np.ones(num_points, dtype=bool)
    for chunk in chunks:
        keep[chunk] = False
        g, h_remaining, h_removed = derivatives(
            params, tf.boolean_mask(points, keep), tf.gather(points, chunk)
        )
        h = h_remaining + h_removed if hessian == "before" else h_remaining
        params = params + influence_steps(g, h, damping)
    return params


def influence_hessians(
    model, samples: object, points: object, erased: object, *, hessian: str = "after"
) -> tf.Tensor:
    """The Hessians ``[C, P, P]`` a one-chunk :func:`forget_samples` would solve with.

    ``hessian="after"``: of F(theta_j, S - S'); ``"before"``: of F(theta_j, S). Use them to see
    which samples have a Hessian that is not positive definite (and so need damping).
    """
    samples = model.check_theta(samples, "samples")
    points = model.check_points(points)
    hessian = _check_hessian_choice(hessian)
    erased = check_erased_indices(erased, int(points.shape[0]))
    keep = np.ones(int(points.shape[0]), dtype=bool)
    keep[erased] = False
    _, h_remaining, h_removed = _sample_derivatives(model)(
        samples, tf.boolean_mask(points, keep), tf.gather(points, erased)
    )
    return h_remaining + h_removed if hessian == "before" else h_remaining


def forget_samples(
    model,
    samples: object,
    points: object,
    erased: object,
    *,
    num_chunks: int = 1,
    hessian: str = "after",
    damping: float = 0.0,
) -> tf.Tensor:
    """Remove the points ``erased`` from posterior samples by an influence step on every sample.

    Every sample theta_j is treated as the gamma of its own energy F(theta_j, S) (BIF for
    SGLD / SGHMC). For each chunk C_k of the erased points, removed in order from S_0 = S,

        theta_j <- theta_j + H_j^{-1} grad_theta sum_{z in C_k} h(theta_j, z),

    with H_j the Hessian of F(., S_k) at theta_j (``hessian="after"``, S_k = S_{k-1} - C_k: a
    Newton step on the energy that remains) or of F(., S_{k-1}) (``"before"``: the slides'
    tangent at tau = 0). All samples move in one batched, closed-form computation.

    Args:
        model: a :class:`~unlearnkit.bif.energies.GaussianMixtureModel` (anything with
            ``energy_derivatives``, ``h_derivatives``, ``check_theta`` and ``check_points``).
        samples: ``[C, P]`` posterior samples on S.
        points: ``[n, D]`` the data S.
        erased: ``[m]`` indices into ``points`` of S' (no repeats, m <= n).
        num_chunks: number of sequential chunks (1: the whole batch at once).
        hessian: ``"after"`` or ``"before"``.
        damping: non-negative multiple of the identity added to every Hessian (0: none, and a
            Hessian that is not positive definite is an error).

    Returns:
        The processed samples ``[C, P]``, a new tensor.
    """
    samples = model.check_theta(samples, "samples")
    points = model.check_points(points)
    result = _forget_chunks(
        _sample_derivatives(model), samples, points, erased, num_chunks, hessian, damping
    )
    return ensure_finite(result, "the processed samples")
