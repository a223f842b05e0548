"""Forgetting applied to posterior samples and to Gaussian variational fits, for any model.

A model is two callables (:mod:`unlearnkit.bif.per_datum`): a per-datum
``log_likelihood(theta [S, d], points) -> [S, n]`` and ``log_prior(theta [S, d]) -> [S]``.
With the energy ``F(theta, S) = -sum_{z in S} log p(z | theta) - log p(theta)``, the
posterior is ``p(theta | S) ~ exp(-F(theta, S))`` and erasing ``S'`` leaves
``F_r = F(., S - S') = F(., S) - E``, with the *erased energy* ``E = -sum_{z in S'} log p(z | .)``.

**Samples** ``theta_1 .. theta_C`` of ``p(theta | S)`` (SGLD, SGHMC, any sampler):
:func:`forget_samples` with

* ``method="newton"``, the *per-sample Newton step*: every sample is treated as the minimiser
  ``gamma`` of its own energy and moved by ``theta_j + H_j^{-1} grad E(theta_j)``, ``H_j`` the
  Hessian of ``F`` (``hessian="before"``) or ``F_r`` (``"after"``) at ``theta_j``. On a Gaussian
  posterior ``N(mu, A^{-1})`` with ``F_r`` of Hessian ``A_r`` the ``"after"`` step is the affine
  map ``theta -> mu_r + A_r^{-1} A (theta - mu)``: the mean lands on the retrained ``mu_r``, but a
  deviation is multiplied by ``A_r^{-1} A`` where the retrained posterior needs a factor
  ``(A_r^{-1} A)^{1/2}``. Erasing a fraction ``f`` of the data behind a direction widens it
  ``1 / sqrt(1 - f)`` times too much (``sqrt 5`` for 80 %).
* ``method="transport"`` (default), the *Gaussian transport*: the map that is exact for a
  Gaussian posterior. The mean and the deviations are processed separately:

      theta_j -> mu' + T (theta_j - mean_C theta),

  with ``T`` the symmetric (optimal-transport) map between ``N(0, Hbar^{-1})`` and
  ``N(0, Hbar_r^{-1})`` (:func:`gaussian_transport_matrix`), ``Hbar`` and ``Hbar_r`` the
  sample averages of the Hessians of ``F`` and ``F_r``, and ``mu'`` one Newton step on the
  stationarity condition of the new samples, ``mean_j grad F_r(theta'_j) = 0`` (the score of
  a distribution averages to zero under it), linearised at the stored samples:

      mu' = mean_C theta - Hbar_r^{-1} mean_j [grad F_r(theta_j) + H_r(theta_j) (T - I)(theta_j - mean_C theta)].

  For a quadratic energy ``T`` is ``(A_r^{-1} A)^{1/2}`` made symmetric and ``mu' = mu_r``
  exactly, whatever the stored samples: the processed samples have the retrained mean and the
  stored samples' spread, rescaled.

**A Gaussian variational fit** ``q = N(m, L L^T)`` of ``p(theta | S)``: :func:`forget_variational`
with

* ``method="transport"`` (default): the same map applied to ``q`` itself, with the averages
  taken over draws of ``q``: ``m -> mu'``, ``L -> T L``. It follows from the stationarity
  conditions of the evidence lower bound, ``E_q[grad F] = 0`` and ``Sigma^{-1} = E_q[hess F]``
  (diagonal family: ``s_i^{-2} = E_q[hess F]_ii``), which are linear in the data, so that
  erasing data subtracts from them; exact for a quadratic energy (linear-Gaussian models).
* ``method="influence"``: Bayesian inference forgetting's own step on the variational
  parameters ``gamma = (m, rho)`` (scales ``softplus(rho)``) of the negative ELBO with fixed
  base noise: ``gamma + H^{-1} grad E(gamma)``. Exact in ``m`` for a quadratic energy, not in
  ``rho``: the negative ELBO is far from quadratic in ``rho``, and one Newton step overshoots
  the scales when much of the data goes.

**Baseline**: :func:`reweight_samples`, the importance weights ``1 / p(S' | theta_j)`` that turn
samples of ``p(theta | S)`` into weighted samples of ``p(theta | S - S')``, with their
effective sample size.

BIF's published algorithm for SG-MCMC, which estimates the expectations by continuing the
chains on the remaining data, is :func:`unlearnkit.bif.sgmcmc.forget_chains`. Every method
removes the erased points through the package's one sequential routine,
:func:`unlearnkit.bif.influence.remove_in_chunks` (one chunk, or several in order).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit import linalg
from unlearnkit._validation import (
    as_float64,
    as_gaussian_belief,
    factor_is_positive_definite,
    check_erased_indices,
    check_nonnegative_int,
    check_nonnegative_number,
    check_positive_int,
    ensure_finite,
)
from unlearnkit.bif.influence import (
    check_hessian_choice,
    influence_unlearn_sequential,
    remove_in_chunks,
)
from unlearnkit.bif.per_datum import PerDatumModel
from unlearnkit.diagnostics import ForgettingInfo, ImportanceInfo
from unlearnkit.seeds import Seed
from unlearnkit.variational.gaussian import moment_matched_normal

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = [
    "erasure_chunks",
    "forget_samples",
    "forget_variational",
    "reweight_samples",
    "influence_hessians",
    "gaussian_transport_matrix",
]

SAMPLE_METHODS = ("transport", "newton")
VARIATIONAL_METHODS = ("transport", "influence")
FAMILIES = ("full", "diagonal")
_DAMPING_HINT = "; pass damping > 0 to solve with (H + damping I) instead"


def erasure_chunks(erased: object, num_points: int, num_chunks: int) -> list:
    """Split erased indices ``[m]`` into ``num_chunks`` consecutive, nearly equal chunks.

    The order of ``erased`` is kept: shuffle it first to remove points in random order.
    """
    erased = check_erased_indices(erased, num_points)
    check_positive_int(num_chunks, "num_chunks")
    if num_chunks > max(erased.size, 1):
        raise ValueError(f"num_chunks={num_chunks} exceeds the {erased.size} erased points")
    return np.array_split(erased, num_chunks)


def _refinements(refine_steps: object, method: str) -> list:
    """Empty chunks: steps that erase nothing and re-linearise the remaining energy."""
    refine_steps = check_nonnegative_int(refine_steps, "refine_steps")
    if refine_steps and method != "transport":
        raise ValueError(f"refine_steps applies to method='transport' only, got method={method!r}")
    return [np.zeros(0, dtype=np.int64)] * refine_steps


def _check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


# ------------------------------------------------------------------- the Gaussian transport


def gaussian_transport_matrix(
    precision_from: object, precision_to: object, *, diagonal: bool = False
) -> tf.Tensor:
    """The symmetric linear map ``T [d, d]`` that carries ``N(0, P_from^{-1})`` onto ``N(0, P_to^{-1})``.

    ``T P_from^{-1} T^T = P_to^{-1}``, and ``T`` is symmetric positive definite: the optimal
    transport (least squared displacement) map between the two Gaussians,

        T = P_from^{1/2} (P_from^{-1/2} P_to^{-1} P_from^{-1/2})^{1/2} P_from^{1/2}.

    When the precisions commute it is ``(P_to^{-1} P_from)^{1/2}``: in one dimension, the ratio
    of the standard deviations. With ``diagonal=True`` only the diagonals are used,
    ``T = diag(sqrt(P_from,ii / P_to,ii))`` (for mean-field beliefs).

    Args:
        precision_from: ``[d, d]`` symmetric positive definite.
        precision_to: ``[d, d]`` symmetric positive definite.
        diagonal: use the diagonals only.

    Raises:
        NotPositiveDefiniteError: a precision is not positive definite.
    """
    p_from = as_float64(precision_from, "precision_from", ndim=2)
    dim = int(p_from.shape[0])
    p_to = as_float64(precision_to, "precision_to", shape=[dim, dim])
    if p_from.shape[1] != dim:
        raise ValueError(f"precision_from must be square, got {p_from.shape.as_list()}")
    linalg.cholesky(p_from, "precision_from", hint=_DAMPING_HINT)
    chol_to = linalg.cholesky(p_to, "precision_to", hint=_DAMPING_HINT)
    if diagonal:
        return tf.linalg.diag(tf.sqrt(tf.linalg.diag_part(p_from) / tf.linalg.diag_part(p_to)))
    p_from = 0.5 * (p_from + tf.transpose(p_from))
    values, vectors = tf.linalg.eigh(p_from)
    root = tf.matmul(vectors * tf.sqrt(values), vectors, transpose_b=True)
    inverse_root = tf.matmul(vectors / tf.sqrt(values), vectors, transpose_b=True)
    covariance_to = tf.linalg.cholesky_solve(chol_to, tf.eye(dim, dtype=tf.float64))
    middle = inverse_root @ covariance_to @ inverse_root
    middle_values, middle_vectors = tf.linalg.eigh(0.5 * (middle + tf.transpose(middle)))
    middle_root = tf.matmul(
        middle_vectors * tf.sqrt(tf.maximum(middle_values, 0.0)), middle_vectors, transpose_b=True
    )
    transport = root @ middle_root @ root
    return ensure_finite(0.5 * (transport + tf.transpose(transport)), "the transport matrix")


def _transport_matrix_graph(reference: tf.Tensor, after: tf.Tensor, diagonal: bool) -> tf.Tensor:
    """:func:`gaussian_transport_matrix` without checks, as graph operations."""
    if diagonal:
        return tf.linalg.diag(tf.sqrt(tf.linalg.diag_part(reference) / tf.linalg.diag_part(after)))
    values, vectors = tf.linalg.eigh(0.5 * (reference + tf.transpose(reference)))
    root = tf.matmul(vectors * tf.sqrt(values), vectors, transpose_b=True)
    inverse_root = tf.matmul(vectors / tf.sqrt(values), vectors, transpose_b=True)
    middle = inverse_root @ tf.linalg.inv(after) @ inverse_root
    middle_values, middle_vectors = tf.linalg.eigh(0.5 * (middle + tf.transpose(middle)))
    middle_root = tf.matmul(
        middle_vectors * tf.sqrt(tf.maximum(middle_values, 0.0)), middle_vectors, transpose_b=True
    )
    transport = root @ middle_root @ root
    return 0.5 * (transport + tf.transpose(transport))


def _build_transport_step(model: PerDatumModel, belief: bool):
    """One compiled step of the Gaussian transport: derivatives at the draws, their averages,
    the map, the new mean, and the moved samples (``belief=False``: ``params`` are the samples
    ``[C, d]``) or the moved belief (``belief=True``: ``params`` is ``[mean (d), scale (d * d)]``
    and the draws are ``mean + noise scale^T``). The choices (first step, which Hessian for the
    mean, diagonal map) are boolean inputs, so one trace serves them all."""
    dim = model.dim
    rows = tf.TensorSpec([None], tf.int64)
    flag = tf.TensorSpec([], tf.bool)
    signature = [
        tf.TensorSpec([dim + dim * dim] if belief else [None, dim], tf.float64),  # params
        tf.TensorSpec([None, dim], tf.float64),  # base noise of the draws (belief only)
        tf.TensorSpec([dim, dim], tf.float64),  # reference precision (ignored for the first step)
        model.points_spec,
        rows,  # rows that remain after the chunk
        rows,  # rows of the chunk
        tf.TensorSpec([], tf.float64),  # damping
        flag,  # first step
        flag,  # the mean's step with the Hessian after the removal
        flag,  # diagonal map (mean-field belief)
    ]

    def build(functions):
        joint = functions["gradient_and_hessian"]  # derivatives of the log joint density
        data_only = functions["data_gradient_and_hessian"]  # of the log-likelihood alone

        def step(params, noise, reference, points, after_rows, erased_rows, damping, first, step_after, diagonal):
            if belief:
                centre, scale = params[:dim], tf.reshape(params[dim:], [dim, dim])
                theta = centre + tf.matmul(noise, scale, transpose_b=True)
            else:
                theta, centre = params, tf.reduce_mean(params, 0)
            pick = lambda rows_: tf.nest.map_structure(lambda x: tf.gather(x, rows_), points)  # noqa: E731
            one = tf.constant(1.0, tf.float64)
            gradient_after, hessian_after = joint(theta, pick(after_rows), one, one)
            _, hessian_erased = data_only(theta, pick(erased_rows), one)
            gradient_after, hessian_after, hessian_erased = -gradient_after, -hessian_after, -hessian_erased
            eye = tf.eye(dim, dtype=tf.float64)
            after = tf.reduce_mean(hessian_after, 0) + damping * eye
            before = after + tf.reduce_mean(hessian_erased, 0)
            reference = tf.where(first, before, reference)
            step_matrix = tf.where(step_after, after, before)
            checks = tf.stack([after, reference, step_matrix])
            # guard the square roots; an indefinite matrix is reported from `checks` on the host
            safe = lambda m: tf.where(tf.reduce_all(tf.linalg.eigvalsh(m) > 0.0), m, eye)  # noqa: E731
            transport = tf.where(
                diagonal,
                _transport_matrix_graph(safe(reference), safe(after), True),
                _transport_matrix_graph(safe(reference), safe(after), False),
            )
            deviations = theta - centre
            moved = tf.linalg.matvec(transport - eye, deviations)  # (T - I)(theta_j - centre)
            residual = tf.reduce_mean(gradient_after + tf.linalg.matvec(hessian_after, moved), 0)
            mean = centre - tf.linalg.solve(safe(step_matrix), residual[:, None])[:, 0]
            if not belief:
                new = mean + tf.linalg.matvec(transport, deviations)
            else:
                covariance = transport @ tf.matmul(scale, scale, transpose_b=True) @ transport
                covariance = 0.5 * (covariance + tf.transpose(covariance))
                new_scale = tf.where(
                    diagonal,
                    tf.linalg.diag(tf.linalg.diag_part(transport) * tf.linalg.diag_part(scale)),
                    tf.linalg.cholesky(covariance),
                )
                new = tf.concat([mean, tf.reshape(new_scale, [-1])], 0)
            return new, after, checks, tf.reduce_all(tf.math.is_finite(new))

        return tf.function(step, input_signature=signature, autograph=False)

    return model.compiled(f"transport step {belief}", build)


_CHECK_NAMES = (
    "the average Hessian of the remaining energy",
    "the average Hessian of the energy before the removal",
    "the average Hessian of the energy",
)


class _Transport:
    """The Gaussian transport, chunk after chunk (one compiled call per chunk): the spread of
    the draws is taken to match the precision the previous step transported them to (first
    step: the average Hessian of the energy before the removal, at the draws)."""

    def __init__(self, model: PerDatumModel, hessian: str, diagonal: bool, noise=None) -> None:
        self.model, self.step_after, self.diagonal = model, hessian == "after", diagonal
        self.belief = noise is not None
        self.noise = noise if self.belief else tf.zeros([0, model.dim], tf.float64)
        self.reference = None

    def __call__(self, params, after_rows, erased_rows, damping) -> tf.Tensor:
        first = self.reference is None
        step = _build_transport_step(self.model, self.belief)
        new, after, checks, finite = step(
            params,
            self.noise,
            tf.eye(self.model.dim, dtype=tf.float64) if first else self.reference,
            self.model.points,
            tf.constant(after_rows, tf.int64),
            tf.constant(erased_rows, tf.int64),
            tf.constant(damping, tf.float64),
            tf.constant(first),
            tf.constant(self.step_after),
            tf.constant(self.diagonal),
        )
        suffix = " (+ damping I)" if damping else ""
        for name, matrix in zip(_CHECK_NAMES, checks.numpy()):  # one copy to the host
            try:
                factor = np.linalg.cholesky(matrix)
                if factor_is_positive_definite(np.diag(factor), np.diag(matrix)):
                    continue
            except np.linalg.LinAlgError:
                pass
            linalg.cholesky(matrix, name + suffix, hint=_DAMPING_HINT)  # raises the typed error
        if not bool(finite):
            raise ValueError("the Gaussian transport produced NaN or infinite values")
        self.reference = after
        return new


class _Remaining:
    """Which rows remain as the chunks are removed one after another."""

    def __init__(self, num_points: int, chunks: Sequence[np.ndarray]) -> None:
        self.keep = np.ones(num_points, dtype=bool)
        self.chunks = list(chunks)
        self.num_chunks = len(self.chunks)

    def remove(self, chunk: int) -> Tuple[np.ndarray, np.ndarray]:
        """Indices of the points before and after removing ``chunk``; removes it."""
        before = np.flatnonzero(self.keep)
        self.keep[self.chunks[chunk]] = False
        return before, np.flatnonzero(self.keep)


class _SampleChunks(_Remaining):
    """:class:`~unlearnkit.bif.influence.ChunkDerivatives` of posterior samples ``[C, d]``.

    ``newton_direction`` gives the move of every sample: its own Newton step (``"newton"``,
    with ``erased_gradient`` every sample's ``grad E_k``), or the Gaussian transport
    (``"transport"``, computed in one compiled step; the right-hand side is not used).
    """

    def __init__(self, model: PerDatumModel, chunks, method: str, hessian: str) -> None:
        super().__init__(model.num_points, chunks)
        self.model, self.method = model, method
        self.transport = _Transport(model, hessian, diagonal=False)

    def erased_gradient(self, params: tf.Tensor, chunk: int) -> tf.Tensor:
        _, self.after = self.remove(chunk)
        erased = self.chunks[chunk]
        if self.method == "transport":
            return tf.zeros_like(params)
        _, self.hessian_after = self.model.energy_derivatives(params, self.after, with_prior=True)
        gradient_erased, self.hessian_erased = self.model.energy_derivatives(
            params, erased, with_prior=False
        )
        return gradient_erased

    def newton_direction(self, params, chunk, rhs, hessian, damping) -> tf.Tensor:
        if self.method == "newton":
            matrix = self.hessian_after
            if hessian == "before":
                matrix = matrix + self.hessian_erased
            return linalg.solve_positive_definite(
                matrix,
                rhs,
                damping=damping,
                name=f"the Hessian ({hessian} chunk {chunk}) of some sample"
                + (" (+ damping I)" if damping else ""),
                hint=_DAMPING_HINT,
            )
        return self.transport(params, self.after, self.chunks[chunk], damping) - params


def forget_samples(
    samples: object,
    log_likelihood: object,
    log_prior: object,
    points: object,
    erased: object,
    *,
    method: str = "transport",
    hessian: str = "after",
    damping: float = 0.0,
    num_chunks: int = 1,
    refine_steps: int = 0,
    log_likelihood_derivatives: object = None,
    return_info: bool = False,
) -> Union[tf.Tensor, Tuple[tf.Tensor, ForgettingInfo]]:
    """Turn samples of ``p(theta | S)`` into samples of ``p(theta | S - S')`` without a sampler.

    Args:
        samples: ``[C, d]`` posterior samples on all the data ``S`` (e.g. the last state of
            ``C`` chains of SGLD or SGHMC).
        log_likelihood: ``(theta [S, d], points) -> [S, n]``, ``log p(z_i | theta_s)`` per datum.
        log_prior: ``theta [S, d] -> [S]``, ``log p(theta_s)``.
        points: the data ``S``: an array ``[n, ...]`` or a tuple of arrays ``[n, ...]``.
        erased: ``[m]`` row indices of ``S'`` (no repeats).
        method: ``"transport"`` (default: the Gaussian transport, exact for a Gaussian
            posterior) or ``"newton"`` (every sample moved by its own Newton step; inflates the
            spread), see the module docstring.
        hessian: ``"after"`` (default; the remaining energy's Hessian: a Newton step) or
            ``"before"`` (the full energy's Hessian: the tangent of BIF's path). For
            ``"transport"`` it selects the Hessian of the mean's step.
        damping: non-negative multiple of the identity added to the Hessians (0: none, and a
            Hessian that is not positive definite is an error).
        num_chunks: remove the erased points in this many consecutive chunks, re-linearising
            after each (1: all at once).
        refine_steps: ``"transport"`` only: after the removal, this many further steps with
            nothing erased, each a Newton step of the mean on the remaining energy
            re-linearised at the processed samples (``T = I``). They correct what the
            linearisation at the original samples cannot see, e.g. data that a moved mixture
            component newly claims; each costs one pass over the remaining data.
        log_likelihood_derivatives: optional closed-form ``(theta [S, d], points) ->
            (gradient [S, d], hessian [S, d, d])`` of ``sum_i log p(z_i | theta_s)``, used
            instead of automatic differentiation (see :mod:`unlearnkit.bif.per_datum`).
        return_info: also return a :class:`~unlearnkit.diagnostics.ForgettingInfo`.

    Returns:
        The processed samples ``[C, d]`` (a new tensor), and the info if requested.

    Raises:
        NotPositiveDefiniteError: a Hessian to solve with is not positive definite (some
            sample's, for ``"newton"``; the average one, for ``"transport"``).
    """
    start = time.perf_counter()
    method = _check_choice(method, "method", SAMPLE_METHODS)
    hessian = check_hessian_choice(hessian)
    damping = check_nonnegative_number(damping, "damping")
    samples = as_float64(samples, "samples", ndim=2)
    model = PerDatumModel(
        log_likelihood, log_prior, points, int(samples.shape[1]),
        log_likelihood_derivatives=log_likelihood_derivatives, probe=samples,
    )
    samples = model.check_theta(samples, "samples")
    if method == "transport" and int(samples.shape[0]) < 2:
        raise ValueError("method='transport' needs at least 2 samples (it uses their mean)")
    chunks = erasure_chunks(erased, model.num_points, num_chunks)
    num_erasing = len(chunks)
    chunks += _refinements(refine_steps, method)
    result, path = remove_in_chunks(
        samples, _SampleChunks(model, chunks, method, hessian), hessian=hessian, damping=damping
    )
    result = ensure_finite(result, "the processed samples")
    if not return_info:
        return result
    info = ForgettingInfo(
        method=method,
        hessian=hessian,
        num_chunks=num_erasing,
        sampler_steps=0,
        seconds=time.perf_counter() - start,
        path=np.stack([p.numpy() for p in path]),
    )
    return result, info


def influence_hessians(
    samples: object,
    log_likelihood: object,
    log_prior: object,
    points: object,
    erased: object,
    *,
    hessian: str = "before",
    log_likelihood_derivatives: object = None,
) -> tf.Tensor:
    """Every sample's Hessian ``[C, d, d]`` that a one-chunk ``method="newton"`` solves with.

    ``hessian="before"``: of ``F(theta_j, S)``; ``"after"``: of ``F(theta_j, S - S')``. Use them
    to see which samples have a Hessian that is not positive definite (and so need damping).
    """
    hessian = check_hessian_choice(hessian)
    samples = as_float64(samples, "samples", ndim=2)
    model = PerDatumModel(
        log_likelihood, log_prior, points, int(samples.shape[1]),
        log_likelihood_derivatives=log_likelihood_derivatives, probe=samples,
    )
    samples = model.check_theta(samples, "samples")
    erased = model.check_erased(erased)
    keep = np.ones(model.num_points, dtype=bool)
    keep[erased] = False
    rows = np.arange(model.num_points) if hessian == "before" else np.flatnonzero(keep)
    return model.energy_derivatives(samples, rows, with_prior=True)[1]


# ----------------------------------------------------------------- variational fits


def _family_of(belief: tfd.Distribution, family: Optional[str]) -> str:
    """The variational family: as asked, or "diagonal" for a belief whose scale is a diagonal
    operator or has no off-diagonal entries, else "full"."""
    if family is not None:
        return _check_choice(family, "family", FAMILIES)
    if isinstance(belief.scale, tf.linalg.LinearOperatorDiag):
        return "diagonal"
    scale = belief.scale.to_dense()
    return "diagonal" if bool(tf.reduce_all(scale == tf.linalg.diag(tf.linalg.diag_part(scale)))) else "full"


class _VariationalChunks(_Remaining):
    """:class:`~unlearnkit.bif.influence.ChunkDerivatives` of a Gaussian belief, packed as
    ``[mean (d), scale_tril (d * d)]``; every chunk transports it (the right-hand side, which
    ``erased_gradient`` leaves at zero, is not used)."""

    def __init__(self, model: PerDatumModel, chunks, noise: tf.Tensor, hessian: str, diagonal: bool) -> None:
        super().__init__(model.num_points, chunks)
        self.model, self.noise, self.diagonal = model, noise, diagonal
        self.dim = model.dim
        self.transport = _Transport(model, hessian, diagonal, noise=noise)

    def unpack(self, params: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        return params[: self.dim], tf.reshape(params[self.dim :], [self.dim, self.dim])

    def erased_gradient(self, params: tf.Tensor, chunk: int) -> tf.Tensor:
        _, self.after = self.remove(chunk)
        return tf.zeros_like(params)

    def newton_direction(self, params, chunk, rhs, hessian, damping) -> tf.Tensor:
        return self.transport(params, self.after, self.chunks[chunk], damping) - params


def _influence_energies(model: PerDatumModel, noise: tf.Tensor, diagonal: bool, chunks):
    """The negative ELBO of all the data as a function of ``gamma = (m, raw scale)``, and the
    erased energy of every chunk (BIF's energies of variational inference, fixed base noise)."""
    dim = model.dim
    if diagonal:
        to_scale = lambda raw: tf.linalg.diag(tf.math.softplus(raw))  # noqa: E731
    else:
        bijector = tfb.FillScaleTriL(diag_bijector=tfb.Softplus(), diag_shift=None)
        to_scale = bijector.forward

    def draws(gamma):
        scale = to_scale(gamma[dim:])
        return gamma[:dim] + tf.matmul(noise, scale, transpose_b=True), scale

    all_points = model.rows(np.arange(model.num_points))

    def energy(gamma):
        theta, scale = draws(gamma)
        log_joint = tf.reduce_sum(model.log_likelihood(theta, all_points)) + tf.reduce_sum(
            model.log_prior(theta)
        )
        entropy = tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(scale))))
        return -log_joint / tf.cast(tf.shape(noise)[0], tf.float64) - entropy

    def erased_energy(rows):
        chosen = model.rows(rows)

        def value(gamma):
            theta, _ = draws(gamma)
            total = tf.reduce_sum(model.log_likelihood(theta, chosen))
            return -total / tf.cast(tf.shape(noise)[0], tf.float64)

        return value

    return energy, [erased_energy(chunk) for chunk in chunks]


def _pack_influence(belief: tfd.MultivariateNormalTriL, diagonal: bool) -> tf.Tensor:
    scale = belief.scale.to_dense()
    if diagonal:
        raw = tfp.math.softplus_inverse(tf.linalg.diag_part(scale))
    else:
        bijector = tfb.FillScaleTriL(diag_bijector=tfb.Softplus(), diag_shift=None)
        raw = bijector.inverse(scale)
    return tf.concat([belief.loc, raw], 0)


def _unpack_influence(gamma: tf.Tensor, dim: int, diagonal: bool) -> tfd.MultivariateNormalTriL:
    if diagonal:
        scale = tf.linalg.diag(tf.math.softplus(gamma[dim:]))
    else:
        scale = tfb.FillScaleTriL(diag_bijector=tfb.Softplus(), diag_shift=None).forward(gamma[dim:])
    return tfd.MultivariateNormalTriL(loc=gamma[:dim], scale_tril=scale)


def forget_variational(
    belief: object,
    log_likelihood: object,
    log_prior: object,
    points: object,
    erased: object,
    *,
    method: str = "transport",
    family: Optional[str] = None,
    hessian: str = "after",
    damping: float = 0.0,
    num_chunks: int = 1,
    refine_steps: int = 0,
    num_samples: int = 256,
    seed: Seed = None,
    log_likelihood_derivatives: object = None,
    return_info: bool = False,
) -> Union[tfd.MultivariateNormalTriL, Tuple[tfd.MultivariateNormalTriL, ForgettingInfo]]:
    """Remove data from a Gaussian variational fit ``q(theta | S)`` without refitting.

    Args:
        belief: ``q(theta | S)``, a float64 multivariate normal over ``theta [d]`` (any
            ``tfd.MultivariateNormalLinearOperator``), fitted to all the data ``S``.
        log_likelihood: ``(theta [S, d], points) -> [S, n]``, ``log p(z_i | theta_s)`` per datum.
        log_prior: ``theta [S, d] -> [S]``.
        points: the data ``S``: an array ``[n, ...]`` or a tuple of arrays ``[n, ...]``.
        erased: ``[m]`` row indices of ``S'``.
        method: ``"transport"`` (default; exact for linear-Gaussian models) or
            ``"influence"`` (BIF's Newton step on ``gamma = (m, rho)``), see the module docstring.
        family: the variational family, ``"full"`` or ``"diagonal"`` (mean field); by default
            ``"diagonal"`` when ``belief``'s scale is diagonal (a ``MultivariateNormalDiag``, or a
            scale with no off-diagonal entries, as :func:`unlearnkit.bif.fit_svi` returns for
            the mean-field family), else ``"full"``. The result stays in the family.
        hessian: ``"after"`` (default) or ``"before"``: the Hessian of the remaining or of the
            full energy, for the step of the mean (``"transport"``) or of ``gamma``
            (``"influence"``).
        damping: non-negative multiple of the identity added to the Hessians.
        num_chunks: remove the erased points in this many consecutive chunks.
        refine_steps: ``"transport"`` only: further Newton steps of the mean on the remaining
            energy after the removal, as in :func:`forget_samples`.
        num_samples: draws of ``q`` (moment-matched: their mean and covariance are exact) over
            which the expectations are averaged, ``> d``; for ``"influence"``, the fixed base
            noise of the negative ELBO.
        seed: seed of the draws (``None``, an int or a stateless seed).
        log_likelihood_derivatives: optional closed-form derivatives of the summed
            log-likelihood (``"transport"`` only), as in :func:`forget_samples`.
        return_info: also return a :class:`~unlearnkit.diagnostics.ForgettingInfo`.

    Returns:
        ``q(theta | S - S')``, a new ``tfd.MultivariateNormalTriL`` (diagonal scale for the
        diagonal family), and the info if requested.

    Raises:
        NotPositiveDefiniteError: a Hessian to solve with is not positive definite.
    """
    start = time.perf_counter()
    method = _check_choice(method, "method", VARIATIONAL_METHODS)
    hessian = check_hessian_choice(hessian)
    damping = check_nonnegative_number(damping, "damping")
    original = belief
    belief = as_gaussian_belief(belief, "belief")
    diagonal = _family_of(original, family) == "diagonal"
    dim = int(belief.event_shape[0])
    scale = belief.scale.to_dense()
    if diagonal and not bool(tf.reduce_all(scale == tf.linalg.diag(tf.linalg.diag_part(scale)))):
        raise ValueError("family='diagonal' needs a belief with a diagonal covariance")
    model = PerDatumModel(
        log_likelihood, log_prior, points, dim,
        log_likelihood_derivatives=log_likelihood_derivatives, probe=belief.loc[None],
    )
    chunks = erasure_chunks(erased, model.num_points, num_chunks)
    num_erasing = len(chunks)
    chunks += _refinements(refine_steps, method)
    noise = moment_matched_normal(num_samples, dim, seed)
    if method == "transport":
        params = tf.concat([belief.loc, tf.reshape(scale, [-1])], 0)
        derivatives = _VariationalChunks(model, chunks, noise, hessian, diagonal)
        result, path = remove_in_chunks(params, derivatives, hessian=hessian, damping=damping)
        result = ensure_finite(result, "the processed belief")
        mean, scale = derivatives.unpack(result)
        processed = tfd.MultivariateNormalTriL(loc=mean, scale_tril=scale)
        path = np.stack([p.numpy() for p in path])
    else:
        energy, erased_energies = _influence_energies(model, noise, diagonal, chunks)
        gamma, influence = influence_unlearn_sequential(
            energy,
            erased_energies,
            _pack_influence(belief, diagonal),
            hessian=hessian,
            damping=damping,
            return_info=True,
        )
        processed = _unpack_influence(gamma, dim, diagonal)
        path = influence.path
    if not return_info:
        return processed
    info = ForgettingInfo(
        method=method,
        hessian=hessian,
        num_chunks=num_erasing,
        sampler_steps=0,
        seconds=time.perf_counter() - start,
        path=path,
    )
    return processed, info


# --------------------------------------------------------------------- reweighting


def _zero_log_prior(theta: tf.Tensor) -> tf.Tensor:
    return tf.zeros([tf.shape(theta)[0]], tf.float64)


def reweight_samples(
    samples: object,
    log_likelihood: object,
    points: object,
    erased: object,
    *,
    return_info: bool = False,
) -> Union[tf.Tensor, Tuple[tf.Tensor, ImportanceInfo]]:
    """Importance weights that turn samples of ``p(theta | S)`` into weighted samples of ``p(theta | S - S')``.

    ``p(theta | S - S') ~ p(theta | S) / p(S' | theta)``, so sample ``theta_j`` gets the weight
    ``w_j ~ 1 / p(S' | theta_j)`` (normalised in log space): the sample analogue of the
    reverse-KL unlearning of Nguyen et al. (2020). No derivative and no solve, but the weights
    are only as good as the overlap of the two posteriors: when the erased data carry much
    information, one sample takes nearly all the weight. The effective sample size (Kish's
    ``1 / sum_j w_j^2``) in the info says how many samples are left.

    Args:
        samples: ``[C, d]`` samples of ``p(theta | S)``.
        log_likelihood: ``(theta [S, d], points) -> [S, n]``, per datum.
        points: the data ``S`` (array ``[n, ...]`` or tuple of arrays).
        erased: ``[m]`` row indices of ``S'``.
        return_info: also return an :class:`~unlearnkit.diagnostics.ImportanceInfo`.

    Returns:
        Normalised weights ``[C]`` (non-negative, summing to 1), and the info if requested.
    """
    start = time.perf_counter()
    samples = as_float64(samples, "samples", ndim=2)
    model = PerDatumModel(log_likelihood, _zero_log_prior, points, int(samples.shape[1]), probe=samples)
    samples = model.check_theta(samples, "samples")
    erased = model.check_erased(erased)
    log_weights = -model.log_likelihood_sums(samples, erased)
    log_weights = log_weights - tf.reduce_logsumexp(log_weights)
    weights = tf.exp(log_weights)
    if not return_info:
        return weights
    ess = float(1.0 / tf.reduce_sum(weights**2))
    info = ImportanceInfo(
        effective_sample_size=ess,
        num_samples=int(samples.shape[0]),
        num_rounds=1,
        jitter=0.0,
        seconds=time.perf_counter() - start,
    )
    return weights, info
