"""What the heart region removes on a phantom cohort: reference lesions (must be 0) and the model's lesions.

For each case of a cohort folder (``cacscore phantom`` layout: ``case_*/image.nii.gz`` and
``label.nii.gz``) it counts the reference lesions (26-connected, >= 130 HU) that
:func:`cacscore.anatomy.exclude_outside_heart` would remove, and with ``--model`` the shipped model's
predicted lesions that :func:`cacscore.model.ensemble.restrict_to_heart` removes (0 means the model's
masks, and so its quality figures, are unchanged by the region).

    .venv/bin/python benchmarks/bench_heart_region.py --cohort runs/quality-122001 --n 100 [--model]
"""

from __future__ import annotations

import argparse
import glob
import warnings

import numpy as np
from scipy import ndimage

from cacscore.anatomy import check_domain, exclude_outside_heart
from cacscore.io import read_mask, read_volume
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU, FULL_26


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", required=True)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--model", action="store_true", help="also run the shipped model")
    args = parser.parse_args()
    ensemble = None
    if args.model:
        from cacscore.model import load_ensemble

        ensemble = load_ensemble()
    cases = sorted(glob.glob(f"{args.cohort}/case_*"))[: args.n]
    ref_total = ref_removed = pred_total = pred_removed = refused = 0
    for case in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = read_volume(f"{case}/image.nii.gz")
            label = read_mask(f"{case}/label.nii.gz", like=volume)
        label = np.where(np.asarray(volume.hu) >= AGATSTON_THRESHOLD_HU, label, 0).astype(np.uint8)
        check = check_domain(volume)
        refused += check.refused
        n_ref = ndimage.label(label != 0, structure=FULL_26)[1]
        gone = exclude_outside_heart(
            label, volume.hu, volume.spacing, check.region, AGATSTON_THRESHOLD_HU
        ).n_removed
        ref_total += n_ref
        ref_removed += gone
        line = f"{case}: reference lesions {n_ref}, removed {gone}"
        if ensemble is not None:
            from cacscore.model.ensemble import restrict_to_heart

            image, grid = ensemble.preprocess(volume)
            raw = ensemble.combine(list(ensemble.member_probabilities(image)), image, grid, volume.hu)
            kept = restrict_to_heart(raw, volume, ensemble.plan.threshold_hu, check.region)
            n_raw = ndimage.label(raw.labels != 0, structure=FULL_26)[1]
            n_kept = ndimage.label(kept.labels != 0, structure=FULL_26)[1]
            pred_total += n_raw
            pred_removed += n_raw - n_kept
            line += f"; predicted {n_raw}, removed {n_raw - n_kept}"
        print(line, flush=True)
    print(f"{len(cases)} cases, {refused} refused by the domain check")
    print(f"reference lesions removed by the heart region: {ref_removed} of {ref_total}")
    if ensemble is not None:
        print(f"predicted lesions removed by the heart region: {pred_removed} of {pred_total}")


if __name__ == "__main__":
    main()
