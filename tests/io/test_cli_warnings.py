"""Warnings in the command line: one ``warning:`` line each, and never a loop (the reading hang)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from dicom_fuzz import set_transfer_syntax

from cacscore.cli import common
from cacscore.cli.common import user_errors, warning_line, warnings_as_lines
from cacscore.errors import CacScoreError, CacScoreWarning
from cacscore.io import CTVolume, write_dicom_series

Factory = Callable[..., CTVolume]
#: The hang grew memory without end; anything that answers within this many seconds did not loop.
ANSWER_WITHIN_S = 60


def test_score_of_a_slice_with_a_wrong_transfer_syntax_answers_in_one_line(
    tmp_path: Path, make_volume: Factory
) -> None:
    """The original hang: JPEG Baseline transfer syntax over uncompressed pixel data.

    The series is read by ``cacscore score``.
    """
    paths = write_dicom_series(make_volume(), tmp_path / "series", uid_seed="hang")
    set_transfer_syntax(paths[0], "1.2.840.10008.1.2.4.50")
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cacscore.cli.main import main; main(sys.argv[1:])",
            "score",
            str(tmp_path / "series"),
            "--mask",
            str(tmp_path / "no_mask.nii.gz"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=ANSWER_WITHIN_S,
    )
    assert run.returncode == 1
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(
        f"error: {paths[0]}: transfer syntax JPEG Baseline (Process 1) says compressed, but "
        "the pixel data is not encapsulated"
    )


def test_library_warning_then_error_does_not_loop() -> None:
    """The mechanism itself, whatever the reader does: a library warning, then a CacScoreError."""
    script = textwrap.dedent("""
        import warnings
        import typer
        from cacscore.cli.common import user_errors
        from cacscore.errors import CacScoreError
        try:
            with user_errors():
                warnings.warn(
                    "The number of bytes of compressed pixel data matches", UserWarning, stacklevel=1
                )
                warnings.warn("invalid value encountered in cast", RuntimeWarning)
                raise CacScoreError("IM00001.dcm: cannot decode pixel data")
        except typer.Exit as exc:
            raise SystemExit(exc.exit_code)
    """)
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=ANSWER_WITHIN_S
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "warning: <string> reported: The number of bytes of compressed pixel data matches",
        "warning: <string> reported: invalid value encountered in cast",
        "error: IM00001.dcm: cannot decode pixel data",
    ]


@pytest.mark.filterwarnings("always::UserWarning")
def test_a_warning_raised_while_one_is_shown_is_dropped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown: list[str] = []

    def print_and_warn(text: str, **_: object) -> None:
        shown.append(text)
        warnings.warn(
            "raised by the console itself", UserWarning, stacklevel=1
        )  # what showwarning did in the old loop

    monkeypatch.setattr(common.err_console, "print", print_and_warn)
    with warnings_as_lines():
        warnings.warn("first", CacScoreWarning, stacklevel=1)
        warnings.warn("first", CacScoreWarning, stacklevel=1)  # the same line again is not repeated
        warnings.warn("second", CacScoreWarning, stacklevel=1)
    assert shown == ["[yellow]warning:[/] first", "[yellow]warning:[/] second"]


def test_user_errors_shows_cacscore_warnings_as_they_happen(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_info, user_errors():
        warnings.warn("kVp is 100", CacScoreWarning, stacklevel=1)
        raise CacScoreError("scan.nii.gz: bad")
    assert exit_info.value.exit_code == 1
    assert capsys.readouterr().err.splitlines() == ["warning: kVp is 100", "error: scan.nii.gz: bad"]


@pytest.mark.parametrize(
    ("message", "category", "filename", "line"),
    [
        ("kVp is 100", CacScoreWarning, "checks.py", "kVp is 100"),
        ("old API", DeprecationWarning, "/x/site-packages/numpy/core.py", None),
        ("unclosed file", ResourceWarning, "x.py", None),
        (
            "Invalid value for VR DS: 'NaN'.\n  Please see",
            UserWarning,
            "/venv/lib/python3.11/site-packages/pydicom/valuerep.py",
            "pydicom reported: Invalid value for VR DS: 'NaN'. Please see",
        ),
        (
            "x" * 300,
            RuntimeWarning,
            "/venv/lib/site-packages/numpy/a.py",
            "numpy reported: " + "x" * 197 + "...",
        ),
    ],
)
def test_warning_line(message: str, category: type[Warning], filename: str, line: str | None) -> None:
    assert warning_line(message, category, filename) == line


def test_score_names_a_damaged_end_slice_and_skips_it_when_asked(
    tmp_path: Path, make_volume: Factory
) -> None:
    from typer.testing import CliRunner

    from cacscore.cli.main import app
    from cacscore.io import read_volume, write_mask

    paths = write_dicom_series(make_volume(), tmp_path / "series", uid_seed="skip")
    paths[-1].write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacScoreWarning)
        kept = read_volume(tmp_path / "series", skip_unreadable=True)
    write_mask(kept.hu * 0, kept, tmp_path / "mask.nii.gz")
    args = ["score", str(tmp_path / "series"), "--mask", str(tmp_path / "mask.nii.gz"), "--json"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: {paths[-1]}: empty file, though named like the series' slices; remove the file(s), "
        "or read with --skip-unreadable (skip_unreadable=True) to go on without them, "
        "each named in a warning"
    ]
    scored = CliRunner().invoke(app, [*args, "--skip-unreadable"])
    assert scored.exit_code == 0, scored.output
    assert f"warning: {paths[-1]}: skipped: empty file, though named like the series' slices" in scored.stderr
    assert f"{paths[-1]}: skipped: empty file, though named like the series' slices" in scored.stdout
