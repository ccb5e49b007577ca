"""Inference speed: per-stage and total seconds, one 512 x 512 x 60 DICOM series (target <= 1.5 s on 2 cores).

Stages, in a warm process (model loaded, one untimed run first): read the
DICOM series, preprocess (enhanced downsampling, clip, scale), the five
forward passes, postprocess (vote, artery, upsampling, HU >= 130, lesion
majority, the plan's lesion filter or size limit), score (Agatston, lesions,
confidence). Then the cold wall time of
``cacscore score SERIES --json`` in a new process. Three ways of running the
members are timed: fp32 exactly as trained (the reference), fp32 with batch
norm folded into the convolutions and channels-last layout (what
``cacscore score`` runs), and bf16 autocast (channels-last).

Usage::

    python benchmarks/bench_inference.py [--model DIR] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    import torch

    from cacscore.anatomy import check_domain
    from cacscore.io import read_volume, write_dicom_series
    from cacscore.model import load_ensemble, score_with_model
    from cacscore.model.ensemble import restrict_to_heart
    from cacscore.phantom import PhantomConfig, generate_case

    torch.set_num_threads(args.threads)
    case = generate_case(
        args.seed,
        config=PhantomConfig(n_slices=(60, 60), slice_options=((3.0, 3.0, 1.0),)),
        target_category="D",
    )
    with tempfile.TemporaryDirectory() as tmp:
        series = Path(tmp) / "series"
        write_dicom_series(case.volume, series)
        print(
            f"series: {case.volume.shape} voxels, "
            f"spacing {tuple(round(s, 3) for s in case.volume.spacing)} mm, "
            f"{torch.get_num_threads()} threads, {os.cpu_count()} cores"
        )
        variants = {
            "fp32, as trained": {"precision": "fp32", "fast": False},
            "fp32 (shipped)": {"precision": "fp32", "fast": True},
            "bf16": {"precision": "bf16", "fast": True},
        }
        for variant, options in variants.items():
            ensemble = load_ensemble(args.model, **options)
            timings: dict[str, list[float]] = {
                k: []
                for k in ("read", "domain check", "preprocess", "forward x5", "postprocess", "score", "total")
            }
            for repeat in range(args.repeats + 1):
                t = [time.perf_counter()]
                volume = read_volume(series)
                t.append(time.perf_counter())
                check = check_domain(volume)  # anatomy + heart region, before the networks
                check.require()
                t.append(time.perf_counter())
                image, grid = ensemble.preprocess(volume)
                t.append(time.perf_counter())
                probs = list(ensemble.member_probabilities(image))
                t.append(time.perf_counter())
                prediction = restrict_to_heart(
                    ensemble.combine(probs, image, grid, volume.hu),
                    volume,
                    ensemble.plan.threshold_hu,
                    check.region,
                )
                t.append(time.perf_counter())
                result = score_with_model(volume, ensemble, prediction=prediction)
                t.append(time.perf_counter())
                if repeat == 0:
                    continue  # warm-up
                for key, a, b in zip(list(timings)[:-1], t[:-1], t[1:]):
                    timings[key].append(b - a)
                timings["total"].append(t[-1] - t[0])
            print(
                f"\n{variant}: low-resolution grid {grid.shape}, Agatston {result.agatston:.1f}, "
                f"{len(result.lesions)} lesions"
            )
            for key, values in timings.items():
                print(f"  {key:12s} {np.median(values):7.3f} s (median of {len(values)})")
        start = time.perf_counter()
        cmd = [
            sys.executable,
            "-c",
            "import sys; from cacscore.cli.main import main; main(sys.argv[1:])",
            "score",
            str(series),
            "--json",
        ]
        if args.model is not None:
            cmd += ["--model", str(args.model)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        print(
            f"\ncold `cacscore score SERIES --json` (new process, exit {done.returncode}): {wall:.2f} s wall"
        )
    print("target: warm total <= 1.5 s on 2 CPU cores")


if __name__ == "__main__":
    main()
