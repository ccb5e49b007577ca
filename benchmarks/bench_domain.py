"""Refusal rate of the input-domain check on phantoms, and the distribution of what it measures.

Every phantom is a non-contrast gated cardiac CT with the heart in view, so every refusal is a false
one (target: 0 of 200). Prints the refusal rate, the warnings, and the 0/5/50/95/100 % quantiles of
each measured value (lung volumes, heart mass, extent, blood pool, field of view) and of the check's
own time, per generator family.

    .venv/bin/python benchmarks/bench_domain.py --n 200 --seed 160001 --family classic
    .venv/bin/python benchmarks/bench_domain.py --n 200 --seed 160001 --family classic-v2
    .venv/bin/python benchmarks/bench_domain.py --n 200 --seed 160001 --family sdf
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import Counter
from typing import Any

import numpy as np

from cacscore.anatomy import check_domain
from cacscore.io.volume import CTVolume
from cacscore.phantom.cohort import case_seed

FAMILIES = ("classic", "classic-v2", "sdf")
MEASURED = (
    "lung_left_ml",
    "lung_right_ml",
    "heart_mass_ml",
    "heart_extent_mm",
    "blood_pool_hu",
    "field_of_view_mm",
)


def phantom_volume(family: str, seed: int) -> CTVolume:
    """One phantom's image of ``family`` (classic generator 1 or 2, or the signed-distance family)."""
    if family == "sdf":
        from cacscore.phantom_sdf.case import generate_case as generate_sdf

        return generate_sdf(seed).volume
    from cacscore.phantom import PhantomConfig, generate_case

    config = PhantomConfig.for_version(2) if family == "classic-v2" else None
    return generate_case(seed, config=config).volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=160001)
    parser.add_argument("--family", choices=FAMILIES, default="classic")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    seconds: list[float] = []
    kinds: Counter[str] = Counter()
    refused: list[tuple[int, str]] = []
    for index in range(args.n):
        seed = case_seed(args.seed, index)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = phantom_volume(args.family, seed)
        start = time.perf_counter()
        check = check_domain(volume)
        seconds.append(time.perf_counter() - start)
        rows.append(check.to_dict())
        for message in check.warnings:
            kinds[message.split(":")[0].split("(")[0].strip()] += 1
        if check.refused:
            refused.append((seed, str(check.refusal)))
            print(f"refused seed {seed}: {check.refusal}", flush=True)
        if (index + 1) % 50 == 0:
            print(f"... {index + 1} of {args.n}", flush=True)
    print(f"family {args.family}, {args.n} phantoms from seed {args.seed}")
    print(f"refused: {len(refused)} of {args.n} ({100 * len(refused) / max(args.n, 1):.1f} %)")
    for seed, reason in refused:
        print(f"  seed {seed}: {reason}")
    print("warnings: " + (", ".join(f"{k} x{v}" for k, v in kinds.most_common()) or "none"))
    print(f"{'value':18s} {'min':>8s} {'5%':>8s} {'median':>8s} {'95%':>8s} {'max':>8s}")
    for key in MEASURED:
        values = np.array([row[key] for row in rows if row[key] is not None], dtype=float)
        if values.size:
            q = np.quantile(values, [0, 0.05, 0.5, 0.95, 1])
            print(f"{key:18s} " + " ".join(f"{v:8.1f}" for v in q))
    q = np.quantile(seconds, [0, 0.5, 0.95, 1])
    print(f"check time, s: min {q[0]:.3f}, median {q[1]:.3f}, 95% {q[2]:.3f}, max {q[3]:.3f}")


if __name__ == "__main__":
    main()
