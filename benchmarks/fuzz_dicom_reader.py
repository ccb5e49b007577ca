"""Coverage-guided fuzzing of the DICOM reader (atheris / libFuzzer) for a fixed time.

Each input is one byte of mode and the bytes of one file. The file is put in a
folder beside valid 8 x 8 slices of a tiny series (mode 0: as its middle
slice; mode 1: alone; mode 2: as an extra file beside all three; mode 3: as
the second file of a two-file Enhanced CT series folder) and the folder is
read with :func:`cacscore.io.read_dicom_series` (``skip_unreadable`` when
mode bit 2 is set) and listed with :func:`cacscore.io.list_series`. A finding
is any exception other than :class:`cacscore.errors.CacScoreError`, a warning
of a library passed on raw, or a read slower than the timeout (10 s).

Usage::

    .venv/bin/python benchmarks/fuzz_dicom_reader.py --minutes 10

It runs libFuzzer in a child process (pydicom and cacscore instrumented),
then merges the inputs that add coverage into ``benchmarks/fuzz_corpus/``
(the committed corpus, also the seeds of the next run) and prints the number
of executions, the corpus size and the outcome.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "fuzz_corpus"
_CONTEXT: Path | None = None


def _tiny_volume(n: int = 3) -> object:
    import numpy as np

    from cacscore.io import CTVolume

    hu = (np.arange(n * 64).reshape(n, 8, 8) * 7 % 1400 - 1000).astype(np.int16)
    return CTVolume(
        hu=hu, spacing=(3.0, 0.7, 0.7), origin=(-2.8, -2.8, 10.0), kvp=120.0, slice_thickness_mm=3.0
    )


def _context_series(root: Path) -> Path:
    """Three valid slices (explicit VR) and a valid Enhanced CT file, written once per process."""
    from cacscore.io import write_dicom_series, write_enhanced_ct

    volume = _tiny_volume()
    write_dicom_series(volume, root / "classic", uid_seed="fuzz-context")  # type: ignore[arg-type]
    write_enhanced_ct(volume, root / "enhanced" / "frames.dcm", uid_seed="fuzz-enhanced")  # type: ignore[arg-type]
    return root


def make_seeds(folder: Path) -> int:
    """Write the seed inputs (valid slices of every storage kind and an Enhanced CT file, each mode)."""
    from cacscore.io import write_dicom_series, write_enhanced_ct

    folder.mkdir(parents=True, exist_ok=True)
    volume = _tiny_volume()
    count = 0
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name, options in (
            ("explicit", {}),
            (
                "implicit",
                {"transfer_syntax": "implicit VR little endian", "signed": False, "bits_stored": 12},
            ),
            ("rle", {"transfer_syntax": "RLE"}),
            ("jpegll", {"transfer_syntax": "JPEG lossless"}),
        ):
            paths = write_dicom_series(volume, Path(tmp) / name, uid_seed="fuzz-context", **options)  # type: ignore[arg-type]
            files.append((name, paths[1]))
        files.append(("enhanced", write_enhanced_ct(volume, Path(tmp) / "enh.dcm", uid_seed="fuzz-e")))  # type: ignore[arg-type]
        for name, path in files:
            data = path.read_bytes()
            for mode in (0, 1, 2, 3):
                (folder / f"seed_{name}_{mode}").write_bytes(bytes([mode]) + data)
                count += 1
    return count


def one_input(data: bytes) -> None:
    """Read a folder holding ``data`` as one of its files; raise on anything but a CacScoreError."""
    import warnings

    from cacscore.errors import CacScoreError, CacScoreWarning
    from cacscore.io import list_series, read_dicom_series

    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = _context_series(Path(tempfile.mkdtemp(prefix="fuzz_context_")))
    if not data:
        return
    mode, content = data[0], data[1:]
    work = _CONTEXT / "case"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        kind = mode & 3
        if kind == 3:
            shutil.copy(_CONTEXT / "enhanced" / "frames.dcm", work / "frames1.dcm")
            (work / "frames2.dcm").write_bytes(content)
        else:
            if kind in (0, 2):
                for path in sorted((_CONTEXT / "classic").glob("*.dcm")):
                    shutil.copy(path, work / path.name)
            name = "IM00002.dcm" if kind == 0 else ("IM00004.dcm" if kind == 2 else "IM00001.dcm")
            (work / name).write_bytes(content)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for call in (
                lambda: list_series(work),
                lambda: read_dicom_series(work, skip_unreadable=bool(mode & 4)),
            ):
                try:
                    call()
                except CacScoreError as exc:
                    if "\n" in str(exc):
                        raise AssertionError(f"error on several lines: {exc!r}") from None
        raw = [w for w in caught if not issubclass(w.category, CacScoreWarning)]
        if raw:
            raise AssertionError(
                f"library warning passed on raw: {raw[0].category.__name__}: {raw[0].message}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_libfuzzer(args: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["pydicom", "cacscore"]):
        import pydicom  # noqa: F401
        import pydicom.pixels  # noqa: F401

        import cacscore.io  # noqa: F401
    # libFuzzer's merge runs argv[0] again through the shell; the script itself is not executable.
    atheris.Setup([f"{sys.executable} {Path(__file__).resolve()} --libfuzzer", *args], one_input)
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="fuzzing time (default 10)")
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="committed corpus folder (seeds and result)"
    )
    parser.add_argument("--libfuzzer", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.libfuzzer is not None:
        _run_libfuzzer(args.libfuzzer)
        return 0
    if not any(args.corpus.glob("*")):
        print(f"seeds written: {make_seeds(args.corpus)}")
    work = Path(tempfile.mkdtemp(prefix="fuzz_work_"))
    artifacts = Path(tempfile.mkdtemp(prefix="fuzz_artifacts_"))
    seconds = int(args.minutes * 60)
    command = [
        sys.executable,
        __file__,
        "--libfuzzer",
        f"-max_total_time={seconds}",
        "-timeout=10",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        str(work),
        str(args.corpus),
    ]
    start = time.time()
    run = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.time() - start
    log = run.stderr
    log_path = artifacts / "libfuzzer.log"
    log_path.write_text(log)
    executions = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    merged = args.corpus.with_name(args.corpus.name + "_merged")
    shutil.rmtree(merged, ignore_errors=True)
    merged.mkdir()
    merge = subprocess.run(
        [
            sys.executable,
            __file__,
            "--libfuzzer",
            "-merge=1",
            "-timeout=10",
            str(merged),
            str(args.corpus),
            str(work),
        ],
        capture_output=True,
        text=True,
    )
    if merge.returncode == 0 and any(merged.iterdir()):
        shutil.rmtree(args.corpus)
        merged.rename(args.corpus)
    else:
        shutil.rmtree(merged, ignore_errors=True)
    findings = sorted(p.name for p in artifacts.iterdir() if p.name != "libfuzzer.log")
    corpus_files = list(args.corpus.iterdir())
    print(f"fuzzing time: {elapsed:.0f} s (asked {seconds} s); libFuzzer exit code {run.returncode}")
    print(f"executions: {executions[-1] if executions else 'unknown'}")
    print(
        f"corpus: {len(corpus_files)} files, "
        f"{sum(p.stat().st_size for p in corpus_files)} bytes in {args.corpus}"
    )
    print(f"findings: {len(findings)} {findings[:5]} (inputs and libFuzzer's log in {artifacts})")
    if findings:
        print(log[-3000:])
    return 0 if run.returncode == 0 and not findings else 1


if __name__ == "__main__":
    sys.exit(main())
