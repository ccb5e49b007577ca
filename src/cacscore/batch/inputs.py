"""What a batch scores: DICOM series found in folders, or the rows of a manifest CSV.

Each series is one :class:`BatchItem` with a stable key: the SHA-256 of the
series' files (names and bytes) and the series asked for. The key is what a
rerun compares, so a finished series is skipped even when its folder moved,
and a changed series (a file added or rewritten) is scored again.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cacscore.errors import InvalidInputError
from cacscore.io.image import image_suffix

#: Columns a manifest CSV may have; ``path`` is required.
MANIFEST_COLUMNS = ("path", "series_uid", "case_id")
#: Bytes read at a time while hashing.
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class BatchItem:
    """One series to score.

    Attributes
    ----------
    case_id : str
        Name of its output folder ``OUT/cases/<case_id>`` (unique within a batch).
    path : str
        DICOM folder or file, or NIfTI/MetaImage/NRRD file, as :func:`cacscore.io.read_volume` takes it.
    series_uid : str or None
        The SeriesInstanceUID asked for; None: the series ``cacscore score`` chooses.
    content_hash : str
        SHA-256 (hex) of the series' files; ``"missing"`` when the path does not exist.
    """

    case_id: str
    path: str
    series_uid: str | None
    content_hash: str

    @property
    def key(self) -> str:
        """The identity a rerun compares: content hash and the series asked for (and the path if missing)."""
        where = self.path if self.content_hash == "missing" else ""
        return hashlib.sha256(f"{self.content_hash}|{self.series_uid or ''}|{where}".encode()).hexdigest()


def content_hash(path: Path) -> str:
    """SHA-256 of the files a series is read from.

    A folder: every file below it (relative names and bytes, in sorted order); a
    DICOM file: the files of its folder (``read_volume`` reads its series from
    there); an image file: its bytes. ``"missing"`` when the path does not exist.

    Examples
    --------
    >>> content_hash(Path("/no/such/file.nii.gz"))
    'missing'
    """
    if not path.exists():
        return "missing"
    if path.is_file() and image_suffix(path) is None:
        path = path.parent
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        digest.update(b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK_BYTES):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() in {".dcm", ".dicom", ".ima"}:
        return True
    if path.suffix or path.name.startswith("."):
        return False
    try:
        with path.open("rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def dicom_folders(root: Path) -> list[Path]:
    """Every folder below ``root`` (itself included) that directly holds DICOM files, in sorted order.

    Each is read as ``cacscore score FOLDER`` reads it: the series named, or else
    the most calcium-scoring-like CT series in it.
    """
    found = []
    for folder, _dirs, files in os.walk(root):
        if any(_looks_like_dicom(Path(folder) / name) for name in files):
            found.append(Path(folder))
    return sorted(found)


def _case_id(folder: Path, root: Path) -> str:
    relative = folder.relative_to(root).parts
    return "__".join(relative) if relative else folder.name or "case"


def read_manifest(path: Path) -> list[tuple[Path, str | None, str | None]]:
    """Rows ``(path, series_uid or None, case_id or None)`` of a manifest CSV.

    Relative paths are taken from the manifest's folder.

    Raises
    ------
    InvalidInputError
        If the file has no ``path`` column, an unknown column or an empty path.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "path" not in columns:
            raise InvalidInputError(
                f"{path}: a manifest needs a 'path' column (optional: series_uid, case_id)"
            )
        unknown = sorted(set(columns) - set(MANIFEST_COLUMNS))
        if unknown:
            raise InvalidInputError(
                f"{path}: unknown manifest column(s) {unknown}; known: {list(MANIFEST_COLUMNS)}"
            )
        rows = []
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            if not row.get("path"):
                raise InvalidInputError(f"{path}: line {line}: empty path")
            series = Path(row["path"]).expanduser()
            rows.append(
                (
                    series if series.is_absolute() else path.parent / series,
                    row.get("series_uid") or None,
                    row.get("case_id") or None,
                )
            )
    return rows


def _unique(case_id: str, taken: set[str]) -> str:
    # Keep ids file-name safe and distinct: two inputs may hold folders of the same name.
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in case_id).strip(".") or "case"
    name, n = safe, 2
    while name in taken:
        name, n = f"{safe}-{n}", n + 1
    taken.add(name)
    return name


def _entries(inputs: Iterable[Path]) -> Iterator[tuple[Path, str | None, str]]:
    for source in inputs:
        if source.is_file() and source.suffix.lower() == ".csv":
            for path, series_uid, case_id in read_manifest(source):
                yield (
                    path,
                    series_uid,
                    case_id or (path.name if image_suffix(path) is None else path.name.split(".")[0]),
                )
        elif source.is_dir():
            folders = dicom_folders(source)
            if not folders:
                raise InvalidInputError(f"{source}: no DICOM files found in this folder or below it")
            for folder in folders:
                yield folder, None, _case_id(folder, source)
        elif source.exists():
            yield source, None, source.name.split(".")[0]
        else:
            raise InvalidInputError(f"{source}: no such file or folder")


def collect_items(inputs: Iterable[Path], *, known: Mapping[str, str] | None = None) -> list[BatchItem]:
    """The series to score, in input order, each once (the same files asked twice are one series).

    Parameters
    ----------
    inputs : iterable of Path
        Folders (every folder below holding DICOM files is one series, chosen as
        ``cacscore score`` chooses), manifest CSVs (columns ``path``, optional
        ``series_uid`` and ``case_id``; a missing path becomes a failed row, it
        does not stop the batch) or single volume files.

    Raises
    ------
    InvalidInputError
        If an input argument does not exist, a folder holds no DICOM file, or a manifest is malformed.

    Other Parameters
    ----------------
    known : mapping, optional
        ``{key: case_id}`` of the series already in the results: they keep their case id, and a new
        series never takes one of theirs (its case folder would replace theirs).
    """
    known = known or {}
    items: list[BatchItem] = []
    keys: set[str] = set()
    taken: set[str] = set(known.values())
    for path, series_uid, case_id in _entries(inputs):
        item = BatchItem(case_id, str(path), series_uid, content_hash(path))
        if item.key in keys:
            continue
        keys.add(item.key)
        case = known[item.key] if item.key in known else _unique(case_id, taken)
        items.append(BatchItem(case, item.path, item.series_uid, item.content_hash))
    return items
