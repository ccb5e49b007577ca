"""The score path shared by the command line, batch, the DICOM node, the review app and the benchmarks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cacscore.anatomy import NoHeartError
from cacscore.io import write_volume
from cacscore.pipeline import check_volume, labels_or_refusal, read_and_check, score_checked

sys.path.insert(0, str(Path(__file__).parent / "anatomy"))
from anatomy_volumes import chest  # noqa: E402
from tiny_models import tiny_ensemble  # noqa: E402


def test_a_refused_scan_is_an_error_unless_skipped_and_scores_nothing_in_evaluations(tmp_path: Path) -> None:
    volume = chest(lungs=False)
    path = write_volume(volume, tmp_path / "abdomen.nii.gz")
    with pytest.raises(NoHeartError, match=r"abdomen\.nii\.gz: no heart in the field of view"):
        read_and_check(path)
    _, skipped = read_and_check(path, skip_domain_check=True)
    assert skipped.skipped and skipped.warnings[0].startswith("domain check skipped: no heart")
    labels, refusal = labels_or_refusal(volume, _NeverRun())  # type: ignore[arg-type]
    assert refusal is not None and refusal.startswith("no heart in the field of view")
    assert labels.shape == volume.shape and not labels.any()


def test_a_scan_with_a_heart_is_scored_as_score_checked_scores_it() -> None:
    volume = chest(fov_mm=220, padding_hu=-1024)
    ensemble = tiny_ensemble(seed=3)
    check = check_volume(volume)
    assert check.refusal is None
    _, extra, expected = score_checked(volume, check, ensemble)
    labels, refusal = labels_or_refusal(volume, ensemble)
    assert refusal is None and np.array_equal(labels, expected)
    assert extra["domain"]["heart_in_view"] is True and extra["model"]["name"] == "tiny"


class _NeverRun:
    def predict(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("the networks ran on a refused scan")
