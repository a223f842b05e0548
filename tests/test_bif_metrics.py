"""The KL estimators between sample sets that measure epsilon for forgotten samples:
metrics.knn_kl (Wang, Kulkarni and Verdu) and metrics.gaussian_moment_kl."""

from __future__ import annotations

import numpy as np
import pytest

from unlearnkit import DegenerateWeightsError, NotPositiveDefiniteError
from unlearnkit.metrics import gaussian_moment_kl, knn_kl


def gaussian_kl(mean_p, sd_p, mean_q, sd_q):
    """KL[N(mean_p, diag sd_p^2) || N(mean_q, diag sd_q^2)]."""
    ratio = (np.asarray(sd_p) / np.asarray(sd_q)) ** 2
    shift = ((np.asarray(mean_q) - np.asarray(mean_p)) / np.asarray(sd_q)) ** 2
    return 0.5 * float(np.sum(ratio + shift - 1.0 - np.log(ratio)))


@pytest.mark.parametrize(
    "mean_p, sd_p, mean_q, sd_q",
    [
        ([1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]),  # a shift: KL 0.5
        ([0.0, 0.0], [0.5, 0.5], [0.0, 0.0], [1.0, 1.0]),  # p narrower than q
        ([0.5, -0.5, 0.0], [0.7, 1.0, 1.2], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
    ],
)
def test_knn_kl_estimates_gaussian_kls(mean_p, sd_p, mean_q, sd_q):
    rng = np.random.default_rng(0)
    p = mean_p + sd_p * rng.standard_normal((8000, len(mean_p)))
    q = mean_q + sd_q * rng.standard_normal((8000, len(mean_q)))
    truth = gaussian_kl(mean_p, sd_p, mean_q, sd_q)
    assert abs(knn_kl(p, q) - truth) < 0.05 + 0.1 * truth
    assert abs(knn_kl(p, q, k=5) - truth) < 0.05 + 0.1 * truth


def test_knn_kl_is_near_zero_for_one_distribution_and_biased_down_for_a_wide_p():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((4000, 2))
    assert abs(knn_kl(rng.standard_normal((4000, 2)), q)) < 0.05
    # p wider than q: samples of p land where q has few, and the estimate converges slowly
    # from below (the KL of sd sqrt(5) from sd 1 in two dimensions is 2.39)
    wide = np.sqrt(5.0) * rng.standard_normal((4000, 2))
    assert 1.0 < knn_kl(wide, q) < gaussian_kl([0, 0], [5**0.5] * 2, [0, 0], [1, 1])


def test_knn_kl_rejects_bad_input():
    x = np.random.default_rng(2).standard_normal((10, 2))
    with pytest.raises(ValueError, match="repeated"):
        knn_kl(np.r_[x, x[:1]], x + 1.0)
    with pytest.raises(ValueError, match="share"):
        knn_kl(x, x[:3])
    with pytest.raises(ValueError, match="columns"):
        knn_kl(x, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        knn_kl(x[:1], x)
    with pytest.raises(ValueError, match="samples_p"):
        knn_kl(np.full((5, 2), np.nan), x)
    with pytest.raises(ValueError, match="k must be"):
        knn_kl(x, x + 1.0, k=0)


def test_gaussian_moment_kl_matches_the_closed_form_and_blocks_add_up():
    rng = np.random.default_rng(3)
    p = np.array([0.5, 0.0, 1.0, -1.0]) + np.array([1.0, 2.0, 0.5, 1.0]) * rng.standard_normal((50000, 4))
    q = rng.standard_normal((50000, 4))
    truth = gaussian_kl([0.5, 0, 1, -1], [1, 2, 0.5, 1], [0, 0, 0, 0], [1, 1, 1, 1])
    assert abs(gaussian_moment_kl(p, q) - truth) < 0.02 * truth
    blocks = gaussian_moment_kl(p, q, block_size=2)
    parts = gaussian_moment_kl(p[:, :2], q[:, :2]) + gaussian_moment_kl(p[:, 2:], q[:, 2:])
    assert abs(blocks - parts) < 1e-10
    # weights: reweighting samples of q to p's mean gives p's Gaussian
    x = rng.standard_normal((50000, 1))
    weights = np.exp(x[:, 0] - 0.5)  # N(0, 1) reweighted by exp(x) is N(1, 1)
    assert gaussian_moment_kl(x, x + 1.0, weights_p=weights) < 0.01


def test_gaussian_moment_kl_rejects_degenerate_input():
    x = np.random.default_rng(4).standard_normal((20, 2))
    weights = np.zeros(20)
    weights[3] = 1.0
    with pytest.raises(DegenerateWeightsError, match="effective sample size"):
        gaussian_moment_kl(x, x, weights_p=weights)
    with pytest.raises(NotPositiveDefiniteError, match="singular"):
        gaussian_moment_kl(np.ones((20, 2)), x)
    with pytest.raises(ValueError, match="block_size"):
        gaussian_moment_kl(x, x, block_size=3)
    with pytest.raises(ValueError, match="weights_p"):
        gaussian_moment_kl(x, x, weights_p=-np.ones(20))
