"""The orCaScore layout: <ID>CTI.mhd images with <ID>R.mhd references (1 LAD, 2 LCX, 3 RCA)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cacscore.datasets import detect_layout, list_cases
from cacscore.io import CTVolume, write_mask, write_volume
from cacscore.labels import LAD, RCA


def test_orcascore_training_set(tmp_path: Path, volume: CTVolume, label: np.ndarray) -> None:
    images = tmp_path / "Training Set" / "Images"
    references = tmp_path / "Training Set" / "Reference standard"
    images.mkdir(parents=True)
    references.mkdir()
    write_volume(volume, images / "TRV1P1CTI.mhd")
    write_volume(volume, images / "TRV1P1CTAI.mhd")  # the CTA: never read as the CT
    stored = np.zeros_like(label)
    stored[label == LAD] = 1
    stored[label == RCA] = 3
    write_mask(stored, volume, references / "TRV1P1R.mhd")
    write_volume(volume, images / "TRV2P3CTI.mhd")  # no reference
    assert (images / "TRV1P1CTI.raw").is_file() or (images / "TRV1P1CTI.zraw").is_file()

    assert detect_layout(tmp_path) == "orcascore"
    cases = list_cases(tmp_path)
    assert [(c.case_id, c.image_path.name, c.reference_path and c.reference_path.name) for c in cases] == [
        ("TRV1P1", "TRV1P1CTI.mhd", "TRV1P1R.mhd"),
        ("TRV2P3", "TRV2P3CTI.mhd", None),
    ]
    case = cases[0].load()
    np.testing.assert_array_equal(case.volume.hu, volume.hu)
    np.testing.assert_array_equal(case.label, label)
    assert cases[1].load().label is None
