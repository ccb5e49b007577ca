"""The input-domain check: is this a non-contrast CT with a heart in view?

Decided from the anatomy alone (:func:`cacscore.anatomy.chest.analyse_chest`),
never from the networks, so it holds on scans no phantom resembles:

* **no heart in the field of view** (an abdomen, a pelvis, a head): lungs on
  both sides and a heart-sized mass between them over enough slices are
  required; otherwise :class:`NoHeartError`;
* **contrast enhanced** (CT angiography, a venous-phase chest CT): the blood
  pool inside the heart above :data:`CONTRAST_BLOOD_POOL_HU` raises
  :class:`ContrastEnhancedError`;
* warnings, recorded in the report: a full-chest rather than a gated cardiac
  field of view, a heart cut at the top or bottom of the volume, partial
  coverage of the heart.

Every limit is a named constant with the source of its value. The measured
values go into the report's ``domain`` block (:meth:`DomainCheck.to_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cacscore.anatomy.chest import ChestAnatomy, analyse_chest
from cacscore.anatomy.heart_region import HeartRegion
from cacscore.errors import InvalidInputError
from cacscore.io.volume import CTVolume

#: Smallest mediastinal mass that is a heart, mL. The heart with its chambers holds 500-900 mL in adults
#: (and the mediastinal mass around it more); the real chest CTs of the test set measure 1000-1900 mL,
#: 200 phantoms of 180-250 mm gated fields of view 400-1000 mL (benchmarks/bench_domain.py). Abdominal
#: and pelvic CTs measure <= 40 mL: liver between the crescents of the lung bases. 200 mL is a heart
#: of which a third is in view.
MIN_HEART_MASS_ML = 200.0
#: Smallest craniocaudal extent of that mass, mm: a third of a heart's 10-12 cm length.
MIN_HEART_EXTENT_MM = 35.0
#: Smallest lung volume on each side of the mass, mL: lung seen on both sides. A field of view of 165-180 mm
#: centred on the heart may show only a sliver of the right lung (27 mL measured on a domain-randomised
#: phantom); full chest CTs show 1000-2500 mL per side.
MIN_LUNG_SIDE_ML = 15.0
#: Smallest lung volume on both sides together, mL. Gated phantoms show 280-2400 mL in their tight field of
#: view (benchmarks/bench_domain.py), full chest CTs 2700-4000 mL; the lung bases around an upper abdomen
#: or above a pelvis <= 100 mL (the test set's abdominal CTs: 98 mL).
MIN_LUNG_TOTAL_ML = 250.0
#: Blood pool (median of the deep inside of the heart) above this is contrast enhanced, HU. Unenhanced
#: blood measures 30-60 HU (it rises with haematocrit, ~70 HU in polycythaemia); the real non-contrast
#: chest CTs of the test set 40-46 HU, the phantoms 35-55 HU. Enhanced blood in a venous-phase chest CT
#: measures >= 120 HU and in CT angiography 250-500 HU (the test set's CT angiography: ~360 HU).
CONTRAST_BLOOD_POOL_HU = 100.0
#: Largest in-plane field of view of a gated cardiac calcium scan, mm. Calcium-scoring protocols
#: reconstruct 180-250 mm centred on the heart; chest CTs reconstruct 300-500 mm around the whole body.
GATED_FOV_MAX_MM = 260.0
#: The heart counts as cut at an end of the volume when the mass's area in the end slice is at least this
#: fraction of its largest area. At the top of a gated scan (the carina, above the coronary ostia) the
#: great vessels fill 40-70 % of the heart's widest section in the phantoms and real scans; a slice as
#: wide as the heart itself means the heart goes on beyond the volume.
CUT_TOP_AREA_FRACTION = 0.8
#: The same at the bottom: the heart narrows to its apex, and the liver dome below it seldom lies between
#: the lungs, so an end slice with more than two thirds of the widest section is a heart cut short.
CUT_BOTTOM_AREA_FRACTION = 0.67
#: A heart-sized mass spanning less than this is partial coverage, mm: the coronary tree spans 8-10 cm
#: from the ostia to the apex; 70 mm leaves a margin for small hearts.
FULL_COVERAGE_EXTENT_MM = 70.0


class DomainError(InvalidInputError):
    """The scan is not a non-contrast CT with a heart in view; ``--skip-domain-check`` scores it anyway."""


class NoHeartError(DomainError):
    """No heart in the field of view (lungs on both sides and a heart-sized mass between them)."""


class ContrastEnhancedError(DomainError):
    """The blood pool is contrast enhanced; calcium scoring needs a non-contrast scan."""


@dataclass(frozen=True)
class DomainCheck:
    """Measured values and decisions of the input-domain check.

    Parameters
    ----------
    heart_in_view : bool
    contrast_enhanced : bool
    field_of_view : {"gated", "full-chest"}
    field_of_view_mm : float
        Largest in-plane extent of the image (the reconstruction diameter), mm.
    lung_left_ml, lung_right_ml : float
        Lung volume on the patient's left and right of the mediastinal mass, mL.
    heart_mass_ml : float
        Volume of the mediastinal mass between the lungs (bone excluded), mL.
    heart_slices : tuple of 2 int or None
        First and last slice index holding the mass.
    heart_extent_mm : float
        Its craniocaudal extent, mm.
    blood_pool_hu : float or None
        Median HU of the deep inside of the mass, HU.
    heart_cut_top, heart_cut_bottom : bool
        The mass is as wide as the heart in the volume's first or last slice (head-ward end = top).
    partial_coverage : bool
        The heart is cut or spans less than :data:`FULL_COVERAGE_EXTENT_MM`.
    refusal : str or None
        The error message when the scan is refused (also when the check was skipped).
    skipped : bool
        Scored anyway (``--skip-domain-check``).
    warnings : list of str
        Messages for the report's ``warnings``.
    region : HeartRegion
        Where coronary calcium can lie (not part of :meth:`to_dict`).
    """

    heart_in_view: bool
    contrast_enhanced: bool
    field_of_view: str
    field_of_view_mm: float
    lung_left_ml: float
    lung_right_ml: float
    heart_mass_ml: float
    heart_slices: tuple[int, int] | None
    heart_extent_mm: float
    blood_pool_hu: float | None
    heart_cut_top: bool
    heart_cut_bottom: bool
    partial_coverage: bool
    refusal: str | None
    region: HeartRegion = field(repr=False, compare=False)
    skipped: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        """Whether the scan is outside the domain."""
        return self.refusal is not None

    def to_dict(self) -> dict[str, Any]:
        """The report's ``domain`` block (JSON-ready; volumes in mL, lengths in mm, HU)."""
        return {
            "heart_in_view": self.heart_in_view,
            "contrast_enhanced": self.contrast_enhanced,
            "field_of_view": self.field_of_view,
            "field_of_view_mm": round(self.field_of_view_mm, 1),
            "lung_left_ml": round(self.lung_left_ml, 1),
            "lung_right_ml": round(self.lung_right_ml, 1),
            "heart_mass_ml": round(self.heart_mass_ml, 1),
            "heart_slices": None if self.heart_slices is None else list(self.heart_slices),
            "heart_extent_mm": round(self.heart_extent_mm, 1),
            "blood_pool_hu": None if self.blood_pool_hu is None else round(self.blood_pool_hu, 1),
            "heart_cut_top": self.heart_cut_top,
            "heart_cut_bottom": self.heart_cut_bottom,
            "partial_coverage": self.partial_coverage,
            "refusal": self.refusal,
            "skipped": self.skipped,
            "limits": {
                "min_heart_mass_ml": MIN_HEART_MASS_ML,
                "min_heart_extent_mm": MIN_HEART_EXTENT_MM,
                "min_lung_side_ml": MIN_LUNG_SIDE_ML,
                "min_lung_total_ml": MIN_LUNG_TOTAL_ML,
                "contrast_blood_pool_hu": CONTRAST_BLOOD_POOL_HU,
                "gated_fov_max_mm": GATED_FOV_MAX_MM,
            },
        }

    def require(self, where: str | None = None) -> None:
        """Raise the refusal, if any and not skipped (:meth:`skip`).

        Parameters
        ----------
        where : str, optional
            The file named in the message (default: none).

        Raises
        ------
        NoHeartError, ContrastEnhancedError
        """
        if self.refusal is None or self.skipped:
            return
        message = self.refusal if where is None else f"{where}: {self.refusal}"
        suffix = " (--skip-domain-check scores it anyway)"
        if not self.heart_in_view:
            raise NoHeartError(message + suffix)
        raise ContrastEnhancedError(message + suffix)

    def skip(self) -> DomainCheck:
        """The check with its refusal turned into a warning (``--skip-domain-check``)."""
        if self.refusal is None:
            return replace(self, skipped=True)
        note = f"domain check skipped: {self.refusal}; the scores are not those of a calcium-scoring CT"
        return replace(self, skipped=True, warnings=[note, *self.warnings])


def check_domain(volume: CTVolume, anatomy: ChestAnatomy | None = None) -> DomainCheck:
    """Decide whether ``volume`` is a non-contrast CT with a heart in view, and find its heart region.

    Parameters
    ----------
    volume : CTVolume
    anatomy : ChestAnatomy, optional
        Computed already (default: :func:`cacscore.anatomy.chest.analyse_chest`).

    Returns
    -------
    DomainCheck
        Never raises for a refused scan: call :meth:`DomainCheck.require`.
    """
    anatomy = anatomy if anatomy is not None else analyse_chest(volume)
    grid = anatomy.grid
    mass = anatomy.mass.mask
    voxel_ml = grid.voxel_ml
    dz = grid.spacing[0]
    fov_mm = float(max(volume.shape[1] * volume.spacing[1], volume.shape[2] * volume.spacing[2]))
    field_of_view = "gated" if fov_mm <= GATED_FOV_MAX_MM else "full-chest"

    left_ml, right_ml = _lung_sides(anatomy, volume)
    mass_ml = float(mass.sum()) * voxel_ml
    area = mass.sum(axis=(1, 2)).astype(float)
    present = np.nonzero(area)[0]
    coarse_slices = (int(present[0]), int(present[-1])) if present.size else None
    extent_mm = 0.0 if coarse_slices is None else (coarse_slices[1] - coarse_slices[0] + 1) * dz
    heart_slices = (
        None
        if coarse_slices is None
        else (
            int(coarse_slices[0] * grid.block[0]),
            int(min((coarse_slices[1] + 1) * grid.block[0], volume.shape[0]) - 1),
        )
    )

    heart = (
        mass_ml >= MIN_HEART_MASS_ML
        and extent_mm >= MIN_HEART_EXTENT_MM
        and min(left_ml, right_ml) >= MIN_LUNG_SIDE_ML
        and left_ml + right_ml >= MIN_LUNG_TOTAL_ML
    )
    blood = anatomy.mass.blood_pool_hu
    contrast = heart and blood is not None and blood > CONTRAST_BLOOD_POOL_HU

    head_last = _head_is_last(volume)
    widest = float(area.max()) if area.size else 0.0
    first_cut = (
        widest > 0
        and area[0] >= (CUT_TOP_AREA_FRACTION if not head_last else CUT_BOTTOM_AREA_FRACTION) * widest
    )
    last_cut = (
        widest > 0 and area[-1] >= (CUT_TOP_AREA_FRACTION if head_last else CUT_BOTTOM_AREA_FRACTION) * widest
    )
    cut_top, cut_bottom = (
        (bool(last_cut), bool(first_cut)) if head_last else (bool(first_cut), bool(last_cut))
    )
    partial = heart and (cut_top or cut_bottom or extent_mm < FULL_COVERAGE_EXTENT_MM)

    measured = (
        f"lungs {left_ml:.0f} mL left / {right_ml:.0f} mL right (>= {MIN_LUNG_SIDE_ML:.0f} each, "
        f">= {MIN_LUNG_TOTAL_ML:.0f} together), "
        f"mass between them {mass_ml:.0f} mL (>= {MIN_HEART_MASS_ML:.0f}) over {extent_mm:.0f} mm "
        f"(>= {MIN_HEART_EXTENT_MM:.0f})"
    )
    refusal = None
    if not heart:
        refusal = f"no heart in the field of view: {measured}"
    elif contrast:
        refusal = (
            f"contrast-enhanced scan (blood pool ~{blood:.0f} HU, limit {CONTRAST_BLOOD_POOL_HU:.0f} HU): "
            "calcium scoring needs a non-contrast scan"
        )

    warnings: list[str] = []
    if heart and field_of_view == "full-chest":
        warnings.append(
            f"full-chest field of view ({fov_mm:.0f} mm, gated cardiac scans use <= "
            f"{GATED_FOV_MAX_MM:.0f} mm): not an ECG-gated calcium-scoring scan; motion and slice "
            "thickness make its scores differ from a gated scan's"
        )
    if heart and cut_top:
        warnings.append("heart cut at the top of the volume: calcium above the first slice is missed")
    if heart and cut_bottom:
        warnings.append("heart cut at the bottom of the volume: calcium below the last slice is missed")
    if heart and partial and not (cut_top or cut_bottom):
        warnings.append(
            f"partial heart coverage: the heart spans {extent_mm:.0f} mm of the volume "
            f"(< {FULL_COVERAGE_EXTENT_MM:.0f} mm); the score may be incomplete"
        )
    region_mask = anatomy.region if heart else np.zeros(anatomy.region.shape, dtype=bool)
    region = HeartRegion(grid, region_mask, heart, "" if heart else f"no heart found ({measured})")
    return DomainCheck(
        heart_in_view=bool(heart),
        contrast_enhanced=bool(contrast),
        field_of_view=field_of_view,
        field_of_view_mm=fov_mm,
        lung_left_ml=left_ml,
        lung_right_ml=right_ml,
        heart_mass_ml=mass_ml,
        heart_slices=heart_slices,
        heart_extent_mm=float(extent_mm),
        blood_pool_hu=blood,
        heart_cut_top=cut_top,
        heart_cut_bottom=cut_bottom,
        partial_coverage=bool(partial),
        refusal=refusal,
        region=region,
        warnings=warnings,
    )


def _head_is_last(volume: CTVolume) -> bool:
    """Whether the last slice is the head-ward end (LPS +z along the slice axis)."""
    return bool(volume.direction[2, 2] >= 0)


def _lung_sides(anatomy: ChestAnatomy, volume: CTVolume) -> tuple[float, float]:
    """Lung volumes (mL) on the patient's left and right of the mass's centre column.

    Without a mass, the image's centre column is used.
    """
    lungs = anatomy.tissues.lungs
    columns = np.nonzero(lungs)[2]
    mass_columns = np.nonzero(anatomy.mass.mask)[2]
    centre = float(mass_columns.mean()) if mass_columns.size else (lungs.shape[2] - 1) / 2
    high = float(np.count_nonzero(columns > centre)) * anatomy.grid.voxel_ml
    low = float(np.count_nonzero(columns < centre)) * anatomy.grid.voxel_ml
    # LPS: +x is the patient's left; the column axis points along direction[:, 0].
    return (high, low) if volume.direction[0, 0] >= 0 else (low, high)
