"""DICOM exports of a signed review: SEG with the reader's lesions as MANUAL segments, a verified SR, the PDF.

The study is the synthetic volume written as a DICOM series (the automatic result finds blob A as LAD
and blob B as RCA). The reader adds blob C to the LAD and moves blob B to the LM, then signs. Each
check reads the downloaded files as a PACS or viewer would: highdicom and pydicom, per source instance,
and dicom3tools' ``dciodvfy`` when installed.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import datetime
from io import BytesIO
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.sr.codedict import codes

from cacscore.io import write_dicom_series
from cacscore.labels import ARTERY_CODES, LAD, LM
from cacscore.web.dependencies import Settings, get_scorer
from cacscore.web.main import create_app
from cacscore.web.service import find_candidates

from .conftest import SHAPE, automatic_mask, known_scorer, local_client, synthetic_volume

BLOB_B, BLOB_C = 3, 4
PRODUCTS = ("seg.dcm", "sr.dcm", "report_pdf.dcm")
TAGS = {"PatientName": "DOE^JANE", "PatientID": "PID-0042", "AccessionNumber": "ACC-7"}
READER = "Jane Reader"
MEASURES = {
    "agatston": codes.SCT.CoronaryArteryCalciumScore,
    "volume_mm3": codes.DCM.CalciumVolume,
    "mass_mg": codes.DCM.CalciumMass,
}


@pytest.fixture
def dicom_client(tmp_path: Path) -> Iterator[TestClient]:
    """The review app serving one study: the synthetic volume as a DICOM series."""
    write_dicom_series(synthetic_volume(), tmp_path / "data" / "case_d" / "image", extra_tags=TAGS)
    settings = Settings(
        data_dir=tmp_path / "data",
        db_url=f"sqlite:///{tmp_path / 'state' / 'review.db'}",
        upload_dir=tmp_path / "state" / "uploads",
        max_upload_mb=1.0,
    )
    app = create_app(settings)
    app.dependency_overrides[get_scorer] = lambda: known_scorer
    with local_client(app) as client:
        yield client


def _edit(client: TestClient, version: int, lesion: int, artery: str | None) -> dict:
    response = client.post(
        "/api/studies/1/edits",
        json={"version": version, "reviewer": READER, "lesion": lesion, "artery": artery, "confirm": True},
    )
    assert response.status_code == 200, response.text
    return response.json()


def _sign(client: TestClient, version: int) -> dict:
    response = client.post("/api/studies/1/sign", json={"version": version, "reviewer": READER})
    assert response.status_code == 200, response.text
    return response.json()


def _download(client: TestClient, name: str) -> pydicom.Dataset:
    response = client.get(f"/api/studies/1/{name}", params={"reviewer": READER})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    return pydicom.dcmread(BytesIO(response.content))


def _dciodvfy_errors(data: bytes, folder: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools; .ci/run installs it)")
    path = folder / "object.dcm"
    path.write_bytes(data)
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def _reviewed() -> tuple[np.ndarray, np.ndarray]:
    """The signed mask (blob C in the LAD, blob B in the LM) and the reader's voxels (blobs B and C)."""
    candidates = find_candidates(synthetic_volume()).labels
    mask = automatic_mask()
    mask[candidates == BLOB_C] = LAD
    mask[candidates == BLOB_B] = LM
    return mask, np.isin(candidates, [BLOB_B, BLOB_C])


def _algorithm_names(items: list[pydicom.Dataset]) -> list[str]:
    """Text of every "Algorithm Name" (DCM 111001) content item in ``items`` and below."""
    found = []
    for item in items:
        if item.ConceptNameCodeSequence[0].CodeValue == "111001":
            found.append(str(item.TextValue))
        found += _algorithm_names(list(item.get("ContentSequence", [])))
    return found


def _values(group: hd.sr.MeasurementsAndQualitativeEvaluations) -> dict[str, float]:
    return {key: group.get_measurements(name=code)[0].value for key, code in MEASURES.items()}


def test_signed_review_exports_manual_segments_and_a_verified_sr(
    dicom_client: TestClient, tmp_path: Path
) -> None:
    client = dicom_client
    study = client.get("/api/studies/1").json()
    assert study["dicom_source"] is True
    # Before sign-off there is nothing to send: the exports carry the signed result.
    refused = client.get("/api/studies/1/sr.dcm")
    assert refused.status_code == 409 and "not signed" in refused.json()["detail"]
    _edit(client, 0, BLOB_C, "LAD")
    _edit(client, 1, BLOB_B, "LM")
    signed = _sign(client, 2)
    report = client.get("/api/studies/1/report.json").json()
    seg, sr, pdf = (_download(client, name) for name in PRODUCTS)

    # All three: the source study's identifiers, new series, cacscore as the equipment.
    source_files = sorted((tmp_path / "data" / "case_d" / "image").glob("*.dcm"))
    source = pydicom.dcmread(source_files[0], stop_before_pixels=True)
    for ds in (seg, sr, pdf):
        assert (ds.StudyInstanceUID, ds.PatientID, str(ds.PatientName)) == (
            source.StudyInstanceUID,
            "PID-0042",
            "DOE^JANE",
        )
        assert ds.AccessionNumber == "ACC-7" and ds.Manufacturer == "cacscore" and ds.SoftwareVersions
    assert (
        len({source.SeriesInstanceUID, seg.SeriesInstanceUID, sr.SeriesInstanceUID, pdf.SeriesInstanceUID})
        == 4
    )

    # SEG: the algorithm's LAD lesion stays AUTOMATIC with the model; the reader's lesions are MANUAL.
    segments = {str(item.SegmentLabel): item for item in seg.SegmentSequence}
    assert sorted(segments) == ["LAD calcium", "LAD calcium, reader", "LM calcium, reader"]
    automatic = segments["LAD calcium"]
    assert automatic.SegmentAlgorithmType == "AUTOMATIC" and automatic.SegmentAlgorithmName == "test-model"
    assert automatic.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "1"
    for label in ("LAD calcium, reader", "LM calcium, reader"):
        item = segments[label]
        assert item.SegmentAlgorithmType == "MANUAL"
        assert "SegmentationAlgorithmIdentificationSequence" not in item
        assert item.SegmentDescription == f"Added or changed by the reader {READER}"
    assert str(seg.ContentCreatorName) == f"{READER}^"

    # SEG overlays each source instance: its own pixels, found by its own position, not by array order.
    mask, manual = _reviewed()
    key_of = {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}
    reader_seg = hd.seg.segread(BytesIO(client.get("/api/studies/1/seg.dcm").content))
    origin_z, dz = float(source.ImagePositionPatient[2]), 3.0
    with_lesions = 0
    for path in source_files:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        z = round((float(header.ImagePositionPatient[2]) - origin_z) / dz)
        pixels = reader_seg.get_pixels_by_source_instance(
            source_sop_instance_uids=[header.SOPInstanceUID],
            combine_segments=True,
            assert_missing_frames_are_empty=True,
        )[0]
        got_codes = np.zeros(SHAPE[1:], np.uint8)
        got_manual = np.zeros(SHAPE[1:], bool)
        for number, label in key_of.items():
            got_codes[pixels == number] = ARTERY_CODES[label.split(" ")[0]]
            got_manual[pixels == number] = label.endswith(", reader")
        np.testing.assert_array_equal(got_codes, mask[z], err_msg=path.name)
        np.testing.assert_array_equal(got_manual, manual[z] & (mask[z] > 0), err_msg=path.name)
        with_lesions += bool(mask[z].any())
    assert with_lesions >= 3

    # SR: verified by the signer at the time of signing; its numbers are the signed report's.
    assert (
        sr.VerificationFlag == "VERIFIED"
        and sr.CompletionFlag == "COMPLETE"
        and sr.PreliminaryFlag == "FINAL"
    )
    observer = sr.VerifyingObserverSequence[0]
    assert str(observer.VerifyingObserverName) == f"{READER}^"
    signed_at = datetime.fromisoformat(signed["signed_at"])
    assert observer.VerificationDateTime == signed_at.strftime("%Y%m%d%H%M%S%z")
    document = hd.sr.srread(BytesIO(client.get("/api/studies/1/sr.dcm").content))
    (total,) = document.content.get_image_measurement_groups()
    assert _values(total) == pytest.approx({key: report[key] for key in MEASURES}, rel=1e-9)
    assert _algorithm_names(list(total)) == []  # the corrected total is not the algorithm's
    assert report["agatston"] == pytest.approx(signed["score"]["agatston"], rel=1e-12)
    groups = document.content.get_volumetric_roi_measurement_groups()
    by_artery: dict[str, dict[str, float]] = {}
    for group in groups:
        label = str(group.tracking_identifier)
        values = _values(group)
        artery = label.split(" ")[0]
        by_artery[artery] = {k: by_artery.get(artery, {}).get(k, 0.0) + v for k, v in values.items()}
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        (number,) = group.referenced_segment.referenced_segment_numbers
        assert key_of[number] == label
        algorithm_names = set(_algorithm_names(list(group)))
        assert algorithm_names == (set() if label.endswith(", reader") else {"test-model"})
    for artery, scores in report["arteries"].items():
        if scores["n_lesions"]:
            assert by_artery[artery] == pytest.approx({k: scores[k] for k in MEASURES}, rel=1e-9)
    assert set(by_artery) == {"LM", "LAD"}
    person = [
        item
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "121008"  # Person Observer Name
    ]
    assert [str(item.PersonName) for item in person] == [f"{READER}^"]

    # The PDF is the review app's report, encapsulated.
    document_pdf = pdf.EncapsulatedDocument[: int(pdf.EncapsulatedDocumentLength)]
    assert document_pdf.startswith(b"%PDF")

    # The same version downloads the same instances (the SR points at that SEG); an amendment makes new ones.
    again = _download(client, "seg.dcm")
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (seg.SOPInstanceUID, seg.SeriesInstanceUID)
    unsigned = client.post(
        "/api/studies/1/unsign", json={"version": signed["version"], "reviewer": READER, "reason": "typo"}
    ).json()
    _sign(client, unsigned["version"])
    amended = [_download(client, name) for name in PRODUCTS]
    old = {seg.SeriesInstanceUID, sr.SeriesInstanceUID, pdf.SeriesInstanceUID}
    assert old.isdisjoint(ds.SeriesInstanceUID for ds in amended)
    with sqlite3.connect(tmp_path / "state" / "review.db") as con:
        rows = con.execute("select actor, detail from audit where action = 'export'").fetchall()
    exported = {json.loads(detail)["format"] for actor, detail in rows if actor == READER}
    assert exported == set(PRODUCTS)


def test_exports_pass_dciodvfy(dicom_client: TestClient, tmp_path: Path) -> None:
    _edit(dicom_client, 0, BLOB_C, "LAD")
    _sign(dicom_client, 1)
    for name in PRODUCTS:
        content = dicom_client.get(f"/api/studies/1/{name}").content
        assert _dciodvfy_errors(content, tmp_path) == [], name


def test_no_calcium_gives_no_seg_but_an_sr(dicom_client: TestClient) -> None:
    _edit(dicom_client, 0, 2, None)  # blob A out
    _edit(dicom_client, 1, BLOB_B, None)
    _sign(dicom_client, 2)
    missing = dicom_client.get("/api/studies/1/seg.dcm")
    assert missing.status_code == 404 and "no calcium" in missing.json()["detail"]
    sr = hd.sr.srread(BytesIO(dicom_client.get("/api/studies/1/sr.dcm").content))
    (total,) = sr.content.get_image_measurement_groups()
    assert _values(total) == {"agatston": 0.0, "volume_mm3": 0.0, "mass_mg": 0.0}
    assert sr.content.get_volumetric_roi_measurement_groups() == []


def test_a_nifti_study_has_no_dicom_export(client: TestClient) -> None:
    assert client.get("/api/studies/1").json()["dicom_source"] is False
    client.post("/api/studies/1/sign", json={"version": 0, "reviewer": READER})
    for name in PRODUCTS:
        response = client.get(f"/api/studies/1/{name}")
        assert response.status_code == 422
        assert response.json()["detail"] == (
            "study 1 was not read from DICOM: DICOM export needs a DICOM source "
            "(use the JSON, mask or PDF export)"
        )
    assert client.get("/api/studies/1/other.dcm").status_code == 404
