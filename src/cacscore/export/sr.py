"""Comprehensive 3D SR (TID 1500 Measurement Report) of the calcium scores, per artery and in total."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cacscore.export.codes import (
    AGATSTON_METHOD,
    AGATSTON_SCORE,
    ARTERY_SITES,
    CAC_DRS,
    CALCIUM_MASS,
    CALCIUM_VOLUME,
    LOCAL_SCHEME,
    PROCEDURE,
    RISK_CATEGORY,
    SEGMENT_TYPE,
    UNIT_MG,
    UNIT_MM3,
    UNIT_SCORE,
)
from cacscore.export.common import Equipment, completed_headers, person_name, source_names_as_they_are
from cacscore.export.seg import segment_keys
from cacscore.labels import ARTERY_NAMES, UNSPECIFIED

if TYPE_CHECKING:
    import highdicom as hd

    from cacscore.export.seg import Algorithm
    from cacscore.io.volume import CTVolume


def _measurements(scores: Mapping[str, Any]) -> list[hd.sr.Measurement]:
    import highdicom as hd

    return [
        hd.sr.Measurement(
            name=AGATSTON_SCORE, value=float(scores["agatston"]), unit=UNIT_SCORE, method=AGATSTON_METHOD
        ),
        hd.sr.Measurement(name=CALCIUM_VOLUME, value=float(scores["volume_mm3"]), unit=UNIT_MM3),
        hd.sr.Measurement(name=CALCIUM_MASS, value=float(scores["mass_mg"]), unit=UNIT_MG),
    ]


def _referenced_segment(segmentation: hd.seg.Segmentation, number: int) -> hd.sr.ReferencedSegment:
    """Reference to one segment with the source images of its frames.

    Written here rather than with ``ReferencedSegment.from_segmentation``, which misses the segment
    number when highdicom put it in the shared functional groups (one segment of a multi-frame source).
    """
    import highdicom as hd

    shared = segmentation.SharedFunctionalGroupsSequence[0]
    sources: dict[str, tuple[str, set[int]]] = {}
    for item in segmentation.PerFrameFunctionalGroupsSequence:
        identification = item.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        if int(identification[0].ReferencedSegmentNumber) != number:
            continue
        for derivation in item.get("DerivationImageSequence", []):
            for ref in derivation.SourceImageSequence:
                _, frames = sources.setdefault(
                    str(ref.ReferencedSOPInstanceUID), (str(ref.ReferencedSOPClassUID), set())
                )
                if "ReferencedFrameNumber" in ref:
                    frames.add(int(ref.ReferencedFrameNumber))
    return hd.sr.ReferencedSegment(
        sop_class_uid=segmentation.SOPClassUID,
        sop_instance_uid=segmentation.SOPInstanceUID,
        segment_number=number,
        source_images=[
            hd.sr.SourceImageForSegmentation(class_uid, instance_uid, sorted(frames) or None)
            for instance_uid, (class_uid, frames) in sources.items()
        ],
    )


def build_measurement_report(
    volume: CTVolume,
    report: dict[str, Any],
    segmentation: hd.seg.Segmentation | None,
    *,
    algorithm: Algorithm | None = None,
    reviewer: str | None = None,
    signed: bool = False,
    organization: str | None = None,
    verified_at: datetime | None = None,
    corrected: bool = False,
    segment_scores: Mapping[int, Mapping[str, Any]] | None = None,
    series_uid: str | None = None,
    series_number: int = 902,
    equipment: Equipment | None = None,
) -> hd.sr.Comprehensive3DSR:
    """Measurement Report of a ``cacscore.score/1`` report: totals, risk category, CAC-DRS and per artery.

    One image-level group (TID 1501) holds the total Agatston, volume and mass with the risk category
    and CAC-DRS as qualitative evaluations; one volumetric group (TID 1411) per segment of
    ``segmentation`` holds that segment's scores and references it: one per artery with calcium, or,
    in a reviewed result whose SEG splits an artery into the algorithm's and the reader's voxels, one
    per part (``segment_scores``), the algorithm named only in the algorithm's.

    Parameters
    ----------
    volume : CTVolume
        Volume read from DICOM (its source images are the SR's evidence).
    report : dict
        ``cacscore.score/1`` report (``arteries``, ``agatston``, ``volume_mm3``, ``mass_mg``,
        ``risk_category``, ``cac_drs``).
    segmentation : highdicom.seg.Segmentation or None
        The SEG of the same mask (:func:`cacscore.export.seg.build_segmentation`); None when there is no
        calcium (no per-artery group is written then).
    algorithm : Algorithm, optional
        The algorithm named in the groups.
    reviewer : str, optional
        Person observer (DICOM person name, e.g. ``"Doe^Jane"``) next to the cacscore device observer.
    signed : bool
        The reviewer signed the result: the SR is final and VERIFIED by ``reviewer`` for ``organization``.
    organization : str, optional
        Verifying organization (required by DICOM when ``signed``; default "unknown").
    verified_at : datetime, optional
        When the reviewer signed (VerificationDateTime; default: now). A naive time is taken as local.
    corrected : bool
        A reader changed the algorithm's result: the totals are no longer the algorithm's, so the
        total group names none (the per-segment groups still name it for its own segments).
    segment_scores : mapping, optional
        Segment number -> ``agatston``, ``volume_mm3``, ``mass_mg`` of that segment's voxels; needed
        when an artery has more than one segment (default: each segment's artery in ``report``).
    series_uid, series_number, equipment
        New series' UID (default: new) and number; manufacturer and software version.

    Raises
    ------
    InvalidInputError
        If the volume was not read from DICOM, ``signed`` without a ``reviewer``, or an artery has more
        than one segment and ``segment_scores`` does not give each one's scores.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from cacscore.errors import InvalidInputError

    if signed and not reviewer:
        raise InvalidInputError("a signed SR needs the reviewer's name")
    reviewer = person_name(reviewer) if reviewer else None
    equipment = equipment or Equipment()
    headers = completed_headers(volume)
    device = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[equipment.manufacturer, equipment.software_version]),
            name=f"{equipment.model_name} {equipment.software_version}",
            manufacturer_name=equipment.manufacturer,
            model_name=equipment.model_name,
        ),
    )
    person = (
        None
        if not reviewer
        else hd.sr.ObserverContext(
            observer_type=codes.cid270.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=reviewer),
        )
    )
    context = hd.sr.ObservationContext(observer_person_context=person, observer_device_context=device)
    algorithm_id = (
        None
        if algorithm is None or algorithm.manual
        else hd.sr.AlgorithmIdentification(name=algorithm.name, version=algorithm.version)
    )
    total = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Total coronary calcium"),
        finding_type=SEGMENT_TYPE,
        finding_sites=[hd.sr.FindingSite(ARTERY_SITES[UNSPECIFIED])],
        algorithm_id=None if corrected else algorithm_id,
        measurements=_measurements(report),
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                RISK_CATEGORY,
                hd.sr.CodedConcept(
                    str(report["risk_category"]), LOCAL_SCHEME, f"Risk category {report['risk_category']}"
                ),
            ),
            hd.sr.QualitativeEvaluation(
                CAC_DRS,
                hd.sr.CodedConcept(str(report["cac_drs"]), LOCAL_SCHEME, f"CAC-DRS {report['cac_drs']}"),
            ),
        ],
    )
    groups: list[Any] = [total]
    if segmentation is not None:
        keys = segment_keys(segmentation)
        arteries = [code for code, _ in keys.values()]
        labels = {int(item.SegmentNumber): str(item.SegmentLabel) for item in segmentation.SegmentSequence}
        for number, (code, by_reader) in keys.items():
            if segment_scores is not None and number in segment_scores:
                scores = segment_scores[number]
            elif arteries.count(code) == 1 and ARTERY_NAMES[code] in report["arteries"]:
                scores = report["arteries"][ARTERY_NAMES[code]]
            else:
                raise InvalidInputError(f"no scores for segment {number} ({labels[number]}) of the SEG")
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(
                        uid=generate_uid(), identifier=labels[number]
                    ),
                    referenced_segment=_referenced_segment(segmentation, number),
                    finding_type=SEGMENT_TYPE,
                    finding_sites=[hd.sr.FindingSite(ARTERY_SITES[code])],
                    algorithm_id=None if by_reader else algorithm_id,
                    measurements=_measurements(scores),
                )
            )
    content = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=PROCEDURE,
        imaging_measurements=groups,
        title=codes.cid7021.ImagingMeasurementReport,
    )
    evidence = [*headers, *([segmentation] if segmentation is not None else [])]
    with source_names_as_they_are():
        document = _document(
            evidence,
            content,
            series_uid or generate_uid(),
            series_number,
            equipment,
            reviewer if signed else None,
            (organization or "unknown") if signed else None,
        )
    if signed and verified_at is not None:
        # highdicom stamps the verification with the time of writing; the signature's time is what counts.
        moment = verified_at if verified_at.tzinfo is not None else verified_at.astimezone()
        document.VerifyingObserverSequence[0].VerificationDateTime = moment.strftime("%Y%m%d%H%M%S%z")
    # General Equipment: highdicom sets only the manufacturer.
    document.ManufacturerModelName = equipment.model_name
    document.SoftwareVersions = equipment.software_version
    # Declare the local coding scheme of the risk category and CAC-DRS (PS3.3 C.12.1.1.2 / PS3.16 8.2).
    from pydicom.dataset import Dataset

    scheme = Dataset()
    scheme.CodingSchemeDesignator = LOCAL_SCHEME
    scheme.CodingSchemeName = "cacscore local codes"
    scheme.CodingSchemeResponsibleOrganization = equipment.manufacturer
    document.CodingSchemeIdentificationSequence = [scheme]
    return document


def _document(
    evidence: list[Any],
    content: Any,
    series_uid: str,
    series_number: int,
    equipment: Equipment,
    verifier: str | None,
    organization: str | None,
) -> hd.sr.Comprehensive3DSR:
    import highdicom as hd
    from pydicom.uid import generate_uid

    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=content,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=equipment.manufacturer,
        is_complete=True,
        is_final=verifier is not None,
        is_verified=verifier is not None,
        verifying_observer_name=verifier,
        verifying_organization=organization,
        series_description="Coronary calcium measurement report",
    )
