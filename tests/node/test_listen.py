"""``cacscore listen`` and ``cacscore pacs pull`` with real peers started here: dcmtk's storescu/echoscu
send, Orthanc (with its DICOMweb plugin) receives and serves.

dcmtk (``storescu``, ``echoscu``) and Orthanc are Debian packages (``.ci/run`` installs them); each
test that needs one is skipped with the reason when it is absent. Orthanc runs from a temporary
configuration on free loopback ports, never as the system service.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.errors import InvalidInputError
from cacscore.io import read_volume, write_enhanced_ct
from cacscore.node.worker import CRASH_HOOK, Destination

LISTENER_AET = "CACNODE"
SENDER_AET = "CTSCANNER"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
#: Orthanc's DICOMweb plugin (Debian package orthanc-dicomweb).
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed (Debian package {package}; .ci/run installs it)")
    return path


@functools.cache
def _dcmtk(tool: str) -> str | None:
    """dcmtk's ``tool`` on PATH: pynetdicom installs its own storescu/echoscu into the virtualenv's bin."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            version = subprocess.run(
                [str(candidate), "--version"], capture_output=True, text=True, timeout=10
            )
            if "dcmtk" in version.stdout.lower():
                return str(candidate)
    return None


def _need_dcmtk(tool: str) -> str:
    path = _dcmtk(tool)
    if path is None:
        pytest.skip(f"dcmtk's {tool} not installed (Debian package dcmtk; .ci/run installs it)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small phantom CT series with calcium (case 2 of a balanced cohort: category C), classic DICOM."""
    root = tmp_path_factory.mktemp("phantom")
    result = CliRunner().invoke(
        app, ["phantom", "--n", "3", "--balance", "--matrix", "96", "--out", str(root)]
    )
    assert result.exit_code == 0, result.output
    return root / "case_0002" / "image"


class Listener:
    """``cacscore listen`` as a child process (so that it can be SIGKILLed)."""

    def __init__(self, out: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> None:
        self.out, self.port = out, port
        self.log = out.parent / f"{out.name}-listen.log"
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from cacscore.cli.main import main; main()",
                    "listen",
                    "--ae-title",
                    LISTENER_AET,
                    "--port",
                    str(port),
                    "--host",
                    "127.0.0.1",
                    "--out",
                    str(out),
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        deadline = time.monotonic() + 30
        while echo(port, LISTENER_AET).returncode != 0:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "listener did not answer C-ECHO within 30 s"
            time.sleep(0.2)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_done(self, series_uid: str, timeout_s: float = 50.0) -> dict:
        marker = self.out / "results" / series_uid / "done"
        deadline = time.monotonic() + timeout_s
        while not marker.is_file():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"series not done in {timeout_s} s:\n{self.log.read_text()}"
            time.sleep(0.3)
        return json.loads(marker.read_text())


def echo(port: int, called: str, calling: str = SENDER_AET) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_need_dcmtk("echoscu"), "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def store(port: int, files: list[Path], calling: str = SENDER_AET) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            _need_dcmtk("storescu"),
            "-aet",
            calling,
            "-aec",
            LISTENER_AET,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _series_uid(folder: Path) -> tuple[str, str]:
    header = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    return str(header.StudyInstanceUID), str(header.SeriesInstanceUID)


@pytest.fixture
def listener_out(tmp_path: Path) -> Path:
    _need_dcmtk("storescu")
    return tmp_path / "node"


def test_echo_answered_unknown_aet_and_non_ct_refused_enhanced_ct_queued(
    listener_out: Path, series: Path, tmp_path: Path
) -> None:
    node = Listener(listener_out, _free_port(), "--allow-aet", SENDER_AET)
    try:
        assert echo(node.port, LISTENER_AET).returncode == 0
        refused = echo(node.port, LISTENER_AET, calling="STRANGER")
        assert refused.returncode != 0
        assert "reject" in (refused.stdout + refused.stderr).lower()
        # The same image declared as MR: not among the node's presentation contexts, never stored.
        mr = pydicom.dcmread(next(series.glob("*.dcm")))
        mr.SOPClassUID = mr.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID(MR_IMAGE_STORAGE)
        mr.Modality = "MR"
        mr.save_as(tmp_path / "mr.dcm")
        sent = store(node.port, [tmp_path / "mr.dcm"])
        assert sent.returncode != 0
        assert "presentation context" in (sent.stdout + sent.stderr).lower()
        assert not list((listener_out / "incoming").rglob("*.dcm"))
        # An Enhanced CT instance (one multi-frame file) is accepted and queued under its UIDs.
        enhanced = write_enhanced_ct(read_volume(series), tmp_path / "ect" / "ct.dcm")
        header = pydicom.dcmread(enhanced, stop_before_pixels=True)
        sent = store(node.port, [enhanced])
        assert sent.returncode == 0, sent.stdout + sent.stderr
        queued = (
            listener_out
            / "incoming"
            / header.StudyInstanceUID
            / header.SeriesInstanceUID
            / f"{header.SOPInstanceUID}.dcm"
        )
        assert pydicom.dcmread(queued).NumberOfFrames == header.NumberOfFrames
    finally:
        node.stop()


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """Orthanc on free loopback ports from a temporary configuration: yields (DICOM port, HTTP port)."""
    binary = _need("Orthanc", "orthanc")
    dicom_port, http_port = _free_port(), _free_port()
    storage = tmp_path / "orthanc-db"
    config = tmp_path / "orthanc.json"
    config.write_text(
        json.dumps(
            {
                "Name": "cacscore-test",
                "StorageDirectory": str(storage),
                "IndexDirectory": str(storage),
                "DicomAet": "ORTHANC",
                "DicomPort": dicom_port,
                "HttpPort": http_port,
                "RemoteAccessAllowed": False,
                "AuthenticationEnabled": False,
                "DicomCheckCalledAet": True,
                "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.is_file() else [],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            }
        )
    )
    log = open(tmp_path / "orthanc.log", "wb")  # noqa: SIM115 - closed after the process ends
    process = subprocess.Popen([binary, str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(http_port, "/system")
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "orthanc.log").read_text()
                assert time.monotonic() < deadline, "Orthanc did not answer within 30 s"
                time.sleep(0.2)
        yield dicom_port, http_port
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _get(http_port: int, path: str, body: bytes | None = None, accept: str = "application/json") -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}{path}", data=body, headers={"Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_storescu_to_listener_scored_and_forwarded_to_orthanc(
    listener_out: Path,
    series: Path,
    orthanc: tuple[int, int],
) -> None:
    dicom_port, http_port = orthanc
    study_uid, series_uid = _series_uid(series)
    node = Listener(
        listener_out, _free_port(), "--quiet-seconds", "1", "--forward", f"127.0.0.1:{dicom_port}:ORTHANC"
    )
    try:
        files = sorted(series.glob("*.dcm"))
        sent = store(node.port, files)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        status = node.wait_done(series_uid)
        # An instance arriving after the series was scored is acknowledged and kept, and the log says so.
        late = store(node.port, files[:1])
        assert late.returncode == 0, late.stdout + late.stderr
    finally:
        node.stop()
    assert "arrived after series" in node.log.read_text()
    assert status["state"] == "scored", status
    assert status["n_instances"] == len(files)
    assert status["forwarded"] == f"ORTHANC@127.0.0.1:{dicom_port}", status
    results = listener_out / "results" / series_uid
    report = json.loads((results / "score.json").read_text())
    assert report["agatston"] > 0  # the phantom holds calcium, so a SEG is written and sent
    assert sorted(status["files"]) == ["report_pdf.dcm", "seg.dcm", "sr.dcm"]
    # Orthanc holds the study with the three result series (and not the CT, which was never sent there).
    found = _get(http_port, "/tools/lookup", study_uid.encode())
    studies = [item["ID"] for item in found if item["Type"] == "Study"]
    assert len(studies) == 1
    in_orthanc = _get(http_port, f"/studies/{studies[0]}/series")
    modalities = sorted(s["MainDicomTags"]["Modality"] for s in in_orthanc)
    assert modalities == ["DOC", "SEG", "SR"]
    sop_uids = {
        pydicom.dcmread(results / name, stop_before_pixels=True).SOPInstanceUID for name in status["files"]
    }
    instances = _get(http_port, "/instances?expand")
    assert {i["MainDicomTags"]["SOPInstanceUID"] for i in instances} == sop_uids
    if DICOMWEB_PLUGIN.is_file():
        # The same three, found by a DICOMweb client (QIDO-RS).
        qido = _get(http_port, f"/dicom-web/studies/{study_uid}/series", accept="application/dicom+json")
        assert sorted(item["00080060"]["Value"][0] for item in qido) == ["DOC", "SEG", "SR"]


def test_sigkill_mid_series_then_restart_scores_it_exactly_once(listener_out: Path, series: Path) -> None:
    study_uid, series_uid = _series_uid(series)
    files = sorted(series.glob("*.dcm"))
    half = len(files) // 2
    port = _free_port()
    incoming = listener_out / "incoming" / study_uid / series_uid
    done = listener_out / "results" / series_uid / "done"
    # First start: half the series arrives, then SIGKILL (the quiet period has not passed).
    node = Listener(listener_out, port, "--quiet-seconds", "30")
    sent = store(port, files[:half])
    assert sent.returncode == 0, sent.stdout + sent.stderr
    node.kill()
    assert len(list(incoming.glob("*.dcm"))) == half  # everything acknowledged is on disk
    assert not done.exists()
    # Second start: the incomplete series waits for its quiet period; the rest arrives; SIGKILL again.
    node = Listener(listener_out, port, "--quiet-seconds", "30")
    sent = store(port, files[half:])
    assert sent.returncode == 0, sent.stdout + sent.stderr
    node.kill()
    assert len(list(incoming.glob("*.dcm"))) == len(files)
    assert not done.exists()
    # Third start: the complete pending series is scored.
    node = Listener(listener_out, port, "--quiet-seconds", "1")
    try:
        status = node.wait_done(series_uid)
        time.sleep(2)  # further polls must not score it again
    finally:
        node.stop()
    assert status["state"] == "scored", status
    assert status["n_instances"] == len(files)
    assert (listener_out / "results" / series_uid / "sr.dcm").is_file()
    # Fourth start: nothing left to do. The log holds every start's lines.
    node = Listener(listener_out, port, "--quiet-seconds", "0")
    try:
        time.sleep(2)
    finally:
        node.stop()
    log = node.log.read_text()
    assert log.count(f"scoring series {series_uid}") == 1, log


def test_sigkill_mid_forward_then_restart_leaves_one_copy_of_each_result_in_orthanc(
    listener_out: Path, series: Path, orthanc: tuple[int, int]
) -> None:
    """Killed right after Orthanc confirmed the second file (SR), before the node recorded it.

    The restart sends the SR again and the PDF, the very files (same SOP Instance UIDs), without scoring
    again; the SEG, recorded as confirmed, is not sent again. Orthanc ends with one instance of each.
    The kill comes from the node's own test hook, at that exact point, not from a timed signal.
    """
    dicom_port, http_port = orthanc
    study_uid, series_uid = _series_uid(series)
    files = sorted(series.glob("*.dcm"))
    port = _free_port()
    options = ("--quiet-seconds", "1", "--forward", f"127.0.0.1:{dicom_port}:ORTHANC")
    target = f"ORTHANC@127.0.0.1:{dicom_port}"
    results = listener_out / "results" / series_uid
    node = Listener(listener_out, port, *options, env={CRASH_HOOK: "2"})
    sent = store(port, files)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert node.process.wait(120) == -signal.SIGKILL, node.log.read_text()
    assert (results / "scored.json").is_file() and not (results / "done").exists()
    state = json.loads((results / "forward.json").read_text())[target]
    assert sorted(state["files"]) == ["seg.dcm"] and state["state"] == "pending", state
    uids = {name: str(pydicom.dcmread(results / name).SOPInstanceUID) for name in ("seg.dcm", "sr.dcm")}
    in_orthanc = {i["MainDicomTags"]["SOPInstanceUID"] for i in _get(http_port, "/instances?expand")}
    assert in_orthanc == set(uids.values())  # the SR reached Orthanc before the kill
    # Restart without the hook: the forward is finished, nothing is scored again.
    node = Listener(listener_out, port, *options)
    try:
        status = node.wait_done(series_uid)
    finally:
        node.stop()
    log = node.log.read_text()
    assert log.count(f"scoring series {series_uid}") == 1, log
    assert log.count(": seg.dcm confirmed by") == 1 and log.count(": sr.dcm confirmed by") == 1, log
    assert status["state"] == "scored" and status["forwarded"] == target, status
    forward = status["forward"]
    assert forward["state"] == "complete" and forward["attempts"] == 2, forward
    sop_uids = {
        name: str(pydicom.dcmread(results / name, stop_before_pixels=True).SOPInstanceUID)
        for name in status["files"]
    }
    assert {name: item["sop_instance_uid"] for name, item in forward["files"].items()} == sop_uids
    assert {name: sop_uids[name] for name in uids} == uids  # the same files, not a new scoring
    instances = _get(http_port, "/instances?expand")
    assert sorted(i["MainDicomTags"]["SOPInstanceUID"] for i in instances) == sorted(sop_uids.values())
    found = _get(http_port, "/tools/lookup", study_uid.encode())
    (study,) = [item["ID"] for item in found if item["Type"] == "Study"]
    in_study = _get(http_port, f"/studies/{study}/series")
    assert sorted(s["MainDicomTags"]["Modality"] for s in in_study) == ["DOC", "SEG", "SR"]
    assert all(len(s["Instances"]) == 1 for s in in_study)


def test_destination_parses_host_port_aet() -> None:
    assert Destination.parse("pacs.local:4242:ORTHANC") == Destination("pacs.local", 4242, "ORTHANC")
    for text in ("pacs:4242", "pacs:x:AET", "pacs:70000:AET", ":4242:AET", "pacs:4242:" + "A" * 17):
        with pytest.raises(InvalidInputError, match="HOST:PORT:AET"):
            Destination.parse(text)


def test_pacs_pull_scores_a_study_from_orthanc_and_stows_the_results(
    series: Path,
    orthanc: tuple[int, int],
    tmp_path: Path,
) -> None:
    if not DICOMWEB_PLUGIN.is_file():
        pytest.skip(
            f"Orthanc's DICOMweb plugin not installed ({DICOMWEB_PLUGIN}; Debian package orthanc-dicomweb)"
        )
    _, http_port = orthanc
    study_uid, series_uid = _series_uid(series)
    files = sorted(series.glob("*.dcm"))
    for path in files:  # the CT goes into Orthanc through its REST API, as a PACS would hold it
        _get(http_port, "/instances", body=path.read_bytes())
    url = f"http://127.0.0.1:{http_port}/dicom-web"
    command = [
        sys.executable,
        "-c",
        "from cacscore.cli.main import main; main()",
        "pacs",
        "pull",
        "--url",
        url,
        "--study",
        study_uid,
        "--out",
        str(tmp_path / "pulled"),
        "--store",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"series {series_uid}: Agatston" in first.stdout
    status = json.loads((tmp_path / "pulled" / "results" / series_uid / "done").read_text())
    assert status["state"] == "scored" and status["n_instances"] == len(files)
    assert status["forwarded"] == url
    report = json.loads((tmp_path / "pulled" / "results" / series_uid / "score.json").read_text())
    assert report["agatston"] == pytest.approx(status["agatston"])
    qido = _get(http_port, f"/dicom-web/studies/{study_uid}/series", accept="application/dicom+json")
    assert sorted(item["00080060"]["Value"][0] for item in qido) == ["CT", "DOC", "SEG", "SR"]
    # Pulled again: the CT series is done, nothing is scored or stored twice (SEG, SR, DOC are not CT).
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already scored" in again.stdout
    qido = _get(http_port, f"/dicom-web/studies/{study_uid}/series", accept="application/dicom+json")
    assert len(qido) == 4


def test_pacs_pull_names_a_missing_study(orthanc: tuple[int, int], tmp_path: Path) -> None:
    if not DICOMWEB_PLUGIN.is_file():
        pytest.skip(
            f"Orthanc's DICOMweb plugin not installed ({DICOMWEB_PLUGIN}; Debian package orthanc-dicomweb)"
        )
    url = f"http://127.0.0.1:{orthanc[1]}/dicom-web"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cacscore.cli.main import main; main()",
            "pacs",
            "pull",
            "--url",
            url,
            "--study",
            "1.2.3.4",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert "1.2.3.4" in result.stderr and url in result.stderr
    assert "Traceback" not in result.stderr
