"""The real predict_fn of the Table 1 experiment reuses the ensemble's forward pass."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tiny_models import tiny_ensemble

import cacscore.model
from cacscore.io import CTVolume


def test_predict_with_cacscore_runs_each_member_once_through_the_ensemble(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cacscore.evaluate.table1_wiring import predict_with_cacscore

    ensemble = tiny_ensemble(members=3)
    passes: list[int] = []
    forward = ensemble.member_probabilities

    def counted(image: np.ndarray) -> Iterator[np.ndarray]:
        for probabilities in forward(image):
            passes.append(1)
            yield probabilities

    monkeypatch.setattr(ensemble, "member_probabilities", counted)
    monkeypatch.setattr(cacscore.model, "load_ensemble", lambda *args, **kwargs: ensemble)
    hu = np.full((8, 16, 16), 40, dtype=np.int16)
    hu[3:5, 6:9, 6:9] = 500
    predict = predict_with_cacscore(Path("unused"), device="cpu")
    result = predict(SimpleNamespace(volume=CTVolume(hu=hu, spacing=(2.5, 0.625, 0.625))))
    assert len(passes) == 3  # one forward pass per member, for the members alone and the vote together
    assert len(result.members) == 3
    assert all(labels.shape == hu.shape for labels in [*result.members, result.ensemble])


def test_predict_with_cacscore_applies_the_heart_region_to_every_mask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A volume without lungs has no heart region: calcium the vote finds there is no coronary calcium."""
    from cacscore.evaluate.table1_wiring import predict_with_cacscore
    from cacscore.labels import LAD
    from cacscore.model.ensemble import EnsemblePrediction

    ensemble = tiny_ensemble(members=3)
    hu = np.full((8, 16, 16), 40, dtype=np.int16)
    hu[3:5, 6:9, 6:9] = 500
    found: list[int] = []

    def everything_bright(probabilities: list, image: np.ndarray, grid: object, hu: np.ndarray):  # type: ignore[no-untyped-def]
        labels = np.where(hu >= 130, LAD, 0).astype(np.uint8)
        found.append(int(labels.astype(bool).sum()))
        return EnsemblePrediction(labels, np.zeros((1, 1, 1, 1), bool), np.zeros((1, 1, 1), np.uint8), grid)  # type: ignore[arg-type]

    monkeypatch.setattr(ensemble, "combine", everything_bright)
    monkeypatch.setattr(cacscore.model, "load_ensemble", lambda *args, **kwargs: ensemble)
    result = predict_with_cacscore(Path("unused"), device="cpu")(
        SimpleNamespace(volume=CTVolume(hu=hu, spacing=(2.5, 0.625, 0.625)))
    )
    assert found == [18, 18, 18, 18]  # the vote found the 2 x 3 x 3 bright voxels, alone and together
    assert not result.ensemble.any() and not any(labels.any() for labels in result.members)
