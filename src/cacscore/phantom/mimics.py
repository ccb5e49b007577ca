"""Distractors of generator version 2: devices and calcium that a reader sees but does not score.

Version 1's kinds (:data:`cacscore.phantom.calcium.DISTRACTOR_KINDS`) are kept; version 2 adds
coronary stents, pacemaker leads, pericardial calcification, calcified mediastinal and hilar lymph
nodes, calcified costal cartilage, vertebral osteophytes (all bright, so a threshold finds them) and
breast tissue (soft tissue in front of the chest wall, which changes noise and the body outline).
Every object is a :class:`~cacscore.phantom.calcium.CalciumObject`, painted and kept out of the
reference label exactly like version 1's distractors.
"""

from __future__ import annotations

import numpy as np

from cacscore.phantom.anatomy import Anatomy, Ellipsoid
from cacscore.phantom.calcium import DISTRACTOR_KINDS, CalciumObject, sample_distractors
from cacscore.phantom.coronary import Artery, project_to_surface
from cacscore.phantom.render import orthonormal_frame

#: Distractor kinds added by generator version 2.
NEW_KINDS = (
    "stent",
    "pacemaker_lead",
    "pericardial",
    "lymph_node",
    "costal_cartilage",
    "osteophyte",
    "breast",
)
#: Every distractor kind of generator version 2, in ``truth.json`` order.
DISTRACTOR_KINDS_V2 = DISTRACTOR_KINDS + NEW_KINDS
#: Metal kinds: they streak.
METAL_KINDS = ("sternal_wire", "stent", "pacemaker_lead")
#: Default probability per patient of each kind in generator version 2 (more hard negatives than v1).
DEFAULT_PROBABILITIES_V2 = {
    "aortic_valve": 0.4,
    "aortic_root": 0.35,
    "mitral_annulus": 0.3,
    "aortic_wall": 0.45,
    "sternal_wire": 0.12,
    "stent": 0.1,
    "pacemaker_lead": 0.08,
    "pericardial": 0.12,
    "lymph_node": 0.3,
    "costal_cartilage": 0.35,
    "osteophyte": 0.3,
    "breast": 0.35,
}


def sample_breasts(rng: np.random.Generator, anatomy: Anatomy, probability: float) -> list[Ellipsoid]:
    """Two breasts in front of the chest wall (with ``probability``), in LPS mm.

    They are drawn before the anatomy is painted.
    """
    if rng.random() >= probability:
        return []
    rot2 = anatomy.rotation[:2, :2]
    lr, ap = anatomy.body_radii
    z = anatomy.heart_center[2] + rng.uniform(-30, 20)
    radii = np.array([rng.uniform(45, 75), rng.uniform(30, 65), rng.uniform(45, 70)])
    out = []
    for side in (-1.0, 1.0):
        local = np.array([side * lr * rng.uniform(0.35, 0.5), -ap + radii[1] * rng.uniform(0.2, 0.5)])
        xy = anatomy.body_center + rot2 @ local
        axes = np.eye(3)
        axes[:2, :2] = rot2
        out.append(Ellipsoid(np.array([xy[0], xy[1], z + rng.uniform(-5, 5)]), axes, radii))
    return out


def breast_entries(breasts: list[Ellipsoid], hu: float) -> list[dict[str, object]]:
    """``truth.json`` distractor entries of the breasts (soft tissue, not in the distractor mask)."""
    return [
        {
            "type": "breast",
            "artery": None,
            "position_mm": [round(float(v), 3) for v in b.center],
            "size_mm": round(float(2 * b.radii.max()), 3),
            "density_hu": round(float(hu), 1),
            "radii_mm": [round(float(v), 3) for v in b.radii],
        }
        for b in breasts
    ]


def sample_distractors_v2(
    rng: np.random.Generator,
    anatomy: Anatomy,
    arteries: list[Artery],
    probabilities: dict[str, float],
) -> list[CalciumObject]:
    """Version 1's distractors, then each new kind with its probability.

    Breasts are excluded: see :func:`sample_breasts`.
    """
    out = sample_distractors(rng, anatomy, [a for a in arteries if not a.segment], probabilities)
    if rng.random() < probabilities.get("stent", 0.0):
        out.append(_stent(rng, [a for a in arteries if a.name != "LM" and not a.segment]))
    if rng.random() < probabilities.get("pacemaker_lead", 0.0):
        out.extend(_pacemaker_leads(rng, anatomy))
    if rng.random() < probabilities.get("pericardial", 0.0):
        out.extend(_pericardial(rng, anatomy))
    if rng.random() < probabilities.get("lymph_node", 0.0):
        out.extend(_lymph_nodes(rng, anatomy))
    if rng.random() < probabilities.get("costal_cartilage", 0.0):
        out.extend(_costal_cartilage(rng, anatomy))
    if rng.random() < probabilities.get("osteophyte", 0.0):
        out.extend(_osteophytes(rng, anatomy))
    return out


def _stent(rng: np.random.Generator, arteries: list[Artery]) -> CalciumObject:
    """A metal stent inside a proximal or mid coronary segment: a thin hollow tube, 8-28 mm long."""
    artery = arteries[int(rng.integers(len(arteries)))]
    n = len(artery.points)
    length = int(min(rng.uniform(8, 28), max(n - 6, 3)))
    start = int(rng.integers(2, max(3, int(0.6 * n) - length // 2)))
    stop = min(start + length, n - 1)
    tubes = []
    for i in range(start, stop, 3):
        j = min(i + 3, stop)
        r = float(artery.radii[i])
        tubes.append((artery.points[i].copy(), artery.points[j].copy(), r + 0.15, max(r - 0.3, 0.2)))
    mid = artery.points[(start + stop) // 2]
    return CalciumObject(
        "stent",
        [],
        float(rng.uniform(1800, 3000)),
        size_mm=float(stop - start),
        position_mm=mid.copy(),
        tubes=tubes,
    )


def _polyline_tubes(points: np.ndarray, radius: float) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    return [(points[k], points[k + 1], radius, 0.0) for k in range(len(points) - 1)]


def _pacemaker_leads(rng: np.random.Generator, anatomy: Anatomy) -> list[CalciumObject]:
    """One or two pacing leads down the superior vena cava into the right atrium and RV apex (metal)."""
    rot = anatomy.rotation
    root = anatomy.aortic_root
    svc_low = root + rot @ np.array([-32.0, 8.0, 0.0])
    svc_high = svc_low + np.array([0.0, 0.0, 90.0])
    atria, rv = anatomy.heart_parts[2], anatomy.heart_parts[1]
    ra = atria.center + rot @ np.array([-12.0, 0.0, -5.0])
    rv_apex = rv.center + anatomy.long_axis * rv.radii[0] * rng.uniform(0.45, 0.7)
    out = []
    targets = [rv_apex] + ([atria.center + rot @ np.array([-8.0, -18.0, 10.0])] if rng.random() < 0.5 else [])
    for target in targets:
        ctrl = np.array([svc_high, svc_low, ra, target]) + rng.normal(0, 2.0, (4, 3))
        t = np.linspace(0, 1, 14)
        # A smooth curve through the control points (piecewise linear, then a moving average).
        seg = np.concatenate(
            [np.linspace(ctrl[k], ctrl[k + 1], 6, endpoint=False) for k in range(3)] + [ctrl[3:]]
        )
        smooth = np.stack(
            [np.convolve(np.pad(seg[:, d], 2, mode="edge"), np.ones(5) / 5, "valid") for d in range(3)], 1
        )
        pts = smooth[np.round(t * (len(smooth) - 1)).astype(int)]
        tip = Ellipsoid(pts[-1], orthonormal_frame(pts[-1] - pts[-2]), np.array([2.5, 1.2, 1.2]))
        out.append(
            CalciumObject(
                "pacemaker_lead",
                [tip],
                float(rng.uniform(2200, 3000)),
                size_mm=5.0,
                position_mm=pts[-1].copy(),
                tubes=_polyline_tubes(pts, float(rng.uniform(0.8, 1.2))),
            )
        )
    return out


def _pericardial(rng: np.random.Generator, anatomy: Anatomy) -> list[CalciumObject]:
    """Plaques in the pericardium over the ventricles, outside the epicardial fat (1-4)."""
    frame = anatomy.heart_parts[0].axes
    out = []
    for _ in range(int(rng.integers(1, 5))):
        t = rng.uniform(0.25, 0.9) * anatomy.heart_length_mm
        theta = rng.uniform(0, 2 * np.pi)
        radial = np.cos(theta) * frame[:, 1] + np.sin(theta) * frame[:, 2]
        guess = anatomy.heart_base + t * frame[:, 0] + 30.0 * radial
        c = project_to_surface(anatomy, guess[None, :], np.array([anatomy.epicardial_fat_mm + 0.8]))[0]
        axes = np.stack([frame[:, 0], radial, np.cross(frame[:, 0], radial)], axis=1)
        radii = np.array([rng.uniform(2, 9), rng.uniform(0.5, 1.2), rng.uniform(2, 7)])
        out.append(
            CalciumObject(
                "pericardial",
                [Ellipsoid(c, axes, radii)],
                float(rng.uniform(250, 1000)),
                size_mm=float(2 * radii.max()),
                position_mm=c,
            )
        )
    return out


#: Lymph node stations around the aortic root (local heart-frame offsets, mm): subcarinal,
#: right paratracheal, aortopulmonary window, right and left hilum.
_NODE_STATIONS = (
    (0.0, 40.0, 35.0),
    (-25.0, 15.0, 55.0),
    (20.0, 15.0, 40.0),
    (-45.0, 35.0, 15.0),
    (45.0, 35.0, 15.0),
)


def _lymph_nodes(rng: np.random.Generator, anatomy: Anatomy) -> list[CalciumObject]:
    """Calcified mediastinal or hilar lymph nodes (1-3), 4-14 mm, 1-3 dense cores each."""
    out = []
    picks = rng.choice(len(_NODE_STATIONS), size=int(rng.integers(1, 4)), replace=False)
    for k in picks:
        c = anatomy.aortic_root + anatomy.rotation @ np.array(_NODE_STATIONS[int(k)]) + rng.normal(0, 4.0, 3)
        size = float(rng.uniform(4, 14))
        parts = [
            Ellipsoid(
                c + rng.normal(0, size / 6, 3),
                orthonormal_frame(rng.normal(size=3)),
                np.array([size / 2, size / 2.6, size / 3.2]) * rng.uniform(0.4, 1.0),
            )
            for _ in range(int(rng.integers(1, 4)))
        ]
        out.append(
            CalciumObject("lymph_node", parts, float(rng.uniform(300, 1100)), size_mm=size, position_mm=c)
        )
    return out


def _costal_cartilage(rng: np.random.Generator, anatomy: Anatomy) -> list[CalciumObject]:
    """Nodular calcification of the costal cartilages beside the sternum (1-4), elongated laterally."""
    rot2 = anatomy.rotation[:2, :2]
    out = []
    for _ in range(int(rng.integers(1, 5))):
        side = rng.choice([-1.0, 1.0])
        xy = anatomy.sternum_center + rot2 @ np.array([side * rng.uniform(20, 45), rng.uniform(0, 6)])
        c = np.array([xy[0], xy[1], anatomy.heart_center[2] + rng.uniform(-50, 50)])
        lateral = np.array([*(rot2 @ np.array([1.0, side * 0.3])), 0.0])
        radii = np.array([rng.uniform(2, 6), rng.uniform(1, 2.5), rng.uniform(1.5, 4)])
        parts = [Ellipsoid(c, orthonormal_frame(lateral), radii)]
        out.append(
            CalciumObject(
                "costal_cartilage",
                parts,
                float(rng.uniform(300, 900)),
                size_mm=float(2 * radii.max()),
                position_mm=c,
            )
        )
    return out


def _osteophytes(rng: np.random.Generator, anatomy: Anatomy) -> list[CalciumObject]:
    """Bony spurs on the anterolateral rim of vertebral bodies at disc levels (1-3)."""
    rot2 = anatomy.rotation[:2, :2]
    r = anatomy.spine_radii
    out = []
    for _ in range(int(rng.integers(1, 4))):
        phi = rng.uniform(-1.3, 1.3)
        outward = rot2 @ np.array([np.sin(phi), -np.cos(phi)])
        xy = anatomy.spine_center + rot2 @ np.array([r[0] * np.sin(phi), -r[1] * np.cos(phi)]) + outward * 1.5
        k = np.round(
            (anatomy.heart_center[2] + rng.uniform(-60, 40) - anatomy.disc_phase_mm) / anatomy.disc_period_mm
        )
        z = anatomy.disc_phase_mm + k * anatomy.disc_period_mm + 3.0 + rng.uniform(-2, 2)
        c = np.array([xy[0], xy[1], z])
        radii = np.array([rng.uniform(2, 5), rng.uniform(1.5, 3), rng.uniform(2, 5)])
        parts = [Ellipsoid(c, orthonormal_frame(np.array([outward[0], outward[1], 0.0])), radii)]
        out.append(
            CalciumObject(
                "osteophyte",
                parts,
                float(rng.uniform(400, 1000)),
                size_mm=float(2 * radii.max()),
                position_mm=c,
            )
        )
    return out
