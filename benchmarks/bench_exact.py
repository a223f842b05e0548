"""Time exact unlearning against retraining for the conjugate models of unlearnkit.exact.

Run:  python benchmarks/bench_exact.py  [--n 1000000] [--d 10] [--erased 100] [--repeats 7]

Unlearning subtracts the sufficient statistics of the erased rows (cost independent of
n); retraining is ``observe(D_r)`` from the prior, which reads every remaining row.
Each time is the median over ``--repeats`` repeats (an unlearning repeat averages many
calls, since one call takes microseconds). The script checks that both routes give
the same posterior, prints a table, and exits with status 1 if unlearning 100 rows of
10^6 at d = 10 is not at least 1,000 times faster than retraining.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from unlearnkit.exact import BetaBernoulli, LinearGaussian  # noqa: E402

REQUIRED_SPEED_UP = 1_000


def median_seconds(fn, repeats: int, calls: int = 1) -> float:
    """Median over ``repeats`` of the mean time of ``calls`` calls of ``fn``."""
    fn()  # warm up (imports, caches)
    return float(np.median(timeit.repeat(fn, number=calls, repeat=repeats))) / calls


def calls_for(fn, budget: float = 0.05) -> int:
    """How many calls of ``fn`` fit in about ``budget`` seconds (at least 1)."""
    start = timeit.default_timer()
    fn()
    return max(1, int(budget / max(timeit.default_timer() - start, 1e-7)))


def bench_linear_gaussian(n: int, d: int, erased: int, repeats: int) -> list[tuple]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    X_e, y_e = X[:erased].copy(), y[:erased].copy()
    X_r, y_r = X[erased:], y[erased:]  # views: slicing is not part of either timing
    prior = LinearGaussian(np.zeros(d), np.eye(d), noise_variance=0.09)
    full = prior.observe(X, y)

    unlearned, retrained = full.unlearn(X_e, y_e), prior.observe(X_r, y_r)
    error = max(
        np.max(np.abs(unlearned.posterior_mean - retrained.posterior_mean)),
        np.max(np.abs(unlearned.posterior_covariance - retrained.posterior_covariance)),
    )
    assert error < 1e-10, f"unlearning and retraining disagree by {error}"

    routes = {  # what each route ends with: statistics, posterior moments, TFP object
        "statistics": lambda model: model,
        "+ posterior mean, cov": lambda model: model.posterior_covariance,
        "+ tfd.MultivariateNormalTriL": lambda model: model.distribution,
    }
    rows = []
    for name, finish in routes.items():

        def unlearn(finish=finish):
            return finish(full.unlearn(X_e, y_e))

        def retrain(finish=finish):
            return finish(prior.observe(X_r, y_r))

        t_unlearn = median_seconds(unlearn, repeats, calls_for(unlearn))
        t_retrain = median_seconds(retrain, repeats)
        label = f"LinearGaussian n={n:.0e} d={d} |D_e|={erased}: {name}"
        rows.append((label, t_unlearn, t_retrain, error))
    return rows


def bench_beta_bernoulli(n: int, erased: int, repeats: int) -> list[tuple]:
    flips = (np.random.default_rng(1).uniform(size=n) < 0.3).astype(np.int64)
    prior = BetaBernoulli(1.0, 1.0)
    full = prior.observe(flips)
    assert full.unlearn(flips[:erased]) == prior.observe(flips[erased:])

    def unlearn():
        return full.unlearn(flips[:erased])

    def retrain():
        return prior.observe(flips[erased:])

    t_unlearn = median_seconds(unlearn, repeats, calls_for(unlearn))
    t_retrain = median_seconds(retrain, repeats)
    return [(f"BetaBernoulli n={n:.0e} |D_e|={erased}", t_unlearn, t_retrain, 0.0)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=10)
    parser.add_argument("--erased", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    rows = bench_linear_gaussian(args.n, args.d, args.erased, args.repeats)
    rows += bench_beta_bernoulli(args.n, args.erased, args.repeats)
    print(f"{'case':66s} {'unlearn':>11s} {'retrain':>11s} {'speed-up':>10s} {'max |diff|':>11s}")
    for label, t_unlearn, t_retrain, error in rows:
        print(
            f"{label:66s} {t_unlearn * 1e6:9.1f}us {t_retrain * 1e3:9.2f}ms "
            f"{t_retrain / t_unlearn:9.0f}x {error:11.1e}"
        )
    speed_up = rows[0][2] / rows[0][1]
    required = (args.n, args.d, args.erased) == (1_000_000, 10, 100)
    if required:
        verdict = "OK" if speed_up >= REQUIRED_SPEED_UP else "TOO SLOW"
        print(
            f"\nRequired: LinearGaussian unlearning >= {REQUIRED_SPEED_UP:,}x faster than "
            f"retraining; measured {speed_up:,.0f}x ({verdict})"
        )
        return 0 if speed_up >= REQUIRED_SPEED_UP else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
