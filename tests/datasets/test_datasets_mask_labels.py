"""Declared mask conventions (``--mask-labels``) for every layout that reads masks, and case attributes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cacscore.datasets import CaseRef, list_cases
from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume, write_mask, write_volume
from cacscore.labels import LAD, LCX, RCA, UNSPECIFIED

LAD_BOX = (slice(4, 5), slice(10, 14), slice(10, 14))  # as in conftest.py
RCA_BOX = (slice(6, 8), slice(30, 33), slice(30, 33))


def _orcascore_coded(label: np.ndarray) -> np.ndarray:
    """The plaque mask as orCaScore stores it: 1 LAD, 2 LCX, 3 RCA."""
    stored = np.zeros_like(label)
    stored[label == LAD] = 1
    stored[label == RCA] = 3
    return stored


def _generic(root: Path, volume: CTVolume, stored: np.ndarray) -> None:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    write_volume(volume, root / "images" / "a.nii.gz")
    write_mask(stored, volume, root / "labels" / "a.nii.gz")


def test_generic_masks_in_orcascore_codes_are_read_as_declared(
    tmp_path: Path, volume: CTVolume, label: np.ndarray
) -> None:
    _generic(tmp_path, volume, _orcascore_coded(label))
    silent = list_cases(tmp_path)[0].load().label
    assert silent is not None and silent[LAD_BOX].max() == UNSPECIFIED  # 1 read as "unspecified", 3 as LAD
    assert silent[RCA_BOX].max() == LAD
    declared = list_cases(tmp_path, mask_labels="orcascore")[0].load().label
    np.testing.assert_array_equal(declared, label)
    binary = list_cases(tmp_path, mask_labels="binary")[0].load().label
    np.testing.assert_array_equal(binary, (label > 0).astype(np.uint8))


def test_nnunet_declared_convention_replaces_the_label_names(
    tmp_path: Path, volume: CTVolume, label: np.ndarray
) -> None:
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    # Names that say nothing about the artery: read as binary unless the convention is declared.
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "a": 1, "b": 2, "c": 3},
                "file_ending": ".nii.gz",
            }
        )
    )
    write_volume(volume, tmp_path / "imagesTr" / "x_0000.nii.gz")
    stored = _orcascore_coded(label)
    stored[5, 20, 20] = 2  # one LCX voxel
    write_mask(stored, volume, tmp_path / "labelsTr" / "x.nii.gz")
    assert set(np.unique(list_cases(tmp_path)[0].load().label)) == {0, UNSPECIFIED}
    case = list_cases(tmp_path, mask_labels="orcascore")[0].load()
    expected = label.copy()
    expected[5, 20, 20] = LCX
    np.testing.assert_array_equal(case.label, expected)
    assert case.meta["mask_labels"] == "orcascore" and case.meta["label_table"] is None


def test_orcascore_layout_can_be_read_as_binary(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    write_volume(volume, tmp_path / "TRV1P1CTI.mhd")
    write_mask(_orcascore_coded(label), volume, tmp_path / "TRV1P1R.mhd")
    np.testing.assert_array_equal(list_cases(tmp_path)[0].load().label, label)
    binary = list_cases(tmp_path, mask_labels="binary")[0].load().label
    np.testing.assert_array_equal(binary, (label > 0).astype(np.uint8))


def test_a_code_outside_the_declared_convention_names_the_file(
    tmp_path: Path, volume: CTVolume, label: np.ndarray
) -> None:
    _generic(tmp_path, volume, label)  # project codes 3 and 5: 5 is not an orCaScore code
    with pytest.raises(InvalidInputError, match=r"label values \[5\].*'orcascore'"):
        list_cases(tmp_path, mask_labels="orcascore")[0].load()


def test_unknown_convention_lists_the_valid_ones(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    _generic(tmp_path, volume, label)
    with pytest.raises(
        InvalidInputError,
        match="unknown mask label convention 'nnunet'; use one of project, orcascore, binary",
    ):
        list_cases(tmp_path, mask_labels="nnunet")


def test_case_refs_carry_convention_and_attributes_through_a_dict() -> None:
    ref = CaseRef(
        "a",
        "generic",
        Path("i.nii.gz"),
        Path("l.nii.gz"),
        mask_labels="orcascore",
        attributes={"family": "sdf"},
    )
    back = CaseRef.from_dict(json.loads(json.dumps(ref.to_dict())))
    assert back == ref and back.attributes == {"family": "sdf"}
    assert back.attribute("family") == "sdf" and back.attribute("generator_version") == "unknown"
    assert CaseRef.from_dict({"case_id": "b", "layout": "generic", "image_path": "x"}).mask_labels is None
