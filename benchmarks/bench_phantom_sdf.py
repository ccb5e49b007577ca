"""Seconds per case of the sdf phantom family on one core, with a per-stage breakdown.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_phantom_sdf.py            # 5 balanced full-size cases
    OMP_NUM_THREADS=1 python benchmarks/bench_phantom_sdf.py --n 10 --write nifti

Target: at most about 3 s per case on one core (a 400-case cohort on 16 cores in a few minutes).
Wall time and the process's CPU time are both printed: on a machine shared with other jobs the
wall time includes waiting for a core, the CPU time does not.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cacscore.phantom.cohort import case_seed, case_target
from cacscore.phantom_sdf import generate_case, write_case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5, help="number of cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", choices=["dicom", "nifti"], default=None, help="also write each case")
    args = parser.parse_args()
    generate_case(case_seed(args.seed, 10_000), target_category="C")  # warm-up: imports, first calls
    wall: list[float] = []
    cpu: list[float] = []
    writes: list[float] = []
    stages: dict[str, list[float]] = {}
    slices: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            start, start_cpu = time.perf_counter(), time.process_time()
            case = generate_case(case_seed(args.seed, i), target_category=case_target(i, True))
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            slices.append(case.volume.shape[0])
            for name, value in case.timings_s.items():
                stages.setdefault(name, []).append(value)
            if args.write:
                start_cpu = time.process_time()
                write_case(case, Path(tmp) / f"case_{i}", fmt=args.write)
                writes.append(time.process_time() - start_cpu)
    print(f"{args.n} cases, 512 x 512 x {min(slices)}-{max(slices)} slices (mean {np.mean(slices):.0f})")
    print(
        f"generate_case: {np.mean(cpu):.2f} s CPU per case (min {min(cpu):.2f}, max {max(cpu):.2f}); "
        f"wall {np.mean(wall):.2f} s"
    )
    for name, values in stages.items():
        print(f"  {name:28s} {np.mean(values):6.3f} s wall")
    if writes:
        print(f"write_case ({args.write}): {np.mean(writes):.2f} s CPU per case")


if __name__ == "__main__":
    main()
