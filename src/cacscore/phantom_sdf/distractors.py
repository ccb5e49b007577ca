"""Dense objects that are not coronary calcium and must not be scored.

Each kind is drawn with its own probability per patient: calcium in the wall
of the ascending or descending aorta, on the aortic valve, along the mitral
annulus, in the costal cartilage, in mediastinal lymph nodes, on the
pericardium and in the breast; metal of sternal wires, coronary stents and
pacemaker leads (with streaks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cacscore.errors import InvalidInputError
from cacscore.phantom_sdf.heart import Branch, Heart
from cacscore.phantom_sdf.inclusions import (
    Blobs,
    Centreline,
    Inclusion,
    WallShape,
    blob_inclusion,
    wall_inclusion,
)
from cacscore.phantom_sdf.plaques import centreline
from cacscore.phantom_sdf.thorax import Thorax

#: Distractor kinds and their default probability per patient.
DISTRACTOR_PROBABILITIES: dict[str, float] = {
    "aortic_wall": 0.5,
    "aortic_valve": 0.3,
    "mitral_annulus": 0.25,
    "costal_cartilage": 0.4,
    "lymph_node": 0.25,
    "pericardial": 0.06,
    "breast_calcification": 0.3,
    "sternal_wire": 0.08,
    "stent": 0.06,
    "pacemaker_lead": 0.06,
}
#: Kinds that are metal (dense, with streaks).
METAL = ("sternal_wire", "stent", "pacemaker_lead")

Array = np.ndarray


def check_probabilities(probabilities: dict[str, float]) -> None:
    """Raise InvalidInputError for an unknown kind or a probability outside 0-1."""
    unknown = sorted(set(probabilities) - set(DISTRACTOR_PROBABILITIES))
    if unknown:
        raise InvalidInputError(f"unknown distractor kinds {unknown}; use {list(DISTRACTOR_PROBABILITIES)}")
    bad = {k: p for k, p in probabilities.items() if not 0.0 <= float(p) <= 1.0}
    if bad:
        raise InvalidInputError(f"distractor probabilities must be 0-1, got {bad}")


def _line(a: Array, b: Array, n: int = 40) -> Array:
    return np.linspace(a, b, n)


def _describe(inc: Inclusion, kind: str) -> Inclusion:
    """Fill ``info`` for truth.json: type, centre, size, density, and ``parts`` (ellipsoids, LPS mm) where the
    shape is a union of blobs or a solid tube, so that evaluations can tell which voxels it covers."""
    size = float(np.max(inc.hi - inc.lo))
    inc.info.update(
        {
            "type": kind,
            "position_mm": [round(float(v), 2) for v in inc.centre],
            "size_mm": round(min(size, 40.0), 1),
            "density_hu": round(float(inc.density_hu), 1),
        }
    )
    eye = np.eye(3).tolist()
    shape = inc.shape
    parts = []
    if isinstance(shape, Blobs):
        parts = [
            {
                "center_mm": [round(float(v), 2) for v in c],
                "axes": eye,
                "radii_mm": [round(float(v), 2) for v in r],
            }
            for c, r in zip(shape.centres, shape.radii, strict=True)
        ]
    elif shape.solid and shape.r_inner == 0.0:
        line = shape.line
        keep = np.abs(line.s_mm - shape.s_centre) <= shape.half_length
        radius = round(float(shape.thickness), 2)
        for c in line.points[keep][::3]:
            parts.append(
                {"center_mm": [round(float(v), 2) for v in c], "axes": eye, "radii_mm": [radius] * 3}
            )
    if parts:
        inc.info["parts"] = parts
    return inc


def _aortic_wall(
    rng: np.random.Generator, heart: Heart, thorax: Thorax, z_range: tuple[float, float]
) -> list[Inclusion]:
    out = []
    for _ in range(int(rng.integers(1, 5))):
        if rng.random() < 0.5:
            nodes = heart.aorta_nodes
            pts = np.concatenate([_line(nodes[i], nodes[i + 1]) for i in range(len(nodes) - 1)])
            radius = heart.aorta_radius_mm
        else:
            x, y = thorax.aorta_xy
            pts = _line(np.array([x, y, z_range[0]]), np.array([x, y, z_range[1]]), 80)
            radius = thorax.aorta_radius_mm
        line = Centreline.from_points(pts)
        inside = (pts[:, 2] > z_range[0] + 3) & (pts[:, 2] < z_range[1] - 3)
        if not inside.any():
            continue
        s = float(rng.choice(line.s_mm[inside]))
        shape = WallShape(
            line=line.window(s - 12, s + 12),
            s_centre=s,
            half_length=float(rng.uniform(1.5, 7.0)),
            theta0=float(rng.uniform(-np.pi, np.pi)),
            half_span=float(np.deg2rad(rng.uniform(10, 50))),
            r_inner=radius - float(rng.uniform(0.5, 1.5)),
            thickness=float(rng.uniform(0.8, 2.5)),
        )
        out.append(wall_inclusion("aortic_wall", shape, float(rng.uniform(250, 1000))))
    return out


def _aortic_valve(rng: np.random.Generator, heart: Heart) -> list[Inclusion]:
    axis = heart.aorta_nodes[1] - heart.aorta_nodes[0]
    axis /= np.linalg.norm(axis)
    centre = heart.root_centre - axis * heart.root_radius_mm * 0.55
    e1 = np.cross(axis, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    start = rng.uniform(0, 2 * np.pi)
    centres, radii = [], []
    for k in range(int(rng.integers(1, 4))):
        ang = start + k * 2 * np.pi / 3 + rng.normal(0, 0.2)
        rad = rng.uniform(4, 9)
        centres.append(centre + rad * (np.cos(ang) * e1 + np.sin(ang) * e2) + rng.normal(0, 1.0, 3))
        radii.append(rng.uniform(1.2, 3.5, 3))
    return [
        blob_inclusion(
            "aortic_valve", Blobs(np.array(centres), np.array(radii)), float(rng.uniform(250, 1000))
        )
    ]


def _mitral_annulus(rng: np.random.Generator, heart: Heart) -> list[Inclusion]:
    la = heart.la.centre
    centre_local = np.array([rng.uniform(-1, 3), la[1] * 0.45, la[2] * 0.45])
    radius = rng.uniform(12, 17)
    start = np.arctan2(-1.0, -0.3) + rng.normal(0, 0.4)  # posterior, towards the left
    span = np.deg2rad(rng.uniform(60, 200))
    angles = start + np.linspace(-span / 2, span / 2, 50)
    local = np.stack(
        [
            np.full_like(angles, centre_local[0]),
            centre_local[1] + radius * np.cos(angles),
            centre_local[2] + radius * np.sin(angles),
        ],
        axis=1,
    )
    line = Centreline.from_points(heart.frame.to_patient(local))
    shape = WallShape(
        line,
        float(line.s_mm[-1] / 2),
        float(line.s_mm[-1] / 2),
        0.0,
        np.pi,
        0.0,
        float(rng.uniform(1.2, 2.6)),
        solid=True,
    )
    return [wall_inclusion("mitral_annulus", shape, float(rng.uniform(250, 900)))]


def _costal_cartilage(
    rng: np.random.Generator, thorax: Thorax, z_range: tuple[float, float]
) -> list[Inclusion]:
    t = thorax
    centres, radii = [], []
    for _ in range(int(rng.integers(1, 5))):
        side = rng.choice([-1.0, 1.0])
        x = t.spine_x + side * (t.sternum_half_width_mm + rng.uniform(4, 30))
        y_front = t.centre_y - t.semi_y * (1 - (abs(x) / t.semi_x) ** t.exponent) ** (1 / t.exponent)
        y = y_front + t.subcutaneous_mm + t.muscle_mm - t.rib_size_mm[0] / 2 - 1.0
        theta = np.arctan2(x, -(y - t.centre_y))
        progress = 1.0 - abs(theta) / np.pi
        n = np.floor(
            (rng.uniform(*z_range) + progress**1.5 * t.rib_drop_mm - t.rib_phase_mm) / t.rib_period_mm
        )
        z = n * t.rib_period_mm + t.rib_phase_mm - progress**1.5 * t.rib_drop_mm
        centres.append([x, y, z])
        radii.append(rng.uniform(1.2, 3.5, 3))
    return [
        blob_inclusion(
            "costal_cartilage", Blobs(np.array(centres), np.array(radii)), float(rng.uniform(200, 650))
        )
    ]


def _lymph_node(rng: np.random.Generator, heart: Heart, z_range: tuple[float, float]) -> list[Inclusion]:
    top = min(z_range[1] - 6.0, heart.root_centre[2] + rng.uniform(10, 35))
    ao = heart.aorta_nodes[0] + (heart.aorta_nodes[1] - heart.aorta_nodes[0]) * 0.0
    pa = heart.pa_nodes[0]
    site = rng.integers(3)
    if site == 0:  # aorto-pulmonary window
        base = (ao + pa) / 2 + np.array([0.0, 12.0, 0.0])
    elif site == 1:  # subcarinal, behind the root
        base = heart.root_centre + np.array([rng.uniform(-5, 10), rng.uniform(28, 40), 0.0])
    else:  # right paratracheal
        base = heart.root_centre + np.array([-rng.uniform(22, 32), rng.uniform(5, 20), 0.0])
    base[2] = top
    for _ in range(12):  # step out of the great vessels
        sd = float(heart.great_vessels(*[np.array([v]) for v in base])[0])
        if sd > 6.0:
            break
        base = base + np.array([0.0, 4.0, 1.0])
    n = int(rng.integers(1, 4))
    centres = base + rng.normal(0, 2.0, (n, 3))
    radii = rng.uniform(1.5, 4.5, (n, 3))
    return [blob_inclusion("lymph_node", Blobs(centres, radii), float(rng.uniform(250, 900)))]


def _pericardial(rng: np.random.Generator, heart: Heart) -> list[Inclusion]:
    a0 = rng.uniform(0.1, 0.8) * heart.lv_length_mm
    phi0 = rng.uniform(-np.pi, np.pi)
    length = rng.uniform(10, 35)
    k = 20
    phis = phi0 + np.linspace(0, length / 45.0, k)
    a = np.full(k, a0) + rng.normal(0, 0.5, k).cumsum() * 0.3
    target = np.full(k, heart.fat_base_mm + 3.0)
    pts = heart.project(a, phis, target)
    line = Centreline.from_points(pts, heart.outward(pts))
    shape = WallShape(
        line,
        float(line.s_mm[-1] / 2),
        float(line.s_mm[-1] / 2),
        0.0,
        np.pi,
        0.0,
        float(rng.uniform(0.7, 1.5)),
        solid=True,
    )
    return [wall_inclusion("pericardial", shape, float(rng.uniform(200, 700)))]


def _breast(rng: np.random.Generator, thorax: Thorax) -> list[Inclusion]:
    out = []
    for bx, by, bz, rx, ry, rz in thorax.breasts:
        n = int(rng.integers(0, 4))
        if n == 0:
            continue
        centres = np.array([bx, by - ry * 0.4, bz]) + rng.normal(0, 1, (n, 3)) * np.array([rx, ry, rz]) * 0.25
        radii = rng.uniform(0.5, 1.5, (n, 3))
        out.append(
            blob_inclusion("breast_calcification", Blobs(centres, radii), float(rng.uniform(250, 900)))
        )
    return out


def _sternal_wire(rng: np.random.Generator, thorax: Thorax, z_range: tuple[float, float]) -> list[Inclusion]:
    t = thorax
    y_front = t.centre_y - t.semi_y
    y_c = y_front + t.subcutaneous_mm + t.muscle_mm + 1.0
    out = []
    for z in rng.uniform(z_range[0] + 5, z_range[1] - 5, int(rng.integers(1, 4))):
        ang = np.linspace(0, 2 * np.pi, 60)
        pts = np.stack(
            [
                t.spine_x + (t.sternum_half_width_mm + 2.0) * np.cos(ang),
                y_c + 8.0 * np.sin(ang),
                z + 1.5 * np.sin(ang + rng.uniform(0, 6)),
            ],
            axis=1,
        )
        line = Centreline.from_points(pts)
        shape = WallShape(
            line,
            float(line.s_mm[-1] / 2),
            float(line.s_mm[-1] / 2 + 1),
            0.0,
            np.pi,
            0.0,
            float(rng.uniform(0.5, 0.8)),
            solid=True,
        )
        out.append(wall_inclusion("sternal_wire", shape, 3000.0))
    return out


def _stent(rng: np.random.Generator, branches: list[Branch]) -> list[Inclusion]:
    main = [b for b in branches if b.name in ("LAD", "LCX", "RCA") and b.length_mm > 30]
    if not main:
        return []
    b = main[int(rng.integers(len(main)))]
    half = rng.uniform(5, 12)
    s = rng.uniform(half + 2, min(b.length_mm * 0.6, b.length_mm - half - 1))
    i = int(np.searchsorted(b.s_mm, s))
    r = float(b.radius_mm[min(i, len(b.s_mm) - 1)])
    shape = WallShape(
        centreline(b).window(s - half - 3, s + half + 3),
        float(s),
        float(half),
        0.0,
        np.pi,
        r - 0.1,
        0.3,
        solid=True,
    )
    inc = wall_inclusion("stent", shape, float(rng.uniform(2200, 2800)))
    inc.info.update({"branch": b.name, "s_mm": round(float(s), 1)})
    return [inc]


def _lead(rng: np.random.Generator, heart: Heart) -> list[Inclusion]:
    svc = heart.svc_nodes
    top = svc[0] + (svc[1] - svc[0]) * 0.4
    ra = heart.frame.to_patient(np.array([heart.ra.centre]))[0]
    rv = heart.rv.centre
    apex = heart.frame.to_patient(np.array([[rv[0] + heart.rv.radii[0] * 0.7, rv[1], rv[2] - 5.0]]))[0]
    mid = heart.frame.to_patient(np.array([[rv[0], rv[1], rv[2]]]))[0]
    nodes = np.array([top, svc[0], ra, mid, apex])
    pts = np.concatenate(
        [_line(nodes[i], nodes[i + 1], 30)[:-1] for i in range(len(nodes) - 1)] + [nodes[-1:]]
    )
    for _ in range(3):
        pts[1:-1] = 0.25 * pts[:-2] + 0.5 * pts[1:-1] + 0.25 * pts[2:]
    line = Centreline.from_points(pts)
    shape = WallShape(
        line,
        float(line.s_mm[-1] / 2),
        float(line.s_mm[-1] / 2),
        0.0,
        np.pi,
        0.0,
        float(rng.uniform(0.8, 1.1)),
        solid=True,
    )
    return [wall_inclusion("pacemaker_lead", shape, 3000.0)]


def sample_distractors(
    rng: np.random.Generator,
    probabilities: dict[str, float],
    heart: Heart,
    branches: list[Branch],
    thorax: Thorax,
    z_range: tuple[float, float],
) -> list[Inclusion]:
    """Distractors of one patient, each kind with its probability (``info`` holds type, position, size)."""
    out: list[Inclusion] = []
    for kind, p in DISTRACTOR_PROBABILITIES.items():
        p = probabilities.get(kind, p)
        draw = rng.random()
        if kind == "breast_calcification" and not thorax.breasts:
            continue
        if draw >= p:
            continue
        makers: dict[str, Any] = {
            "aortic_wall": lambda: _aortic_wall(rng, heart, thorax, z_range),
            "aortic_valve": lambda: _aortic_valve(rng, heart),
            "mitral_annulus": lambda: _mitral_annulus(rng, heart),
            "costal_cartilage": lambda: _costal_cartilage(rng, thorax, z_range),
            "lymph_node": lambda: _lymph_node(rng, heart, z_range),
            "pericardial": lambda: _pericardial(rng, heart),
            "breast_calcification": lambda: _breast(rng, thorax),
            "sternal_wire": lambda: _sternal_wire(rng, thorax, z_range),
            "stent": lambda: _stent(rng, branches),
            "pacemaker_lead": lambda: _lead(rng, heart),
        }
        out += [_describe(inc, kind) for inc in makers[kind]()]
    return out
