"""Calcified coronary plaques: where they sit on the tree, their shapes and densities.

Lesions sit anywhere along a branch (uniform in arc length, or biased towards
the ostium) or at a bifurcation (one part on the parent at the branch origin,
one on the first millimetres of the branch). Shapes run from specks of a
fraction of a millimetre through nodules and eccentric arcs to full rings and
long fragmented plaques; the material density is 150-1300 HU.
"""

from __future__ import annotations

import numpy as np

from cacscore.phantom_sdf.heart import Branch
from cacscore.phantom_sdf.inclusions import Centreline, Inclusion, WallShape, wall_inclusion

KINDS = ("speck", "nodule", "arc", "ring", "long")
#: Relative chance per mm of branch that a lesion lies on each artery (the LM is short but often calcified).
ARTERY_WEIGHT = {"LM": 2.0, "LAD": 1.3, "LCX": 0.8, "RCA": 1.1}


def centreline(branch: Branch) -> Centreline:
    return Centreline(branch.points, branch.tangent, branch.normal, branch.s_mm)


def _kind_for(rng: np.random.Generator, size: float) -> str:
    """A shape kind; ``size`` 0-1 moves the odds from specks to long plaques."""
    p = np.array([1.2 * (1 - size) ** 2, 1.0, 0.8 + size, 0.3 + 0.8 * size, 0.2 + 1.2 * size**2])
    return str(KINDS[int(rng.choice(len(KINDS), p=p / p.sum()))])


def _density(rng: np.random.Generator, kind: str, size: float) -> float:
    lo = 150.0 if kind == "speck" else 190.0
    hi = 550.0 if kind == "speck" else 700.0 + 600.0 * size
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def make_lesion(
    rng: np.random.Generator,
    branch: Branch,
    s_mm: float,
    kind: str,
    size: float,
    *,
    theta0: float | None = None,
    density_hu: float | None = None,
    lesion_id: int = 0,
) -> Inclusion:
    """One plaque of ``kind`` centred at arc length ``s_mm`` of ``branch``; ``size`` 0-1 scales it."""
    i = int(np.clip(np.searchsorted(branch.s_mm, s_mm), 0, len(branch.s_mm) - 1))
    r = float(branch.radius_mm[i])
    u = rng.uniform
    g = 0.6 + 0.8 * size
    if kind == "speck":
        half_len, half_w, thick = u(0.3, 0.9), u(0.3, 0.9), u(0.4, 1.1)
        half_span = min(half_w / r, np.pi * 0.9)
    elif kind == "nodule":
        half_len, thick = u(0.9, 2.2) * g, u(0.9, 2.2) * g
        half_span = min(u(0.9, 2.2) * g / r, np.pi * 0.9)
    elif kind == "arc":
        half_len, thick = u(1.5, 5.0) * g, u(0.7, 2.0) * g
        half_span = np.deg2rad(u(35, 110))
    elif kind == "ring":
        half_len, thick = u(1.2, 4.0) * g, u(0.6, 1.6) * g
        half_span = np.pi
    else:  # long
        half_len, thick = u(5.0, 13.0) * g, u(0.7, 1.9) * g
        half_span = np.deg2rad(u(30, 100))
    density = _density(rng, kind, size) if density_hu is None else density_hu
    half_len = float(min(half_len, max(branch.length_mm / 2 - 0.5, 0.4)))
    s_c = float(np.clip(s_mm, half_len * 0.5, max(branch.length_mm - half_len * 0.5, half_len * 0.5)))
    shape = WallShape(
        line=centreline(branch).window(s_c - half_len - 3.0, s_c + half_len + 3.0),
        s_centre=s_c,
        half_length=half_len,
        theta0=float(u(-np.pi, np.pi) if theta0 is None else theta0),
        half_span=float(half_span),
        r_inner=r * float(u(0.65, 1.0)),
        thickness=float(thick),
        solid=kind == "ring" and rng.random() < 0.5,
        fragment_period_mm=float(u(2.5, 6.0)) if kind == "long" and rng.random() < 0.6 else 0.0,
        fragment_phase=float(u(0, np.pi)),
    )
    info = {
        "id": lesion_id,
        "kind": kind,
        "branch": branch.name,
        "s_mm": round(s_c, 2),
        "length_mm": round(2 * half_len, 2),
        "arc_deg": round(float(np.rad2deg(2 * half_span)), 1),
        "thickness_mm": round(float(thick), 2),
        "vessel_radius_mm": round(r, 2),
    }
    return wall_inclusion("lesion", shape, density, artery=branch.artery, info=info)


def estimate_agatston(inc: Inclusion) -> float:
    """Rough Agatston contribution of a plaque before rendering: calcified volume x weight / 3."""
    shape = inc.shape
    if not isinstance(shape, WallShape):
        return 0.0
    width = 2 * shape.half_span * (shape.r_inner + shape.thickness / 2)
    volume = 2 * shape.half_length * width * shape.thickness * 0.55
    weight = min(max(inc.density_hu * 0.8 / 100.0, 1.0), 4.0)
    return volume * weight / 3.0


def sample_lesion(
    rng: np.random.Generator,
    branches: list[Branch],
    size: float,
    lesion_id: int,
) -> list[Inclusion]:
    """One lesion (one part, or two at a bifurcation) somewhere on the tree."""
    side = [b for b in branches if b.parent is not None and b.name not in ("LAD", "LCX")]
    if side and rng.random() < 0.18:
        child = side[int(rng.integers(len(side)))]
        parent = next(b for b in branches if b.name == child.parent)
        j = int(np.clip(np.searchsorted(parent.s_mm, child.parent_s_mm), 0, len(parent.s_mm) - 1))
        towards = child.points[min(8, len(child.points) - 1)] - parent.points[j]
        t, n = parent.tangent[j], parent.normal[j]
        theta = float(np.arctan2(towards @ np.cross(t, n), towards @ n))
        kind = "arc" if size > 0.3 else "nodule"
        density = _density(rng, kind, size)
        first = make_lesion(
            rng, parent, child.parent_s_mm, kind, size, theta0=theta, density_hu=density, lesion_id=lesion_id
        )
        second = make_lesion(
            rng,
            child,
            min(2.0, child.length_mm / 2),
            "nodule",
            size * 0.7,
            density_hu=density,
            lesion_id=lesion_id,
        )
        first.info["bifurcation"] = second.info["bifurcation"] = f"{parent.name}/{child.name}"
        return [first, second]
    weights = np.array(
        [
            b.length_mm * ARTERY_WEIGHT[b.artery] * (1.0 if b.parent in (None, "LM") else 0.45)
            for b in branches
        ]
    )
    branch = branches[int(rng.choice(len(branches), p=weights / weights.sum()))]
    if rng.random() < 0.5:
        s = float(rng.uniform(0.5, branch.length_mm - 0.5))
    else:
        s = float(rng.beta(1.3, 2.6) * branch.length_mm)
    return [make_lesion(rng, branch, s, _kind_for(rng, size), size, lesion_id=lesion_id)]
