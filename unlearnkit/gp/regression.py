r"""Exact unlearning for GPflow Gaussian-process regression (``gpflow.models.GPR``).

A GPR posterior is known in closed form, so erasing training points from it is exact. Write
A = K_DD + Σ_D for the kernel matrix of the n training inputs plus the (diagonal) noise
covariance, L for its lower Cholesky factor (L Lᵀ = A), m(·) for the mean function and
β = L⁻¹ (y − m(X)) for the *whitened residual*. The posterior at new inputs X* is::

    W = L⁻¹ K_D*,   E[f(X*)] = m(X*) + Wᵀ β,   Cov[f(X*)] = K_** − Wᵀ W.

Erasing the points E (k of them) leaves R = D \ E, in their original order. Since
(L Lᵀ)_RR = L_R: L_R:ᵀ, the rows R of L already factor A_RR, and splitting their columns::

    A_RR = L_RR L_RRᵀ + L_RE L_REᵀ,

where L_RR (rows and columns R) is lower triangular and L_RE (rows R, columns E) has k
columns. So the factor of the remaining data is a rank-k **update** (never a downdate) of a
triangular matrix, which orthogonal transformations compute stably: a product Q of
orthogonal matrices with [L_RR  L_RE] Q = [L'  0] gives L' L'ᵀ = A_RR. Rows of R before
the first erased index have zeros in L_RE, so they are copied unchanged; only the m rows
after it are updated, in O(m² k) operations (done in column blocks by small QR
factorisations, so the work is matrix products), instead of the O(n³) of refactorising.
The same rotations carry the whitened residual along: with β_R and β_E its entries at R and
E, L_RR β_R + L_RE β_E = y_R − m(X_R), hence β' = (Qᵀ [β_R; β_E])[:n − k] solves
L' β' = y_R − m(X_R) in O(m k). Removing the *last* points of the data costs only a copy.

Numerics. The update is backward stable: L' is the exact factor of A_RR + E with ‖E‖ of the
order of machine precision times ‖A‖, as for refactorising, so downdated predictions carry
errors of the same size as those of a GPR refitted on D_r. Both grow in proportion to the
condition number κ(A_RR), in the predictive mean far more than in the variance
(``benchmarks/bench_gp_exact.py`` measures both routes against an extended-precision
reference); refactorising is not more accurate at any conditioning, so conditioning alone
is no reason to fall back. An ill-conditioned A on all the data does not hurt when the
erased points caused it (one of two duplicate inputs removed). Every downdate is checked a
posteriori against the kernel on a few rows of the updated factor; if that check fails, or
the factor for D cannot be computed, :func:`unlearn_gpr` refactorises A_RR instead and
issues a :class:`~unlearnkit.errors.FallbackWarning` (exact, only the speed-up is lost).

Use:

- :func:`unlearn_gpr` ``(source, erased)`` returns a :class:`GPRCholeskyPosterior`, which
  predicts like the GPR trained on D_r (``predict_f``, ``predict_y``,
  ``predict_log_density``, ``log_marginal_likelihood``) and gives that GPR
  (:meth:`GPRCholeskyPosterior.to_gpr`). ``source`` is a ``gpflow.models.GPR`` (factorised
  once here, O(n³), the price of any GPR posterior), a GPflow ``GPRPosterior`` from
  ``model.posterior()`` (its cached factor is reused), or a :class:`GPRCholeskyPosterior`
  (for repeated removals: O(n² k) each).
- Indices always refer to the rows of the data of the model the chain started from
  (``posterior.indices`` lists the rows that remain).

Hyperparameters are held fixed: the result is the GPR on D_r *with the hyperparameters that
were fitted on D*, which still carry information about the erased points.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import gpflow
import numpy as np
import scipy.linalg
import scipy.sparse.linalg
import tensorflow as tf
import threadpoolctl
from check_shapes import disable_check_shapes

from unlearnkit._validation import as_float64, check_erased_indices, check_positive_number
from unlearnkit.errors import FallbackWarning, NotPositiveDefiniteError

__all__ = ["GPRCholeskyPosterior", "GPRUnlearnInfo", "unlearn_gpr"]

_METHODS = ("auto", "downdate", "refactorise")
_CHECK_ROWS = 48  # rows of an updated factor compared with the kernel after a downdate
_MIN_BLOCK = 32  # smallest column block of the update (smaller blocks cost Python overhead)


@dataclass(frozen=True)
class GPRUnlearnInfo:
    """Diagnostics of :func:`unlearn_gpr`.

    Attributes:
        method: ``"downdate"`` (the rank-k update of the factor), ``"refactorise"`` (the
            factor of the remaining data computed from scratch: asked for, chosen by
            ``method="auto"`` as cheaper, or a fallback) or ``"none"`` (nothing erased).
        num_erased: k, the number of points erased by this call.
        rows_updated: rows of the factor the downdate recomputed (those after the first
            erased point); 0 unless ``method == "downdate"``.
        backward_error: max |A − L Lᵀ| / max diag(A) over the checked entries of the new
            factor (the sampled check of a downdate); NaN when no check ran.
        condition_lower_bound: (max diag L / min diag L)², a lower bound on the condition
            number of K + Σ on the remaining data, free to compute (NaN if no data remain).
            :meth:`GPRCholeskyPosterior.condition_number` estimates the condition number.
        fallback_reason: why the downdate was abandoned for refactorising, or None.
        seconds: wall-clock time of the call.
    """

    method: str
    num_erased: int
    rows_updated: int
    backward_error: float
    condition_lower_bound: float
    fallback_reason: Optional[str]
    seconds: float


@dataclass(frozen=True)
class _Model:
    """The model's modules, copied once and never handed out or modified.

    ``kernel``, ``likelihood`` and ``mean_function`` are deep copies with their parameters
    (for :meth:`GPRCholeskyPosterior.to_gpr`); the ``frozen_*`` copies hold the same values
    as constants (``gpflow.utilities.freeze``), which evaluate several times faster.
    """

    kernel: gpflow.kernels.Kernel
    likelihood: gpflow.likelihoods.Gaussian
    mean_function: gpflow.mean_functions.MeanFunction
    frozen_kernel: gpflow.kernels.Kernel
    frozen_likelihood: gpflow.likelihoods.Gaussian
    frozen_mean_function: gpflow.mean_functions.MeanFunction

    @classmethod
    def snapshot(cls, kernel, likelihood, mean_function) -> "_Model":
        if mean_function is None:
            mean_function = gpflow.mean_functions.Zero()
        modules = [gpflow.utilities.deepcopy(m) for m in (kernel, likelihood, mean_function)]
        return cls(*modules, *(gpflow.utilities.freeze(m) for m in modules))

    def covariance(self, X: np.ndarray) -> np.ndarray:
        """K(X, X) + Σ(X), exactly as ``gpflow.models.GPR`` forms it: [n, n]."""
        with disable_check_shapes():  # internal calls with known shapes: skip the checks
            K = self.frozen_kernel(tf.constant(X))
            A = gpflow.utilities.add_likelihood_noise_cov(K, self.frozen_likelihood, X)
        return A.numpy()

    def residual(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """y − m(X): [n, P]."""
        with disable_check_shapes():
            return Y - self.frozen_mean_function(tf.constant(X)).numpy()


class GPRCholeskyPosterior:
    """The posterior of a ``gpflow.models.GPR`` held as a Cholesky factor, for exact unlearning.

    Build it from a GPR (``GPRCholeskyPosterior(model)``: one O(n³) factorisation, the cost
    of any GPR posterior) or from a GPflow ``GPRPosterior`` with a precomputed cache
    (:meth:`from_gpflow_posterior`), then erase points with :meth:`unlearn` (or
    :func:`unlearn_gpr`), each time in O(n² k). It predicts with GPflow's shapes and
    semantics; the model it came from is never modified, and it is itself immutable.

    Attributes:
        indices: int64 [n_r], the rows of the original data that remain, ascending.
        erased_indices: int64 [n − n_r], the rows erased so far, ascending.
        num_data: n_r, the number of remaining points.
        num_original: n, the number of points the chain started from.
    """

    def __init__(self, model: gpflow.models.GPR) -> None:
        """Factorise the posterior of ``model`` (not modified): O(n³).

        Raises:
            TypeError: ``model`` is not a float64 ``gpflow.models.GPR``.
            NotPositiveDefiniteError: K + Σ is not numerically positive definite.
        """
        model_parts, X, Y = _check_gpr(model)
        L, beta = _factorise(model_parts, X, Y, "K + Σ on the model's data")
        self._set(model_parts, X, Y, np.arange(X.shape[0]), X.shape[0], L, beta)

    @classmethod
    def from_gpflow_posterior(
        cls, posterior: gpflow.posteriors.GPRPosterior, *, tolerance: float = 1e-10
    ) -> "GPRCholeskyPosterior":
        """Reuse the Cholesky factor cached by ``model.posterior()`` (O(n²) to check it).

        The cache is checked against the posterior's kernel, likelihood and mean function
        (the residual on every row, K + Σ on a sample of rows), since a cache is stale when
        the hyperparameters changed after it was computed. A posterior without a cache
        (``precompute_cache=None``) is factorised here.

        Args:
            posterior: a ``gpflow.posteriors.GPRPosterior`` (unchanged).
            tolerance: largest accepted max |A − L Lᵀ| / max diag(A) on the checked rows.

        Raises:
            ValueError: the cache does not match the posterior's current hyperparameters.
        """
        if not isinstance(posterior, gpflow.posteriors.GPRPosterior):
            raise TypeError(
                "posterior must be a gpflow.posteriors.GPRPosterior, "
                f"got {type(posterior).__name__}"
            )
        tolerance = check_positive_number(tolerance, "tolerance")
        model_parts, X, Y = _check_parts(
            posterior.kernel, posterior.likelihood, posterior.mean_function,
            posterior.X_data, posterior.Y_data, "posterior",
        )
        new = cls.__new__(cls)
        if posterior.cache is None:
            L, beta = _factorise(model_parts, X, Y, "K + Σ on the posterior's data")
        else:
            err, L = (np.asarray(tf.convert_to_tensor(value)) for value in posterior.cache)
            residual = model_parts.residual(X, Y)
            scale = max(1.0, float(np.max(np.abs(residual), initial=0.0)))
            if err.shape != residual.shape or np.max(np.abs(err - residual), initial=0.0) > (
                tolerance * scale
            ):
                raise ValueError(
                    "posterior.cache does not match the posterior's data and mean function "
                    "(stale cache: call posterior.update_cache())"
                )
            L = np.array(L, order="F")  # a copy: the posterior's cache is not ours
            rows = _check_rows(0, X.shape[0])
            error = _backward_error(model_parts, X, L, rows)
            if not error <= tolerance:
                raise ValueError(
                    "posterior.cache does not match the posterior's kernel and likelihood "
                    f"(relative error {error:.1e} > tolerance {tolerance:.1e} on K + Σ; "
                    "stale cache: call posterior.update_cache())"
                )
            beta = _solve_lower(L, residual)
        new._set(model_parts, X, Y, np.arange(X.shape[0]), X.shape[0], L, beta)
        return new

    @classmethod
    def _from_parts(cls, model_parts, X, Y, indices, num_original, L, beta):
        new = cls.__new__(cls)
        new._set(model_parts, X, Y, indices, num_original, L, beta)
        return new

    def _set(self, model_parts, X, Y, indices, num_original, L, beta) -> None:
        for array in (X, Y, indices, L, beta):
            array.flags.writeable = False  # shared between posteriors of one chain
        self._model = model_parts
        self._X, self._Y, self._indices = X, Y, indices
        self._num_original = int(num_original)
        self._L, self._beta = L, beta
        self._L_tensor: Optional[tf.Tensor] = None

    # --- what remains ---------------------------------------------------------------

    @property
    def indices(self) -> np.ndarray:
        """Rows of the original data that remain, ascending: int64 [n_r] (a copy)."""
        return self._indices.copy()

    @property
    def erased_indices(self) -> np.ndarray:
        """Rows of the original data erased so far, ascending: int64 [n − n_r]."""
        mask = np.ones(self._num_original, dtype=bool)
        mask[self._indices] = False
        return np.flatnonzero(mask)

    @property
    def num_data(self) -> int:
        return int(self._X.shape[0])

    @property
    def num_original(self) -> int:
        return self._num_original

    @property
    def data(self) -> Tuple[tf.Tensor, tf.Tensor]:
        """The remaining data (X_r [n_r, D], Y_r [n_r, P]), as float64 tensors."""
        return tf.constant(self._X), tf.constant(self._Y)

    @property
    def cholesky(self) -> np.ndarray:
        """L, the lower Cholesky factor of K + Σ on the remaining data: [n_r, n_r] (read-only)."""
        return self._L

    # --- GPflow's prediction interface ------------------------------------------------

    def predict_f(
        self, Xnew: object, full_cov: bool = False, full_output_cov: bool = False
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        """Posterior mean and (co)variance of the latent function, as ``GPR.predict_f``.

        Args:
            Xnew: inputs [N, D].
            full_cov: return the full covariance [P, N, N] instead of variances [N, P].
            full_output_cov: not supported (GPR's outputs are independent).

        Returns:
            mean [N, P], and variance [N, P] or covariance [P, N, N] (float64 tensors,
            differentiable with respect to ``Xnew``).
        """
        if full_output_cov:
            raise NotImplementedError("full_output_cov=True is not supported, as in GPR")
        Xnew = self._check_inputs(Xnew)
        kernel, num_outputs = self._model.frozen_kernel, self._Y.shape[1]
        knn = kernel(Xnew, full_cov=full_cov)  # [N, N] or [N]
        if self.num_data:
            W = tf.linalg.triangular_solve(
                self._cholesky_tensor(), kernel(tf.constant(self._X), Xnew), lower=True
            )  # L⁻¹ K_R*: [n_r, N]
            mean = tf.matmul(W, tf.constant(self._beta), transpose_a=True)  # [N, P]
            if full_cov:
                knn = knn - tf.matmul(W, W, transpose_a=True)
            else:
                knn = knn - tf.reduce_sum(tf.square(W), axis=0)
        else:  # everything erased: the prior
            mean = tf.zeros([tf.shape(Xnew)[0], num_outputs], tf.float64)
        if full_cov:
            var = tf.tile(knn[None, :, :], [num_outputs, 1, 1])  # [P, N, N]
        else:
            var = tf.tile(knn[:, None], [1, num_outputs])  # [N, P]
        return mean + self._model.frozen_mean_function(Xnew), var

    def predict_y(
        self, Xnew: object, full_cov: bool = False, full_output_cov: bool = False
    ) -> Tuple[tf.Tensor, tf.Tensor]:
        """Predictive mean and variance of new observations [N, P], as ``GPR.predict_y``."""
        if full_cov or full_output_cov:
            raise NotImplementedError(
                "predict_y supports only full_cov=False and full_output_cov=False, as in GPflow"
            )
        Xnew = self._check_inputs(Xnew)
        f_mean, f_var = self.predict_f(Xnew)
        return self._model.frozen_likelihood.predict_mean_and_var(Xnew, f_mean, f_var)

    def predict_log_density(
        self, data: Tuple[object, object], full_cov: bool = False, full_output_cov: bool = False
    ) -> tf.Tensor:
        """log p(y_i | x_i, D_r) at new data (X [N, D], Y [N, P]): [N], as GPflow's."""
        if full_cov or full_output_cov:
            raise NotImplementedError(
                "predict_log_density supports only full_cov=False and full_output_cov=False"
            )
        X, Y = data
        X = self._check_inputs(X)
        Y = as_float64(Y, "data[1]", shape=[X.shape[0], self._Y.shape[1]])
        f_mean, f_var = self.predict_f(X)
        return self._model.frozen_likelihood.predict_log_density(X, f_mean, f_var, Y)

    def log_marginal_likelihood(self) -> tf.Tensor:
        """log p(Y_r | X_r) under the held hyperparameters, as ``GPR.log_marginal_likelihood``."""
        n, num_outputs = self._Y.shape
        value = (
            -0.5 * float(np.sum(self._beta**2))
            - num_outputs * float(np.sum(np.log(np.diag(self._L))))
            - 0.5 * n * num_outputs * np.log(2.0 * np.pi)
        )
        return tf.constant(value, tf.float64)

    # --- unlearning and export --------------------------------------------------------

    def unlearn(
        self,
        erased: object,
        *,
        method: str = "auto",
        tolerance: float = 1e-10,
        return_info: bool = False,
    ) -> Union["GPRCholeskyPosterior", Tuple["GPRCholeskyPosterior", GPRUnlearnInfo]]:
        """Erase more points: ``unlearn_gpr(self, erased, ...)`` (original row indices)."""
        return unlearn_gpr(
            self, erased, method=method, tolerance=tolerance, return_info=return_info
        )

    def to_gpr(self) -> gpflow.models.GPR:
        """A new ``gpflow.models.GPR`` on the remaining data with the same hyperparameters.

        Its kernel, likelihood and mean function are fresh copies (trainable flags kept), so
        it can be trained further without touching this posterior; its predictions equal
        this posterior's (up to rounding) until then.
        """
        return gpflow.models.GPR(
            (tf.constant(self._X), tf.constant(self._Y)),
            kernel=gpflow.utilities.deepcopy(self._model.kernel),
            mean_function=gpflow.utilities.deepcopy(self._model.mean_function),
            likelihood=gpflow.utilities.deepcopy(self._model.likelihood),
        )

    def condition_number(self) -> float:
        """An estimate of the 1-norm condition number of K + Σ on the remaining data.

        LAPACK's estimate of ‖A⁻¹‖₁ from the factor (``dpocon``) times an estimate of ‖A‖₁
        (``scipy.sparse.linalg.onenormest``): O(n_r²), usually within a small factor of the
        exact value. Rounding errors in the predictive mean of this posterior, as in that of
        a GPR refitted on the same data, grow in proportion to it.
        """
        n = self.num_data
        if n == 0:
            return float("nan")
        L = self._L

        def product(v: np.ndarray) -> np.ndarray:
            return L @ (L.T @ v)

        operator = scipy.sparse.linalg.LinearOperator(
            (n, n), matvec=product, rmatvec=product, matmat=product, dtype=np.float64
        )
        norm = scipy.sparse.linalg.onenormest(operator) if n > 1 else float(L[0, 0] ** 2)
        rcond, status = scipy.linalg.lapack.dpocon(L, norm, uplo="L")
        if status != 0 or rcond <= 0.0:
            return float("inf")
        return float(1.0 / rcond)

    def __repr__(self) -> str:
        return (
            f"GPRCholeskyPosterior(num_data={self.num_data}, num_original={self.num_original}, "
            f"num_erased={self.num_original - self.num_data}, "
            f"input_dim={self._X.shape[1]}, num_outputs={self._Y.shape[1]})"
        )

    # --- helpers ------------------------------------------------------------------------

    def _check_inputs(self, Xnew: object) -> tf.Tensor:
        if isinstance(Xnew, tf.Variable):  # read it inside the caller's gradient tape
            Xnew = tf.convert_to_tensor(Xnew)
        return as_float64(Xnew, "Xnew", shape=[None, self._X.shape[1]])

    def _cholesky_tensor(self) -> tf.Tensor:
        if self._L_tensor is None:  # one copy, made on the first prediction
            self._L_tensor = tf.constant(np.ascontiguousarray(self._L))
        return self._L_tensor

    def _positions(self, erased: np.ndarray) -> np.ndarray:
        """Original row indices -> positions in the current factor (ValueError if gone)."""
        positions = np.searchsorted(self._indices, erased)
        present = positions < self._indices.size
        present[present] = self._indices[positions[present]] == erased[present]
        if not present.all():
            gone = erased[~present][:5].tolist()
            raise ValueError(
                f"erased contains rows that were already erased: {gone} "
                "(indices refer to the rows of the original model's data)"
            )
        return np.sort(positions)


# --- unlearn_gpr -----------------------------------------------------------------------


def unlearn_gpr(
    source: Union[gpflow.models.GPR, gpflow.posteriors.GPRPosterior, GPRCholeskyPosterior],
    erased: object,
    *,
    method: str = "auto",
    tolerance: float = 1e-10,
    return_info: bool = False,
) -> Union[GPRCholeskyPosterior, Tuple[GPRCholeskyPosterior, GPRUnlearnInfo]]:
    """Erase training points from a GPflow GPR posterior, exactly, by updating its Cholesky factor.

    The result predicts like ``gpflow.models.GPR`` trained on the remaining data with the
    same kernel, likelihood and mean function (hyperparameters are not refitted); its
    ``to_gpr()`` is that model. The factor of K + Σ on the remaining data is obtained from
    the factor on all the data by a rank-k update of the rows after the first erased point
    (see the module docstring): O(m² k) for m such rows, against O(n³) to refactorise.

    Args:
        source: where the posterior on all the data comes from, never modified:
            a ``gpflow.models.GPR`` (its factor is computed here once, O(n³)), a
            ``gpflow.posteriors.GPRPosterior`` from ``model.posterior()`` (its cached factor
            is checked and reused), or a :class:`GPRCholeskyPosterior` (e.g. the result of an
            earlier call, for removals in batches).
        erased: int [k], rows of the *original* data to erase (for a
            :class:`GPRCholeskyPosterior`, of the model its chain started from), distinct,
            not erased before. Order does not matter.
        method: ``"downdate"`` (always update the factor), ``"refactorise"`` (factorise
            K + Σ on the remaining data from scratch; the reference route), or ``"auto"``
            (default): the downdate unless its operation count, m² (b + k)² / b with
            column blocks of b = max(k, 32), exceeds that of refactorising, n_r³ / 3
            (when k is a sizeable fraction of n).
        tolerance: largest accepted relative backward error max |A − L Lᵀ| / max diag(A) of
            the downdated factor, checked on up to 48 of its updated rows against the kernel.
            Above it the factor is recomputed from scratch, with a ``FallbackWarning``.
        return_info: also return a :class:`GPRUnlearnInfo`.

    Returns:
        A new :class:`GPRCholeskyPosterior` (and its diagnostics if ``return_info``).

    Raises:
        TypeError: ``source`` is not one of the accepted types, or ``erased`` not integers.
        ValueError: ``erased`` out of range, repeated, or naming rows already erased.
        NotPositiveDefiniteError: K + Σ on the remaining data is not numerically positive
            definite (a GPR refitted on it would fail too).

    Warns:
        FallbackWarning: the downdate was replaced by a refactorisation because its check
            failed, the factor for all the data could not be computed, or a GPflow
            posterior's cache was stale. The result is exact all the same.
    """
    started = time.perf_counter()
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    tolerance = check_positive_number(tolerance, "tolerance")
    if isinstance(source, GPRCholeskyPosterior):
        posterior, fallback = source, None
        num_original = source.num_original
    elif isinstance(source, (gpflow.models.GPR, gpflow.posteriors.GPRPosterior)):
        posterior, fallback, num_original = _start(source, tolerance)
    else:
        raise TypeError(
            "source must be a gpflow.models.GPR, a gpflow.posteriors.GPRPosterior or a "
            f"GPRCholeskyPosterior, got {type(source).__name__}"
        )
    erased = np.sort(check_erased_indices(erased, num_original, "erased"))

    if posterior is None:  # the factor for all the data could not be had: refactorise
        model_parts, X, Y = fallback[1]
        warnings.warn(fallback[0] + "; refactorising on the remaining data", FallbackWarning, 2)
        result = _refactorised(model_parts, X, Y, np.arange(num_original), num_original, erased)
        return _finish(result, "refactorise", erased.size, 0, np.nan, fallback[0], started,
                       return_info)

    positions = posterior._positions(erased)
    if positions.size == 0:
        return _finish(posterior, "none", 0, 0, np.nan, None, started, return_info)
    n = posterior.num_data
    n_r = n - positions.size
    m = n_r - int(positions[0])  # rows of the factor that change
    if method == "auto":
        method = "downdate" if _update_flops(m, positions.size) <= n_r**3 / 3.0 else "refactorise"
    parts = (posterior._model, posterior._X, posterior._Y, posterior._indices,
             posterior._num_original)
    if method == "refactorise":
        result = _refactorised(*parts, positions)
        return _finish(result, "refactorise", erased.size, 0, np.nan, None, started, return_info)

    L, beta = _downdate(posterior._L, posterior._beta, positions)
    keep = _complement(positions, n)
    X, Y = posterior._X[keep], posterior._Y[keep]
    reason, error = None, np.nan
    diagonal = np.diag(L)
    if not (np.all(np.isfinite(diagonal)) and np.all(diagonal > 0) and np.all(np.isfinite(beta))):
        reason = "the downdated factor has non-finite or non-positive entries"
    elif m:
        error = _backward_error(posterior._model, X, L, _check_rows(n_r - m, n_r))
        if not error <= tolerance:
            reason = (
                f"the downdated factor fails its check (relative backward error {error:.1e} "
                f"> tolerance {tolerance:.1e})"
            )
    if reason is not None:
        warnings.warn(reason + "; refactorising on the remaining data", FallbackWarning, 2)
        result = _refactorised(*parts, positions)
        return _finish(result, "refactorise", erased.size, 0, error, reason, started,
                       return_info)
    result = GPRCholeskyPosterior._from_parts(
        posterior._model, X, Y, posterior._indices[keep], posterior._num_original, L, beta
    )
    return _finish(result, "downdate", erased.size, m, error, None, started, return_info)


def _update_flops(m: int, k: int) -> float:
    """Floating-point operations of the blocked update of m rows by k columns."""
    b = max(k, _MIN_BLOCK)
    return float(m) * m * (b + k) ** 2 / b


def _start(source, tolerance):
    """A factored posterior for a GPR or GPflow posterior, or (None, (reason, parts), n)."""
    if isinstance(source, gpflow.models.GPR):
        parts = _check_gpr(source)
        what = "the factorisation of K + Σ on all the data failed"
        build = lambda: GPRCholeskyPosterior(source)  # noqa: E731
        errors: tuple = (NotPositiveDefiniteError,)
    else:
        parts = _check_parts(
            source.kernel, source.likelihood, source.mean_function,
            source.X_data, source.Y_data, "source",
        )
        what = "the GPflow posterior's cached factor cannot be used"
        build = lambda: GPRCholeskyPosterior.from_gpflow_posterior(  # noqa: E731
            source, tolerance=tolerance
        )
        errors = (ValueError,)
    num_original = parts[1].shape[0]
    try:
        return build(), None, num_original
    except errors as error:
        return None, (f"{what} ({error})", parts), num_original


def _finish(result, method, num_erased, rows_updated, error, reason, started, return_info):
    if not return_info:
        return result
    diagonal = np.diag(result.cholesky)
    bound = float((diagonal.max() / diagonal.min()) ** 2) if diagonal.size else float("nan")
    info = GPRUnlearnInfo(
        method=method, num_erased=int(num_erased), rows_updated=int(rows_updated),
        backward_error=float(error), condition_lower_bound=bound, fallback_reason=reason,
        seconds=time.perf_counter() - started,
    )
    return result, info


def _refactorised(model_parts, X, Y, indices, num_original, positions):
    """The posterior on the points not at ``positions``, factorised from scratch."""
    keep = _complement(positions, X.shape[0])
    X, Y = X[keep], Y[keep]
    L, beta = _factorise(model_parts, X, Y, "K + Σ on the remaining data")
    return GPRCholeskyPosterior._from_parts(model_parts, X, Y, indices[keep], num_original, L, beta)


# --- checks of the model ---------------------------------------------------------------


def _check_gpr(model: object) -> Tuple[_Model, np.ndarray, np.ndarray]:
    if not isinstance(model, gpflow.models.GPR):
        raise TypeError(f"model must be a gpflow.models.GPR, got {type(model).__name__}")
    X, Y = model.data
    return _check_parts(model.kernel, model.likelihood, model.mean_function, X, Y, "model")


def _check_parts(kernel, likelihood, mean_function, X, Y, name):
    if not isinstance(likelihood, gpflow.likelihoods.Gaussian):
        raise TypeError(
            f"{name} must have a gpflow.likelihoods.Gaussian likelihood, "
            f"got {type(likelihood).__name__}"
        )
    if X.dtype != tf.float64 or Y.dtype != tf.float64:
        raise TypeError(f"{name}'s data must be float64, got {X.dtype.name} and {Y.dtype.name}")
    X = np.array(X, dtype=np.float64)
    Y = np.array(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"{name}'s data must be X [n, D] and Y [n, P], got {list(X.shape)} and {list(Y.shape)}"
        )
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError(f"{name}'s data contain NaN or infinite values")
    return _Model.snapshot(kernel, likelihood, mean_function), X, Y


# --- linear algebra --------------------------------------------------------------------


def _factorise(model_parts: _Model, X: np.ndarray, Y: np.ndarray, what: str):
    """L (Fortran order) and β = L⁻¹ (Y − m(X)) for K + Σ on (X, Y), from scratch."""
    residual = model_parts.residual(X, Y)
    if X.shape[0] == 0:
        return np.zeros((0, 0), order="F"), residual
    A = model_parts.covariance(X)
    if not np.isfinite(A).all():
        raise NotPositiveDefiniteError(f"{what} has NaN or infinite entries")
    try:  # A is symmetric, so its C-ordered buffer is A.T in Fortran order: no copy
        L = scipy.linalg.cholesky(A.T, lower=True, overwrite_a=A.flags.writeable,
                                  check_finite=False)
    except np.linalg.LinAlgError as error:
        raise NotPositiveDefiniteError(f"{what} is not numerically positive definite") from error
    L = np.asfortranarray(L)
    return L, _solve_lower(L, residual)


def _solve_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    if L.shape[0] == 0:
        return np.zeros_like(B)
    return scipy.linalg.solve_triangular(L, B, lower=True, check_finite=False)


def _complement(positions: np.ndarray, n: int) -> np.ndarray:
    keep = np.ones(n, dtype=bool)
    keep[positions] = False
    return np.flatnonzero(keep)


def _check_rows(first: int, stop: int) -> np.ndarray:
    """Up to _CHECK_ROWS rows, evenly spread over [first, stop), always with the last."""
    return np.unique(np.linspace(first, stop - 1, min(_CHECK_ROWS, stop - first)).astype(int))


def _backward_error(model_parts: _Model, X: np.ndarray, L: np.ndarray, rows: np.ndarray) -> float:
    """max |A − L Lᵀ| / max diag(A) on the rows × rows block of A = K + Σ."""
    if rows.size == 0:
        return 0.0
    exact = model_parts.covariance(X[rows])
    with _single_threaded_blas():  # a small product: threads only cost here
        factor_rows = L[rows, : rows.max() + 1]
        error = np.max(np.abs(exact - factor_rows @ factor_rows.T))
    return float(error / np.max(np.abs(np.diag(exact))))


def _downdate(L: np.ndarray, beta: np.ndarray, erased: np.ndarray, block: Optional[int] = None):
    """The factor and whitened residual without the rows/columns ``erased`` (sorted).

    With R the remaining positions (in order), the rows R of L satisfy
    L_R: L_R:ᵀ = A_RR and L_R: = [L_RR, L_RE]; rows before ``erased[0]`` have L_RE = 0 and
    are copied. The rest T = L_RR[s:, s:] becomes T' with T' T'ᵀ = T Tᵀ + V Vᵀ, V = L_RE[s:],
    one column block of b at a time: the QR factorisation [T_jjᵀ; V_jᵀ] = Q R gives the new
    diagonal block Rᵀ, and [T_below, V_below] Q gives the new block column below it and the
    V that remains to be absorbed. The whitened residual [β_R; β_E] is rotated by the same Q.
    Each block column of L_RR is read from L once and its new value written once.

    Args:
        L: lower Cholesky factor [n, n], Fortran order (not modified).
        beta: L⁻¹ (y − m(X)), [n, P].
        erased: sorted distinct positions [k], k ≥ 1.
        block: column block size (default max(k, 32)).

    Returns:
        The factor [n − k, n − k] (Fortran order) and whitened residual [n − k, P] of the
        remaining points.
    """
    n = L.shape[0]
    k = erased.size
    keep = _complement(erased, n)
    n_r = keep.size
    start = int(erased[0])  # the remaining points before the first erased one
    runs = _Runs(erased, n)
    # np.empty: NumPy backs large allocations with huge pages, np.zeros' first writes cost 4x
    new_L = np.empty((n_r, n_r), order="F")
    new_beta = beta[keep]
    if start:  # columns before the first erased point do not change
        runs.gather(L, new_L[:, :start], 0, 0, start)
    if start == n_r:  # only trailing points erased: the factor is a leading block
        return new_L, new_beta
    V = np.asfortranarray(L[:, erased][keep[start:]])  # L_RE below row `start`: [m, k]
    with _single_threaded_blas():
        _update(L, runs, new_L, start, V, new_beta[start:], beta[erased],
                block or max(k, _MIN_BLOCK))
    return new_L, new_beta


class _Runs:
    """The stretches of remaining positions between erased ones, for copying by slices."""

    def __init__(self, erased: np.ndarray, n: int) -> None:
        bounds = np.concatenate([[-1], erased, [n]])
        self.source = np.array([a + 1 for a, b in zip(bounds[:-1], bounds[1:]) if b > a + 1])
        lengths = np.array([b - a - 1 for a, b in zip(bounds[:-1], bounds[1:]) if b > a + 1])
        self.target = np.concatenate([[0], np.cumsum(lengths)])  # run i -> [t_i, t_{i+1})

    def pieces(self, first: int, stop: int):
        """(source start, target start, length) of the runs covering targets [first, stop)."""
        i = int(np.searchsorted(self.target, first, side="right")) - 1
        while first < stop:
            length = min(self.target[i + 1], stop) - first
            yield self.source[i] + first - self.target[i], first, length
            first += length
            i += 1

    def gather(self, L: np.ndarray, out: np.ndarray, row_first: int, col_first: int,
               col_stop: int) -> None:
        """out = L[R, R][row_first:, col_first:col_stop], above-diagonal entries zeroed."""
        n_r = self.target[-1]
        for c_source, c_target, width in self.pieces(col_first, col_stop):
            columns = slice(c_target - col_first, c_target - col_first + width)
            for r_source, r_target, height in self.pieces(row_first, n_r):
                if r_target + height <= c_target:  # entirely above the diagonal
                    out[r_target - row_first : r_target - row_first + height, columns] = 0.0
                else:
                    out[r_target - row_first : r_target - row_first + height, columns] = L[
                        r_source : r_source + height, c_source : c_source + width
                    ]


def _single_threaded_blas():
    """A context in which BLAS runs on one thread.

    The update is a long sequence of small and tall-skinny products; a multi-threaded BLAS
    gains little on them and, on a machine whose cores are busy, loses a lot (each call waits
    for every thread to be scheduled: measured 50 times slower on two shared cores).
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        _BLAS_CONTROLLER = threadpoolctl.ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


_BLAS_CONTROLLER: Optional[threadpoolctl.ThreadpoolController] = None


def _update(L, runs, new_L, start, V, beta, carried, b) -> None:
    """Write the updated columns start: of the factor into new_L (see :func:`_downdate`).

    V [m, k] (Fortran order) is overwritten; beta [m, P] (β_R from ``start`` on) is rotated
    in place; carried [k, P] holds β_E.
    """
    n_r = new_L.shape[0]
    m, k = V.shape
    staging = np.empty(m * (b + k))  # the old block column and V below it, side by side
    products = np.empty(m * (b + k))
    for j in range(0, m, b):
        width = min(b, m - j)
        column = start + j  # first column of the block in the new factor
        height = n_r - column
        block = staging[: height * (width + k)].reshape((height, width + k), order="F")
        if column:
            new_L[:column, column : column + width] = 0.0
        runs.gather(L, block[:, :width], column, column, column + width)
        block[:, width:] = V[j:]
        stacked = np.concatenate([block[:width, :width].T, V[j : j + width].T])
        Q, R = np.linalg.qr(stacked, mode="complete")  # Q [(width + k), (width + k)]
        signs = np.where(np.diag(R) < 0.0, -1.0, 1.0)  # make the new diagonal positive
        Q[:, :width] *= signs
        new_L[column : column + width, column : column + width] = np.tril(R[:width].T * signs)
        rotated = Q.T @ np.concatenate([beta[j : j + width], carried])
        beta[j : j + width] = rotated[:width]
        carried = rotated[width:]
        rest = height - width
        if rest:
            out = products[: rest * (width + k)].reshape((rest, width + k), order="F")
            np.matmul(block[width:], Q, out=out)
            new_L[column + width :, column : column + width] = out[:, :width]
            V[j + width :] = out[:, width:]
