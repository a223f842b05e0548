"""Bayesian inference forgetting's own algorithm for SG-MCMC: an influence step on each chain
whose expectations come from continued sampling.

Fu et al. (2021) forget data from a running stochastic-gradient sampler as follows. For the
current state of a chain, and for each chunk ``S'_k`` of the erased data in turn (the
remaining data before the chunk is ``S_{k-1}``):

1. run the sampler on ``S_{k-1}`` for ``K`` steps, and average the gradient of the erased
   energy ``E_k = -sum_{z in S'_k} log p(z | theta)`` over the states it visits: ``g``;
2. estimate ``H^{-1} g``, ``H`` the expected Hessian of ``F(., S_{k-1})`` over the chain, with a
   truncated Neumann series (LiSSA, Agarwal et al., 2017): ``x_0 = g``,
   ``x_t = g + x_{t-1} - s H_t x_{t-1}``, ``H^{-1} g ~ s x_T``, each ``H_t x`` averaged over the
   states of ``K`` further sampler steps (so ``K (1 + T)`` steps per chunk); the scale ``s``
   must make ``s H`` a contraction (BIF: ``s = 1 / |S_{k-1}|``), and no damping is used;
3. shift the chain's current state by ``H^{-1} g``, and let the sampler continue.

Its published experiments remove 800 points in chunks of 4 with ``K = 5`` and ``T = 32``: 165
sampler steps per chunk, 33,000 in all. :func:`forget_chains` is that algorithm, for any
per-datum model and the samplers of :mod:`unlearnkit.bif.samplers`, with two choices BIF did
not offer: ``solver="cg"`` (conjugate gradients on the same expected Hessian-vector products,
to a tolerance) or ``"exact"`` (dense averaged Hessians), and explicit ``damping``. By default
the expected products average, over the visited states, the Hessian on all of ``S_{k-1}``;
``hessian_batch_size=64`` uses one random minibatch per product instead, as BIF did.

Compare the per-sample Newton step and the Gaussian transport of
:func:`unlearnkit.bif.forgetting.forget_samples`, which run no sampler at all.
"""

from __future__ import annotations

import time
from typing import Optional, Tuple, Union

import numpy as np
import tensorflow as tf

from unlearnkit import linalg
from unlearnkit._validation import (
    as_float64,
    check_nonnegative_int,
    check_nonnegative_number,
    check_positive_int,
    check_positive_number,
    ensure_finite,
)
from unlearnkit.bif.forgetting import erasure_chunks
from unlearnkit.bif.influence import check_hessian_choice, remove_in_chunks
from unlearnkit.bif.per_datum import PerDatumModel
from unlearnkit.diagnostics import ForgettingInfo
from unlearnkit.seeds import Seed, split_seed

__all__ = ["forget_chains", "SOLVERS"]

SOLVERS = ("lissa", "cg", "exact")


class _ContinuedSampling:
    """:class:`~unlearnkit.bif.influence.ChunkDerivatives` of BIF's SG-MCMC forgetting.

    ``erased_gradient`` runs the sampler on the data before the chunk and averages the erased
    energy's gradient over the first ``K`` states; ``newton_direction`` solves with the
    expected Hessian and returns the move from the chain's state before the run to its state
    after the run plus the shift.
    """

    def __init__(self, model, sampler, chunks, options, seeds) -> None:
        self.model, self.sampler, self.chunks = model, sampler, list(chunks)
        self.num_chunks = len(self.chunks)
        self.options, self.seeds = options, seeds
        self.keep = np.ones(model.num_points, dtype=bool)
        self.steps = 0
        self.rng = np.random.default_rng([int(x) & 0xFFFFFFFF for x in seeds[-1].numpy()])

    def _hessian_rows(self, rows: np.ndarray) -> Tuple[np.ndarray, float]:
        """The rows one Hessian evaluation uses, and the scale of their data term."""
        size = self.options["hessian_batch_size"]
        if size is None:
            return rows, 1.0
        return self.rng.choice(rows, size=size, replace=True), len(rows) / size

    def erased_gradient(self, params: tf.Tensor, chunk: int) -> tf.Tensor:
        self.before = np.flatnonzero(self.keep)
        self.keep[self.chunks[chunk]] = False
        self.after = np.flatnonzero(self.keep)
        k, iterations = self.options["expectation_steps"], self.options["solver_iterations"]
        num_steps = k * (1 + iterations) if self.options["solver"] == "lissa" else k
        _, info = self.sampler.sample(
            tf.gather(self.model.points, self.before),
            params,
            num_steps=num_steps,
            record_every=1,
            seed=self.seeds[chunk],
            return_info=True,
        )
        self.steps += num_steps
        self.trace = tf.constant(info.trace)  # [steps, C, d]
        states = self._flat(self.trace[:k])
        gradient = self.model.energy_gradient(states, self.chunks[chunk], with_prior=False)
        return tf.reduce_mean(tf.reshape(gradient, [k, -1, self.model.dim]), 0)  # [C, d]

    def _flat(self, states: tf.Tensor) -> tf.Tensor:
        return tf.reshape(states, [-1, self.model.dim])

    def _expected_product(self, states: tf.Tensor, vector: tf.Tensor, rows, scale=None) -> tf.Tensor:
        """``mean_k hess F(states_k) @ vector``: states ``[K, C, d]``, vector ``[C, d]``; a new
        minibatch of ``rows`` unless ``scale`` is given (then ``rows`` is the batch)."""
        k = int(states.shape[0])
        tiled = tf.reshape(tf.tile(vector[None], [k, 1, 1]), [-1, self.model.dim])
        if scale is None:
            rows, scale = self._hessian_rows(rows)
        product = self.model.energy_hessian_vector(
            self._flat(states), tiled, rows, with_prior=True, data_scale=scale
        )
        return tf.reduce_mean(tf.reshape(product, [k, -1, self.model.dim]), 0)

    def newton_direction(self, params, chunk, rhs, hessian, damping) -> tf.Tensor:
        rows = self.before if hessian == "before" else self.after
        k, solver = self.options["expectation_steps"], self.options["solver"]
        name = f"the expected Hessian of chunk {chunk}" + (" (+ damping I)" if damping else "")
        if solver == "exact":
            states = self._flat(self.trace[:k])
            rows, scale = self._hessian_rows(rows)
            _, hessians = self.model.energy_derivatives(
                states, rows, with_prior=True, data_scale=scale
            )
            expected = tf.reduce_mean(tf.reshape(hessians, [k, -1, self.model.dim, self.model.dim]), 0)
            shift = linalg.solve_positive_definite(
                expected, rhs, damping=damping, name=name,
                hint="; pass damping > 0 to solve with (H + damping I) instead",
            )
        elif solver == "cg":
            states = self.trace[:k]
            shape = tf.shape(rhs)
            fixed_rows, scale = self._hessian_rows(rows)  # one batch: CG needs a fixed matrix
            if self.model.derivatives is None:  # Hessian-vector products by autodiff
                expected = lambda v: self._expected_product(states, v, fixed_rows, scale)  # noqa: E731
            else:  # closed-form Hessians: average them once, then multiply
                _, hessians = self.model.energy_derivatives(
                    self._flat(states), fixed_rows, with_prior=True, data_scale=scale
                )
                dim = self.model.dim
                average = tf.reduce_mean(tf.reshape(hessians, [k, -1, dim, dim]), 0)
                expected = lambda v: tf.linalg.matvec(average, v)  # noqa: E731

            def matvec(vector):
                vector = tf.reshape(vector, shape)
                product = expected(vector) + damping * vector
                return tf.reshape(product, [-1])

            shift = tf.reshape(
                linalg.conjugate_gradient(
                    matvec,
                    tf.reshape(rhs, [-1]),
                    tolerance=self.options["tolerance"],
                    max_iterations=self.options["max_iterations"],
                ),
                shape,
            )
        else:  # LiSSA: a truncated Neumann series, one fresh block of states per term
            scale = self.options["lissa_scale"] or 1.0 / len(self.before)
            x, bound = rhs, 1e12 * (float(tf.reduce_max(tf.abs(rhs))) + 1e-300)
            for t in range(1, self.options["solver_iterations"] + 1):
                product = self._expected_product(self.trace[k * t : k * (t + 1)], x, rows)
                x = rhs + x - scale * (product + damping * x)
                size = float(tf.reduce_max(tf.abs(x)))
                if not size <= bound:  # also catches NaN
                    raise ValueError(
                        f"the Neumann series diverged at term {t} of chunk {chunk}: lissa_scale "
                        f"{scale:.3g} times the largest eigenvalue of the expected Hessian exceeds "
                        f"2 (or the Hessian is not positive definite); lower lissa_scale or add damping"
                    )
            shift = scale * x
        return self.trace[-1] + shift - params


def forget_chains(
    chains: object,
    log_likelihood: object,
    log_prior: object,
    points: object,
    erased: object,
    sampler: object,
    *,
    num_chunks: int = 1,
    expectation_steps: int = 5,
    solver: str = "lissa",
    solver_iterations: int = 32,
    lissa_scale: Optional[float] = None,
    hessian_batch_size: Optional[int] = None,
    damping: float = 0.0,
    hessian: str = "before",
    continue_steps: int = 0,
    tolerance: float = 1e-8,
    max_iterations: Optional[int] = None,
    seed: Seed = None,
    log_likelihood_derivatives: object = None,
    return_info: bool = False,
) -> Union[tf.Tensor, Tuple[tf.Tensor, ForgettingInfo]]:
    """BIF's forgetting for SG-MCMC: influence steps whose expectations come from continued sampling.

    See the module docstring for the algorithm. Every chain is processed on its own (its
    own trajectory gives its own expectations), all chains at once.

    Args:
        chains: ``[C, d]`` the current states of ``C`` chains on all the data ``S``.
        log_likelihood: ``(theta [S, d], points [n, D]) -> [S, n]``, per datum.
        log_prior: ``theta [S, d] -> [S]``.
        points: ``[n, D]`` the data ``S`` (one array: the sampler's data).
        erased: ``[m]`` row indices of ``S'``, removed chunk by chunk in this order.
        sampler: an :class:`~unlearnkit.bif.samplers.SGLD` or
            :class:`~unlearnkit.bif.samplers.SGHMC` for the same model (its ``h`` and ``f``
            must be ``-log_likelihood`` and ``-log_prior``).
        num_chunks: number of chunks (BIF: ``m / 4``).
        expectation_steps: ``K``, sampler steps per expectation (BIF: 5).
        solver: ``"lissa"`` (BIF's truncated Neumann series), ``"cg"`` (conjugate
            gradients on the expected Hessian-vector products over the first ``K`` states)
            or ``"exact"`` (dense expected Hessian over those states).
        solver_iterations: ``T``, terms of the Neumann series (``"lissa"`` only; BIF: 32).
        lissa_scale: ``s`` (``"lissa"`` only); default ``1 / |S_{k-1}|``, BIF's choice.
        hessian_batch_size: points per Hessian evaluation, drawn with replacement and scaled
            to the data set (BIF: 64, a fresh minibatch for every term of the series); None
            (default): all of the data, the exact expectation over the visited states.
        damping: non-negative multiple of the identity added to the expected Hessian.
        hessian: ``"before"`` (default, BIF's: the Hessian of ``F(., S_{k-1})``) or
            ``"after"`` (of ``F(., S_k)``). The sampler always runs on ``S_{k-1}``.
        continue_steps: sampler steps on the remaining data after the last chunk.
        tolerance, max_iterations: conjugate-gradient options (``"cg"`` only).
        seed: seed of the sampler runs.
        log_likelihood_derivatives: optional closed-form derivatives of the summed
            log-likelihood (see :mod:`unlearnkit.bif.per_datum`); with them the
            Hessian-vector products multiply the closed-form Hessians.
        return_info: also return a :class:`~unlearnkit.diagnostics.ForgettingInfo`, whose
            ``sampler_steps`` counts the steps every chain ran.

    Returns:
        The chains' new states ``[C, d]``, and the info if requested.

    Raises:
        NotPositiveDefiniteError: the expected Hessian is not positive definite
            (``"exact"``, ``"cg"``); pass ``damping``.
        ValueError: the Neumann series diverged (``"lissa"``), or a sampler run diverged.

    Warns:
        ConvergenceWarning: conjugate gradients stopped at ``max_iterations``.
    """
    start = time.perf_counter()
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    hessian = check_hessian_choice(hessian)
    if not all(hasattr(sampler, name) for name in ("sample", "h", "f")):
        raise TypeError(
            f"sampler must be an SGLD or SGHMC sampler of unlearnkit.bif, got {type(sampler).__name__}"
        )
    chains = as_float64(chains, "chains", ndim=2)
    if isinstance(points, (tuple, list)):
        raise TypeError("points must be one array [n, D] (the data the sampler runs on), not a tuple")
    points = as_float64(points, "points", ndim=2)
    model = PerDatumModel(
        log_likelihood, log_prior, points, int(chains.shape[1]),
        log_likelihood_derivatives=log_likelihood_derivatives, probe=chains,
    )
    chains = model.check_theta(chains, "chains")
    options = {
        "expectation_steps": check_positive_int(expectation_steps, "expectation_steps"),
        "solver_iterations": check_positive_int(solver_iterations, "solver_iterations"),
        "solver": solver,
        "lissa_scale": None if lissa_scale is None else check_positive_number(lissa_scale, "lissa_scale"),
        "tolerance": linalg.check_tolerance(tolerance),
        "max_iterations": max_iterations,
        "hessian_batch_size": None
        if hessian_batch_size is None
        else check_positive_int(hessian_batch_size, "hessian_batch_size"),
    }
    damping = check_nonnegative_number(damping, "damping")
    continue_steps = check_nonnegative_int(continue_steps, "continue_steps")
    chunks = erasure_chunks(erased, model.num_points, num_chunks)
    seeds = split_seed(seed, len(chunks) + 1)
    derivatives = _ContinuedSampling(model, sampler, chunks, options, seeds)
    result, path = remove_in_chunks(chains, derivatives, hessian=hessian, damping=damping)
    result = ensure_finite(result, "the chains after forgetting")
    steps = derivatives.steps
    if continue_steps:
        result = sampler.sample(
            tf.gather(points, derivatives.after),
            result,
            num_steps=continue_steps,
            record_every=continue_steps,
            seed=seeds[-1],
        )
        steps += continue_steps
    if not return_info:
        return result
    info = ForgettingInfo(
        method="continued sampling",
        hessian=hessian,
        num_chunks=len(chunks),
        sampler_steps=steps,
        seconds=time.perf_counter() - start,
        path=np.stack([p.numpy() for p in path]),
    )
    return result, info
