"""Result records: JSON round trip, confidences, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cacscore.errors import InvalidInputError
from cacscore.labels import LAD, RCA
from cacscore.scoring import ScoreResult, score_calcium


def scored_example() -> ScoreResult:
    hu = np.full((3, 10, 10), -20, np.int16)
    mask = np.zeros(hu.shape, np.uint8)
    hu[0:2, 1:4, 1:4] = 260
    mask[0:2, 1:4, 1:4] = LAD
    hu[2, 6:9, 6:9] = 610
    mask[2, 6:9, 6:9] = RCA
    return score_calcium(hu, (3.0, 0.5, 0.5), mask, kvp=100)


def test_json_round_trip() -> None:
    result = scored_example()
    assert len(result.lesions) == 2 and result.warnings
    again = ScoreResult.from_json(result.to_json(indent=2))
    assert again == result
    assert ScoreResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    data = result.to_dict()
    assert data["lesions"][0]["centroid_mm"] == list(result.lesions[0].centroid_mm)
    assert data["conventions"]["connectivity_2d"] == 8 and data["conventions"]["connectivity_3d"] == 26


def test_with_confidences_round_trips() -> None:
    result = scored_example().with_confidences({2: 0.75})
    assert [les.confidence for les in result.lesions] == [None, 0.75]
    assert ScoreResult.from_json(result.to_json()) == result
    with pytest.raises(InvalidInputError, match=r"lesion ids \[9\]"):
        result.with_confidences({9: 0.5})


def test_from_dict_names_missing_key() -> None:
    data = scored_example().to_dict()
    del data["arteries"]
    with pytest.raises(InvalidInputError, match="missing the key 'arteries'"):
        ScoreResult.from_dict(data)
