"""Exact references for the Gaussian-belief methods, by quadrature on a grid.

When the parameter has one, two or three dimensions, every density of the variational
chapters can be tabulated on a regular grid: the exact posteriors ``p(theta | D)`` and
``p(theta | D_r)``, and the adjusted target

    p~_adj(theta | D_r) ∝ q(theta | D) / p_adj(D_e | theta; lam)

that the EUBO and the reverse KL aim at (:func:`adjusted_target`). On the grid the optimum
of each objective within the Gaussian family is computed by quadrature, without Monte Carlo
error, so an estimator's answer can be held against the optimum of its own objective:

- the reverse KL, ``min_q KL[p || q]``: the Gaussian with the target's mean and covariance
  (:meth:`GridDensity.moment_matched`);
- the EUBO, ``min_q KL[q || p]``: found by L-BFGS on the quadrature sum
  (:meth:`GridDensity.fit_exclusive_gaussian`). For the adjusted target this is the exact
  minimiser of the adjusted EUBO ``U~_lam``, which equals ``KL[q || p~_adj]`` up to a
  constant.

:class:`GridDensity` holds a normalised density on a grid of cell centres; the quadrature
rule is the midpoint rule, exact to ``O(h^2)`` for smooth densities and ``O(h)`` across the
jump of the adjusted likelihood at the region's boundary.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from scipy import special

from unlearnkit._validation import (
    as_float64_array,
    as_gaussian_belief,
    check_callable,
    check_positive_int,
)
from unlearnkit.diagnostics import OptimizationInfo
from unlearnkit.likelihoods import LogLikelihood
from unlearnkit.linalg import check_tolerance
from unlearnkit.optimize import minimize_lbfgs
from unlearnkit.variational import gaussian
from unlearnkit.variational.adjusted import AdjustedLogLikelihood

tfd = tfp.distributions

__all__ = ["GridDensity", "adjusted_target", "axes_around", "tabulate", "gaussian_expectation"]

_MAX_DIM = 3
_BATCH = 65_536
# A Gaussian is resolved by the grid when every cell is at most this many of its standard
# deviations wide (along each axis), and lies on the grid when the grid holds this much
# of its mass.
_MAX_CELLS_PER_SD = 0.5
_MASS_TOLERANCE = 1e-6


def _check_axes(axes: Sequence[object]) -> Tuple[np.ndarray, ...]:
    if isinstance(axes, np.ndarray) and axes.ndim == 1:
        axes = [axes]
    try:
        axes = [as_float64_array(axis, f"axes[{i}]", ndim=1) for i, axis in enumerate(axes)]
    except TypeError as err:
        raise TypeError(f"axes must be a sequence of 1-D arrays: {err}") from None
    if not 1 <= len(axes) <= _MAX_DIM:
        raise ValueError(f"axes must hold between 1 and {_MAX_DIM} axes, got {len(axes)}")
    checked = []
    for i, axis in enumerate(axes):
        if axis.shape[0] < 2:
            raise ValueError(f"axes[{i}] must have at least 2 points, got {axis.shape[0]}")
        steps = np.diff(axis)
        if not np.all(steps > 0) or not np.allclose(steps, steps[0], rtol=1e-6, atol=0.0):
            raise ValueError(f"axes[{i}] must be increasing and equally spaced")
        axis = axis.copy()
        axis.flags.writeable = False
        checked.append(axis)
    return tuple(checked)


def _grid_points(axes: Tuple[np.ndarray, ...]) -> np.ndarray:
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=-1)


class GridDensity:
    """A probability density on a regular grid, normalised by the midpoint rule.

    Args:
        axes: ``d`` (1 to 3) increasing, equally spaced 1-D arrays; the grid is their
            Cartesian product, in ``np.meshgrid(..., indexing="ij")`` order.
        log_density: the log density up to an additive constant at the grid points,
            ``[n_1, ..., n_d]`` (or flattened ``[G]``). ``-inf`` marks zero density; NaN and
            ``+inf`` are errors.

    Attributes:
        function: the log density as a callable, when the grid was tabulated from one
            (:meth:`from_function`, :func:`tabulate`); None otherwise.
        axes: the axes (read-only arrays).
        dim: ``d``.
        shape: ``(n_1, ..., n_d)``.
        points: ``[G, d]`` the grid points, ``G = n_1 ... n_d``.
        cell_volume: the product of the axes' steps.
        log_pmf: ``[G]`` log probability of each cell (``logsumexp = 0``).
        log_normaliser: ``log`` of the integral of ``exp(log_density)`` (midpoint rule).
    """

    def __init__(self, axes: Sequence[object], log_density: object) -> None:
        self.function: Optional[Callable[[tf.Tensor], object]] = None
        self.axes = _check_axes(axes)
        self.dim = len(self.axes)
        self.shape = tuple(axis.shape[0] for axis in self.axes)
        values = np.asarray(log_density, dtype=np.float64)
        if values.size != math.prod(self.shape):
            raise ValueError(
                f"log_density must have shape {list(self.shape)} (or [{math.prod(self.shape)}]), "
                f"got {list(values.shape)}"
            )
        values = values.reshape(-1)
        if np.isnan(values).any() or (values == np.inf).any():
            raise ValueError("log_density contains NaN or +inf values (use -inf for zero density)")
        if not np.isfinite(values).any():
            raise ValueError("log_density has no finite entry: no mass on the grid")
        self.cell_volume = float(np.prod([axis[1] - axis[0] for axis in self.axes]))
        total = special.logsumexp(values)
        self.log_pmf = values - total
        self.log_pmf.flags.writeable = False
        self.log_normaliser = float(total + math.log(self.cell_volume))
        self.points = _grid_points(self.axes)
        self.points.flags.writeable = False

    @classmethod
    def from_function(
        cls,
        log_density: Callable[[tf.Tensor], object],
        axes: Sequence[object],
        *,
        batch_size: int = _BATCH,
    ) -> "GridDensity":
        """Tabulate ``log_density: theta [S, d] -> [S]`` (TensorFlow or NumPy) on the grid.

        The function is called on batches of at most ``batch_size`` grid points.
        """
        check_callable(log_density, "log_density", "theta [S, d] -> [S]")
        batch_size = check_positive_int(batch_size, "batch_size")
        axes = _check_axes(axes)
        points = _grid_points(axes)
        values = []
        for start in range(0, points.shape[0], batch_size):
            chunk = tf.constant(points[start:start + batch_size])
            out = np.asarray(log_density(chunk), dtype=np.float64)
            if out.shape != (chunk.shape[0],):
                raise ValueError(
                    f"log_density must return shape [{chunk.shape[0]}] for theta of shape "
                    f"{chunk.shape.as_list()}, got {list(out.shape)}"
                )
            values.append(out)
        density = cls(axes, np.concatenate(values))
        density.function = log_density
        return density

    # --- summaries ----------------------------------------------------------------------

    @property
    def pmf(self) -> np.ndarray:
        """``[G]`` probability of each cell."""
        return np.exp(self.log_pmf)

    @property
    def log_density(self) -> np.ndarray:
        """``[G]`` the normalised log density at the grid points."""
        return self.log_pmf - math.log(self.cell_volume)

    @property
    def mean(self) -> np.ndarray:
        """``[d]`` the mean."""
        return self.pmf @ self.points

    @property
    def covariance(self) -> np.ndarray:
        """``[d, d]`` the covariance."""
        centred = self.points - self.mean
        return (centred * self.pmf[:, None]).T @ centred

    def moment_matched(self) -> tfd.MultivariateNormalTriL:
        """The Gaussian with this density's mean and covariance: ``argmin_q KL[p || q]``
        over Gaussians, the optimum of the reverse KL."""
        scale = np.linalg.cholesky(self.covariance)
        return tfd.MultivariateNormalTriL(
            loc=tf.constant(self.mean), scale_tril=tf.constant(scale)
        )

    def probability(self, event: Callable[[tf.Tensor], object]) -> float:
        """The mass of the cells whose centre satisfies ``event: theta [S, d] -> bool [S]``."""
        check_callable(event, "event", "theta [S, d] -> bool [S]")
        inside = np.asarray(event(tf.constant(self.points)), dtype=bool).reshape(-1)
        if inside.shape[0] != self.points.shape[0]:
            raise ValueError(f"event must return shape [{self.points.shape[0]}]")
        return float(self.pmf[inside].sum())

    def expectation(
        self,
        fn: Callable[[tf.Tensor], object],
        *,
        tail: float = 1e-15,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """``E_p[fn(theta)]`` by quadrature, for ``fn: theta [S, d] -> [S, ...]``.

        The cells that together hold at most ``tail`` of the mass (the lightest ones) are
        skipped, so that an expensive ``fn`` is evaluated only where the density lives; the
        result changes by at most ``tail`` times the largest ``|fn|``.
        """
        check_callable(fn, "fn", "theta [S, d] -> [S, ...]")
        pmf = self.pmf
        order = np.argsort(pmf)
        skipped = np.searchsorted(np.cumsum(pmf[order]), tail, side="right")
        keep = np.sort(order[skipped:])
        weights = pmf[keep] / pmf[keep].sum()
        total = None
        for start in range(0, keep.shape[0], batch_size):
            rows = keep[start:start + batch_size]
            values = np.asarray(fn(tf.constant(self.points[rows])), dtype=np.float64)
            part = np.tensordot(weights[start:start + batch_size], values, axes=1)
            total = part if total is None else total + part
        return total

    # --- divergences to Gaussians -------------------------------------------------------

    def _gaussian_log_pmf(self, q: tfd.MultivariateNormalTriL) -> Tuple[np.ndarray, float]:
        """``q``'s log probabilities of the cells (normalised on the grid) and the mass of
        ``q`` that the grid holds; raises when ``q`` is not resolved by the grid."""
        log_q = q.log_prob(tf.constant(self.points)).numpy() + math.log(self.cell_volume)
        mass = float(np.exp(special.logsumexp(log_q)))
        # Conditional standard deviations 1 / sqrt(precision_ii): the narrowest extent of
        # q along each axis, also for a thin, tilted q.
        sds = 1.0 / np.sqrt(np.diag(np.linalg.inv(q.covariance().numpy())))
        steps = np.array([axis[1] - axis[0] for axis in self.axes])
        if np.any(steps > _MAX_CELLS_PER_SD * sds) or abs(mass - 1.0) > _MASS_TOLERANCE:
            raise ValueError(
                f"q is not resolved by the grid (its standard deviations {np.round(sds, 4)} "
                f"against cells of {np.round(steps, 4)}; the grid holds {mass:.4f} of its mass): "
                f"use a finer grid or one that covers q"
            )
        return log_q - special.logsumexp(log_q), mass

    def inclusive_kl(self, q: object) -> float:
        """``KL[p || q]`` for a Gaussian ``q``, by quadrature (``q`` need not lie on the grid)."""
        q = as_gaussian_belief(q, "q")
        self._check_event(q)
        log_q = q.log_prob(tf.constant(self.points)).numpy()
        pmf = self.pmf
        mass = pmf > 0
        return float(np.sum(pmf[mass] * (self.log_density[mass] - log_q[mass])))

    def exclusive_kl(self, q: object) -> float:
        """``KL[q || p]`` for a Gaussian ``q``, by quadrature.

        The sum runs over this grid when it resolves ``q`` (at least 2 cells per standard
        deviation of ``q`` along each axis, conditional on the others, and all but 1e-6 of
        ``q``'s mass on it). Otherwise, when the density was tabulated from a function, the
        function is tabulated again on a grid of the same size around ``q`` (8 standard
        deviations each way), normalised with this grid's normaliser.

        Raises:
            ValueError: ``q`` is not resolved by the grid and the density has no function;
                ``p`` has zero density where ``q`` has mass.
        """
        q = as_gaussian_belief(q, "q")
        self._check_event(q)
        try:
            log_q, _ = self._gaussian_log_pmf(q)
            log_p = self.log_pmf
        except ValueError:
            if self.function is None:
                raise
            local = GridDensity.from_function(self.function, self._axes_around_gaussian(q))
            log_q, _ = local._gaussian_log_pmf(q)
            # The local grid's log densities, normalised with this grid's normaliser.
            # Cell probabilities of p on the local grid, normalised with this grid's
            # normaliser: p(theta_g) * cell volume = exp(f(theta_g) - log_normaliser) * dV.
            log_p = local.log_pmf + local.log_normaliser - self.log_normaliser
        q_pmf = np.exp(log_q)
        if np.any((q_pmf > 0) & ~np.isfinite(log_p)):
            raise ValueError("p has zero density where q has mass: KL[q || p] is infinite")
        terms = q_pmf * (log_q - log_p)
        return float(np.sum(terms[q_pmf > 0]))

    def _axes_around_gaussian(self, q: tfd.MultivariateNormalTriL) -> list:
        """Axes of a grid of this grid's shape covering ``q`` (8 standard deviations each way)."""
        centre = q.loc.numpy()
        sds = np.sqrt(np.diag(q.covariance().numpy()))
        return [np.linspace(c - 8.0 * s, c + 8.0 * s, n) for c, s, n in zip(centre, sds, self.shape)]

    def fit_exclusive_gaussian(
        self,
        initial: Optional[object] = None,
        *,
        max_iterations: int = 500,
        tolerance: float = 1e-8,
        return_info: bool = False,
    ) -> Union[tfd.MultivariateNormalTriL, Tuple[tfd.MultivariateNormalTriL, OptimizationInfo]]:
        """The Gaussian ``q`` minimising ``KL[q || p]`` by quadrature: the EUBO's optimum.

        L-BFGS on the quadrature sum ``sum_g q_g (log q_g - log p_g)`` (``q_g`` the cell
        probabilities of ``q`` normalised on the grid), in coordinates whitened by
        ``initial``. The minimiser does not depend on ``p``'s normalisation, only on its
        values where ``q`` has mass; so when the grid is too coarse for the optimum (a
        mode-seeking ``q`` can be much narrower than ``p``) and the density was tabulated
        from a function, the function is tabulated again on a grid of the same size around
        the optimum (8 standard deviations each way) and the fit repeated, up to 4 times.
        ``KL[q || p]`` can have several local minima when ``p`` has several modes; the one
        found is the one L-BFGS reaches from ``initial``.

        Args:
            initial: the starting Gaussian; default :meth:`moment_matched`.
            max_iterations: L-BFGS iteration cap.
            tolerance: L-BFGS tolerance (see :func:`unlearnkit.optimize.minimize_lbfgs`).
            return_info: also return the last fit's
                :class:`~unlearnkit.diagnostics.OptimizationInfo`.

        Returns:
            A new float64 ``tfd.MultivariateNormalTriL`` [d], and the info if requested.

        Raises:
            ValueError: the density has cells of zero density (``-inf``), or the optimum
                is not resolved by the grid (see :meth:`exclusive_kl`) and cannot be
                tabulated again.
        """
        initial = self.moment_matched() if initial is None else as_gaussian_belief(initial, "initial")
        self._check_event(initial)
        max_iterations = check_positive_int(max_iterations, "max_iterations")
        tolerance = check_tolerance(tolerance)
        density, result = self, initial
        for attempt in range(5):
            result, info = density._fit_exclusive(result, max_iterations, tolerance)
            try:
                density._gaussian_log_pmf(result)
                break
            except ValueError:
                if self.function is None or attempt == 4:
                    raise
                density = GridDensity.from_function(
                    self.function, self._axes_around_gaussian(result)
                )
        return (result, info) if return_info else result

    def _fit_exclusive(
        self, initial: tfd.MultivariateNormalTriL, max_iterations: int, tolerance: float
    ) -> Tuple[tfd.MultivariateNormalTriL, OptimizationInfo]:
        if not np.all(np.isfinite(self.log_pmf)):
            raise ValueError("fit_exclusive_gaussian needs a density that is positive on the grid")
        dim = self.dim
        # Whitened grid points relative to ``initial``: z_g = L0^{-1} (theta_g - mu0).
        L0 = initial.scale.to_dense()
        z = tf.transpose(tf.linalg.triangular_solve(
            L0, tf.transpose(tf.constant(self.points) - initial.loc), lower=True))
        log_p = tf.constant(self.log_pmf)

        def objective(x: tf.Tensor) -> tf.Tensor:
            a, B = gaussian.unpack(x, dim)
            log_q = gaussian.whitened_belief(a, B).log_prob(z)
            log_q = log_q - tf.reduce_logsumexp(log_q)
            return tf.reduce_sum(tf.exp(log_q) * (log_q - log_p))

        x, info = minimize_lbfgs(
            objective,
            tf.zeros([gaussian.num_parameters(dim)], tf.float64),
            max_iterations=max_iterations,
            tolerance=tolerance,
            name="KL[q || p] on the grid",
        )
        return gaussian.belief_from_packed(initial, x), info

    def _check_event(self, q: tfd.MultivariateNormalTriL) -> None:
        if int(q.event_shape[0]) != self.dim:
            raise ValueError(f"q must have event shape [{self.dim}], got {q.event_shape}")

    def __repr__(self) -> str:
        return f"GridDensity(dim={self.dim}, shape={self.shape}, cell_volume={self.cell_volume:.3g})"


def adjusted_target(
    q_full: object, erased_log_likelihood: LogLikelihood, lam: float
) -> Callable[[tf.Tensor], tf.Tensor]:
    """``theta [S, d] -> log q(theta | D) - log p_adj(D_e | theta; lam)`` [S], the log of the
    adjusted target ``p~_adj(theta | D_r)`` up to a constant (for :meth:`GridDensity.from_function`)."""
    adjusted = AdjustedLogLikelihood(erased_log_likelihood, q_full, lam)

    def log_density(theta: tf.Tensor) -> tf.Tensor:
        return adjusted.q_full.log_prob(theta) - adjusted(theta)

    return log_density


def axes_around(
    density: GridDensity,
    num_points: Union[int, Sequence[int]],
    *,
    tail: float = 1e-12,
    padding: float = 0.25,
) -> Tuple[np.ndarray, ...]:
    """Axes of a grid zoomed onto where ``density`` lives, for a second, finer tabulation.

    The box is the smallest one holding every cell of the highest-density region of mass
    ``1 - tail``, widened by ``padding`` times its width on each side.

    Args:
        density: a :class:`GridDensity` (typically on a coarse, wide grid).
        num_points: points per axis of the new grid (one int for every axis, or one each).
        tail: the mass left outside the box (at most; before padding).
        padding: relative margin added on each side.

    Returns:
        ``d`` equally spaced axes.
    """
    if not 0.0 < tail < 1.0:
        raise ValueError(f"tail must lie in (0, 1), got {tail}")
    if not padding >= 0.0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    counts = [num_points] * density.dim if isinstance(num_points, (int, np.integer)) else list(num_points)
    if len(counts) != density.dim:
        raise ValueError(f"num_points must give one count per axis ({density.dim}), got {len(counts)}")
    counts = [check_positive_int(count, "num_points") for count in counts]
    pmf = density.pmf
    order = np.argsort(pmf)[::-1]
    needed = np.searchsorted(np.cumsum(pmf[order]), 1.0 - tail) + 1
    cells = density.points[order[:needed]]
    axes = []
    for i, count in enumerate(counts):
        step = density.axes[i][1] - density.axes[i][0]
        low, high = cells[:, i].min() - step, cells[:, i].max() + step
        margin = padding * (high - low)
        axes.append(np.linspace(low - margin, high + margin, max(count, 2)))
    return tuple(axes)


def tabulate(
    log_density: Callable[[tf.Tensor], object],
    axes: Sequence[object],
    *,
    num_points: Union[int, Sequence[int]] = 201,
    tail: float = 1e-12,
    padding: float = 0.25,
) -> GridDensity:
    """Tabulate a log density in two passes: on ``axes`` (a coarse grid wide enough to hold
    all of its mass), then on a grid of ``num_points`` per axis zoomed onto the box where
    all but ``tail`` of that mass lies (see :func:`axes_around`).

    Args:
        log_density: ``theta [S, d] -> [S]``, the log density up to a constant.
        axes: the coarse grid's axes. Mass piled against their ends means they were too
            narrow: a :class:`UserWarning` says so.
        num_points: points per axis of the fine grid.
        tail: mass the fine grid may leave out (before padding).
        padding: relative margin around the box.

    Returns:
        The :class:`GridDensity` on the fine grid.
    """
    coarse = GridDensity.from_function(log_density, axes)
    edge = np.zeros(coarse.shape, dtype=bool)
    for i in range(coarse.dim):
        index = [slice(None)] * coarse.dim
        for end in (0, -1):
            index[i] = end
            edge[tuple(index)] = True
    if coarse.pmf[edge.reshape(-1)].sum() > tail:
        warnings.warn(
            f"the coarse grid cuts the density off: its edge cells hold "
            f"{coarse.pmf[edge.reshape(-1)].sum():.2g} of the mass; widen the axes",
            UserWarning,
            stacklevel=2,
        )
    return GridDensity.from_function(
        log_density, axes_around(coarse, num_points, tail=tail, padding=padding)
    )


def gaussian_expectation(
    q: object, fn: Callable[[tf.Tensor], object], *, num_points: int = 24
) -> np.ndarray:
    """``E_q[fn(theta)]`` for a Gaussian ``q`` in ``d <= 3`` dimensions, by Gauss-Hermite
    quadrature (the product rule with ``num_points`` nodes per dimension).

    Exact for polynomials of degree below ``2 num_points`` and, for smooth ``fn`` such as a
    predictive probability ``sigmoid(x^T theta)``, accurate without Monte Carlo noise.

    Args:
        q: a float64 multivariate normal [d], ``d <= 3``.
        fn: ``theta [S, d] -> [S, ...]``.
        num_points: nodes per dimension.

    Returns:
        ``E_q[fn(theta)]``, the shape of ``fn``'s output without the leading ``S``.
    """
    q = as_gaussian_belief(q, "q")
    check_callable(fn, "fn", "theta [S, d] -> [S, ...]")
    num_points = check_positive_int(num_points, "num_points")
    dim = int(q.event_shape[0])
    if dim > _MAX_DIM:
        raise ValueError(f"q must have at most {_MAX_DIM} dimensions for the product rule, got {dim}")
    nodes, weights = np.polynomial.hermite_e.hermegauss(num_points)  # weight exp(-x^2 / 2)
    weights = weights / weights.sum()
    grid = _grid_points(tuple([nodes] * dim))  # [n^d, d] standard-normal nodes
    product = np.prod(_grid_points(tuple([weights] * dim)), axis=-1)
    theta = q.loc.numpy() + grid @ q.scale.to_dense().numpy().T
    values = np.asarray(fn(tf.constant(theta)), dtype=np.float64)
    if values.shape[:1] != (theta.shape[0],):
        raise ValueError(f"fn must return shape [{theta.shape[0]}, ...], got {list(values.shape)}")
    return np.tensordot(product, values, axes=1)
