"""Atomic file writing: the target is the old file or the complete new one; no temporary file stays."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cacscore.io.atomic import (
    atomic_folder,
    atomic_open,
    atomic_path,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")


class Boom(Exception):
    """Raised by a writer in the middle of its work."""


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_bytes_text_and_json_round_trip(tmp_path: Path) -> None:
    assert write_bytes_atomic(tmp_path / "a.bin", b"\x00\xff\n") == tmp_path / "a.bin"
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\xff\n"
    write_text_atomic(tmp_path / "a.txt", "Agatston 12.5 \u2265 10\r\nnext\n")
    assert (tmp_path / "a.txt").read_bytes() == "Agatston 12.5 \u2265 10\r\nnext\n".encode()  # as given
    write_json_atomic(tmp_path / "a.json", {"b": [1, 2], "a": None}, indent=1, sort_keys=True)
    assert (tmp_path / "a.json").read_text() == '{\n "a": null,\n "b": [\n  1,\n  2\n ]\n}\n'
    write_json_atomic(tmp_path / "b.json", {"b": 1, "a": 2})
    assert (tmp_path / "b.json").read_text() == '{"b": 1, "a": 2}\n'
    assert names(tmp_path) == ["a.bin", "a.json", "a.txt", "b.json"]  # no temporary file left


def test_an_existing_file_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old, longer than the new content\n")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert names(tmp_path) == ["report.md"]


def test_atomic_open_text_and_binary(tmp_path: Path) -> None:
    with atomic_open(tmp_path / "cases.csv", "w", newline="") as fh:
        fh.write("case_id,agatston\r\n")  # newline="" keeps what csv writes
        assert names(tmp_path) != ["cases.csv"]  # the content is not there yet
    assert (tmp_path / "cases.csv").read_bytes() == b"case_id,agatston\r\n"
    with atomic_open(tmp_path / "x.bin") as fh:
        fh.write(b"\x01\x02")
    assert (tmp_path / "x.bin").read_bytes() == b"\x01\x02"
    assert names(tmp_path) == ["cases.csv", "x.bin"]


def test_temporary_file_is_hidden_beside_the_target(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "checkpoint.pt") as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".checkpoint.pt.") and tmp.name.endswith(".tmp")
        assert tmp.is_file() and tmp.stat().st_size == 0
        tmp.write_bytes(b"weights")
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"weights"
    assert names(tmp_path) == ["checkpoint.pt"]


@pytest.mark.parametrize("existed", [True, False])
def test_a_writer_raising_midway_leaves_the_target_and_no_temporary(tmp_path: Path, existed: bool) -> None:
    target = tmp_path / "cases.csv"
    if existed:
        target.write_text("old\n")
    with pytest.raises(Boom), atomic_open(target, "w") as fh:
        fh.write("half of the new rows\n")
        fh.flush()
        raise Boom
    with pytest.raises(Boom), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise Boom
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomic(target, {"agatston": 1.0, "lesions": object()})
    assert names(tmp_path) == (["cases.csv"] if existed else [])
    if existed:
        assert target.read_text() == "old\n"


def test_text_that_cannot_be_encoded_leaves_the_target(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, "\u2265", encoding="ascii")
    assert target.read_text() == "old"
    assert names(tmp_path) == ["a.txt"]


def test_two_writers_at_once_do_not_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    with atomic_open(target, "w") as first, atomic_open(target, "w") as second:
        first.write("first\n")
        second.write("second\n")
        assert len(names(tmp_path)) == 2  # two temporary files, neither the target yet
    # The inner block commits first, the outer one last: the last complete file wins, nothing mixed.
    assert target.read_text() == "first\n"
    assert names(tmp_path) == ["plan.json"]


def test_threads_writing_one_file_leave_one_whole_version(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    versions = [f"{i}:" + str(i) * 20_000 for i in range(8)]
    errors: list[BaseException] = []

    def write(text: str) -> None:
        try:
            for _ in range(5):
                write_text_atomic(target, text)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_text() in versions
    assert names(tmp_path) == ["state.json"]


def test_file_is_flushed_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def spy_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append("replace")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    write_bytes_atomic(tmp_path / "a", b"x")
    with atomic_path(tmp_path / "b") as tmp:
        tmp.write_bytes(b"y")
    expected = ["fsync file", "replace"] + (["fsync folder"] if hasattr(os, "O_DIRECTORY") else [])
    assert events == expected * 2


@posix_only
@pytest.mark.usefixtures("umask_022")
def test_new_files_are_readable_by_others_as_with_open(tmp_path: Path) -> None:
    write_bytes_atomic(tmp_path / "a", b"x")
    with atomic_open(tmp_path / "b", "w") as fh:
        fh.write("y")
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644  # not mkstemp's 0o600
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o644


@posix_only
@pytest.mark.usefixtures("umask_022")
def test_a_writer_that_makes_its_file_private_gets_the_usual_mode_back(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "member_0.safetensors") as tmp:
        tmp.unlink()  # as safetensors does: a new file, mode 0o600
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"w")
        os.close(fd)
    assert stat.S_IMODE((tmp_path / "member_0.safetensors").stat().st_mode) == 0o644


@posix_only
def test_a_private_umask_is_respected(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        write_bytes_atomic(tmp_path / "a", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600


def test_bad_mode_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode 'a'"), atomic_open(tmp_path / "x", "a"):
        pass
    with pytest.raises(ValueError, match="newline"), atomic_open(tmp_path / "x", "wb", newline=""):
        pass
    with pytest.raises(FileNotFoundError):
        write_bytes_atomic(tmp_path / "missing" / "x", b"")
    assert names(tmp_path) == []


def test_folder_appears_whole_and_replaces_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "case_0001"
    target.mkdir()
    (target / "old.json").write_text("old")
    with atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".case_0001.")
        (tmp / "score.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "seg.dcm").write_bytes(b"DICM")
        assert names(target) == ["old.json"]  # readers still see the old folder
    assert names(target) == ["score.json", "sub"]
    assert (target / "sub" / "seg.dcm").read_bytes() == b"DICM"
    assert names(tmp_path) == ["case_0001"]  # neither the temporary nor the old folder stays


def test_folder_writer_raising_leaves_the_old_folder(tmp_path: Path) -> None:
    target = tmp_path / "case_0001"
    target.mkdir()
    (target / "old.json").write_text("old")
    with pytest.raises(Boom), atomic_folder(target) as tmp:
        (tmp / "score.json").write_text("{}")
        raise Boom
    assert names(tmp_path) == ["case_0001"]
    assert names(target) == ["old.json"]


@pytest.mark.parametrize("existing_files", [[], ["theirs.dcm"]])
def test_folder_without_replace_keeps_the_first_writers_folder(
    tmp_path: Path, existing_files: list[str]
) -> None:
    target = tmp_path / "exports"
    target.mkdir()
    for name in existing_files:
        (target / name).write_bytes(b"first")
    with pytest.raises(FileExistsError), atomic_folder(target, replace=False) as tmp:
        (tmp / "mine.dcm").write_bytes(b"second")
    assert names(target) == existing_files
    assert names(tmp_path) == ["exports"]
    with atomic_folder(tmp_path / "new", replace=False) as tmp:
        (tmp / "a").write_bytes(b"a")
    assert names(tmp_path / "new") == ["a"]
