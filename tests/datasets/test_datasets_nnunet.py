"""The nnU-Net raw layout: dataset.json, imagesTr/CASE_0000, labelsTr/CASE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cacscore.datasets import detect_layout, list_cases
from cacscore.datasets.nnunet import label_table
from cacscore.errors import InvalidInputError
from cacscore.io import CTVolume, write_mask, write_volume
from cacscore.labels import LAD, RCA


def _dataset(root: Path, volume: CTVolume, stored: np.ndarray, labels: dict[str, Any]) -> None:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(
        json.dumps(
            {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 2, "file_ending": ".nii.gz"}
        )
    )
    write_volume(volume, root / "imagesTr" / "cac_010_0000.nii.gz")
    write_volume(volume, root / "imagesTr" / "cac_002_0000.nii.gz")
    write_mask(stored, volume, root / "labelsTr" / "cac_002.nii.gz")


def test_nnunet_named_labels_map_to_arteries(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    stored = np.zeros_like(label)
    stored[label == LAD] = 1
    stored[label == RCA] = 2
    _dataset(tmp_path, volume, stored, {"background": 0, "LAD": 1, "RCA": 2})
    assert detect_layout(tmp_path) == "nnunet"
    cases = list_cases(tmp_path)
    assert [(c.case_id, c.reference_path is not None) for c in cases] == [
        ("cac_002", True),
        ("cac_010", False),
    ]
    case = cases[0].load()
    np.testing.assert_array_equal(case.label, label)
    np.testing.assert_array_equal(case.volume.hu, volume.hu)
    assert case.meta["label_table"] == {"0": 0, "1": LAD, "2": RCA}
    assert cases[1].load().label is None


def test_nnunet_unnamed_labels_are_binary(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    _dataset(tmp_path, volume, (label > 0).astype(np.uint8) * 1, {"0": "background", "1": "foreground"})
    case = list_cases(tmp_path, layout="nnunet")[0].load()
    np.testing.assert_array_equal(case.label, (label > 0).astype(np.uint8))


def test_nnunet_undeclared_label_value(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    _dataset(tmp_path, volume, label, {"background": 0, "calcium": 1})
    with pytest.raises(InvalidInputError, match=r"label values \[3, 5\] are not declared"):
        list_cases(tmp_path)[0].load()


@pytest.mark.parametrize(
    ("labels", "table", "n_warnings"),
    [
        ({"background": 0, "calcium": 1}, {0: 0, 1: 1}, 0),
        ({"background": 0, "LM": 1, "LAD": 2, "LCX": 3, "RCA": 4}, {0: 0, 1: 2, 2: 3, 3: 4, 4: 5}, 0),
        ({"background": 0, "coronary calcium": 1, "aortic valve": 2}, {0: 0, 1: 1, 2: 0}, 1),
        ({"background": 0, "calcium": [1, 2]}, None, 0),
        ({"background": 0, "lesion": 1}, None, 0),
        ({}, None, 0),
    ],
)
def test_label_table(labels: dict[str, Any], table: dict[int, int] | None, n_warnings: int) -> None:
    got, warnings = label_table(labels)
    assert got == table
    assert len(warnings) == n_warnings


def test_nnunet_missing_dataset_json_content(tmp_path: Path) -> None:
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "dataset.json").write_text("[1, 2]")
    with pytest.raises(InvalidInputError, match="dataset.json: expected a JSON object"):
        list_cases(tmp_path)
