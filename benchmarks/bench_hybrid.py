"""Where a model's lesions lie on real-anatomy hybrids and on their real backgrounds as they are.

For every case of a ``cacscore hybrid`` cohort, and for each background CT without inserted lesions,
the model's lesions (3-D 26-connected groups of predicted calcium) are checked against the
background's heart region (:func:`cacscore.phantom.hybrid_anatomy.locate_heart`, grown by 10 mm) and
bone mask. Prints per case the reference and predicted Agatston and category, lesions outside the
heart and lesions on bone; then category accuracy. With ``--montage DIR`` it writes, per background,
a PNG of the slices with the model's lesions (red) next to the reader's annotated calcium (green),
and ``hybrid_example.png``: a lung1 hybrid of category D beside its background.

Usage::

    python benchmarks/bench_hybrid.py --cohort runs/hybrid-91001 \\
        --background LUNG1.nrrd --points docs/hybrid/lung1_points.csv \\
        --background LUNG2.nrrd --points docs/hybrid/lung2_points.csv [--model DIR] [--montage docs/images]
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi


def lesion_locations(
    labels: np.ndarray, hu: np.ndarray, region: Any, spacing: tuple[float, float, float]
) -> tuple[list[dict[str, Any]], int, int]:
    """Each predicted lesion with its centre and whether it is outside the heart or on bone."""
    near = region.heart_neighbourhood(spacing, 10.0)
    comps, n = ndi.label((labels > 0) & (hu >= 130), structure=np.ones((3, 3, 3), bool))
    out = []
    outside = on_bone = 0
    for i in range(1, n + 1):
        vox = np.argwhere(comps == i)
        c = vox.mean(axis=0)
        is_out = not bool(near[tuple(np.round(c).astype(int))])
        is_bone = bool(region.bone[tuple(vox.T)].mean() > 0.5)
        outside += is_out
        on_bone += is_bone
        out.append(
            {
                "centre_zyx": [round(float(v), 1) for v in c],
                "n_voxels": len(vox),
                "outside_heart": is_out,
                "on_bone": is_bone,
            }
        )
    return out, outside, on_bone


def montage(
    path: Path, hu: np.ndarray, predicted: np.ndarray, annotated: np.ndarray, region: Any, title: str
) -> None:
    """Slices with predicted (red) or annotated (green) calcium, cropped to the heart, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(
        set(np.flatnonzero(predicted.any(axis=(1, 2)))) | set(np.flatnonzero(annotated.any(axis=(1, 2))))
    )
    if not ks:
        ks = [int(np.mean(region.heart_slices))]
    ks = ks[:12]
    ys, xs = np.nonzero(region.heart.any(axis=0) | predicted.any(axis=0) | annotated.any(axis=0))
    y0, y1 = max(0, ys.min() - 20), min(hu.shape[1], ys.max() + 20)
    x0, x1 = max(0, xs.min() - 20), min(hu.shape[2], xs.max() + 20)
    cols = min(4, len(ks))
    rows = (len(ks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, ks):
        ax.imshow(hu[k, y0:y1, x0:x1], cmap="gray", vmin=-250, vmax=450)
        for mask, colour in ((annotated, "lime"), (predicted, "red")):
            if mask[k, y0:y1, x0:x1].any():
                ax.contour(mask[k, y0:y1, x0:x1] > 0, levels=[0.5], colors=colour, linewidths=0.8)
        ax.set_title(f"slice {k}", fontsize=7)
    fig.suptitle(f"{title}\nred: model, green: annotated coronary calcium", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)
    plt.close(fig)


def example(
    path: Path,
    background_hu: np.ndarray,
    hybrid_hu: np.ndarray,
    label: np.ndarray,
    own: np.ndarray,
    title: str,
) -> None:
    """Background and hybrid side by side on up to 3 slices with inserted lesions (reference in yellow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inserted = (label > 0) & (own == 0)
    ks = [int(k) for k in np.flatnonzero(inserted.any(axis=(1, 2)))][:3]
    fig, axes = plt.subplots(len(ks), 2, figsize=(5.2, 2.6 * len(ks) + 0.4), squeeze=False)
    for row, k in zip(axes, ks):
        ys, xs = np.nonzero(inserted[k])
        cy, cx = int(ys.mean()), int(xs.mean())
        sl = (slice(max(0, cy - 45), cy + 45), slice(max(0, cx - 45), cx + 45))
        for ax, img, name in ((row[0], background_hu, "background"), (row[1], hybrid_hu, "hybrid")):
            ax.imshow(img[k][sl], cmap="gray", vmin=-250, vmax=450)
            ax.set_title(f"{name}, slice {k}", fontsize=7)
            ax.axis("off")
        row[1].contour(inserted[k][sl], levels=[0.5], colors="yellow", linewidths=0.6)
    fig.suptitle(f"{title}\nyellow: reference of the inserted lesions", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


def recheck(path: Path, backgrounds: list[Path], points: list[Path]) -> None:
    """Lesion centres of an earlier ``--json`` result against the current heart and bone masks."""
    from cacscore.errors import CacScoreWarning
    from cacscore.phantom.hybrid import load_background

    warnings.simplefilter("ignore", CacScoreWarning)
    result = json.loads(path.read_text(encoding="utf-8"))
    regions = {}
    for i, bg_path in enumerate(backgrounds):
        bg = load_background(bg_path, points[i] if i < len(points) else None)
        regions[bg.name] = (bg.region, bg.region.heart_neighbourhood(bg.volume.spacing, 10.0))
    totals = {"backgrounds": [0, 0, 0], "cases": [0, 0, 0]}
    for key in totals:
        for entry in result[key]:
            name = entry.get("background") or Path(entry["path"]).name.split(".")[0]
            region, near = regions[name]
            for les in entry.get("predicted_lesions", entry["lesions"]):
                c = tuple(int(round(v)) for v in les["centre_zyx"])
                out, bone = not bool(near[c]), bool(region.bone[c])
                totals[key][0] += 1
                totals[key][1] += out
                totals[key][2] += bone
                if out or bone:
                    print(
                        f"{entry['case_id']} ({name}): lesion at {list(c)}{'  OUTSIDE HEART' if out else ''}"
                        f"{'  ON BONE' if bone else ''}"
                    )
        n, out, bone = totals[key]
        print(f"{key}: {n} lesions, {out} centred outside the heart (10 mm margin), {bone} centred on bone")


def anatomy_check(cohort: Path) -> None:
    """Reference voxels of every hybrid inside :func:`cacscore.anatomy.chest.analyse_chest`'s heart region."""
    from cacscore.anatomy.chest import analyse_chest
    from cacscore.datasets import list_cases
    from cacscore.errors import CacScoreWarning
    from cacscore.io import read_volume

    warnings.simplefilter("ignore", CacScoreWarning)
    regions: dict[str, Any] = {}
    total = inside = 0
    for ref in list_cases(cohort):
        case = ref.load()
        truth = json.loads((Path(ref.image_path).parent / "truth.json").read_text())
        path = truth["background"]["path"]
        if path not in regions:
            regions[path] = analyse_chest(read_volume(path))
        anatomy = regions[path]
        zyx = np.argwhere(case.label > 0)
        grid = anatomy.grid
        idx = np.stack(
            [np.minimum(zyx[:, ax] // grid.block[ax], grid.shape[ax] - 1) for ax in range(3)], axis=1
        )
        hit = anatomy.region[tuple(idx.T)]
        total += len(hit)
        inside += int(hit.sum())
        print(f"{case.case_id}: {int(hit.sum())} of {len(hit)} reference voxels in the heart region")
    print(
        f"all cases: {inside} of {total} reference voxels (inserted and annotated) "
        "in cacscore.anatomy's heart region"
    )


def _as_scored(name: str, volume: Any, ensemble: Any, result: dict[str, Any]) -> Any:
    """What `cacscore score` reports (domain check, then the model); a refusal is printed and tallied."""
    from types import SimpleNamespace

    from cacscore.pipeline import labels_or_refusal

    labels, refusal = labels_or_refusal(volume, ensemble)
    if refusal is not None:
        print(f"{name}: REFUSED by the domain check: {refusal}", flush=True)
        result["refused"].append({"case": name, "refusal": refusal})
    return SimpleNamespace(labels=labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=None, help="a cacscore hybrid cohort folder")
    parser.add_argument("--background", type=Path, action="append", default=[])
    parser.add_argument("--points", type=Path, action="append", default=[])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--montage", type=Path, default=None, help="folder for hybrid_<name>_model.png")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--recheck",
        type=Path,
        default=None,
        help="a --json result: check its lesion centres against the heart and bone masks again "
        "(after a change of those masks) without running the model",
    )
    parser.add_argument(
        "--anatomy-check",
        action="store_true",
        help="with --cohort: count the reference voxels that lie in cacscore.anatomy's heart region "
        "(an independent localisation), without running the model",
    )
    args = parser.parse_args()
    if args.anatomy_check:
        anatomy_check(args.cohort)
        return
    if args.recheck is not None:
        recheck(args.recheck, args.background, args.points)
        return

    import torch

    from cacscore.datasets import list_cases
    from cacscore.errors import CacScoreWarning
    from cacscore.evaluate.runner import evaluate_case
    from cacscore.model import load_ensemble
    from cacscore.phantom.hybrid import load_background

    warnings.simplefilter("ignore", CacScoreWarning)
    torch.set_num_threads(os.cpu_count() or 1)
    ensemble = load_ensemble(args.model, precision="fp32", device="cpu")
    print(f"model: {ensemble.info()}")
    backgrounds = {}
    result: dict[str, Any] = {"model": ensemble.info(), "backgrounds": [], "cases": [], "refused": []}
    for i, path in enumerate(args.background):
        pts = args.points[i] if i < len(args.points) else None
        bg = load_background(path, pts)
        backgrounds[str(path)] = bg
        pred = _as_scored(bg.name, bg.volume, ensemble, result)
        lesions, outside, bone = lesion_locations(pred.labels, bg.volume.hu, bg.region, bg.volume.spacing)
        ev = evaluate_case(bg.name, bg.volume, bg.calcium, pred.labels)
        print(
            f"{bg.name} as it is: annotated {ev.ref_agatston:.1f} ({ev.ref_category}), model "
            f"{ev.pred_agatston:.1f} ({ev.pred_category}), {len(lesions)} lesion(s), {outside} outside the "
            f"heart, {bone} on bone; heart slices {bg.region.heart_slices}",
            flush=True,
        )
        for les in lesions:
            print(
                f"    lesion at zyx {les['centre_zyx']} ({les['n_voxels']} voxels)"
                f"{'  OUTSIDE HEART' if les['outside_heart'] else ''}{'  ON BONE' if les['on_bone'] else ''}"
            )
        result["backgrounds"].append({"path": str(path), **ev.to_dict(), "predicted_lesions": lesions})
        if args.montage is not None:
            montage(
                args.montage / f"hybrid_{bg.name.removesuffix('_image')}_model.png",
                bg.volume.hu,
                pred.labels,
                bg.calcium,
                bg.region,
                f"{bg.name} as it is (no inserted lesions)",
            )
    if args.cohort is not None:
        ref_cat, pred_cat = [], []
        total_out = total_bone = 0
        for ref in list_cases(args.cohort):
            case = ref.load()
            truth = json.loads((Path(ref.image_path).parent / "truth.json").read_text())
            bg = backgrounds.get(truth["background"]["path"])
            if bg is None:
                bg = backgrounds[truth["background"]["path"]] = load_background(truth["background"]["path"])
            pred = _as_scored(case.case_id, case.volume, ensemble, result)
            ev = evaluate_case(case.case_id, case.volume, case.label, pred.labels)
            lesions, outside, bone = lesion_locations(
                pred.labels, case.volume.hu, bg.region, case.volume.spacing
            )
            total_out += outside
            total_bone += bone
            ref_cat.append(ev.ref_category)
            pred_cat.append(ev.pred_category)
            print(
                f"{case.case_id} ({bg.name}): reference {ev.ref_agatston:.1f} ({ev.ref_category}), model "
                f"{ev.pred_agatston:.1f} ({ev.pred_category}), {len(lesions)} lesion(s), "
                f"{outside} outside the heart, {bone} on bone",
                flush=True,
            )
            result["cases"].append({**ev.to_dict(), "background": bg.name, "predicted_lesions": lesions})
            if args.montage is not None and bg.name == "lung1_image" and ev.ref_category == "D":
                example(
                    args.montage / "hybrid_example.png",
                    bg.volume.hu,
                    case.volume.hu,
                    case.label,
                    bg.calcium,
                    f"{case.case_id}: lung1 with lesions inserted (reference {ev.ref_agatston:.0f}, D)",
                )
        acc = float(np.mean([a == b for a, b in zip(ref_cat, pred_cat)])) if ref_cat else float("nan")
        print(
            f"\nhybrids: {len(ref_cat)} cases, category accuracy {acc:.3f}, lesions outside the heart "
            f"{total_out}, on bone {total_bone}"
        )
        result["category_accuracy"] = acc
        result["outside_heart"] = total_out
        result["on_bone"] = total_bone
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
