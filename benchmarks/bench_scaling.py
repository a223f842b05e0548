"""Cost as the data grow: every unlearning method against retraining, logistic regression.

Run:  python benchmarks/bench_scaling.py  [--sizes 1000 10000 100000 1000000]
                                          [--bif-max-n 100000] [--output FILE.json]

Data: ``x ~ N(0, I_20)``, ``y ~ Bernoulli(sigmoid(x^T w))`` with a fixed ``w``, prior
``N(0, I)``; ``q(theta | D)`` is fitted by ``fit_gaussian_vi`` (100 moment-matched samples)
and the 100 points with the largest first feature are erased. For each n,
``unlearnkit.comparison.logistic_scaling_times`` (through ``run_methods``) times one call
of each method (the head-to-head chapter's rows): retraining (``fit_gaussian_vi`` on D_r
from q(theta | D)), the EUBO and the reverse KL at the ESS rule's threshold (the rule's time included), BIF's one step on the
variational parameters with the Hessian after (32 base samples; skipped above
``--bif-max-n``: its cost is n times the square of the 230 variational parameters), the
Newton removal on the Laplace approximation, and the reweighting of 20,000 samples.

Every time is the wall time of one call and includes TensorFlow's tracing on both sides
(each call compiles its own functions); a small untimed run first takes TensorFlow's one-off
start-up out of the first size's times. The slope of log(time) against log(n) is fitted by
least squares over the sizes each method ran at. Results go to the JSON file given by
``--output`` (default ``benchmarks/results/bench_scaling.json``) and a Markdown table
beside it (``.md``); the head-to-head chapter quotes the slopes from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from unlearnkit import comparison  # noqa: E402

METHODS = comparison.SCALING_METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--bif-max-n", type=int, default=100_000)
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results" / "bench_scaling.json")
    )
    args = parser.parse_args()
    comparison.logistic_scaling_times(500, 5, 20)  # untimed warm-up: TensorFlow's one-off start-up
    sizes, times = [], []
    for n in args.sizes:
        start = time.perf_counter()
        seconds = comparison.logistic_scaling_times(n, run_bif=n <= args.bif_max_n)
        sizes.append(n)
        times.append(seconds)
        cells = ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items())
        print(f"n = {n:>9,} ({time.perf_counter() - start:.0f} s in all): {cells}", flush=True)
        write(Path(args.output), sizes, times)  # after every size: a long run can be cut short


def write(output: Path, sizes: list, times: list) -> None:
    """The JSON record and its Markdown table (``.md`` beside it)."""
    fitted = comparison.log_log_slopes(sizes, times)
    print("slopes of log time on log n:", {k: round(v, 2) for k, v in fitted.items()})
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "dim": 20,
        "erased": 100,
        "sizes": sizes,
        "seconds": times,
        "slopes": fitted,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=1, allow_nan=True))
    lines = [
        f"# bench_scaling ({record['date']}, {record['machine']})",
        "",
        "Wall time (s) of one call, tracing included on both sides; d = 20, |D_e| = 100.",
        "",
        "| n | " + " | ".join(METHODS) + " |",
        "|---|" + "---|" * len(METHODS),
    ]
    for n, t in zip(sizes, times):
        lines.append(f"| {n:,} | " + " | ".join(
            "not run" if not np.isfinite(t[m]) else f"{t[m]:.2f}" for m in METHODS) + " |")
    lines.append("| slope | " + " | ".join(
        f"{fitted[m]:.2f}" if m in fitted else "n/a" for m in METHODS) + " |")
    output.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
