"""A seeded generator of damaged DICOM series, and a runner that reads each one in a worker process.

Used by ``test_dicom_fuzz.py`` (a CI subset and the full set) and by
``benchmarks/fuzz_dicom_reader.py``. Every case is a copy of one of three
phantom series (uncompressed signed 16-bit, implicit VR unsigned 12-bit, RLE)
with one kind of damage, and knows which files it damaged, so that a check
can ask that an error names one of them.

Byte flips are made only in the header (before the pixel data): DICOM has no
checksum, so a flipped bit inside uncompressed pixel values is a different
but valid image that no reader can tell from the original.
"""

from __future__ import annotations

import json
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

#: Seconds a worker may take for one case before it counts as a hang.
CASE_TIMEOUT_S = 10.0

KINDS = (
    "flip_header_bytes",
    "truncate",
    "zero_file",
    "random_file",
    "delete_tag",
    "inconsistent_tag",
    "wrong_transfer_syntax",
    "duplicate",
    "absurd_length",
    "non_dicom_file",
    "symlink",
    "other_series_uid",
    "remove_first_slice",
)

_DELETABLE = (
    "RescaleSlope",
    "RescaleIntercept",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "PixelSpacing",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "SeriesInstanceUID",
    "Modality",
    "InstanceNumber",
    "PixelData",
    "HighBit",
    "SOPClassUID",
    "KVP",
    "SliceThickness",
    "SamplesPerPixel",
)
_BAD_VALUES: tuple[tuple[str, Any], ...] = (
    ("RescaleSlope", "0"),
    ("RescaleSlope", "NaN"),
    ("RescaleSlope", "inf"),
    ("RescaleSlope", "2"),
    ("RescaleSlope", "-1"),
    ("RescaleIntercept", "NaN"),
    ("RescaleIntercept", "-1000"),
    ("RescaleIntercept", "abc"),
    ("Rows", 16),
    ("Columns", 0),
    ("PixelSpacing", ["0", "0.4"]),
    ("PixelSpacing", ["-1", "1"]),
    ("PixelSpacing", ["0.5", "0.5"]),
    ("ImagePositionPatient", "shift"),
    ("ImagePositionPatient", ["NaN", "0", "0"]),
    ("ImageOrientationPatient", ["1", "0", "0", "0", "0.9", "0.43"]),
    ("ImageOrientationPatient", ["0", "0", "0", "0", "0", "0"]),
    ("BitsAllocated", 8),
    ("BitsAllocated", 12),
    ("BitsStored", 17),
    ("PixelRepresentation", 2),
    ("PixelRepresentation", "flip"),
    ("HighBit", 3),
    ("Modality", "MR"),
    ("NumberOfFrames", 3),
    ("SamplesPerPixel", 3),
    ("KVP", "80"),
    ("ImagesInAcquisition", "more"),
    ("SliceThickness", "NaN"),
)
_SYNTAXES = (
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.3.4.5",
)
#: The three phantom series every case starts from: (name, write_dicom_series keyword arguments).
BASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("explicit", {}),
    ("implicit12", {"transfer_syntax": "implicit VR little endian", "signed": False, "bits_stored": 12}),
    ("rle", {"transfer_syntax": "RLE", "shuffle_names": True}),
)


@dataclass
class Case:
    """One damaged series: where it is, how it was damaged, which files an error may name."""

    index: int
    base: str
    kind: str
    detail: str
    folder: str
    damaged: list[str] = field(default_factory=list)


def write_bases(root: Path) -> dict[str, Path]:
    """Write the three undamaged phantom series (12 slices of 64 x 64, calcium in view) under ``root``."""
    from cacscore.io import write_dicom_series
    from cacscore.phantom import PhantomConfig, generate_case

    config = PhantomConfig(matrix=64, n_slices=(12, 12), pixel_spacing_mm=(0.6, 0.7))
    folders = {}
    for seed, (name, options) in enumerate(BASES):
        case = generate_case(11 + seed, config=config, target_category="C")
        hu = np.clip(case.volume.hu, -1024, 3071) if name == "implicit12" else case.volume.hu
        volume = case.volume.with_hu(hu.astype(np.int16))
        folder = root / name
        write_dicom_series(volume, folder, uid_seed=f"fuzz-{name}", **options)
        folders[name] = folder
    return folders


def _slice_order(folder: Path) -> list[Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = [
            (float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]), p)
            for p in sorted(folder.glob("*.dcm"))
        ]
    return [p for _, p in sorted(files)]


def _pixel_tag_offset(data: bytes) -> int:
    offset = data.rfind(b"\xe0\x7f\x10\x00")
    return offset if offset > 0 else len(data)


def edit_tag(path: Path, keyword: str, value: Any) -> None:
    """Set or delete (``value`` None) one attribute, writing even values pydicom calls invalid."""
    from pydicom import config
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = config.settings.writing_validation_mode
        config.settings.writing_validation_mode = config.IGNORE
        placeholder = text = None
        try:
            ds = pydicom.dcmread(path)
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                tag = tag_for_keyword(keyword)
                assert tag is not None, keyword
                # pydicom will not hold a DS that is not a number: write a placeholder and swap the bytes.
                text = value if isinstance(value, str) and dictionary_VR(tag) == "DS" else None
                placeholder = "7777.77" if text is not None and not _is_float(text) else None
                ds[tag] = DataElement(tag, dictionary_VR(tag), placeholder or value)
            ds.save_as(path)
            if placeholder is not None and text is not None:
                path.write_bytes(
                    path.read_bytes().replace(placeholder.encode(), text.encode().ljust(7)[:7], 1)
                )
        finally:
            config.settings.writing_validation_mode = old


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def set_transfer_syntax(path: Path, uid: str) -> None:
    """Rewrite the file meta with another transfer syntax, leaving the data set bytes as they are."""
    data = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    meta = ds.file_meta
    body = data[132 + 12 + int(meta.FileMetaInformationGroupLength) :]
    meta.TransferSyntaxUID = uid
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta, enforce_standard=True)
    path.write_bytes(data[:128] + b"DICM" + buffer.getvalue() + body)


def make_case(index: int, seed: int, bases: dict[str, Path], root: Path, kind: str | None = None) -> Case:
    """Copy one base series to ``root/case_<index>`` and damage it; same seed and index, same case."""
    rng = random.Random(f"{seed}-{index}")
    base = list(bases)[index % len(bases)]
    kind = kind or KINDS[rng.randrange(len(KINDS))]
    folder = root / f"case_{index:03d}_{base}_{kind}"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(bases[base], folder)
    files = _slice_order(folder)
    position = rng.choice(["first", "last", "middle"])
    target = {"first": files[0], "last": files[-1], "middle": files[len(files) // 2]}[position]
    damaged = [target.name]
    detail = position
    data = target.read_bytes()
    if kind == "flip_header_bytes":
        end = _pixel_tag_offset(data)
        flips = rng.randint(1, 4)
        array = bytearray(data)
        where = [rng.randrange(132, end) for _ in range(flips)]
        for offset in where:
            array[offset] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(array))
        detail += f" bytes {where}"
    elif kind == "truncate":
        cut = rng.choice([0, rng.randrange(1, 132), rng.randrange(132, len(data)), len(data) - 1])
        target.write_bytes(data[:cut])
        detail += f" at {cut} of {len(data)}"
    elif kind == "zero_file":
        target.write_bytes(bytes(len(data)))
    elif kind == "random_file":
        target.write_bytes(rng.randbytes(len(data)))
    elif kind == "delete_tag":
        keyword = rng.choice(_DELETABLE)
        edit_tag(target, keyword, None)
        detail += f" {keyword}"
    elif kind == "inconsistent_tag":
        keyword, value = rng.choice(_BAD_VALUES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(target, stop_before_pixels=True)
        if value == "shift":
            value = [str(float(v) + (0.5 if i == 2 else 0.0)) for i, v in enumerate(ds.ImagePositionPatient)]
        elif value == "flip":
            value = 1 - int(ds.PixelRepresentation)
        elif value == "more":
            value = str(len(files) + 1)
        edit_tag(target, keyword, value)
        detail += f" {keyword}={value}"
    elif kind == "wrong_transfer_syntax":
        uid = rng.choice(_SYNTAXES)
        set_transfer_syntax(target, uid)
        detail += f" {uid}"
    elif kind == "duplicate":
        copy = rng.choice([folder / "IM09999.dcm", folder / "copy" / target.name, folder / "copy of slice"])
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(target, copy)
        damaged.append(copy.name)
        detail += f" as {copy.relative_to(folder)}"
    elif kind == "absurd_length":
        what = rng.choice(["pixel_data", "meta_group", "patient_name"])
        array = bytearray(data)
        if what == "pixel_data":
            offset = _pixel_tag_offset(data)
            explicit = array[offset + 4 : offset + 6] in (b"OW", b"OB")
            at = offset + (8 if explicit else 4)
            if array[at : at + 4] != b"\xff\xff\xff\xff":  # leave encapsulated (undefined-length) data alone
                array[at : at + 4] = struct.pack("<I", 0xFFFFFFF0)
        elif what == "meta_group":
            array[140:144] = struct.pack("<I", rng.choice([0x7FFFFFF0, 0, 7]))
        else:
            offset = data.find(b"\x10\x00\x10\x00", 132 + 12 + struct.unpack("<I", data[140:144])[0])
            if offset > 0:
                explicit = array[offset + 4 : offset + 6] == b"PN"
                if explicit:
                    array[offset + 6 : offset + 8] = struct.pack("<H", 0xFFF0)
                else:
                    array[offset + 4 : offset + 8] = struct.pack("<I", 0x7FFFFFF0)
        target.write_bytes(bytes(array))
        detail += f" {what}"
    elif kind == "non_dicom_file":
        what = rng.choice(["readme", "png", "dicm_junk", "empty_like_slice", "random_like_slice", "dicomdir"])
        name = {
            "readme": "README.txt",
            "png": "preview.png",
            "dicm_junk": "extra.dcm",
            "empty_like_slice": "IM00099.dcm",
            "random_like_slice": "IM00100.dcm",
            "dicomdir": "DICOMDIR",
        }[what]
        content = {
            "readme": b"exported by a PACS\n",
            "png": b"\x89PNG\r\n\x1a\n" + rng.randbytes(300),
            "dicm_junk": bytes(128) + b"DICM" + rng.randbytes(200),
            "empty_like_slice": b"",
            "random_like_slice": rng.randbytes(len(data)),
            "dicomdir": bytes(128) + b"DICM" + b"junk",
        }[what]
        (folder / name).write_bytes(content)
        damaged = [name]
        detail = what
    elif kind == "symlink":
        what = rng.choice(["folder_loop", "file_loop", "broken", "file_loop_like_slice"])
        if what == "folder_loop":
            os.symlink(".", folder / "loop")
        elif what == "file_loop":
            os.symlink("loop_b", folder / "loop_a")
            os.symlink("loop_a", folder / "loop_b")
        elif what == "broken":
            os.symlink("nowhere.dcm", folder / "broken_link")
        else:
            os.symlink("IM00201.dcm", folder / "IM00200.dcm")
            os.symlink("IM00200.dcm", folder / "IM00201.dcm")
        damaged = ["loop", "loop_a", "loop_b", "broken_link", "IM00200.dcm", "IM00201.dcm"]
        detail = what
    elif kind == "other_series_uid":
        edit_tag(target, "SeriesInstanceUID", pydicom.uid.generate_uid(entropy_srcs=[str(seed), str(index)]))
    elif kind == "remove_first_slice":
        target = files[0]
        target.unlink()
        damaged = [target.name]
        detail = "first"
    return Case(index=index, base=base, kind=kind, detail=detail, folder=str(folder), damaged=damaged)


def make_cases(n: int, seed: int, bases: dict[str, Path], root: Path) -> list[Case]:
    """``n`` cases: every kind on every base first (in turn), then kinds drawn at random."""
    cases = []
    for index in range(n):
        kind = KINDS[index % len(KINDS)] if index < 3 * len(KINDS) else None
        cases.append(make_case(index, seed, bases, root, kind=kind))
    return cases


_WORKER = r"""
import hashlib, json, sys, time, traceback, warnings
from cacscore.errors import CacScoreError, CacScoreWarning
from cacscore.io import read_volume
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    folder, skip = json.loads(line)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            volume = read_volume(folder, skip_unreadable=skip)
            result = {"status": "volume", "sha": hashlib.sha256(volume.hu.tobytes()).hexdigest(),
                      "shape": list(volume.shape), "spacing": list(volume.spacing),
                      "origin": list(volume.origin), "warnings": list(volume.warnings)}
        except CacScoreError as exc:
            result = {"status": "error", "message": str(exc)}
        except BaseException:
            result = {"status": "traceback", "message": traceback.format_exc()}
    result["library_warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught
                                  if not issubclass(w.category, CacScoreWarning)]
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result), flush=True)
"""


class Reader:
    """A worker process that reads folders one at a time; a read that takes too long kills it (a hang)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._line(process, 120.0)
        return process

    @staticmethod
    def _line(process: subprocess.Popen[bytes], timeout_s: float) -> dict[str, Any] | None:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout_s)
        if not ready:
            return None
        line = process.stdout.readline()
        return json.loads(line) if line else {"status": "traceback", "message": "worker died"}

    def read(self, folder: str, *, skip_unreadable: bool) -> dict[str, Any]:
        """The worker's result for one folder, or ``{"status": "hang"}`` after :data:`CASE_TIMEOUT_S`."""
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        assert self.process.stdin is not None
        start = time.perf_counter()
        self.process.stdin.write((json.dumps([folder, skip_unreadable]) + "\n").encode())
        self.process.stdin.flush()
        result = self._line(self.process, CASE_TIMEOUT_S)
        if result is None:
            self.close()
            return {"status": "hang", "seconds": time.perf_counter() - start}
        if result.get("message") == "worker died":
            self.close()
        return result

    def close(self) -> None:
        """Stop the worker."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
            self.process = None


def judge(case: Case, result: dict[str, Any], reference: dict[str, Any]) -> str | None:
    """Why the result breaks the reader's promise (None when it keeps it).

    The promise: within :data:`CASE_TIMEOUT_S`, no traceback, no library
    warning passed on raw, and either a one-line error naming a damaged file,
    or the undamaged volume, or a volume with a warning.
    """
    status = result["status"]
    if status == "hang":
        return f"no answer within {CASE_TIMEOUT_S:g} s"
    if status == "traceback":
        return "traceback: " + result["message"].strip().splitlines()[-1]
    if result.get("seconds", 0.0) > CASE_TIMEOUT_S:
        return f"took {result['seconds']:.1f} s"
    if result.get("library_warnings"):
        return f"library warning passed on: {result['library_warnings'][0]}"
    if status == "error":
        message = result["message"]
        if "\n" in message:
            return f"error on several lines: {message!r}"
        if not any(name in message for name in case.damaged):
            return f"error does not name {case.damaged}: {message}"
        return None
    same = all(result[key] == reference[key] for key in ("sha", "shape", "spacing", "origin"))
    if not same and not result["warnings"]:
        return "volume differs from the undamaged series without a warning"
    return None


def run_cases(cases: list[Case], bases: dict[str, Path]) -> list[dict[str, Any]]:
    """Read every case (default and with skip_unreadable) and judge it; one record per read."""
    reader = Reader()
    try:
        references = {name: reader.read(str(folder), skip_unreadable=False) for name, folder in bases.items()}
        for name, reference in references.items():
            if reference["status"] != "volume" or reference["warnings"] or reference["library_warnings"]:
                raise RuntimeError(f"undamaged base series {name} does not read cleanly: {reference}")
        records = []
        for case in cases:
            for skip in (False, True):
                result = reader.read(case.folder, skip_unreadable=skip)
                records.append(
                    {
                        **asdict(case),
                        "skip_unreadable": skip,
                        "result": result,
                        "failure": judge(case, result, references[case.base]),
                    }
                )
        return records
    finally:
        reader.close()
