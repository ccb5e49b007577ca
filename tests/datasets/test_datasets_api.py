"""detect_layout / list_cases / CaseRef: errors and round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cacscore.datasets import CaseRef, LoadedCase, detect_layout, list_cases
from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume


def test_unknown_folder_content(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="not a known dataset layout"):
        detect_layout(tmp_path)
    with pytest.raises(InvalidInputError, match="not a known dataset layout"):
        list_cases(tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="dataset folder not found"):
        list_cases(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidInputError, match="not a folder"):
        detect_layout(tmp_path / "file")


def test_unknown_layout_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown dataset layout 'kaggle'"):
        list_cases(tmp_path, layout="kaggle")
    with pytest.raises(InvalidInputError, match="unknown layout 'kaggle'"):
        CaseRef("x", "kaggle", tmp_path).load()


def test_forced_layout_that_does_not_match(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no cases found in the orcascore layout"):
        list_cases(tmp_path, layout="orcascore")


def test_case_ref_round_trip(tmp_path: Path) -> None:
    ref = CaseRef("a", "generic", tmp_path / "a.nii.gz", tmp_path / "a.csv")
    assert CaseRef.from_dict(json.loads(json.dumps(ref.to_dict()))) == ref
    bare = CaseRef("b", "coca", tmp_path / "b")
    assert CaseRef.from_dict(bare.to_dict()) == bare


def test_loaded_case_checks_label_shape(volume: CTVolume) -> None:
    import numpy as np

    with pytest.raises(InvalidInputError, match="label shape"):
        LoadedCase("x", volume, np.zeros((1, 2, 3), np.uint8))
