"""How rounding error accumulates in LinearGaussian's statistics under observe / unlearn.

Run:  python benchmarks/exact_rounding.py  [--rows 3000] [--seed 0]

Three measurements, each against the exact statistics of the remaining rows (exact
products by Dekker's splitting, summed with math.fsum, rounded once):

1. Many small batches: every row observed one at a time, then all but ten unlearned
   one at a time. The error of LinearGaussian (double-double totals) is compared with
   that of plain float64 running sums of the same batches, in units of
   eps * sqrt(w_j w_k) (w: the history of the model, module docstring of
   unlearnkit.exact; the documented bound is 4 of these units).
2. Removing an outlier: one row scaled by 10^k observed with ordinary rows, then
   unlearned. When the outlier shared a batch with the other rows, the relative error
   of what remains grows like eps * 10^(2k) / (size of what remains): the rounding of
   the batch's sums. When it was observed in a batch of its own, the double-double
   total keeps what remains exact to about eps.
3. The largest error, in units of the bound, over random interleaved sequences.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from unlearnkit import exact  # noqa: E402
from unlearnkit.exact import LinearGaussian  # noqa: E402

EPS = 2.0**-53


def exact_gram(Z: np.ndarray) -> np.ndarray:
    """Z^T Z rounded once from the exact value."""
    a, b = Z[:, :, None], Z[:, None, :]
    products = a * b

    def split(values):
        scaled = 134217729.0 * values
        high = scaled - (scaled - values)
        return high, values - high

    (a_high, a_low), (b_high, b_low) = split(a), split(b)
    errors = ((a_high * b_high - products) + a_high * b_low + a_low * b_high) + a_low * b_low
    terms = np.concatenate([products, errors], axis=0)
    size = Z.shape[1]
    return np.array([[math.fsum(terms[:, j, k]) for k in range(size)] for j in range(size)])


def in_bound_units(error: np.ndarray, weight: np.ndarray) -> float:
    """Largest |error_jk| / (eps sqrt(w_j w_k))."""
    return float(np.max(np.abs(error) / (EPS * np.sqrt(np.outer(weight, weight)))))


def many_small_batches(rows: int, rng: np.random.Generator) -> None:
    X = np.column_stack([np.ones(rows), rng.integers(-3, 4, size=rows), rng.normal(size=rows)])
    y = np.round(rng.normal(size=rows), 1)
    Z = np.column_stack([X, y])
    model, plain = LinearGaussian(np.zeros(3), np.eye(3), 1.0), np.zeros((4, 4))
    for i in range(rows):
        model = model.observe(X[i : i + 1], y[i : i + 1])
        plain = plain + np.outer(Z[i], Z[i])
    for i in range(rows - 10):
        model = model.unlearn(X[i : i + 1], y[i : i + 1])
        plain = plain - np.outer(Z[i], Z[i])
    truth = exact_gram(Z[rows - 10 :])
    weight = (Z**2).sum(axis=0) + (Z[: rows - 10] ** 2).sum(axis=0)
    print(
        f"1. {rows} rows observed and {rows - 10} unlearned one at a time ({2 * rows - 10} calls):"
        f"\n   LinearGaussian  {in_bound_units(model.gram - truth, weight):7.2f} units"
        f"\n   plain float64   {in_bound_units(plain - truth, weight):7.2f} units"
        f"   (documented bound: 4 units)"
    )


def outlier(rng: np.random.Generator) -> None:
    print(
        "2. an outlier row times 10^k observed with 20 ordinary rows, then unlearned;\n"
        "   relative error of what remains, when the outlier was observed in the same\n"
        "   batch as the other rows / in a batch of its own:"
    )
    X = np.column_stack([np.ones(21), rng.normal(size=21)])
    y = np.round(rng.normal(size=21), 1)
    prior = LinearGaussian(np.zeros(2), np.eye(2), 1.0)
    for k in (0, 2, 4, 6, 8):
        Xk, yk = X.copy(), y.copy()
        Xk[0] *= 10.0**k
        yk[0] *= 10.0**k
        truth = exact_gram(np.column_stack([Xk[1:], yk[1:]]))
        together = prior.observe(Xk, yk).unlearn(Xk[:1], yk[:1])
        apart = prior.observe(Xk[:1], yk[:1]).observe(Xk[1:], yk[1:]).unlearn(Xk[:1], yk[:1])
        errors = [np.max(np.abs(m.gram - truth)) / np.max(np.abs(truth)) for m in (together, apart)]
        print(f"   k = {k}: {errors[0]:8.1e} / {errors[1]:8.1e}")


def interleaved(sequences: int, rng: np.random.Generator) -> None:
    worst = 0.0
    for _ in range(sequences):
        n = int(rng.integers(4, 16))
        X = np.column_stack([np.ones(n), rng.integers(-2, 3, size=n), np.round(rng.normal(size=n), 1)])
        y = np.round(rng.normal(size=n), 1)
        outliers = rng.uniform(size=n) < 0.1
        X[outliers, 2] *= 1e4
        y[outliers] *= 1e4
        Z = np.column_stack([X, y])
        model, observed, fresh = LinearGaussian(np.zeros(3), np.eye(3), 1.0), [], list(range(n))
        weight = np.zeros(4)
        while fresh or observed:
            if fresh and (not observed or rng.uniform() < 0.55):
                batch = [fresh.pop() for _ in range(min(len(fresh), rng.integers(1, 4)))]
                model = model.observe(X[batch], y[batch])
                observed += batch
            else:
                chosen = rng.choice(len(observed), size=min(len(observed), rng.integers(1, 3)), replace=False)
                batch = [observed[i] for i in chosen]
                model = model.unlearn(X[batch], y[batch])
                observed = [i for i in observed if i not in batch]
            weight += min(len(batch), exact._STACK_ROWS) * (Z[batch] ** 2).sum(axis=0)
            worst = max(worst, in_bound_units(model.gram - exact_gram(Z[observed]), weight))
    print(f"3. {sequences} interleaved sequences: largest error {worst:.2f} units (bound: 4)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--sequences", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    many_small_batches(args.rows, rng)
    outlier(rng)
    interleaved(args.sequences, rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
