"""How many base samples the EUBO needs on the moons' sparse GP (issue 10).

Run:  python benchmarks/bench_eubo_samples.py [--samples 2000 1000] [--seeds 16]
                                              [--erased 20 30 50] [--output FILE.md]

With a Gaussian expectation (the sparse-GP likelihoods), ``unlearn_eubo`` estimates only the
control-variate remainder ``E[(w - beta) log p(D_e | u)]`` by Monte Carlo, over
``num_samples`` moment-matched base samples. This script measures what the number of base
samples changes in the *result*: for the moons chapter's reference model (n = 100, the
settings of ``bench_moons.py``), each number of erased points (the largest first
coordinates) and each λ > 0 of the slides' grid below 0.5, it unlearns with ``--seeds``
different seeds for each number of samples and scores every result by its averaged KL on
D_e to the retrained model's predictive (4,000 samples each, as in ``bench_moons.py``).
It prints the mean over seeds with its standard error, the spread between seeds (the
result's Monte Carlo noise), the mean number of objective evaluations and the median
wall-clock time of one request (tracing excluded: every request is made once before).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import unlearnkit  # noqa: E402
from unlearnkit import gp  # noqa: E402
from bench_moons import averaged_kl_scorer, trained_problem  # noqa: E402

LAMBDAS = [0.1, 1e-3, 1e-5, 1e-9]
N = 100


def study(num_erased: int, samples: list[int], seeds: int) -> list[str]:
    start, full, q_full, X_e, y_e, X_r, y_r = trained_problem(N, num_erased)
    retrained = gp.fit_inducing_posterior(start, X_r, y_r, max_iterations=5000)
    score = averaged_kl_scorer(full, retrained, X_e)
    log_lik = gp.erased_log_likelihood(full, X_e, y_e)
    rows = [f"| {num_erased} | full model | | {score(q_full):.4f} | | | |"]
    for lam in LAMBDAS:
        for num_samples in samples:
            kls, evaluations, seconds = [], [], []
            for seed in range(seeds):
                unlearnkit.unlearn_eubo(q_full, log_lik, lam, seed=seed, num_samples=num_samples)
                start_time = time.perf_counter()
                belief, info = unlearnkit.unlearn_eubo(
                    q_full, log_lik, lam, seed=seed, num_samples=num_samples, return_info=True
                )
                seconds.append(time.perf_counter() - start_time)
                kls.append(score(belief))
                evaluations.append(info.num_evaluations)
            spread = float(np.std(kls, ddof=1))
            rows.append(
                f"| {num_erased} | {lam:g} | {num_samples:,} | {np.mean(kls):.4f} ± "
                f"{spread / np.sqrt(seeds):.4f} | {spread:.4f} | {np.mean(evaluations):.1f} | "
                f"{np.median(seconds):.3f} |"
            )
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[2000, 1000])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--erased", type=int, nargs="+", default=[20, 30, 50])
    parser.add_argument("--output", type=str, default=None, help="write the table as Markdown")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", unlearnkit.ConvergenceWarning)
    header = [
        f"{args.seeds} seeds per row; averaged KL on D_e to the retrained predictive: mean ± "
        "standard error of the mean, and the standard deviation between seeds.",
        "",
        "| erased | λ | base samples | averaged KL | sd between seeds | evaluations | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(header), flush=True)
    rows = [row for num_erased in args.erased for row in study(num_erased, args.samples, args.seeds)]
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write("\n".join(header + rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
