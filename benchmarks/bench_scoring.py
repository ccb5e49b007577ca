"""Time the vectorised scoring engine against a straightforward per-slice, per-component loop.

Run: ``.venv/bin/python benchmarks/bench_scoring.py [--repeat N] [--seed S]``

Builds a 512 x 512 x 64 volume (0.4 mm pixels, 3 mm slices) holding a few
thousand calcium-like blobs of random size, peak HU and artery label (some
straddling two labels, some below the 1 mm^2 area rule), scores it with
:func:`cacscore.scoring.score_calcium` and with :func:`loop_score` below,
checks that both give the same numbers (per-artery totals and every lesion,
compared with ``==``), and prints both times and their ratio.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
from scipy import ndimage

from cacscore.labels import ARTERY_NAMES
from cacscore.scoring import score_calcium, thresholds_for

SHAPE = (64, 512, 512)
SPACING = (3.0, 0.4, 0.4)
#: Lesion artery = majority label; ties go to the first code in this order (as in the engine).
MAJORITY_ORDER = (2, 3, 4, 5, 1)


def make_phantom(seed: int = 0, n_blobs: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Random (HU int16, mask uint8) pair with ``n_blobs`` ellipsoidal calcium blobs."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(40, 20, SHAPE).astype(np.int16)
    mask = np.zeros(SHAPE, np.uint8)
    nz, ny, nx = SHAPE
    for _ in range(n_blobs):
        cz, cy, cx = rng.integers(0, nz), rng.integers(8, ny - 8), rng.integers(8, nx - 8)
        rz, ry, rx = rng.uniform(0.4, 1.6), rng.uniform(0.6, 4.0), rng.uniform(0.6, 4.0)
        z0, z1 = max(cz - 2, 0), min(cz + 3, nz)
        z, y, x = np.ogrid[z0:z1, cy - 5 : cy + 6, cx - 5 : cx + 6]
        inside = ((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1
        peak = rng.uniform(140, 900)
        profile = peak - (peak - 100) * (((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
        block = (slice(z0, z1), slice(cy - 5, cy + 6), slice(cx - 5, cx + 6))
        hu[block] = np.where(inside, np.maximum(hu[block], profile.astype(np.int16)), hu[block])
        code = rng.integers(1, 6)
        labels = np.where(inside, code, mask[block])
        if rng.random() < 0.1:  # straddles two arteries: right half gets another label
            labels = np.where(inside & (x > cx), rng.integers(1, 6), labels)
        mask[block] = labels
    return hu, mask


def loop_score(hu: np.ndarray, spacing: tuple[float, float, float], mask: np.ndarray) -> dict[str, Any]:
    """Reference implementation: one slice, one component, one label, one lesion at a time."""
    thresholds = thresholds_for(120.0)
    dz, dy, dx = spacing
    in_plane = np.ones((3, 3), bool)
    scored = np.zeros(hu.shape, bool)
    weight_of = np.zeros(hu.shape, np.int64)
    for z in range(hu.shape[0]):
        candidate = (hu[z] >= thresholds.threshold_hu) & (mask[z] != 0)
        components, n = ndimage.label(candidate, structure=in_plane)
        for i in range(1, n + 1):
            component = components == i
            for code in np.unique(mask[z][component]):
                part = component & (mask[z] == code)
                n_pixels = int(part.sum())
                if n_pixels * dy * dx < 1.0 - 1e-6:
                    continue
                weight = int(thresholds.weights(hu[z][part].max()))
                scored[z][part] = True
                weight_of[z][part] = weight
    arteries = {}
    voxel = dz * dy * dx
    for code, name in ARTERY_NAMES.items():
        sel = scored & (mask == code)
        arteries[name] = (
            float(weight_of[sel].sum() * (dy * dx) * dz / 3.0),
            float(sel.sum() * voxel),
            float(1.0 * hu[sel].astype(np.float64).sum() * voxel / 1000.0),
        )
    lesions = []
    labels, n = ndimage.label(scored, structure=np.ones((3, 3, 3), bool))
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        inside = labels[box] == i
        coords = np.argwhere(inside) + [s.start for s in box]
        values = hu[box][inside].astype(np.float64)
        votes = [int((inside & (mask[box] == code)).sum()) for code in MAJORITY_ORDER]
        lesions.append(
            (
                ARTERY_NAMES[MAJORITY_ORDER[int(np.argmax(votes))]],
                int(inside.sum()),
                float(weight_of[box][inside].sum() * (dy * dx) * dz / 3.0),
                float(inside.sum() * voxel),
                float(1.0 * values.sum() * voxel / 1000.0),
                float(values.max()),
                tuple(float(v) for v in coords.sum(axis=0) / len(coords)),
                (int(coords[:, 0].min()), int(coords[:, 0].max())),
            )
        )
    total = math.fsum(a[0] for a in arteries.values())
    return {"agatston": total, "arteries": arteries, "lesions": lesions}


def count_candidate_components(hu: np.ndarray, mask: np.ndarray) -> int:
    candidate = (hu >= 130) & (mask != 0)
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    return int(ndimage.label(candidate, structure=structure)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs of the vectorised engine (best is kept)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    hu, mask = make_phantom(args.seed)
    print(
        f"volume {SHAPE} (z, y, x), spacing {SPACING} mm, "
        f"{count_candidate_components(hu, mask)} candidate 2-D components (>= 130 HU inside the mask)"
    )

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = score_calcium(hu, SPACING, mask)
        times.append(time.perf_counter() - start)
    vectorised = min(times)

    start = time.perf_counter()
    reference = loop_score(hu, SPACING, mask)
    looped = time.perf_counter() - start

    mine = {
        "agatston": result.agatston,
        "arteries": {name: (a.agatston, a.volume_mm3, a.mass_mg) for name, a in result.arteries.items()},
        "lesions": [
            (
                les.artery,
                les.n_voxels,
                les.agatston,
                les.volume_mm3,
                les.mass_mg,
                les.peak_hu,
                les.centroid_zyx,
                les.slices,
            )
            for les in result.lesions
        ],
    }
    if mine != reference:
        raise SystemExit("MISMATCH: vectorised and loop implementations disagree")
    print(
        f"identical results: Agatston {result.agatston:.3f}, {len(result.lesions)} lesions, "
        f"{sum(1 for a in result.arteries.values() if a.agatston)} arteries with calcium"
    )
    for warning in result.warnings:
        print(f"engine warning: {warning}")
    print(f"vectorised engine: {vectorised:.3f} s (best of {args.repeat})")
    print(f"per-slice loop:    {looped:.3f} s")
    print(f"ratio loop / vectorised: {looped / vectorised:.1f}x")


if __name__ == "__main__":
    main()
