"""The book's synthetic data sets, and the removals its experiments erase.

The Gaussian-mixture experiment of Bayesian inference forgetting (Fu et al., 2021).

The data (following the BIF paper's synthetic set-up): four clusters in the plane, 500
points each, around the corners of a square of side 6. Clusters 0 and 2 are elongated,
with covariances diag(1, 0.05) and diag(0.05, 1); clusters 1 and 3 are round (identity).
The *structured* removal erases 400 of the 500 points of cluster 0 (those with the largest
x) and 400 of cluster 2 (those with the smallest y): whole regions disappear, so the
centres of the retrained model move well away from the original ones.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from unlearnkit._validation import as_float64, check_erased_indices, check_positive_int
from unlearnkit.seeds import numpy_seed

__all__ = [
    "GMMData",
    "TRUE_CENTRES",
    "make_gmm_data",
    "structured_removal",
    "remaining_indices",
]

TRUE_CENTRES = np.array([[-3.0, 3.0], [3.0, 3.0], [3.0, -3.0], [-3.0, -3.0]])
"""Centres ``[4, 2]`` of the four clusters that generate the data."""

_COVARIANCES = np.array([np.diag([1.0, 0.05]), np.eye(2), np.diag([0.05, 1.0]), np.eye(2)])


class GMMData(NamedTuple):
    """A labelled sample from the mixture: ``(points, labels, centres)``."""

    points: np.ndarray
    labels: np.ndarray
    centres: np.ndarray


GMMData.points.__doc__ = "``[n, 2]`` the data."
GMMData.labels.__doc__ = "``[n]`` the cluster each point was drawn from (0, ..., 3)."
GMMData.centres.__doc__ = "``[4, 2]`` the true centres."


def make_gmm_data(num_points: int = 2000, *, seed: int = 0) -> GMMData:
    """Draw the BIF data set: ``num_points / 4`` points from each of the four clusters.

    Args:
        num_points: n, a positive multiple of 4.
        seed: seed of the NumPy generator (None or an int, see
            :func:`unlearnkit.seeds.numpy_seed`); the same seed gives the same data.

    Returns:
        A :class:`GMMData`, points ordered cluster by cluster.
    """
    check_positive_int(num_points, "num_points")
    if num_points % 4:
        raise ValueError(f"num_points must be a multiple of 4, got {num_points}")
    rng = np.random.default_rng(numpy_seed(seed))
    per = num_points // 4
    points = np.concatenate(
        [rng.multivariate_normal(mu, cov, size=per) for mu, cov in zip(TRUE_CENTRES, _COVARIANCES)]
    )
    labels = np.repeat(np.arange(4), per)
    return GMMData(points, labels, TRUE_CENTRES.copy())


def structured_removal(data: GMMData, per_cluster: int = 400) -> np.ndarray:
    """Indices ``[2 * per_cluster]`` of the structured removal.

    The ``per_cluster`` points of cluster 0 with the largest x, then the ``per_cluster``
    points of cluster 2 with the smallest y.
    """
    check_positive_int(per_cluster, "per_cluster")
    points = as_float64(data.points, "data.points", ndim=2, shape=[None, 2]).numpy()
    labels = np.asarray(data.labels)
    chosen = []
    for cluster, key in ((0, lambda idx: -points[idx, 0]), (2, lambda idx: points[idx, 1])):
        members = np.flatnonzero(labels == cluster)
        if per_cluster > members.size:
            raise ValueError(
                f"per_cluster={per_cluster} exceeds the {members.size} points of cluster {cluster}"
            )
        chosen.append(members[np.argsort(key(members), kind="stable")[:per_cluster]])
    return np.concatenate(chosen)


def remaining_indices(erased: object, num_points: int) -> np.ndarray:
    """Indices ``[n - m]`` of the points that remain after erasing ``erased``, in order."""
    keep = np.ones(num_points, dtype=bool)
    keep[check_erased_indices(erased, num_points)] = False
    return np.flatnonzero(keep)
