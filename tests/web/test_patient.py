"""Patient and study details in the PDF report, from the DICOM header."""

from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path

from fastapi.testclient import TestClient

from cacscore.io import write_dicom_series, write_volume
from cacscore.web.patient import patient_details

from .conftest import synthetic_volume

TAGS = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "PID-0042",
    "PatientBirthDate": "19600102",
    "PatientSex": "F",
    "StudyDate": "20261201",
    "ReferringPhysicianName": "SMITH^ANNA",
}
SHOWN = {
    "Patient name": "DOE, JANE Q",
    "Patient ID": "PID-0042",
    "Birth date": "1960-01-02",
    "Sex": "female",
    "Study date": "2026-12-01",
    "Referring physician": "SMITH, ANNA",
}


def pdf_text(pdf: bytes) -> str:
    """The text of every content stream of a PDF (reportlab writes them ASCII85 + Flate encoded)."""
    texts = []
    for stream in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.DOTALL):
        data = stream.strip()
        if data.endswith(b"~>"):
            data = base64.a85decode(data, adobe=True)
        try:
            texts.append(zlib.decompress(data).decode("latin-1"))
        except zlib.error:
            texts.append(data.decode("latin-1"))
    return "".join(texts)


def test_details_come_from_the_dicom_header(tmp_path: Path) -> None:
    folder = tmp_path / "series"
    write_dicom_series(synthetic_volume(), folder, extra_tags=TAGS)
    assert patient_details(folder) == SHOWN
    assert patient_details(write_volume(synthetic_volume(), tmp_path / "x.nii.gz")) == {}
    assert patient_details(None) == {} and patient_details(tmp_path / "missing") == {}


def test_the_pdf_shows_them(client: TestClient, data_dir: Path) -> None:
    client.get("/api/studies")
    write_dicom_series(synthetic_volume(), data_dir / "case_b" / "image", extra_tags=TAGS)
    assert client.post("/api/studies/rescan").json() == {"added": 1}
    client.get("/api/studies/2")
    response = client.get("/api/studies/2/report.pdf")
    assert response.status_code == 200, response.text
    text = pdf_text(response.content)
    for label, value in SHOWN.items():
        assert all(word in text for word in label.split()) and value in text, (
            label,
            value,
        )  # labels may wrap
