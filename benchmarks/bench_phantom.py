"""Seconds per phantom case on one core, with a per-stage breakdown.

Usage::

    python benchmarks/bench_phantom.py            # 5 balanced full-size cases (512 x 512)
    python benchmarks/bench_phantom.py --n 10 --write   # also time writing each case as DICOM
    python benchmarks/bench_phantom.py --generator-version 2   # domain-randomised version 2

Target: at most 3 s per case on one core, so that a 400-case training
cohort takes minutes on a many-core machine. Run it with one thread per
process (OMP_NUM_THREADS=1) to measure one core.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cacscore.phantom import PhantomConfig, generate_case, write_case
from cacscore.phantom.cohort import case_seed, case_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5, help="number of cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="also write each case as a DICOM case folder")
    parser.add_argument("--generator-version", type=int, default=1, choices=(1, 2))
    args = parser.parse_args()
    config = PhantomConfig.for_version(args.generator_version)
    generate_case(case_seed(args.seed, 10_000), config=config)  # warm-up: imports and first-call costs
    totals: list[float] = []
    cpu: list[float] = []
    writes: list[float] = []
    stages: dict[str, list[float]] = {}
    slices: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            start, start_cpu = time.perf_counter(), time.process_time()
            case = generate_case(case_seed(args.seed, i), config=config, target_category=case_target(i, True))
            totals.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            slices.append(case.volume.shape[0])
            for name, value in case.timings_s.items():
                stages.setdefault(name, []).append(value)
            if args.write:
                start = time.perf_counter()
                write_case(case, Path(tmp) / f"case_{i}", fmt="dicom")
                writes.append(time.perf_counter() - start)
    print(
        f"{args.n} cases (generator version {config.version_string}), "
        f"512 x 512 x {min(slices)}-{max(slices)} slices (mean {np.mean(slices):.0f})"
    )
    print(f"generate_case: {np.mean(totals):.2f} s per case (min {min(totals):.2f}, max {max(totals):.2f})")
    # CPU time of this process: what the case costs when other jobs share the cores.
    print(f"  CPU time: {np.mean(cpu):.2f} s per case (min {min(cpu):.2f}, max {max(cpu):.2f})")
    for name, values in stages.items():
        print(f"  {name:28s} {np.mean(values):6.3f} s")
    if writes:
        print(f"write_case (DICOM): {np.mean(writes):.2f} s per case")


if __name__ == "__main__":
    main()
