"""Time each unlearning request of the moons benchmark on its own, for before/after comparisons.

Run:  PYTHONPATH=<checkout> python benchmarks/bench_moons_requests.py [--n 100] [--calls 7]

Same model, data, erased points and requests as ``bench_moons.py`` (whose functions it
uses), without retraining or scoring: each request (EUBO and reverse KL at every λ of the
grid) is made once to warm up (tracing, cached draws), then ``--calls`` times, and the median
wall-clock time in milliseconds is printed on one line, prefixed with the checkout the
package was imported from. Run it alternately with ``PYTHONPATH`` pointing at two checkouts
to compare them on the same machine: single timings on a shared machine move by tens of
percent, so alternate at least twice.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_moons  # noqa: E402
import numpy as np  # noqa: E402
import unlearnkit  # noqa: E402
from unlearnkit import gp  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--calls", type=int, default=7)
    args = parser.parse_args(argv)
    problem = bench_moons.trained_problem(args.n)
    q_full = problem.q_full
    log_lik = gp.erased_log_likelihood(problem.full, problem.X_e, problem.y_e)
    medians = []
    for name, request in (("EUBO", bench_moons.eubo_request), ("reverse KL", bench_moons.reverse_kl_request)):
        for lam in bench_moons.LAMBDAS:
            request(log_lik, q_full, lam)  # warm-up
            times = []
            for _ in range(args.calls):
                wall = time.perf_counter()
                request(log_lik, q_full, lam)
                times.append(time.perf_counter() - wall)
            medians.append(f"{name} {lam:g}: {1e3 * np.median(times):.0f}")
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(unlearnkit.__file__)))
    print(f"{checkout} n = {args.n} (ms): " + ", ".join(medians))
    return 0


if __name__ == "__main__":
    sys.exit(main())
