"""Real CT volumes for the anatomy tests.

They are fetched once per session from TotalSegmentator's source distribution:
``pip download --no-deps --no-binary :all: totalsegmentator==2.18.0`` (38 MB) into
``~/.cache/cacscore-test-data`` (or ``$CACSCORE_TEST_DATA``); its ``tests/reference_files`` hold an
abdomen/pelvis CT, a smaller abdomen, a DICOM abdomen and a contrast CT angiography of the chest. Where
the download fails (no network, as on CI) the tests that need them are skipped, saying why.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

SDIST = "totalsegmentator==2.18.0"
ARCHIVE = "totalsegmentator-2.18.0.tar.gz"
MEMBERS = "totalsegmentator-2.18.0/tests/reference_files/"


@pytest.fixture(scope="session")
def totalseg_files() -> Path:
    """Folder holding TotalSegmentator 2.18.0's ``tests/reference_files`` (downloaded on first use)."""
    cache = Path(os.environ.get("CACSCORE_TEST_DATA", Path.home() / ".cache" / "cacscore-test-data"))
    target = cache / MEMBERS
    if (target / "example_ct.nii.gz").is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
        if not (cache / ARCHIVE).is_file():
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--no-binary",
                    ":all:",
                    SDIST,
                    "-d",
                    str(cache),
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if done.returncode != 0:
                pytest.skip(
                    f"cannot download the {SDIST} sdist with pip: {done.stderr.strip().splitlines()[-1:]}"
                )
        with tarfile.open(cache / ARCHIVE) as archive:
            wanted = [
                m for m in archive.getmembers() if m.name.startswith(MEMBERS) and (m.isfile() or m.isdir())
            ]
            archive.extractall(cache, members=wanted, filter="data")
    except (OSError, subprocess.SubprocessError, tarfile.TarError) as exc:
        pytest.skip(f"cannot fetch the {SDIST} sdist: {exc}")
    if not (target / "example_ct.nii.gz").is_file():
        pytest.skip(f"the {SDIST} sdist holds no tests/reference_files/example_ct.nii.gz")
    return target
