"""How close an unlearned belief is to the retrained one.

- :func:`gaussian_kl`: the closed-form KL divergence between two Gaussian beliefs.
- :func:`predictive_probabilities`: the Monte Carlo predictive class probabilities of a
  belief, ``q(y | x) = E_q(theta)[p(y | x, theta)]``, at a set of inputs.
- :func:`averaged_kl`: the averaged KL of Nguyen et al. (2020): per input ``x``,
  ``KL[q_retrained(y | x) || q_other(y | x)]`` between the predictive distributions,
  then the mean and standard deviation over the inputs (for example over the inputs of
  ``D_e``, and separately over those of ``D_r``).
- :func:`membership_scores` and :func:`membership_inference_auc`: how well a per-point
  score (the predictive log-likelihood, or its ratio to a reference model's) tells the
  points a model was trained on from points it never saw. An AUC of 0.5 means nothing
  leaks; after unlearning, the erased points should score like unseen ones.
- :func:`knn_kl`: ``KL[p || q]`` estimated from two *sample sets* by k-nearest-neighbour
  distances (Wang, Kulkarni and Verdu, 2009): the divergence between a processed set of
  posterior samples and a retrained one.
- :func:`gaussian_moment_kl`: ``KL[p || q]`` between Gaussians fitted by moments to two
  sample sets (optionally weighted, optionally block-diagonal).

Predictive probabilities are given either as ``[N]`` probabilities of class 1
(Bernoulli) or as ``[N, C]`` rows that sum to 1 (categorical). Before taking logs, every
probability is clipped to ``[epsilon, 1 - epsilon]`` (categorical rows are then
renormalised), so that a predictive that puts no mass on a class gives a large but
finite KL.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from unlearnkit._validation import (
    as_float64,
    as_gaussian_belief,
    check_callable,
    check_output_tensor,
    check_positive_int,
    ensure_finite,
)
from unlearnkit.errors import DegenerateWeightsError, NotPositiveDefiniteError
from unlearnkit.seeds import Seed, sanitize_seed

tfd = tfp.distributions

__all__ = [
    "AveragedKL",
    "averaged_kl",
    "predictive_kl",
    "predictive_probabilities",
    "gaussian_kl",
    "membership_scores",
    "membership_inference_auc",
    "knn_kl",
    "gaussian_moment_kl",
    "DEFAULT_EPSILON",
]

DEFAULT_EPSILON = 1e-12


class AveragedKL(NamedTuple):
    """Mean and standard deviation (``ddof = 0``) over inputs of the per-input KL."""

    mean: float
    std: float


def gaussian_kl(q: object, p: object) -> tf.Tensor:
    """``KL[q || p]`` between two Gaussian beliefs, in closed form (``tfd.kl_divergence``).

    Args:
        q, p: float64 multivariate normals (any ``tfd.MultivariateNormalLinearOperator``) with
            the same event shape ``[d]``.

    Returns:
        A float64 scalar tensor (>= 0; 0 iff ``q == p``).
    """
    q = as_gaussian_belief(q, "q")
    p = as_gaussian_belief(p, "p")
    if q.event_shape != p.event_shape:
        raise ValueError(
            f"q and p must have the same event shape, got {q.event_shape} and {p.event_shape}"
        )
    return tf.maximum(tfd.kl_divergence(q, p), 0.0)


def _as_categorical(probs: object, name: str, epsilon: float) -> tf.Tensor:
    """Clipped ``[N, C]`` class probabilities from ``[N]`` (Bernoulli) or ``[N, C]`` input."""
    probs = as_float64(probs, name)
    if probs.shape.rank == 1:
        probs = tf.stack([1.0 - probs, probs], axis=-1)
    elif probs.shape.rank != 2:
        raise ValueError(
            f"{name} must have shape [N] (Bernoulli) or [N, C] (categorical), "
            f"got {probs.shape.as_list()}"
        )
    if not bool(tf.reduce_all((probs >= 0.0) & (probs <= 1.0))):
        raise ValueError(f"{name} must contain probabilities in [0, 1]")
    if not bool(tf.reduce_all(tf.abs(tf.reduce_sum(probs, axis=-1) - 1.0) < 1e-6)):
        raise ValueError(f"{name} must have rows that sum to 1")
    clipped = tf.clip_by_value(probs, epsilon, 1.0 - epsilon)
    return clipped / tf.reduce_sum(clipped, axis=-1, keepdims=True)


def _check_epsilon(epsilon: float) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)):
        raise TypeError(f"epsilon must be a number in (0, 0.5), got {type(epsilon).__name__}")
    if not 0.0 < epsilon < 0.5:
        raise ValueError(f"epsilon must lie in (0, 0.5), got {epsilon}")
    return float(epsilon)


def predictive_kl(
    retrained_probs: object, other_probs: object, epsilon: float = DEFAULT_EPSILON
) -> tf.Tensor:
    """Per-input ``KL[q_retrained(y | x_n) || q_other(y | x_n)]``.

    Args:
        retrained_probs: predictive of the retrained belief, [N] (probability of class 1)
            or [N, C].
        other_probs: predictive of the belief being assessed, same shape.
        epsilon: probabilities are clipped to ``[epsilon, 1 - epsilon]`` first.

    Returns:
        The KL at each input, [N] float64 (>= 0).
    """
    epsilon = _check_epsilon(epsilon)
    p = _as_categorical(retrained_probs, "retrained_probs", epsilon)
    q = _as_categorical(other_probs, "other_probs", epsilon)
    if p.shape[0] == 0:
        raise ValueError("retrained_probs must hold at least one input (got N = 0)")
    if p.shape != q.shape:
        raise ValueError(
            f"retrained_probs and other_probs must have the same shape, got "
            f"{p.shape.as_list()} and {q.shape.as_list()}"
        )
    kl = tf.reduce_sum(p * (tf.math.log(p) - tf.math.log(q)), axis=-1)
    return tf.maximum(kl, 0.0)  # rounding can give -1e-17


def averaged_kl(
    retrained_probs: object, other_probs: object, epsilon: float = DEFAULT_EPSILON
) -> AveragedKL:
    """The averaged KL between predictive distributions (Nguyen et al., 2020).

    Args:
        retrained_probs: predictive of the belief retrained on ``D_r``, at N inputs:
            [N] probabilities of class 1, or [N, C] class probabilities.
        other_probs: predictive of the belief being assessed (unlearned, or the
            "full" belief ``q(theta | D)``), same shape.
        epsilon: probabilities are clipped to ``[epsilon, 1 - epsilon]`` first.

    Returns:
        ``AveragedKL(mean, std)`` of ``KL[retrained || other]`` over the N inputs.

    Example:
        >>> p_retrain = predictive_probabilities(q_retrain, probs_on_erased, seed=0)
        >>> p_unlearn = predictive_probabilities(q_unlearn, probs_on_erased, seed=0)
        >>> averaged_kl(p_retrain, p_unlearn).mean
    """
    kl = predictive_kl(retrained_probs, other_probs, epsilon).numpy()
    return AveragedKL(mean=float(np.mean(kl)), std=float(np.std(kl)))


def _standard_normal_flow(belief: object):
    """The bijector of a float64 ``TransformedDistribution`` [d] of a standard-normal base
    (a flow belief), else None."""
    if not isinstance(belief, tfd.Distribution) or not hasattr(belief, "bijector"):
        return None
    base = getattr(belief, "distribution", None)
    if (
        not isinstance(base, tfd.MultivariateNormalDiag)
        or belief.dtype != tf.float64
        or belief.event_shape.rank != 1
        or base.event_shape != belief.event_shape
    ):
        return None
    zero, one = base.loc, base.stddev()
    if not (bool(tf.reduce_all(zero == 0.0)) and bool(tf.reduce_all(one == 1.0))):
        return None
    return belief.bijector


def predictive_probabilities(
    belief: object,
    class_probabilities: Callable[[tf.Tensor], tf.Tensor],
    num_samples: int = 1000,
    *,
    seed: Seed = None,
) -> tf.Tensor:
    """Monte Carlo predictive ``q(y | x_n) = (1/S) sum_s p(y | x_n, theta_s)``, theta_s ~ belief.

    Args:
        belief: a float64 multivariate normal over ``theta`` [d], or a flow: a float64
            ``tfd.TransformedDistribution`` [d] of a standard-normal base (such as the MAF
            beliefs of :func:`unlearnkit.variational.make_maf_belief`); either way
            ``theta_s`` is a fixed function of the same base samples ``eps_s``.
        class_probabilities: ``theta [S, d] -> [S, N]`` probabilities of class 1, or
            ``[S, N, C]`` class probabilities, at the N inputs of interest (bind the
            inputs in the callable, e.g. ``lambda t: tf.sigmoid(t @ X.T)``).
        num_samples: Monte Carlo samples ``S``.
        seed: ``None``, an int or a stateless seed (see :mod:`unlearnkit.seeds`). Use the
            same seed for the beliefs you compare (common random numbers).

    Returns:
        [N] or [N, C] float64 predictive probabilities.
    """
    flow = _standard_normal_flow(belief)
    if flow is None:
        belief = as_gaussian_belief(belief, "belief")
    check_callable(
        class_probabilities, "class_probabilities", "theta [S, d] -> [S, N] or [S, N, C]"
    )
    num_samples = check_positive_int(num_samples, "num_samples")
    dim = int(belief.event_shape[0])
    eps = tf.random.stateless_normal([num_samples, dim], seed=sanitize_seed(seed), dtype=tf.float64)
    if flow is None:
        theta = belief.loc + tf.matmul(eps, belief.scale.to_dense(), transpose_b=True)
    else:
        theta = ensure_finite(tf.convert_to_tensor(flow.forward(eps)), "the flow's samples")
    expected = f"shape [{num_samples}, N] or [{num_samples}, N, C] for theta of shape [{num_samples}, {dim}]"
    probs = check_output_tensor(class_probabilities(theta), "class_probabilities", expected)
    if probs.shape.rank not in (2, 3) or probs.shape[0] != num_samples:
        raise ValueError(f"class_probabilities must return {expected}, got {probs.shape.as_list()}")
    probs = ensure_finite(tf.cast(probs, tf.float64), "the output of class_probabilities")
    if not bool(tf.reduce_all((probs >= 0.0) & (probs <= 1.0))):
        raise ValueError("class_probabilities must return probabilities in [0, 1]")
    if probs.shape.rank == 3 and not bool(
        tf.reduce_all(tf.abs(tf.reduce_sum(probs, axis=-1) - 1.0) < 1e-6)
    ):
        raise ValueError("class_probabilities must return [S, N, C] rows that sum to 1")
    return tf.reduce_mean(probs, axis=0)


# --- Membership inference ---------------------------------------------------------------


def membership_scores(
    belief: object,
    log_likelihood: Callable[[tf.Tensor], tf.Tensor],
    num_samples: int = 1000,
    *,
    reference: object = None,
    seed: Seed = None,
) -> np.ndarray:
    """Per-point membership scores: the log predictive density of each point under a belief.

    The score of point ``n`` is ``log q(y_n | x_n) = log (1/S) sum_s p(y_n | x_n, theta_s)``
    with ``theta_s ~ belief``: a model that has memorised its training points gives them
    higher scores than unseen points. With ``reference``, the score is the likelihood
    ratio ``log q(y_n | x_n) - log q_reference(y_n | x_n)`` (for example against a model
    trained without the points under test), which removes how easy each point is in
    itself. Both beliefs use the same standard-normal draws (common random numbers).

    Args:
        belief: a float64 multivariate normal over ``theta`` [d].
        log_likelihood: ``theta [S, d] -> [S, N]`` per-point log-likelihoods
            ``log p(y_n | x_n, theta)`` of the N points to score (bind the data in the
            callable).
        num_samples: Monte Carlo samples ``S``.
        reference: optional second belief over the same ``theta`` [d].
        seed: ``None``, an int or a stateless seed (see :mod:`unlearnkit.seeds`).

    Returns:
        [N] float64 NumPy array of scores (higher: more like a training point).

    Raises:
        ValueError: a callable output of the wrong shape, or non-finite scores.
    """
    belief = as_gaussian_belief(belief, "belief")
    check_callable(log_likelihood, "log_likelihood", "theta [S, d] -> [S, N]")
    num_samples = check_positive_int(num_samples, "num_samples")
    dim = int(belief.event_shape[0])
    if reference is not None:
        reference = as_gaussian_belief(reference, "reference")
        if int(reference.event_shape[0]) != dim:
            raise ValueError(
                f"reference must be a belief over the same {dim} parameters as belief, "
                f"got event shape {reference.event_shape.as_list()}"
            )
    eps = tf.random.stateless_normal([num_samples, dim], seed=sanitize_seed(seed), dtype=tf.float64)

    def log_predictive(q: tfd.Distribution) -> tf.Tensor:
        theta = q.loc + tf.matmul(eps, q.scale.to_dense(), transpose_b=True)
        values = tf.convert_to_tensor(log_likelihood(theta))
        if values.shape.rank != 2 or values.shape[0] != num_samples:
            raise ValueError(
                f"log_likelihood must return shape [{num_samples}, N] for theta of shape "
                f"[{num_samples}, {dim}], got {values.shape.as_list()}"
            )
        if values.dtype.is_complex or not (values.dtype.is_floating or values.dtype.is_integer):
            raise TypeError(f"log_likelihood must return real values, got {values.dtype.name}")
        values = tf.cast(values, tf.float64)
        if bool(tf.reduce_any(tf.math.is_nan(values) | (values == np.inf))):
            raise ValueError("log_likelihood returned NaN or +inf")
        return tf.reduce_logsumexp(values, axis=0) - np.log(num_samples)

    scores = log_predictive(belief)
    if reference is not None:
        scores = scores - log_predictive(reference)
    scores = scores.numpy()
    if not np.isfinite(scores).all():
        raise ValueError(
            "membership scores are not finite: a point has zero predictive density under "
            "every sample (or under every sample of the reference)"
        )
    return scores


def _as_scores(value: object, name: str) -> np.ndarray:
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a 1-D array of real scores, got {type(value).__name__}")
    array = np.asarray(value.numpy() if isinstance(value, tf.Tensor) else value)
    if array.dtype == bool or array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    array = array.astype(np.float64)
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def membership_inference_auc(member_scores: object, nonmember_scores: object) -> float:
    """ROC AUC of a membership-inference attack that thresholds a per-point score.

    The probability that a random member scores higher than a random non-member (ties
    count one half), computed with scikit-learn's ``roc_auc_score``. 0.5 means the score
    says nothing about membership; 1 means it separates members perfectly. To check an
    unlearned model, score the erased points (``member_scores``) against points that
    were never in the training data (``nonmember_scores``): after exact unlearning the
    AUC is about 0.5, up to sampling noise of order ``1 / sqrt(min(m, k))``.

    Args:
        member_scores: [m] scores of points that were in the training data.
        nonmember_scores: [k] scores of points that were not; higher means "member".

    Returns:
        The AUC, a float in [0, 1].
    """
    # Imported here: nothing else in unlearnkit needs scikit-learn.
    from sklearn.metrics import roc_auc_score

    members = _as_scores(member_scores, "member_scores")
    nonmembers = _as_scores(nonmember_scores, "nonmember_scores")
    labels = np.concatenate([np.ones(members.size), np.zeros(nonmembers.size)])
    return float(roc_auc_score(labels, np.concatenate([members, nonmembers])))


# ---------------------------------------------------------------- KL between sample sets


def _sample_set(samples: object, name: str, min_rows: int) -> np.ndarray:
    array = as_float64(samples, name, ndim=2).numpy()
    if array.shape[1] == 0:
        raise ValueError(f"{name} must have shape [n, d] with d >= 1, got {list(array.shape)}")
    if array.shape[0] < min_rows:
        raise ValueError(f"{name} must hold at least {min_rows} samples, got {array.shape[0]}")
    return array


def knn_kl(samples_p: object, samples_q: object, *, k: int = 1) -> float:
    """``KL[p || q]`` estimated from samples of ``p`` and of ``q`` by nearest-neighbour distances.

    The estimator of Wang, Kulkarni and Verdu (2009, "Divergence estimation for
    multidimensional densities via k-nearest-neighbor distances"): with ``x_1 .. x_n ~ p``
    and ``y_1 .. y_m ~ q`` in ``R^d``, ``rho_i`` the distance from ``x_i`` to its ``k``-th
    nearest neighbour among the other ``x``'s and ``nu_i`` the distance from ``x_i`` to its
    ``k``-th nearest neighbour among the ``y``'s,

        KL^ = (d / n) sum_i log(nu_i / rho_i) + log(m / (n - 1)).

    It is consistent (it converges to the KL as ``n, m`` grow) for densities, with no
    parametric assumption; for small samples in many dimensions it is biased and noisy, so
    compare it with its value between two sample sets of the same distribution (the noise
    floor) before reading a small number as "equal". It can be negative.

    Args:
        samples_p: ``[n, d]`` samples of ``p``, ``n >= k + 1``.
        samples_q: ``[m, d]`` samples of ``q``, ``m >= k``, same ``d``.
        k: which neighbour (a positive int; 1 is the estimator's usual form).

    Returns:
        The estimate, a float.

    Raises:
        ValueError: bad shapes, non-finite entries, or coinciding samples (a zero distance,
            whose logarithm is infinite: remove duplicated samples first).
    """
    from scipy.spatial import cKDTree  # noqa: PLC0415 (SciPy's tree: O(n log n) queries)

    k = check_positive_int(k, "k")
    p = _sample_set(samples_p, "samples_p", k + 1)
    q = _sample_set(samples_q, "samples_q", k)
    if q.shape[1] != p.shape[1]:
        raise ValueError(
            f"samples_q must have {p.shape[1]} columns like samples_p, got {q.shape[1]}"
        )
    n, dim = p.shape
    rho = cKDTree(p).query(p, k=k + 1)[0][:, k]  # the nearest "neighbour" 0 is the point itself
    nu = cKDTree(q).query(p, k=k)[0]
    nu = nu if k == 1 else nu[:, k - 1]
    if np.any(rho == 0.0):
        raise ValueError("samples_p contains repeated samples (a zero nearest-neighbour distance)")
    if np.any(nu == 0.0):
        raise ValueError("samples_p and samples_q share a sample (a zero distance between them)")
    return float(dim * np.mean(np.log(nu / rho)) + np.log(q.shape[0] / (n - 1)))


def _moments(x: np.ndarray, weights: np.ndarray) -> tuple:
    mean = weights @ x
    centred = x - mean
    return mean, (centred * weights[:, None]).T @ centred


def gaussian_moment_kl(
    samples_p: object,
    samples_q: object,
    *,
    weights_p: object = None,
    block_size: int | None = None,
) -> float:
    """``KL[p || q]`` between the Gaussians that match the means and covariances of two sample sets.

    A parametric alternative to :func:`knn_kl`: exact when ``p`` and ``q`` are Gaussian (up to
    the sampling error of the moments), and far less noisy in many dimensions. With
    ``block_size = b``, the ``d`` coordinates are split into consecutive blocks of ``b`` and
    each Gaussian is taken block-diagonal, so the KL is the sum of the blocks' KLs: for
    example one block per component of a mixture, whose centres are nearly independent a
    posteriori. Moments are the plain (``ddof = 0``) sample moments; with ``weights_p`` those
    of ``p`` are importance-weighted.

    Args:
        samples_p: ``[n, d]`` samples of ``p``.
        samples_q: ``[m, d]`` samples of ``q``.
        weights_p: optional non-negative weights ``[n]`` of the samples of ``p`` (normalised
            here), e.g. importance weights.
        block_size: ``None`` (one full covariance) or a positive divisor of ``d``.

    Returns:
        The KL, a float ``>= 0``.

    Raises:
        DegenerateWeightsError: the weights leave fewer effective samples than a block has
            dimensions (no covariance can be estimated).
        NotPositiveDefiniteError: a fitted covariance is singular (fewer samples than
            dimensions, or repeated samples).
    """
    p = _sample_set(samples_p, "samples_p", 2)
    q = _sample_set(samples_q, "samples_q", 2)
    dim = p.shape[1]
    if q.shape[1] != dim:
        raise ValueError(f"samples_q must have {dim} columns like samples_p, got {q.shape[1]}")
    if block_size is None:
        block_size = dim
    block_size = check_positive_int(block_size, "block_size")
    if dim % block_size:
        raise ValueError(f"block_size must divide the dimension {dim}, got {block_size}")
    if weights_p is None:
        w = np.full(p.shape[0], 1.0 / p.shape[0])
    else:
        w = as_float64(weights_p, "weights_p", shape=[p.shape[0]]).numpy()
        if np.any(w < 0.0) or w.sum() <= 0.0:
            raise ValueError("weights_p must be non-negative with a positive sum")
        w = w / w.sum()
        ess = 1.0 / np.sum(w**2)
        if ess < block_size + 1:
            raise DegenerateWeightsError(
                f"weights_p leave an effective sample size of {ess:.3g}, too few to estimate a "
                f"{block_size}-dimensional covariance"
            )
    v = np.full(q.shape[0], 1.0 / q.shape[0])
    total = 0.0
    for start in range(0, dim, block_size):
        block = slice(start, start + block_size)
        mean_p, cov_p = _moments(p[:, block], w)
        mean_q, cov_q = _moments(q[:, block], v)
        try:
            chol_p = np.linalg.cholesky(cov_p)
            chol_q = np.linalg.cholesky(cov_q)
        except np.linalg.LinAlgError:
            raise NotPositiveDefiniteError(
                f"the sample covariance of coordinates {start}..{start + block_size - 1} is "
                f"singular (too few or repeated samples)"
            ) from None
        solved = np.linalg.solve(chol_q, chol_p)
        diff = np.linalg.solve(chol_q, mean_q - mean_p)
        total += 0.5 * (
            np.sum(solved**2) + diff @ diff - block_size
            + 2.0 * np.sum(np.log(np.diag(chol_q)) - np.log(np.diag(chol_p)))
        )
    if not np.isfinite(total):
        raise ValueError("the moment-matched KL is not finite")
    return float(max(total, 0.0))
