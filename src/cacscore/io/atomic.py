"""Atomic file writing: a file on disk is either the old one or the complete new one, never half of it.

Every writer of the package that must not leave a truncated file (plans, weights, checkpoints, caches,
reports, key images, cohort manifests) goes through this module. The recipe is the same for all:

1. the new content goes to a temporary file in the *same folder* as the target (same filesystem, so the
   rename below is atomic), named ``.<name>.<random>.tmp`` (hidden, and two writers never share one);
2. the temporary file is flushed and ``fsync``-ed: without it, a power loss or kernel crash after the
   rename can leave the *new* name pointing at an empty or partly written file (the rename may reach
   the disk before the data does);
3. ``os.replace`` renames it over the target (atomic on POSIX and Windows);
4. the folder is ``fsync``-ed (POSIX only), so that the rename itself survives a crash;
5. on any exception the temporary file is removed and the target is left as it was.

File mode: the temporary file is created with mode ``0o666`` minus the process umask, as ``open(path,
"w")`` would create a new file (``0o644`` under the usual umask ``022``), not the private ``0o600`` of
:func:`tempfile.mkstemp`: model folders, reports and images are meant to be read by others, and a
restrictive umask still makes them private. The mode of an existing target is not carried over.

Functions
---------
write_bytes_atomic, write_text_atomic, write_json_atomic
    Write content that is at hand.
atomic_open
    A file object for writers that stream (``csv.writer``, ``numpy.savez``).
atomic_path
    A temporary path for writers that want a file name (``torch.save``, ``safetensors``).
atomic_folder
    A temporary folder whose files all appear at once under the final name.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_folder",
    "atomic_open",
    "atomic_path",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

#: A name longer than this is cut in the temporary name (NAME_MAX is 255 bytes on common filesystems).
_MAX_NAME_CHARS = 120
_OPEN_MODES = {"w", "wt", "wb"}
_FIRST = "the folder exists (another writer was first)"


def _temporary_name(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden sibling of ``path``: ``.<name>.<16 random hex digits><suffix>``."""
    return path.with_name(f".{path.name[:_MAX_NAME_CHARS]}.{secrets.token_hex(8)}{suffix}")


def _create_temporary(path: Path) -> tuple[int, Path]:
    """Create a new empty temporary file beside ``path``; return its descriptor (write-only) and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = _temporary_name(path)
        try:
            # O_EXCL: never open a file another writer created; 0o666: the umask applies, as for open().
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 64 random bits colliding
            continue


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fsync_file(path: Path) -> None:
    # Read-write: Windows refuses to flush a descriptor opened read-only.
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries to disk so that a rename in it survives a crash (POSIX only)."""
    directory = getattr(os, "O_DIRECTORY", None)
    if directory is None:  # Windows cannot open a folder this way; NTFS journals the rename itself
        return
    fd = os.open(folder, os.O_RDONLY | directory)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems (certain network and FUSE mounts) do not flush folders; the file is in place.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", *, encoding: str = "utf-8", newline: str | None = None
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the ``with`` block ends without error.

    Parameters
    ----------
    path : str or path-like
        The file to write. Its folder must exist.
    mode : {"wb", "w", "wt"}
        Binary (default) or text.
    encoding : str
        Text mode only (default UTF-8, whatever the locale).
    newline : str, optional
        Text mode only, as for :func:`open` (``""`` for :mod:`csv` writers).

    Yields
    ------
    file object
        Write to it; do not close it. On an exception in the block the temporary file is removed and
        ``path`` is left as it was.

    Raises
    ------
    ValueError
        If ``mode`` is not a write mode listed above, or ``newline`` is given in binary mode.
    FileNotFoundError
        If the folder of ``path`` does not exist.

    Examples
    --------
    >>> import csv, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "cases.csv"
    ...     with atomic_open(path, "w", newline="") as fh:
    ...         _ = csv.writer(fh, lineterminator="\\n").writerow(["case_id", "agatston"])
    ...     print(repr(path.read_text()), sorted(p.name for p in path.parent.iterdir()))
    'case_id,agatston\\n' ['cases.csv']
    """
    if mode not in _OPEN_MODES:
        raise ValueError(f"atomic_open: mode {mode!r} is not one of {sorted(_OPEN_MODES)}")
    binary = "b" in mode
    if binary and newline is not None:
        raise ValueError("atomic_open: newline is for text mode only")
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        if binary:
            handle: IO[Any] = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding=encoding, newline=newline)
    except BaseException:
        os.close(fd)
        _remove(tmp)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the data on disk before the name points to it
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_folder(path.parent)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name; renamed over ``path`` on success.

    For ``torch.save(obj, tmp)``, ``safetensors.torch.save_file(state, str(tmp))``, ``nibabel.save``,
    ``figure.savefig(tmp, format="png")`` and the like. The temporary file exists (empty) when the block
    starts; the writer may overwrite or replace it. After the block, its mode is set back to the one it
    was created with (some writers, e.g. safetensors, create their files private), it is flushed to
    disk and renamed over ``path``.

    Writers that choose the format from the file name (``numpy.savez`` appends ``.npz``, ``savefig``
    without ``format``) must not be given this ``.tmp`` name: give them a file object from
    :func:`atomic_open` or the format explicitly.

    Parameters
    ----------
    path : str or path-like
        The file to write. Its folder must exist.

    Yields
    ------
    Path
        The temporary file to write. On an exception in the block it is removed and ``path`` is left
        as it was.

    Raises
    ------
    FileNotFoundError
        If the folder of ``path`` does not exist, or the writer removed the temporary file.
    """
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
        try:
            created_mode = stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        yield tmp
        if stat.S_IMODE(os.stat(tmp).st_mode) != created_mode:
            os.chmod(tmp, created_mode)
        _fsync_file(tmp)  # the data on disk before the name points to it
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _fsync_folder(path.parent)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); return ``path``.

    Raises
    ------
    FileNotFoundError
        If the folder of ``path`` does not exist.
    """
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (newlines as given, UTF-8 by default); return ``path``.

    Raises
    ------
    FileNotFoundError
        If the folder of ``path`` does not exist.
    UnicodeEncodeError
        If ``text`` cannot be encoded (``path`` is then left as it was).
    """
    return write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | os.PathLike[str], obj: Any, **json_kwargs: Any) -> Path:
    """Write ``json.dumps(obj, **json_kwargs)`` and a final newline to ``path`` atomically (UTF-8).

    The document is serialised before any file is created, so an object that cannot be serialised
    leaves nothing behind.

    Raises
    ------
    TypeError, ValueError
        If ``obj`` cannot be serialised (``path`` is then left as it was).
    FileNotFoundError
        If the folder of ``path`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = write_json_atomic(Path(folder) / "plan.json", {"version": 6}, indent=1)
    ...     print(repr(path.read_text()))
    '{\\n "version": 6\\n}\\n'
    """
    return write_text_atomic(path, json.dumps(obj, **json_kwargs) + "\n")


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync_file(Path(root) / name)
        _fsync_folder(Path(root))


@contextmanager
def atomic_folder(path: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """A new hidden folder beside ``path`` to fill; it becomes ``path`` when the block ends without error.

    Readers see the old folder or the complete new one, never a folder with some files missing. The
    files written in the block are flushed to disk before the rename.

    Parameters
    ----------
    path : str or path-like
        The folder to write. Its parent must exist.
    replace : bool
        What to do when ``path`` exists at the end: True (default) replaces it (the old folder is
        renamed aside, then removed; between the two renames, a few microseconds, neither exists);
        False keeps it and raises :class:`FileExistsError` (another writer was first).

    Yields
    ------
    Path
        The temporary folder, ``.<name>.<random>.tmp``. On an exception in the block (or when
        ``replace`` is False and ``path`` exists) it is removed with its contents.

    Raises
    ------
    FileExistsError
        If ``replace`` is False and ``path`` exists.
    FileNotFoundError
        If the parent of ``path`` does not exist.
    """
    path = Path(path)
    while True:
        tmp = _temporary_name(path)
        try:
            tmp.mkdir()  # mode 0o777 minus the umask, as any new folder
            break
        except FileExistsError:  # pragma: no cover - 64 random bits colliding
            continue
    old: Path | None = None
    try:
        yield tmp
        _fsync_tree(tmp)
        if not replace and path.exists():
            raise FileExistsError(errno.EEXIST, _FIRST, str(path))  # POSIX renames over an empty folder
        if replace and path.exists():
            old = _temporary_name(path, ".old")
            os.replace(path, old)
        try:
            os.rename(tmp, path)  # fails on an existing non-empty folder (POSIX) or any folder (Windows)
        except OSError as exc:
            if old is not None:
                os.replace(old, path)  # put the old folder back
                old = None
            if path.exists():
                raise FileExistsError(errno.EEXIST, _FIRST, str(path)) from exc
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_folder(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
