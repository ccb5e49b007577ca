"""Naive calcium-scoring baselines on a balanced phantom cohort: is the generator too easy?

A synthetic cohort on which thresholding wins measures nothing. This script
scores a balanced cohort (about 20 % per risk category) with baselines that
know nothing about coronary anatomy and prints their category accuracy next
to the reference (1.0 by construction):

1. ``threshold in heart box``: every voxel >= 130 HU inside a rough heart
   bounding box found from the image alone (the soft-tissue 3-D component
   nearest the centre of the field of view, which is centred on the heart in
   cardiac reconstructions; bounding box shrunk to the central part).
2. ``small components``: every 2-D component >= 130 HU whose area is below
   ``--max-area`` mm^2 (bone cross-sections are larger), anywhere in the slice.
3. ``small components in heart box``: 2 restricted to the box of 1.

Usage::

    python benchmarks/phantom_baselines.py                 # generate 50 balanced cases in memory
    python benchmarks/phantom_baselines.py --data COHORT   # or read a cohort written by cacscore phantom
    python benchmarks/phantom_baselines.py --n 50 --workers 2 --seed 11

The baselines must stay clearly below 0.9 accuracy, or the phantom is too easy.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage

from cacscore.io import read_volume
from cacscore.scoring import candidate_mask, risk_category, score_calcium

BASELINES = ("threshold in heart box", "small components", "small components in heart box")


def heart_box(hu: np.ndarray) -> tuple[slice, slice, slice]:
    """Rough heart bounding box from the image alone (no truth): see the module docstring."""
    nz, ny, nx = hu.shape
    smooth = ndimage.uniform_filter(hu.astype(np.float32), size=(1, 5, 5))
    soft = (smooth > 0) & (smooth < 110)
    soft = ndimage.binary_opening(soft, structure=np.ones((1, 7, 7), bool))
    comps, n = ndimage.label(soft)
    cy, cx = ny // 2, nx // 2
    central = (slice(0, nz), slice(ny // 5, ny - ny // 5), slice(nx // 5, nx - nx // 5))
    if n == 0:
        return central
    sizes = ndimage.sum_labels(np.ones_like(comps), comps, index=np.arange(1, n + 1))
    centres = np.array(ndimage.center_of_mass(soft, comps, index=np.arange(1, n + 1)))
    dist = np.hypot(centres[:, 1] - cy, centres[:, 2] - cx)
    best = int(np.argmin(dist - 0.002 * sizes)) + 1
    found = ndimage.find_objects((comps == best).astype(np.int32))[0]
    if found is None:
        return central
    zs, ys, xs = found
    # The component may run into the chest wall or liver: keep the central 80 % of the FOV at most.
    y0, y1 = max(ys.start, ny // 10), min(ys.stop, ny - ny // 10)
    x0, x1 = max(xs.start, nx // 10), min(xs.stop, nx - nx // 10)
    return (zs, slice(y0, y1), slice(x0, x1))


def baseline_scores(
    hu: np.ndarray, spacing: tuple[float, float, float], max_area_mm2: float
) -> dict[str, float]:
    """Agatston score of each baseline on one volume."""
    box = heart_box(hu)
    in_box = np.zeros(hu.shape, dtype=bool)
    in_box[box] = True
    bright = hu >= 130
    small = candidate_mask(hu, spacing) & ~_large_components(bright, spacing, max_area_mm2)
    masks = {
        "threshold in heart box": bright & in_box,
        "small components": small,
        "small components in heart box": small & in_box,
    }
    return {name: score_calcium(hu, spacing, m.astype(np.uint8)).agatston for name, m in masks.items()}


def _large_components(
    bright: np.ndarray, spacing: tuple[float, float, float], max_area_mm2: float
) -> np.ndarray:
    """2-D 8-connected components per slice larger than ``max_area_mm2``."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    comps, n = ndimage.label(bright, structure=structure)
    if n == 0:
        return np.zeros_like(bright)
    area = np.bincount(comps.ravel(), minlength=n + 1) * spacing[1] * spacing[2]
    large = area > max_area_mm2
    large[0] = False
    return large[comps]


def _generated(args: tuple[int, int, float]) -> tuple[str, float, dict[str, float]]:
    from cacscore.phantom import generate_case
    from cacscore.phantom.cohort import case_seed, case_target

    seed, index, max_area = args
    case = generate_case(case_seed(seed, index), target_category=case_target(index, True))
    return (
        case.reference.risk_category,
        case.reference.agatston,
        baseline_scores(case.volume.hu, case.volume.spacing, max_area),
    )


def _from_disk(args: tuple[str, str, str, float]) -> tuple[str, float, dict[str, float]]:
    root, image, reference, max_area = args
    volume = read_volume(Path(root) / image)
    ref = json.loads((Path(root) / reference).read_text())
    return ref["risk_category"], float(ref["agatston"]), baseline_scores(volume.hu, volume.spacing, max_area)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, help="cohort folder written by `cacscore phantom` (reads cases.csv)"
    )
    parser.add_argument("--n", type=int, default=50, help="cases to generate when --data is not given")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-area", type=float, default=40.0, help="size limit of baselines 2-3, mm^2")
    args = parser.parse_args()
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        if args.data is not None:
            with (args.data / "cases.csv").open() as fh:
                rows = list(csv.DictReader(fh))
            jobs = [(str(args.data), r["image"], r["reference"], args.max_area) for r in rows]
            results = list(pool.map(_from_disk, jobs))
        else:
            results = list(pool.map(_generated, [(args.seed, i, args.max_area) for i in range(args.n)]))
    elapsed = time.perf_counter() - start
    truth = [r[0] for r in results]
    print(
        f"{len(results)} cases ({elapsed:.0f} s); reference categories: "
        + ", ".join(f"{c} {truth.count(c)}" for c in "ABCDE")
    )
    print(f"{'method':34s} {'accuracy':>8s}   confusion (rows: reference A-E, columns: predicted A-E)")
    print(f"{'reference':34s} {1.0:8.2f}")
    for name in BASELINES:
        pred = [risk_category(r[2][name]) for r in results]
        acc = float(np.mean([p == t for p, t in zip(pred, truth, strict=True)]))
        confusion = np.zeros((5, 5), dtype=int)
        for p, t in zip(pred, truth, strict=True):
            confusion["ABCDE".index(t), "ABCDE".index(p)] += 1
        rows_text = " | ".join(" ".join(f"{v:2d}" for v in row) for row in confusion)
        print(f"{name:34s} {acc:8.2f}   {rows_text}")


if __name__ == "__main__":
    main()
