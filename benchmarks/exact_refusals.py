"""How often does ``LinearGaussian.unlearn`` refuse a valid request?

Run:  python benchmarks/exact_refusals.py  [--sequences 2000] [--seed 0] [--kind mixed]

Each sequence builds a small regression problem whose features are the kind that expose
cancellation in the sufficient statistics: an intercept, integer columns, targets with
a fractional part, and with ``--kind mixed`` (the default) also one-hot columns and an
occasional outlier row. It then interleaves
``observe`` of new rows (batches of 1 to 4) and ``unlearn`` of rows that are currently
observed (batches of 1 to 3), and finishes by unlearning every remaining row in small
batches. Every request is valid, so every refusal (``ValueError``) is a false
refusal. The script prints the fraction of sequences with at least one refusal, the
fraction of requests refused, and (for the sequences that ran to the end) the largest
error of an intermediate posterior against ``observe`` of the rows that remain,
relative to the posterior's own scale.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from unlearnkit.exact import LinearGaussian  # noqa: E402


def make_rows(rng: np.random.Generator, n: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows [n, d] with integer (and, for ``kind="mixed"``, one-hot) columns, targets
    with fractions, and (``"mixed"``) about one outlier row in ten."""
    columns = [np.ones(n)]  # an intercept
    for _ in range(rng.integers(1, 3)):  # integer columns, small range, many zeros
        columns.append(rng.integers(-2, 3, size=n).astype(float))
    if kind == "mixed":
        levels = rng.integers(2, 4)  # a one-hot categorical feature
        columns += list(np.eye(levels)[rng.integers(0, levels, size=n)].T)
    X = np.stack(columns, axis=1)
    y = np.round(rng.normal(size=n), 1)  # one decimal: not exact in binary
    if kind == "mixed":
        outliers = rng.uniform(size=n) < 0.1
        X[outliers, 1] *= 10.0 ** rng.integers(2, 5)
        y[outliers] *= 10.0 ** rng.integers(2, 5)
    return X, y


def run_sequence(rng: np.random.Generator, kind: str) -> tuple[int, int, float]:
    """(requests, refusals, worst relative error) for one random valid sequence."""
    n = int(rng.integers(4, 16))
    X, y = make_rows(rng, n, kind)
    d = X.shape[1]
    prior = LinearGaussian(np.zeros(d), np.eye(d), noise_variance=0.5)
    model, observed, fresh = prior, [], list(range(n))
    requests = refusals = 0
    worst = 0.0

    def compare() -> float:
        reference = prior.observe(X[observed], y[observed])
        scale = np.sqrt(np.diag(reference.posterior_covariance))
        mean_error = np.max(np.abs(model.posterior_mean - reference.posterior_mean) / scale)
        cov_error = np.max(
            np.abs(model.posterior_covariance - reference.posterior_covariance)
            / np.outer(scale, scale)
        )
        return float(max(mean_error, cov_error))

    while fresh or observed:
        if fresh and (not observed or rng.uniform() < 0.55):
            take = [fresh.pop() for _ in range(min(len(fresh), rng.integers(1, 5)))]
            model = model.observe(X[take], y[take])
            observed += take
            continue
        chosen = rng.choice(len(observed), size=min(len(observed), rng.integers(1, 4)), replace=False)
        rows = [observed[i] for i in chosen]
        requests += 1
        try:
            model = model.unlearn(X[rows], y[rows])
        except ValueError:
            refusals += 1
            return requests, refusals, np.nan
        observed = [i for i in observed if i not in rows]
        worst = max(worst, compare())
    return requests, refusals, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kind", choices=["integer", "mixed"], default="mixed",
        help="integer: integer columns only; mixed: also one-hot columns and outliers",
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    results = [run_sequence(rng, args.kind) for _ in range(args.sequences)]
    requests = sum(r[0] for r in results)
    refused = sum(r[1] for r in results)
    failed = sum(r[1] > 0 for r in results)
    errors = [r[2] for r in results if r[1] == 0]
    print(f"kind: {args.kind}, sequences: {args.sequences}, unlearn requests: {requests} (all valid)")
    print(f"sequences with a refused request: {failed} ({failed / args.sequences:.1%})")
    print(f"requests refused (each sequence stops at its first): {refused} ({refused / requests:.2%})")
    if errors:
        print(
            f"largest posterior error of a completed sequence, relative to the posterior sd: "
            f"{max(errors):.1e} (median {np.median(errors):.1e})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
