"""Fitting a model's lesion filter: the candidates' truth, the model folder written, resume, the command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cacscore.cli.main import app
from cacscore.datasets import list_cases
from cacscore.errors import CacScoreWarning, InvalidInputError
from cacscore.model import PLAN_VERSION, Ensemble, Plan, ResUNet3d, load_ensemble, save_member
from cacscore.model.lesion_filter import FEATURE_NAMES
from cacscore.phantom import PhantomConfig, generate_cohort
from cacscore.preprocess import make_grid, normalize_hu, preprocessing_dict
from cacscore.train import fit_lesion_filter as fitting

FILTERS = [2, 4]


def _plan_data(members: int) -> dict[str, Any]:
    return {
        "inference": {"precision": "fp32"},
        "plan_version": PLAN_VERSION,
        "name": "test",
        "model_version": "t",
        "head": "arteries",
        "class_codes": [0, 2, 3, 4, 5],
        "network": {
            "class": "ResUNet3d",
            "init_args": {"in_channels": 1, "n_classes": 5, "filters": FILTERS},
        },
        "preprocessing": preprocessing_dict(),
        "members": [{"member": k, "file": f"member_{k}.safetensors"} for k in range(members)],
    }


def test_candidates_are_true_where_they_hold_reference_calcium() -> None:
    grid = make_grid((3, 12, 12), (3.0, 1.0, 1.0), target_mm=3.0)
    hu = np.full(grid.source_shape, -100, np.int16)
    hu[0, 0:3, 0:3] = 250  # found by member 0 only; not calcium in the reference
    hu[2, 0:3, 9:12] = 400  # found by all three; reference calcium on one voxel of it
    classes = [np.zeros(grid.shape, int) for _ in range(3)]
    classes[0][0, 0, 0] = 1
    for c in classes:
        c[2, 0, 3] = 3
    probabilities = [np.moveaxis(np.eye(5)[c], -1, 0) for c in classes]
    ensemble = Ensemble(Plan(_plan_data(3)), [ResUNet3d(1, 5, FILTERS) for _ in range(3)])
    ensemble.preprocess = lambda volume: (normalize_hu(np.full(grid.shape, 300.0)), grid)  # type: ignore[method-assign]
    ensemble.member_probabilities = lambda image: iter(probabilities)  # type: ignore[method-assign]
    reference = np.zeros(grid.source_shape, np.uint8)
    reference[2, 1, 10] = 4

    class Volume:
        pass

    volume = Volume()
    volume.hu = hu  # type: ignore[attr-defined]
    features, truth = fitting.labelled_candidates(ensemble, volume, reference)  # type: ignore[arg-type]
    assert features.shape == (2, len(FEATURE_NAMES))
    assert sorted(zip(features[:, FEATURE_NAMES.index("peak_hu")], truth)) == [(250, False), (400, True)]
    _, truth = fitting.labelled_candidates(ensemble, volume, reference, candidate_votes=2)  # type: ignore[arg-type]
    assert truth.tolist() == [True]
    with pytest.raises(InvalidInputError, match="does not match"):
        fitting.labelled_candidates(ensemble, volume, reference[:2])  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def model_and_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    model = tmp_path_factory.mktemp("model")
    for k in range(3):
        save_member(ResUNet3d(1, 5, FILTERS), model / f"member_{k}.safetensors")
    Plan(_plan_data(3)).save(model)
    cohort = tmp_path_factory.mktemp("cohort")
    generate_cohort(
        cohort, 3, 5, fmt="nifti", progress=False, config=PhantomConfig(matrix=64, n_slices=(12, 14))
    )
    return model, cohort


@pytest.fixture
def synthetic_candidates(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Replace the networks' candidates by random ones whose truth follows peak HU; returns the call count."""
    calls = [0]
    rng = np.random.default_rng(1)

    def candidates(ensemble: Any, volume: Any, reference: Any, candidate_votes: int = 1) -> tuple[Any, Any]:
        calls[0] += 1
        features = rng.normal(size=(30, len(FEATURE_NAMES)))
        return features, features[:, FEATURE_NAMES.index("peak_hu")] + 0.3 * rng.normal(size=30) > 0

    monkeypatch.setattr(fitting, "labelled_candidates", candidates)
    return calls


def test_fit_writes_a_model_with_the_filter(
    model_and_cohort: tuple[Path, Path], tmp_path: Path, synthetic_candidates: list[int]
) -> None:
    model, cohort = model_and_cohort
    out = tmp_path / "filtered"
    done: list[tuple[int, int]] = []
    plan = fitting.train_lesion_filter(
        model, [(cohort, list_cases(cohort))], out, model_version="6", report=lambda *a: done.append(a)
    )
    assert synthetic_candidates[0] == 3 and done[-1] == (3, 3)
    assert not (out / fitting.CANDIDATES_DIR).exists()  # derived data, removed once the model is written
    block = plan.data["inference"]["lesion_filter"]
    assert block["fitted_on"]["cases"] == 3 and block["fitted_on"]["lesions"] == 90
    assert block["coefficients"][FEATURE_NAMES.index("peak_hu")] > 2  # the one informative feature
    loaded = load_ensemble(out)
    assert loaded.plan.model_version == "6" and loaded.plan.lesion_filter(3) is not None
    for k in range(3):
        assert (out / f"member_{k}.safetensors").read_bytes() == (
            model / f"member_{k}.safetensors"
        ).read_bytes()
    with pytest.raises(InvalidInputError, match="already holds a model"):
        fitting.train_lesion_filter(model, [(cohort, list_cases(cohort))], out)


def test_an_interrupted_run_resumes_only_with_the_same_model_and_data(
    model_and_cohort: tuple[Path, Path],
    tmp_path: Path,
    synthetic_candidates: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, cohort = model_and_cohort
    out = tmp_path / "filtered"
    datasets = [(cohort, list_cases(cohort))]

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(fitting, "fit_lesion_filter", interrupted)
        with pytest.raises(KeyboardInterrupt):
            fitting.train_lesion_filter(model, datasets, out)
    assert synthetic_candidates[0] == 3 and not (out / "plan.json").exists()
    assert len(list((out / fitting.CANDIDATES_DIR).glob("*.npz"))) == 3
    # Another model (other weights), other data or other votes must not reuse these candidates.
    other = tmp_path / "other"
    shutil.copytree(model, other)
    save_member(ResUNet3d(1, 5, FILTERS), other / "member_0.safetensors")
    with pytest.raises(InvalidInputError, match="candidates of another model"):
        fitting.train_lesion_filter(other, datasets, out)
    with pytest.raises(InvalidInputError, match="candidates of another model"):
        fitting.train_lesion_filter(model, datasets, out, candidate_votes=2)
    with pytest.raises(InvalidInputError, match="candidates of another model"):
        fitting.train_lesion_filter(model, datasets * 2, out)
    plan = fitting.train_lesion_filter(model, datasets, out)
    assert synthetic_candidates[0] == 3  # nothing computed again
    assert plan.data["inference"]["lesion_filter"]["fitted_on"]["lesions"] == 90


def test_an_existing_folder_is_never_written_into(
    model_and_cohort: tuple[Path, Path], tmp_path: Path, synthetic_candidates: list[int]
) -> None:
    model, cohort = model_and_cohort
    out = tmp_path / "mine"
    out.mkdir()
    (out / "member_0.safetensors").write_text("someone else's file")
    with pytest.raises(InvalidInputError, match="not an interrupted run"):
        fitting.train_lesion_filter(model, [(cohort, list_cases(cohort))], out)
    assert (out / "member_0.safetensors").read_text() == "someone else's file"
    assert synthetic_candidates[0] == 0
    with pytest.raises(InvalidInputError, match="--threshold must be between 0 and 1"):
        fitting.train_lesion_filter(model, [(cohort, list_cases(cohort))], tmp_path / "new", threshold=1.5)
    assert not (tmp_path / "new").exists()


def test_command_prints_the_coefficients_and_names_bad_input(
    model_and_cohort: tuple[Path, Path], tmp_path: Path, synthetic_candidates: list[int]
) -> None:
    model, cohort = model_and_cohort
    out = tmp_path / "m"
    args = ["train-lesion-filter", "--model", str(model), "--data", str(cohort), "--data", str(cohort)]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert synthetic_candidates[0] == 6  # the same folder twice: its cases are kept apart
    assert "peak_hu" in result.output and "of 6 cases" in result.output
    assert json.loads((out / "plan.json").read_text())["inference"]["lesion_filter"]["threshold"] == 0.5
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "n"), "--threshold", "1.2"])
    assert result.exit_code == 1 and "--threshold must be between 0 and 1" in result.output
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "n"), "--candidate-votes", "4"])
    assert result.exit_code == 1 and "--candidate-votes must be in 1..3" in result.output
    result = CliRunner().invoke(
        app,
        [
            "train-lesion-filter",
            "--model",
            str(tmp_path / "none"),
            "--data",
            str(cohort),
            "--out",
            str(tmp_path / "n"),
        ],
    )
    assert result.exit_code == 1 and "model folder not found" in result.output


def test_few_candidates_give_a_warning(
    model_and_cohort: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, cohort = model_and_cohort
    features = np.random.default_rng(2).normal(size=(6, len(FEATURE_NAMES)))
    monkeypatch.setattr(fitting, "labelled_candidates", lambda *a, **k: (features, np.arange(6) < 5))
    with pytest.warns(CacScoreWarning, match="18 candidate lesions, only 3 of them false"):
        fitting.train_lesion_filter(model, [(cohort, list_cases(cohort))], tmp_path / "m")
