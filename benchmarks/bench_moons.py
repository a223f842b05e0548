"""Time unlearning against retraining for the sparse GP classifier of the moons chapter.

Run:  python benchmarks/bench_moons.py  [--sizes 100 1000 10000 100000] [--repeats 3]

The model is the chapter's: an SVGP with a Bernoulli (probit) likelihood and 20 inducing
points, whose kernel hyperparameters and inducing inputs are learned on the 100-point
data set and then frozen. For each data-set size n (``make_moons(n, noise=0.2)``, sorted
by the first coordinate) we fit q(u | D) on all n points, erase the 20 points with the
largest first coordinate, and time

- retraining: ``gp.fit_inducing_posterior`` on the n - 20 remaining points, L-BFGS from
  q(u | D) until scipy's default convergence test stops it (the same optimiser budget the
  chapter uses, which reaches the retrained fit);
- unlearning: ``unlearn_eubo`` and ``unlearn_reverse_kl`` at every λ of the slides' grid,
  given only q(u | D) and the 20 erased points.

Every time is the median over ``--repeats`` calls and includes TensorFlow's tracing, which
each call does afresh (GPflow's Scipy optimiser and unlearnkit both compile per call). A
reverse-KL call that refuses (degenerate importance weights) is timed all the same: it
does all of its work before refusing. The script prints a table, and the ratio
retraining time / median unlearning time for each method and size.

Unlearning's cost does not depend on n (only on the 20 erased points, the 20 inducing
points and the number of Monte Carlo samples); retraining's grows with n. At the chapter's
n = 100 retraining is as cheap as unlearning. The script exits with status 1 if, at
n = 100,000, either method is less than 10 times faster than retraining.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import gpflow  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import make_moons  # noqa: E402

import unlearnkit  # noqa: E402
from unlearnkit import gp  # noqa: E402

LAMBDAS = [0.5, 0.1, 1e-3, 1e-5, 1e-9, 0.0]
NUM_ERASED = 20
REQUIRED_SPEED_UP, AT_SIZE = 10.0, 100_000


def moons(n: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_moons(n, noise=0.2, random_state=0)
    order = np.argsort(X[:, 0])
    return X[order], y[order].astype(np.float64)[:, None]


def frozen_model() -> gpflow.models.SVGP:
    """The chapter's SVGP: hyperparameters and inducing inputs learned on 100 points, frozen."""
    X, y = moons(100)
    model = gpflow.models.SVGP(
        kernel=gpflow.kernels.SquaredExponential(lengthscales=[1.0, 1.0]),
        likelihood=gpflow.likelihoods.Bernoulli(),
        inducing_variable=X[::5].copy(),
        num_data=100,
    )
    gpflow.optimizers.Scipy().minimize(
        model.training_loss_closure((X, y)), model.trainable_variables, options={"maxiter": 200}
    )
    gpflow.set_trainable(model.kernel, False)
    gpflow.set_trainable(model.inducing_variable, False)
    return model


def median_seconds(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), result


def reverse_kl_or_refusal(q_full, log_lik, lam):
    try:
        return unlearnkit.unlearn_reverse_kl(q_full, log_lik, lam, seed=0)
    except unlearnkit.DegenerateWeightsError:
        return None


def bench_size(base: gpflow.models.SVGP, n: int, repeats: int) -> dict:
    X, y = moons(n)
    model = gpflow.utilities.deepcopy(base)
    model.num_data = n
    full = gp.fit_inducing_posterior(model, X, y, max_iterations=5000)
    q_full = gp.inducing_posterior(full)
    erased = np.arange(n) >= n - NUM_ERASED
    X_r, y_r = X[~erased], y[~erased]
    retrain_seconds, (retrained, result) = median_seconds(
        lambda: gp.fit_inducing_posterior(full, X_r, y_r, max_iterations=5000, return_info=True),
        repeats,
    )
    assert result.converged, f"retraining did not converge for n = {n}: {result.message}"
    log_lik = gp.erased_log_likelihood(full, X[erased], y[erased])
    row = {"n": n, "retrain": retrain_seconds, "retrain_iterations": result.num_iterations}
    for name, unlearn in (
        ("EUBO", lambda lam: unlearnkit.unlearn_eubo(q_full, log_lik, lam, seed=0)),
        ("reverse KL", lambda lam: reverse_kl_or_refusal(q_full, log_lik, lam)),
    ):
        per_lambda = [median_seconds(lambda: unlearn(lam), repeats)[0] for lam in LAMBDAS]
        row[name] = float(np.median(per_lambda))
        row[name + " range"] = (min(per_lambda), max(per_lambda))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    base = frozen_model()
    print(
        f"{'n':>7} {'retrain':>9} {'L-BFGS its':>10} | {'EUBO (median over λ, range)':>30} {'ratio':>6}"
        f" | {'reverse KL (median, range)':>28} {'ratio':>6}"
    )
    status = 0
    for n in args.sizes:
        row = bench_size(base, n, args.repeats)
        if n == AT_SIZE:
            speed_up = min(row["retrain"] / row["EUBO"], row["retrain"] / row["reverse KL"])
            status = 0 if speed_up >= REQUIRED_SPEED_UP else 1
        eubo_low, eubo_high = row["EUBO range"]
        rkl_low, rkl_high = row["reverse KL range"]
        print(
            f"{n:7d} {row['retrain']:8.2f}s {row['retrain_iterations']:10d} | "
            f"{row['EUBO']:8.2f}s ({eubo_low:5.2f} to {eubo_high:5.2f}s) {row['retrain'] / row['EUBO']:5.1f}x | "
            f"{row['reverse KL']:8.2f}s ({rkl_low:4.2f} to {rkl_high:4.2f}s) "
            f"{row['retrain'] / row['reverse KL']:5.1f}x",
            flush=True,
        )
    print("\nratio = retraining time / median unlearning time (> 1: unlearning is faster)")
    if AT_SIZE in args.sizes:
        verdict = "OK" if status == 0 else "TOO SLOW"
        print(f"Required: both methods >= {REQUIRED_SPEED_UP:g}x faster than retraining at "
              f"n = {AT_SIZE:,}: {verdict}")
    return status


if __name__ == "__main__":
    sys.exit(main())
