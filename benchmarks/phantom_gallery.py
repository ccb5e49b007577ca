"""Small PNGs of each variation and distractor kind of phantom generator version 2 (docs/phantom.md).

Usage::

    python benchmarks/phantom_gallery.py --out docs/images/phantom_v2

Each distractor kind is forced on alone (probability 1, every other kind 0). A variation is shown on a
seed whose drawn :class:`cacscore.phantom.variation.Variation` has it (the seeds are searched by
drawing only the variation, which is cheap), or through the configuration where it is drawn outside
the variation (slice thickness, motion). Prints one line per PNG: file, seed and what it shows.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cacscore.phantom import PhantomCase, PhantomConfig, generate_case
from cacscore.phantom.mimics import DISTRACTOR_KINDS_V2
from cacscore.phantom.preview import render_strip
from cacscore.phantom.variation import Variation

V2 = PhantomConfig.for_version(2)
NONE = dict.fromkeys(DISTRACTOR_KINDS_V2, 0.0)


def _variation(seed: int) -> Variation:
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(8)[7])
    return Variation.sample(rng, position_beta=V2.lesion_position_beta, fwhm_range_mm=V2.blur_fwhm_mm)


def _seed_where(test: Callable[[Variation], bool], start: int = 1) -> int:
    for seed in range(start, start + 20000):
        if test(_variation(seed)):
            return seed
    raise SystemExit("no seed found")


def _heart_centres(case: PhantomCase, n: int = 3) -> list[list[float]]:
    """Centres of the slices with the most reference calcium (else the heart's centre)."""
    per_slice = (case.label > 0).sum(axis=(1, 2))
    out = []
    for k in np.argsort(-per_slice, kind="stable")[:n]:
        if per_slice[k] == 0:
            break
        zyx = np.argwhere(case.label[k] > 0).mean(axis=0)
        out.append([float(v) for v in case.volume.index_to_patient(np.array([k, zyx[0], zyx[1]]))[0]])
    if not out:
        out = [list(case.truth["anatomy"]["heart_center_mm"])]
    return out


def _lesion_centres(case: PhantomCase, shapes: tuple[str, ...]) -> list[list[float]]:
    out = []
    for shape in shapes:
        found = [les for les in case.truth["lesions"] if les.get("shape") == shape and les["survived"]]
        if found:
            biggest = max(found, key=lambda les: les["volume_mm3"])
            out.append(biggest["point_mm"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/phantom_v2"))
    args = parser.parse_args()
    out: Path = args.out
    shots: list[tuple[str, int, PhantomConfig, str, str]] = []
    for kind in DISTRACTOR_KINDS_V2:
        config = dataclasses.replace(V2, distractor_probabilities={**NONE, kind: 1.0}, pixel_spacing_mm=(0.6, 0.8))
        shots.append((f"distractor_{kind}", 11, config, "C", f"{kind} (not scored)"))
    variations: list[tuple[str, Callable[[Variation], bool], str]] = [
        ("fat_thin", lambda v: v.heart.epicardial_fat_mm < 0.5, "epicardial fat < 0.5 mm"),
        ("fat_thick", lambda v: v.heart.epicardial_fat_mm > 8, "epicardial fat > 8 mm"),
        ("heart_small", lambda v: v.heart.scale < 0.83, "small heart"),
        ("heart_large", lambda v: v.heart.scale > 1.17 and v.heart.rv_scale > 1.15, "large heart, large RV"),
        ("tortuous", lambda v: v.coronary.tortuosity_mm > 3.5, "tortuous coronaries"),
        ("dominance_left", lambda v: v.coronary.dominance == "left", "left dominance"),
        ("kernel_sharp_fbp", lambda v: v.imaging.kernel == "sharp" and v.imaging.noise_texture == "fbp"
         and v.imaging.sharpen > 0.7, "sharp kernel, FBP noise"),
        ("kernel_smooth_ir", lambda v: v.imaging.kernel == "smooth" and v.imaging.noise_texture == "ir",
         "smooth kernel, IR noise"),
        ("stair_step", lambda v: v.artefacts.stair_step_mm > 2.5 and v.artefacts.stair_block_slices <= 6,
         "stair-step (coronal)"),
        ("lesion_shapes_a", lambda v: min(v.lesions.shape_weights[2:5]) > 0.15, "ring, arc, spotty lesions"),
        ("lesion_shapes_b", lambda v: min(v.lesions.shape_weights[i] for i in (0, 1, 5)) > 0.15,
         "chain, blob, streak lesions"),
    ]
    for name, test, title in variations:
        shots.append((f"variation_{name}", _seed_where(test), V2, "E" if "lesion" in name else "D", title))
    for name, changes, title in (
        ("slice_5mm", {"slice_options": ((5.0, 5.0, 1.0),)}, "5 mm slices (coronal)"),
        ("slice_1p5mm", {"slice_options": ((1.5, 1.5, 1.0),)}, "1.5 mm slices (coronal)"),
        ("motion", {"motion_probability": 1.0}, "motion smear of the calcium"),
    ):
        shots.append((f"variation_{name}", 5, dataclasses.replace(V2, **changes), "D", title))  # type: ignore[arg-type]
    for name, seed, config, category, title in shots:
        case = generate_case(seed, config=config, target_category=category)
        distractors = case.truth["distractors"]
        if name.startswith("distractor_"):
            kind = name.removeprefix("distractor_")
            centres = [d["position_mm"] for d in distractors if d["type"] == kind][:3]
        elif name == "variation_lesion_shapes_a":
            centres = _lesion_centres(case, ("ring", "arc", "spotty"))
        elif name == "variation_lesion_shapes_b":
            centres = _lesion_centres(case, ("chain", "blob", "streak"))
        else:
            centres = _heart_centres(case)
        coronal = name in ("variation_stair_step", "variation_slice_5mm", "variation_slice_1p5mm")
        crop = 60.0 if "lesion" in name or name == "variation_motion" else 140.0
        path = render_strip(
            case.volume, case.label, out / f"{name}.png", centres_mm=centres or _heart_centres(case),
            distractors=distractors if name.startswith("distractor_") else (), title=title, crop_mm=crop,
            coronal=coronal,
        )
        print(f"{path}  seed {seed}  category {category}  {title}", flush=True)


if __name__ == "__main__":
    main()
