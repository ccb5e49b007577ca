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
from cacscore.phantom.variation import LESION_SHAPES, Variation

V2 = PhantomConfig.for_version(2)
NONE = dict.fromkeys(DISTRACTOR_KINDS_V2, 0.0)


def _variation(seed: int) -> Variation:
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(8)[7])
    return Variation.sample(rng, position_beta=V2.lesion_position_beta, fwhm_range_mm=V2.blur_fwhm_mm)


_USED: set[int] = set()


def _seed_where(test: Callable[[Variation], bool], start: int = 1) -> int:
    """The first seed (not shown yet) whose variation passes ``test``."""
    for seed in range(start, start + 20000):
        if seed not in _USED and test(_variation(seed)):
            _USED.add(seed)
            return seed
    raise SystemExit("no seed found")


def _tree_plot(path: Path, seeds: list[tuple[int, str]]) -> Path:
    """Coronary centre lines of each seed seen from the front (LPS x against z), coloured by artery.

    Rebuilt from the seed exactly as :func:`cacscore.phantom.generate_case` builds them (anatomy
    stream, then the coronary stream), without painting the image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cacscore import labels
    from cacscore.phantom.anatomy import sample_anatomy
    from cacscore.phantom.coronary import build_coronary_tree
    from cacscore.phantom.preview import ARTERY_COLOURS

    fig, axes = plt.subplots(1, len(seeds), figsize=(2.6 * len(seeds), 2.9), squeeze=False)
    for ax, (seed, title) in zip(axes.ravel(), seeds, strict=True):
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(8)]
        variation = _variation(seed)
        size = float(streams[0].beta(2.0, 2.0))
        anatomy = sample_anatomy(streams[0], size=size, heart=variation.heart, tissue=variation.tissue)
        for artery in build_coronary_tree(anatomy, streams[2], variation.coronary):
            colour = ARTERY_COLOURS[labels.ARTERY_CODES[artery.name]]
            ax.plot(
                -artery.points[:, 0],
                artery.points[:, 2],
                color=colour,
                linewidth=1.6 if not artery.segment else 0.9,
            )
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=7)
    fig.suptitle("coronary trees seen from the front (LM yellow, LAD red, LCX blue, RCA green)", fontsize=7)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=60, facecolor="white")
    plt.close(fig)
    return path


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


def _mostly_shape(k: int) -> Callable[[Variation], bool]:
    """Test: most of the patient's lesions have shape ``LESION_SHAPES[k]``."""
    return lambda v: v.lesions.shape_weights[k] > 0.6


def _lesion_centres(case: PhantomCase, shape: str) -> list[list[float]]:
    """Points of the three largest surviving lesions of ``shape``."""
    found = [les for les in case.truth["lesions"] if les.get("shape") == shape and les["survived"]]
    return [les["point_mm"] for les in sorted(found, key=lambda les: -les["volume_mm3"])[:3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/phantom_v2"))
    parser.add_argument("--only", default="", help="only the PNGs whose name contains this")
    args = parser.parse_args()
    out: Path = args.out
    trees = [
        (
            _seed_where(lambda v: v.coronary.dominance == "right" and v.coronary.tortuosity_mm < 0.5),
            "right dominance",
        ),
        (
            _seed_where(lambda v: v.coronary.dominance == "left" and v.coronary.tortuosity_mm < 0.5),
            "left dominance",
        ),
        (
            _seed_where(lambda v: v.coronary.dominance == "co" and v.coronary.tortuosity_mm > 3.5),
            "co-dominance, tortuous",
        ),
    ]
    if args.only in "variation_coronary_trees":
        print(
            _tree_plot(out / "variation_coronary_trees.png", trees),
            " seeds",
            [s for s, _ in trees],
            flush=True,
        )
    shots: list[tuple[str, int, PhantomConfig, str, str]] = []
    for kind in DISTRACTOR_KINDS_V2:
        config = dataclasses.replace(
            V2, distractor_probabilities={**NONE, kind: 1.0}, pixel_spacing_mm=(0.6, 0.8)
        )
        shots.append((f"distractor_{kind}", 11, config, "C", f"{kind} (not scored)"))
    variations: list[tuple[str, Callable[[Variation], bool], str]] = [
        ("fat_thin", lambda v: v.heart.epicardial_fat_mm < 0.5, "epicardial fat < 0.5 mm"),
        ("fat_thick", lambda v: v.heart.epicardial_fat_mm > 8, "epicardial fat > 8 mm"),
        ("heart_small", lambda v: v.heart.scale < 0.83, "small heart"),
        ("heart_large", lambda v: v.heart.scale > 1.17 and v.heart.rv_scale > 1.15, "large heart, large RV"),
        (
            "kernel_sharp_fbp",
            lambda v: (
                v.imaging.kernel == "sharp" and v.imaging.noise_texture == "fbp" and v.imaging.sharpen > 0.7
            ),
            "sharp kernel, FBP noise",
        ),
        (
            "kernel_smooth_ir",
            lambda v: v.imaging.kernel == "smooth" and v.imaging.noise_texture == "ir",
            "smooth kernel, IR noise",
        ),
        (
            "stair_step",
            lambda v: v.artefacts.stair_step_mm > 2.5 and v.artefacts.stair_block_slices <= 6,
            "stair-step (coronal)",
        ),
    ]
    for k, shape in enumerate(LESION_SHAPES):
        variations.append((f"lesion_{shape}", _mostly_shape(k), f"{shape} lesions (30 mm, 300/1400 HU)"))
    for name, test, title in variations:
        shots.append((f"variation_{name}", _seed_where(test), V2, "E" if "lesion" in name else "D", title))
    for name, changes, title in (
        ("slice_5mm", {"slice_options": ((5.0, 5.0, 1.0),)}, "5 mm slices (coronal)"),
        ("slice_1p5mm", {"slice_options": ((1.5, 1.5, 1.0),)}, "1.5 mm slices (coronal)"),
        ("motion", {"motion_probability": 1.0}, "motion smear of the calcium"),
    ):
        shots.append((f"variation_{name}", 5, dataclasses.replace(V2, **changes), "D", title))  # type: ignore[arg-type]
    for name, seed, config, category, title in shots:
        if args.only not in name:
            continue
        case = generate_case(seed, config=config, target_category=category)
        distractors = case.truth["distractors"]
        if name.startswith("distractor_"):
            kind = name.removeprefix("distractor_")
            centres = [d["position_mm"] for d in distractors if d["type"] == kind][:3]
        elif name.startswith("variation_lesion_"):
            centres = _lesion_centres(case, name.removeprefix("variation_lesion_"))
        else:
            centres = _heart_centres(case)
        coronal = name in ("variation_stair_step", "variation_slice_5mm", "variation_slice_1p5mm")
        crop = 30.0 if "lesion" in name else 60.0 if name == "variation_motion" else 140.0
        path = render_strip(
            case.volume,
            case.label,
            out / f"{name}.png",
            centres_mm=centres or _heart_centres(case),
            distractors=distractors if name.startswith("distractor_") else (),
            title=title,
            crop_mm=crop,
            coronal=coronal,
            window=(300.0, 1400.0) if "lesion" in name else (40.0, 400.0),
        )
        print(f"{path}  seed {seed}  category {category}  {title}", flush=True)


if __name__ == "__main__":
    main()
