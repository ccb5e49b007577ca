"""Calcified objects: coronary lesions (scored) and distractors (not scored).

Coronary calcifications sit eccentrically on the vessel wall, 0.5-10 mm
long, with a true density of 150-1200 HU, more often proximal than distal.
Distractors are calcium or metal that a threshold finds but a reader must
not score: aortic valve and aortic root calcium next to the coronary
ostia, mitral annulus calcification beside the LCX, aortic wall plaques
and sternal wires (> 2000 HU, with streaks).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from cacscore.phantom.anatomy import Anatomy, Ellipsoid
from cacscore.phantom.coronary import Artery, project_to_surface
from cacscore.phantom.render import Box, DistanceFn, Grid, capsule_distance, occupancy, orthonormal_frame
from cacscore.scoring.conventions import AGATSTON_THRESHOLD_HU

if TYPE_CHECKING:
    from cacscore.phantom.variation import LesionStyle

#: Distractor kinds, as written in ``truth.json`` and ``cases.csv``.
DISTRACTOR_KINDS = ("aortic_valve", "aortic_root", "mitral_annulus", "aortic_wall", "sternal_wire")
#: Relative frequency of calcified segments per artery (LAD most often).
ARTERY_WEIGHTS = {"LM": 0.08, "LAD": 0.45, "LCX": 0.2, "RCA": 0.27}
#: Beta(a, b) of a lesion's position along its artery (fraction of the length): proximal more often.
LESION_POSITION_BETA = (1.2, 2.6)


@dataclass(eq=False)
class CalciumObject:
    """One calcified (or metal) object made of a few ellipsoids with a single true density.

    ``kind`` is ``"coronary"`` or a distractor kind; ``artery`` is set for coronary lesions
    (``segment`` too when it lies on a side branch); ``position_mm`` is the object centre (LPS).
    ``tubes`` (generator version 2: stents, leads) adds tapered tubes ``(a, b, r_outer_mm,
    r_inner_mm)``, hollow when ``r_inner_mm > 0``. ``heterogeneity`` (0-1) modulates the density
    inside the object with a smooth random texture seeded by ``texture_seed``.
    """

    kind: str
    parts: list[Ellipsoid]
    density_hu: float
    artery: str | None = None
    arclength_mm: float | None = None
    size_mm: float = 0.0
    position_mm: np.ndarray = field(default_factory=lambda: np.zeros(3))
    tubes: list[tuple[np.ndarray, np.ndarray, float, float]] = field(default_factory=list)
    segment: str | None = None
    heterogeneity: float = 0.0
    texture_seed: int = 0
    shape: str | None = None

    def bounds(self, margin_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """LPS bounding box of all parts, mm."""
        boxes = [part.bounds(margin_mm) for part in self.parts]
        boxes += [
            (np.minimum(a, b) - r - margin_mm, np.maximum(a, b) + r + margin_mm) for a, b, r, _ in self.tubes
        ]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def volume_mm3(self) -> float:
        """Sum of the parts' ellipsoid volumes and the tubes' walls (overlaps counted twice), mm^3."""
        total = float(sum(4.0 / 3.0 * np.pi * np.prod(p.radii) for p in self.parts))
        for a, b, r_out, r_in in self.tubes:
            total += float(np.pi * (r_out**2 - r_in**2) * np.linalg.norm(b - a))
        return total

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed distance to the union of the parts (and tubes), mm."""
        fields = [part.distance()(x, y, z) for part in self.parts[:1]]
        for a, b, r_out, r_in in self.tubes:
            d = capsule_distance(a, b, r_out, r_out)(x, y, z)
            if r_in > 0:
                d = np.maximum(d, -capsule_distance(a, b, r_in, r_in)(x, y, z))
            fields.append(d)
        out = fields[0]
        for other in fields[1:]:
            out = np.minimum(out, other)
        for part in self.parts[1:]:
            out = np.minimum(out, part.distance()(x, y, z))
        return out

    def spheres(self) -> list[tuple[np.ndarray, float]]:
        """Bounding spheres ``(centre, radius mm)`` of the parts and tube segments (for spacing checks)."""
        out = [(part.center, float(part.radii.max())) for part in self.parts]
        out += [((a + b) / 2, float(np.linalg.norm(b - a)) / 2 + r) for a, b, r, _ in self.tubes]
        return out

    def occupancy(self, grid: Grid, margin_mm: float) -> tuple[Box, np.ndarray] | None:
        """Box (with ``margin_mm`` around the object) and z/in-plane supersampled occupancy in it."""
        lo, hi = self.bounds(margin_mm)
        box = grid.box(lo, hi, z_extra_mm=grid.profile_half_width_mm)
        if box is None:
            return None
        if not self.tubes:
            return box, occupancy(grid, box, self.distance, n_z=8, n_xy=2)
        # Long devices (leads, stents) span large boxes that they barely fill: sample each tube segment and
        # part in its own small box and keep the largest fraction (the union, up to overlaps).
        out = np.zeros(tuple(sl.stop - sl.start for sl in box), dtype=np.float32)
        pieces: list[tuple[tuple[np.ndarray, np.ndarray], DistanceFn]] = [
            (part.bounds(1.0), part.distance()) for part in self.parts
        ]
        for a, b, r_out, r_in in self.tubes:
            tube = CalciumObject(self.kind, [], self.density_hu, tubes=[(a, b, r_out, r_in)])
            pieces.append(((np.minimum(a, b) - r_out - 1.0, np.maximum(a, b) + r_out + 1.0), tube.distance))
        for (p_lo, p_hi), dist in pieces:
            found = grid.box(p_lo, p_hi, z_extra_mm=grid.profile_half_width_mm)
            if found is None:
                continue
            zs, ys, xs = (
                slice(max(s.start, g.start), min(s.stop, g.stop)) for s, g in zip(found, box, strict=True)
            )
            sub: Box = (zs, ys, xs)
            if any(s.start >= s.stop for s in sub):
                continue
            local = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(sub, box, strict=True))
            np.maximum(out[local], occupancy(grid, sub, dist, n_z=8, n_xy=2), out=out[local])
        return box, out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: kind, artery, position, size, density and the ellipsoid parts."""
        return {
            "type": self.kind,
            "artery": self.artery,
            "position_mm": [round(float(v), 3) for v in self.position_mm],
            "size_mm": round(float(self.size_mm), 3),
            "density_hu": round(float(self.density_hu), 1),
            "volume_mm3": round(self.volume_mm3(), 3),
            "arclength_mm": None if self.arclength_mm is None else round(float(self.arclength_mm), 2),
            "parts": [
                {
                    "center_mm": [round(float(v), 3) for v in p.center],
                    "axes": [[round(float(v), 5) for v in row] for row in p.axes],
                    "radii_mm": [round(float(v), 3) for v in p.radii],
                }
                for p in self.parts
            ],
            # Version 2 fields only where set, so that version 1 truth files stay as they were.
            **({"segment": self.segment} if self.segment else {}),
            **({"shape": self.shape} if self.shape else {}),
            **({"heterogeneity": round(self.heterogeneity, 3)} if self.heterogeneity else {}),
            **(
                {
                    "tubes": [
                        {
                            "a_mm": [round(float(v), 3) for v in a],
                            "b_mm": [round(float(v), 3) for v in b],
                            "outer_radius_mm": round(r_out, 3),
                            "inner_radius_mm": round(r_in, 3),
                        }
                        for a, b, r_out, r_in in self.tubes
                    ]
                }
                if self.tubes
                else {}
            ),
        }


def estimate_agatston(obj: CalciumObject) -> float:
    """Rough Agatston contribution of a lesion before rendering: volume x weight / 3 with blooming."""
    density = obj.density_hu
    weight = 1.0 if density < 200 else 2.0 if density < 300 else 3.0 if density < 400 else 4.0
    bloom = float(np.clip(density / 300.0, 0.3, 2.0))
    return obj.volume_mm3() * bloom * weight / 3.0


def sample_lesion(
    rng: np.random.Generator,
    artery: Artery,
    *,
    size_mm: float | None = None,
    density_hu: float | None = None,
    position_beta: tuple[float, float] = LESION_POSITION_BETA,
) -> CalciumObject:
    """Draw one eccentric calcification on ``artery``'s wall.

    Position along the vessel is a Beta(``position_beta``) fraction of its
    length (default :data:`LESION_POSITION_BETA`, biased proximally); size
    (0.5-10 mm) is log-normal unless given; density 150-1200 HU, larger
    plaques tending denser.
    """
    s_all = artery.arclength
    s = float(rng.beta(*position_beta) * s_all[-1])
    if size_mm is None:
        size_mm = float(np.clip(rng.lognormal(np.log(2.6), 0.6), 0.5, 10.0))
    if density_hu is None:
        density_hu = float(np.clip(rng.lognormal(np.log(260 + 45 * size_mm), 0.45), 150, 1200))
    i = int(np.clip(np.searchsorted(s_all, s), 0, len(s_all) - 1))
    tangents = artery.tangents
    n_parts = 1 if size_mm < 3 else int(rng.integers(2, 4))
    normal_angle = rng.uniform(0, 2 * np.pi)
    parts = []
    spacing = 1.0  # centre line points are 1 mm apart
    for k in range(n_parts):
        offset = (k - (n_parts - 1) / 2) * size_mm / max(n_parts, 1) / spacing
        j = int(np.clip(i + round(offset), 0, len(s_all) - 1))
        frame = orthonormal_frame(tangents[j])
        ang = normal_angle + rng.normal(0, 0.25)
        normal = np.cos(ang) * frame[:, 1] + np.sin(ang) * frame[:, 2]
        binormal = np.cross(tangents[j], normal)
        r = float(artery.radii[j])
        length = size_mm / n_parts * rng.uniform(0.9, 1.4)
        thick = float(np.clip(rng.uniform(0.35, 0.6) * min(size_mm, 3.5), 0.25, 1.6))
        width = float(np.clip(rng.uniform(0.4, 0.75) * min(size_mm, 2.5 * r), 0.25, 2.2 * r))
        radii = np.array([max(length / 2, 0.25), thick / 2 + 0.1, width / 2 + 0.1])
        radii = np.minimum(radii, 5.0)
        center = artery.points[j] + normal * r * rng.uniform(0.7, 1.0)
        parts.append(Ellipsoid(center, np.stack([tangents[j], normal, binormal], axis=1), radii))
    position = np.mean([p.center for p in parts], axis=0)
    return CalciumObject(
        "coronary",
        parts,
        density_hu,
        artery=artery.name,
        arclength_mm=s,
        size_mm=size_mm,
        position_mm=position,
    )


def pick_artery(rng: np.random.Generator, arteries: list[Artery]) -> Artery:
    """An artery drawn with :data:`ARTERY_WEIGHTS`."""
    names = [a.name for a in arteries]
    w = np.array([ARTERY_WEIGHTS[n] for n in names])
    return arteries[int(rng.choice(len(arteries), p=w / w.sum()))]


def _nodule(center: np.ndarray, radii: np.ndarray, rng: np.random.Generator) -> Ellipsoid:
    axes = orthonormal_frame(rng.normal(size=3))
    return Ellipsoid(center, axes, radii)


def sample_distractors(
    rng: np.random.Generator,
    anatomy: Anatomy,
    arteries: list[Artery],
    probabilities: dict[str, float],
) -> list[CalciumObject]:
    """Draw the calcified distractors of one patient (each kind with its probability)."""
    out: list[CalciumObject] = []
    up = anatomy.aorta_axis
    frame = orthonormal_frame(up)
    r_ao = anatomy.aorta_radius_mm
    if rng.random() < probabilities.get("aortic_valve", 0.0):
        # Nodules on the valve cusps' bases, a few mm below the ostia.
        for _ in range(int(rng.integers(1, 5))):
            ang = rng.uniform(0, 2 * np.pi)
            rad = r_ao * rng.uniform(0.45, 0.95)
            c = (
                anatomy.aortic_root
                + up * rng.uniform(-2, 3)
                + rad * (np.cos(ang) * frame[:, 1] + np.sin(ang) * frame[:, 2])
            )
            size = rng.uniform(2, 7)
            parts = [_nodule(c, np.array([size / 2, size / 3, size / 4]), rng)]
            out.append(
                CalciumObject("aortic_valve", parts, rng.uniform(300, 1100), size_mm=size, position_mm=c)
            )
    if rng.random() < probabilities.get("aortic_root", 0.0):
        # Wall plaques on the sinuses / ascending aorta, some right next to an ostium.
        for _ in range(int(rng.integers(1, 4))):
            near = anatomy.left_ostium if rng.random() < 0.5 else anatomy.right_ostium
            radial = near - (anatomy.aortic_root + up * ((near - anatomy.aortic_root) @ up))
            radial /= np.linalg.norm(radial)
            turn = rng.uniform(0.35, 1.2) * rng.choice([-1, 1])
            tangential = np.cross(up, radial)
            direction = np.cos(turn) * radial + np.sin(turn) * tangential
            h = (near - anatomy.aortic_root) @ up + rng.uniform(-3, 18)
            c = anatomy.aortic_root + up * h + direction * (r_ao + 0.3)
            size = rng.uniform(2, 8)
            axes = np.stack([np.cross(up, direction), direction, up], axis=1)
            parts = [Ellipsoid(c, axes, np.array([size / 2, rng.uniform(0.5, 1.2), size / 3]))]
            out.append(
                CalciumObject("aortic_root", parts, rng.uniform(200, 900), size_mm=size, position_mm=c)
            )
    if rng.random() < probabilities.get("mitral_annulus", 0.0):
        out.append(_mitral_annulus(rng, anatomy, arteries))
    if rng.random() < probabilities.get("aortic_wall", 0.0):
        for _ in range(int(rng.integers(1, 5))):
            ang = rng.uniform(0, 2 * np.pi)
            r = anatomy.desc_aorta_radius_mm
            direction = np.array([np.cos(ang), np.sin(ang), 0.0])
            z = anatomy.heart_center[2] + rng.uniform(-70, 50)
            c = np.array([*anatomy.desc_aorta, z]) + direction * (r + 0.2)
            size = rng.uniform(2, 9)
            axes = np.stack([np.cross([0, 0, 1.0], direction), direction, [0, 0, 1.0]], axis=1)
            parts = [Ellipsoid(c, axes, np.array([size / 2, rng.uniform(0.5, 1.3), size / 2.5]))]
            out.append(
                CalciumObject("aortic_wall", parts, rng.uniform(200, 1000), size_mm=size, position_mm=c)
            )
    if rng.random() < probabilities.get("sternal_wire", 0.0):
        out.extend(_sternal_wires(rng, anatomy))
    return out


def _mitral_annulus(rng: np.random.Generator, anatomy: Anatomy, arteries: list[Artery]) -> CalciumObject:
    """A C-shaped band of dense calcium along the posterior mitral annulus, 5-9 mm inside the LCX."""
    lcx = next(a for a in arteries if a.name == "LCX")
    start = int(len(lcx.points) * rng.uniform(0.15, 0.4))
    stop = min(len(lcx.points), start + int(rng.uniform(15, 45)))
    path = lcx.points[start:stop:3]
    depth = rng.uniform(5.0, 9.0)
    inner = project_to_surface(anatomy, path, np.full(len(path), -depth))
    thick = rng.uniform(1.0, 2.5)
    parts = []
    for a, b in itertools.pairwise(inner):
        seg = b - a
        length = float(np.linalg.norm(seg))
        if length < 1e-3:
            continue
        axes = orthonormal_frame(seg)
        parts.append(Ellipsoid((a + b) / 2, axes, np.array([length / 2 + 1.0, thick, thick * 1.3])))
    if not parts:
        parts = [_nodule(inner[0], np.array([3.0, 2.0, 2.0]), rng)]
    size = float(np.linalg.norm(inner[-1] - inner[0])) + 2 * thick
    return CalciumObject(
        "mitral_annulus", parts, rng.uniform(350, 1100), size_mm=size, position_mm=inner[len(inner) // 2]
    )


def _sternal_wires(rng: np.random.Generator, anatomy: Anatomy) -> list[CalciumObject]:
    """Sternotomy wire loops around the sternum, metal density (> 2000 HU)."""
    out = []
    c = anatomy.sternum_center
    rot2 = anatomy.rotation[:2, :2]
    z0 = anatomy.heart_center[2] + rng.uniform(-40, 0)
    for k in range(int(rng.integers(2, 5))):
        z = z0 + k * rng.uniform(22, 30)
        parts = []
        for ang in np.linspace(0, 2 * np.pi, 10, endpoint=False):
            offset = rot2 @ np.array([21.0 * np.cos(ang), 9.5 * np.sin(ang)])
            center = np.array([c[0] + offset[0], c[1] + offset[1], z])
            tangent = rot2 @ np.array([-21.0 * np.sin(ang), 9.5 * np.cos(ang)])
            axes = orthonormal_frame(np.array([tangent[0], tangent[1], 0.0]))
            parts.append(Ellipsoid(center, axes, np.array([3.6, 0.5, 0.5])))
        out.append(
            CalciumObject(
                "sternal_wire",
                parts,
                rng.uniform(2500, 3000),
                size_mm=42.0,
                position_mm=np.array([c[0], c[1], z]),
            )
        )
    return out


def too_close(candidate: CalciumObject, others: list[CalciumObject], gap_mm: float) -> bool:
    """True if ``candidate``'s parts come within ``gap_mm`` of any part of ``others`` (sphere bounds)."""
    for c, r in candidate.spheres():
        for other in others:
            for qc, qr in other.spheres():
                if np.linalg.norm(c - qc) < r + qr + gap_mm:
                    return True
    return False


def pick_artery_v2(rng: np.random.Generator, arteries: list[Artery]) -> Artery:
    """An artery or side branch: :data:`ARTERY_WEIGHTS` per artery, shared by length among its branches."""
    totals: dict[str, float] = {}
    for a in arteries:
        totals[a.name] = totals.get(a.name, 0.0) + float(a.arclength[-1])
    w = np.array(
        [ARTERY_WEIGHTS[a.name] * float(a.arclength[-1]) / max(totals[a.name], 1e-9) for a in arteries]
    )
    return arteries[int(rng.choice(len(arteries), p=w / w.sum()))]


def _wall_part(artery: Artery, j: int, angle: float, offset: float, radii_tnb: np.ndarray) -> Ellipsoid:
    """An ellipsoid on ``artery``'s wall at centre-line point ``j``: ``angle`` around the vessel (rad),
    ``offset`` lumen radii from the axis, semi-axes (along, radial, around) in mm."""
    t = artery.tangents[j]
    frame = orthonormal_frame(t)
    normal = np.cos(angle) * frame[:, 1] + np.sin(angle) * frame[:, 2]
    binormal = np.cross(t, normal)
    center = artery.points[j] + normal * float(artery.radii[j]) * offset
    return Ellipsoid(center, np.stack([t, normal, binormal], axis=1), np.maximum(radii_tnb, 0.2))


def sample_lesion_v2(
    rng: np.random.Generator,
    arteries: list[Artery],
    style: LesionStyle,
    *,
    size_mm: float | None = None,
    density_hu: float | None = None,
    min_density_hu: float | None = None,
) -> CalciumObject:
    """Draw one coronary calcification of generator version 2.

    ``min_density_hu`` asks for a solid lesion (chain or blob) at least that dense, for a case whose
    calcium all vanished in partial volume.

    Anywhere along the artery and its side branches (Beta(``style.position_beta``) of the length,
    or at a bifurcation with ``style.bifurcation_fraction``), in one of
    :data:`~cacscore.phantom.variation.LESION_SHAPES` (chain of ellipsoids on the wall, blob, arc,
    full ring, spotty cluster, long thin streak), size 0.5-15 mm, density log-normal around the
    patient's median (130-1600 HU) independent of size, with an inner texture.
    """
    from cacscore.phantom.variation import LESION_SHAPES

    artery = pick_artery_v2(rng, arteries)
    branches = [a for a in arteries if a.segment and a.branch_at_mm is not None]
    s_all = artery.arclength
    if branches and rng.random() < style.bifurcation_fraction:
        branch = branches[int(rng.integers(len(branches)))]
        if rng.random() < 0.5:
            artery, s_all = branch, branch.arclength
            s = float(rng.uniform(0.0, min(4.0, s_all[-1])))
        else:
            artery = next(a for a in arteries if a.name == branch.parent and not a.segment)
            s_all = artery.arclength
            s = float(np.clip(float(branch.branch_at_mm or 0.0) + rng.uniform(-4, 4), 0, s_all[-1]))
    else:
        s = float(rng.beta(*style.position_beta) * s_all[-1])
    shape = str(rng.choice(LESION_SHAPES, p=np.array(style.shape_weights) / sum(style.shape_weights)))
    if size_mm is None:
        size_mm = float(np.clip(rng.lognormal(np.log(style.size_median_mm), 0.55), 0.5, 15.0))
    density = float(
        np.clip(
            rng.lognormal(np.log(style.density_median_hu), style.density_sigma), AGATSTON_THRESHOLD_HU, 1600
        )
    )
    if density_hu is not None:
        density = density_hu
    if min_density_hu is not None:
        density = max(density, min_density_hu)
        shape = "blob" if shape in ("blob", "spotty", "ring") else "chain"
    n = len(s_all)
    i = int(np.clip(np.searchsorted(s_all, s), 0, n - 1))
    lo, hi = style.wall_offset
    angle0 = rng.uniform(0, 2 * np.pi)
    parts: list[Ellipsoid] = []

    def at(offset_mm: float) -> int:
        return int(np.clip(i + round(offset_mm), 0, n - 1))  # centre-line points are 1 mm apart

    if shape == "blob":
        r = size_mm / 2
        parts.append(_wall_part(artery, i, angle0, rng.uniform(lo, hi), r * rng.uniform(0.6, 1.0, 3)))
    elif shape in ("arc", "ring"):
        span = 2 * np.pi if shape == "ring" else rng.uniform(0.5, 1.5) * np.pi
        k = int(rng.integers(6, 9)) if shape == "ring" else int(rng.integers(3, 6))
        r_wall = float(artery.radii[i]) * rng.uniform(max(lo, 0.8), max(hi, 1.0))
        chord = span * r_wall / k
        thick = rng.uniform(0.25, 0.6) * min(size_mm, 2.5)
        for m in range(k):
            ang = angle0 + span * (m + 0.5) / k
            radii = np.array([min(size_mm, 4.0) / 2, thick / 2 + 0.1, chord / 2 + 0.2])
            parts.append(_wall_part(artery, i, ang, rng.uniform(max(lo, 0.8), max(hi, 1.0)), radii))
    elif shape == "spotty":
        for _ in range(int(rng.integers(2, 6))):
            j = at(rng.uniform(-size_mm, size_mm) / 2)
            r = rng.uniform(0.35, 1.1)
            parts.append(
                _wall_part(artery, j, angle0 + rng.normal(0, 1.0), rng.uniform(lo, hi), np.full(3, r))
            )
    elif shape == "streak":
        length = min(size_mm * rng.uniform(1.5, 3.0), 22.0)
        k = max(2, int(np.ceil(length / 4.0)))
        width = rng.uniform(0.5, 1.6)
        for m in range(k):
            j = at((m - (k - 1) / 2) * length / k)
            radii = np.array([length / k / 2 + 0.6, rng.uniform(0.2, 0.4), width / 2])
            parts.append(_wall_part(artery, j, angle0 + rng.normal(0, 0.15), rng.uniform(lo, hi), radii))
    else:  # chain: version 1's eccentric ellipsoids along the vessel
        k = 1 if size_mm < 3 else int(rng.integers(2, 4))
        for m in range(k):
            j = at((m - (k - 1) / 2) * size_mm / k)
            r = float(artery.radii[j])
            length = size_mm / k * rng.uniform(0.9, 1.4)
            thick = float(np.clip(rng.uniform(0.35, 0.6) * min(size_mm, 3.5), 0.25, 1.6))
            width = float(np.clip(rng.uniform(0.4, 0.75) * min(size_mm, 2.5 * r), 0.25, 2.2 * r))
            radii = np.array([length / 2, thick / 2 + 0.1, width / 2 + 0.1])
            parts.append(
                _wall_part(
                    artery, j, angle0 + rng.normal(0, 0.25), rng.uniform(lo, hi), np.minimum(radii, 5.0)
                )
            )
    position = np.mean([p.center for p in parts], axis=0)
    return CalciumObject(
        "coronary",
        parts,
        density,
        artery=artery.name,
        arclength_mm=s,
        size_mm=size_mm,
        position_mm=position,
        segment=artery.segment or None,
        heterogeneity=float(style.heterogeneity * rng.uniform(0.3, 1.0)),
        texture_seed=int(rng.integers(2**31)),
        shape=shape,
    )
