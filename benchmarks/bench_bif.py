"""Time Bayesian inference forgetting against retraining on the Gaussian mixture (BIF chapter).

Run:  python benchmarks/bench_bif.py  [--repeats 5] [--chains 64] [--steps 1000]

The setting of ``book/bif_gmm.ipynb``: 2,000 points in four clusters, the structured removal
of 800 of them. For each inference method (SVI fitted by L-BFGS; SGLD and SGHMC with 64
chains of 1,000 steps) the script trains on all points, then times

* forgetting: one influence step with the Hessian of the remaining energy
  (``forget_svi`` / ``forget_samples``, ``hessian="after"``, all points at once), and
* retraining: the same method from scratch on the 1,200 remaining points.

Every compiled function runs once before it is timed, so ``tf.function`` tracing is not
counted on either side. Each time is the median of ``--repeats`` runs. The script also
prints how far the processed centres are from the retrained ones (relative to the original
centres), and exits with status 1 if forgetting is not at least 20 times faster than
retraining for every method.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from unlearnkit import bif  # noqa: E402
from unlearnkit import datasets
from unlearnkit.bif import mixture  # noqa: E402

REQUIRED_SPEED_UP = 20


def median_seconds(fn, repeats: int) -> float:
    """Median wall-clock time of ``repeats`` calls of ``fn``, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def centres(params) -> np.ndarray:
    """Centres [4, 2] of an SVI gamma [16] or of samples [C, 8] (their mean)."""
    params = np.asarray(params)
    return (params[:8] if params.ndim == 1 else params.mean(0)).reshape(4, 2)


def distance_ratio(original, processed, target) -> float:
    target = centres(target)
    return mixture.centre_distance(centres(processed), target) / mixture.centre_distance(
        centres(original), target
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()

    data = datasets.make_gmm_data(2000, seed=0)
    points = data.points
    erased = np.random.default_rng(0).permutation(datasets.structured_removal(data))
    remaining = points[datasets.remaining_indices(erased, len(points))]
    model = bif.GaussianMixtureModel()

    def start(data_points) -> np.ndarray:
        return 0.5 * mixture.kmeans_centres(data_points, 4, seed=0).reshape(-1)

    def chain_starts(data_points, seed: int) -> np.ndarray:
        jitter = 0.3 * np.random.default_rng(seed).standard_normal((args.chains, 8))
        return start(data_points) + jitter

    rows = []

    # SVI: L-BFGS on the fixed-noise negative ELBO.
    noise = bif.svi_noise(model, 16, seed=0)

    def fit(data_points):
        initial = model.svi_gamma(start(data_points), np.full(8, 0.1))
        return bif.fit_svi(model, data_points, noise, initial=initial)

    gamma = fit(points)
    processed = bif.forget_svi(model, gamma, points, erased, noise, hessian="after")
    rows.append(
        (
            "SVI",
            median_seconds(
                lambda: bif.forget_svi(model, gamma, points, erased, noise, hessian="after"),
                args.repeats,
            ),
            median_seconds(lambda: fit(remaining), args.repeats),
            distance_ratio(gamma, processed, fit(remaining)),
        )
    )

    samplers = {
        "SGLD": bif.SGLD(model.h, model.f, step_size=2e-4, batch_size=200, num_steps=args.steps),
        "SGHMC": bif.SGHMC(
            model.h, model.f, learning_rate=2e-5, momentum_decay=0.1, batch_size=200,
            num_steps=args.steps,
        ),
    }
    for name, sampler in samplers.items():
        samples = sampler.sample(points, chain_starts(points, 1), seed=1)
        processed = bif.forget_samples(model, samples, points, erased, hessian="after")
        retrain = lambda: sampler.sample(remaining, chain_starts(remaining, 2), seed=2)  # noqa: E731
        rows.append(
            (
                name,
                median_seconds(
                    lambda: bif.forget_samples(model, samples, points, erased, hessian="after"),
                    args.repeats,
                ),
                median_seconds(retrain, args.repeats),
                distance_ratio(samples, processed, retrain()),
            )
        )

    print(f"GMM, n = {len(points)}, erased {len(erased)}; median of {args.repeats} runs, tracing excluded")
    print(f"{'method':8}{'forget (ms)':>13}{'retrain (ms)':>14}{'speed-up':>10}{'distance ratio':>16}")
    failed = False
    for name, t_forget, t_retrain, ratio in rows:
        speed_up = t_retrain / t_forget
        failed |= speed_up < REQUIRED_SPEED_UP
        print(f"{name:8}{1e3 * t_forget:13.1f}{1e3 * t_retrain:14.1f}{speed_up:9.0f}x{ratio:16.3f}")
    if failed:
        print(f"FAIL: forgetting is less than {REQUIRED_SPEED_UP}x faster than retraining")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
