"""The Table 1 protocol with an injected fake trainer (fast), and one real tiny run (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cacscore.datasets import list_cases
from cacscore.errors import CacScoreError, InvalidInputError
from cacscore.evaluate.experiment import (
    SCALES,
    MemberPredictions,
    Table1Scale,
    TrainRequest,
    run_table1,
)

SCALE = Table1Scale(
    "test", (1, 2, 3), n_val=1, n_test=5, n_members=3, epochs=1, steps_per_epoch=1, batch=1, patch=(8, 8, 8)
)


class FakeTrainer:
    """Records calls; checks the set manifest is a readable dataset; writes a marker model."""

    def __init__(self) -> None:
        self.calls: list[TrainRequest] = []

    def __call__(self, request: TrainRequest) -> None:
        self.calls.append(request)
        listed = [c.case_id for c in list_cases(request.data_dir)]
        assert sorted(listed) == sorted(request.val_ids + request.train_ids)
        request.model_dir.mkdir(parents=True, exist_ok=True)
        (request.model_dir / "fake.json").write_text(json.dumps({"n_train": len(request.train_ids)}))


PREDICTED: list[str] = []


def fake_predict(model_dir: Path) -> Any:
    """Member k misses every calcification of case i when (i + k) % (n_train + 1) == 0.

    More data, fewer misses.
    """
    n_train = json.loads((model_dir / "fake.json").read_text())["n_train"]

    def predict(case: Any) -> MemberPredictions:
        PREDICTED.append(case.case_id)
        i = int(case.case_id.split("_")[-1])
        members = [
            np.zeros_like(case.label) if (i + k) % (n_train + 1) == 0 else case.label for k in range(3)
        ]
        votes = sum((m > 0).astype(int) for m in members)
        return MemberPredictions(members, np.where(2 * votes > len(members), case.label, 0))

    return predict


def test_table1_with_fake_trainer(cohort: Path, tmp_path: Path) -> None:
    cases = list_cases(cohort)
    trainer = FakeTrainer()
    events: list[tuple] = []
    out = tmp_path / "t1"
    table = run_table1(
        out,
        train_cases=cases,
        test_cases=cases,
        scale=SCALE,
        train_fn=trainer,
        predict_fn=fake_predict,
        on_event=lambda *e: events.append(e),
        provenance={"hardware": "test"},
    )
    # nested sets: the validation case plus 1, 2, 3 training cases
    assert [c.train_ids for c in trainer.calls] == [
        ("case_1",),
        ("case_1", "case_2"),
        ("case_1", "case_2", "case_3"),
    ]
    assert all(c.val_ids == ("case_0",) for c in trainer.calls)
    assert [c.seed for c in trainer.calls] == [0, 100, 200]
    assert [s["n_train"] for s in table["sets"]] == [1, 2, 3]
    first = table["sets"][0]
    # n_train = 1: member 0 misses cases 0, 2, 4 (-> A), member 1 misses 1, 3, member 2 misses 0, 2, 4.
    # Member 0: refs A..E predicted A,B,A,D,A -> accuracy 3/5.
    assert first["members"][0]["accuracy"] == pytest.approx(0.6)
    assert first["members"][1]["accuracy"] == pytest.approx(0.6)  # misses B (1) and D (3): case_0 stays A
    assert first["single"]["accuracy"]["mean"] == pytest.approx(0.6)
    assert first["single"]["accuracy"]["sd"] == pytest.approx(0.0)
    # the ensemble keeps a case when 2 of 3 members see it: cases 0, 2, 4 are missed by 2 members
    # -> only 1, 3 kept
    assert first["ensemble"]["accuracy"] == pytest.approx(0.6)
    last = table["sets"][2]
    assert last["ensemble"]["accuracy"] == 1.0 and last["ensemble"]["harrell_c"] == 1.0
    assert last["ensemble"]["paper_c_index"] == 1.0  # one case per category: no reference ties
    assert events[:4] == [("train", 0), ("train", 1), ("train", 2), ("test", 5)] and events[-1] == (
        "case",
        5,
        5,
    )
    md = (out / "table.md").read_text()
    assert "| 1 model trained on J1 (n = 1) (average performance) |" in md
    assert "| Ensemble of 3 models trained on J1 + J2 + AD | 1.000 | 1.000 | 1.000 |" in md
    assert "hardware: test" in md
    assert (out / "figure3.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "table.json").read_text())["schema"] == "cacscore.table1/1"

    # Resumable: tested cases are kept; only a missing case is predicted again (by each of the 3 sets).
    (out / "results" / "cases" / "case_2.json").unlink()
    PREDICTED.clear()
    table2 = run_table1(
        out, train_cases=cases, test_cases=cases, scale=SCALE, train_fn=FakeTrainer(), predict_fn=fake_predict
    )
    assert PREDICTED == ["case_2"] * 3
    assert table2["sets"] == table["sets"]


def test_parallel_workers_give_the_same_table(cohort: Path, tmp_path: Path) -> None:
    cases = list_cases(cohort)
    serial = run_table1(
        tmp_path / "a",
        train_cases=cases,
        test_cases=cases,
        scale=SCALE,
        train_fn=FakeTrainer(),
        predict_fn=fake_predict,
    )
    parallel = run_table1(
        tmp_path / "b",
        train_cases=cases,
        test_cases=cases,
        scale=SCALE,
        train_fn=FakeTrainer(),
        predict_fn=fake_predict,
        workers=2,
    )
    for a, b in zip(serial["sets"], parallel["sets"], strict=True):
        assert a["members"] == b["members"] and a["ensemble"] == b["ensemble"]


def test_failing_test_case_is_reported(cohort: Path, tmp_path: Path) -> None:
    cases = list_cases(cohort)

    def broken(model_dir: Path) -> Any:
        good = fake_predict(model_dir)

        def predict(case: Any) -> MemberPredictions:
            if case.case_id == "case_4":
                raise RuntimeError("out of memory")
            return good(case)

        return predict

    table = run_table1(
        tmp_path / "t",
        train_cases=cases,
        test_cases=cases,
        scale=SCALE,
        train_fn=FakeTrainer(),
        predict_fn=broken,
    )
    assert table["sets"][0]["n_evaluated"] == 4
    assert table["sets"][0]["failures"] == [{"case_id": "case_4", "reason": "RuntimeError: out of memory"}]
    assert "case_4: RuntimeError: out of memory" in (tmp_path / "t" / "table.md").read_text()


def test_set_where_every_case_fails_is_an_error_and_not_saved(cohort: Path, tmp_path: Path) -> None:
    cases = list_cases(cohort)

    def broken(model_dir: Path) -> Any:
        def predict(case: Any) -> MemberPredictions:
            raise TypeError("combine() changed")

        return predict

    with pytest.raises(CacScoreError, match="J1: every test case failed; first: case_0: TypeError: combine"):
        run_table1(
            tmp_path,
            train_cases=cases,
            test_cases=cases,
            scale=SCALE,
            train_fn=FakeTrainer(),
            predict_fn=broken,
        )
    assert not (tmp_path / "results" / "set_0.json").exists()


def test_too_few_training_cases(cohort: Path, tmp_path: Path) -> None:
    cases = list_cases(cohort)
    with pytest.raises(InvalidInputError, match="scale 'tiny' needs 10 training-cohort cases"):
        run_table1(
            tmp_path,
            train_cases=cases,
            test_cases=cases,
            scale=SCALES["tiny"],
            train_fn=FakeTrainer(),
            predict_fn=fake_predict,
        )


@pytest.mark.slow
def test_real_tiny_run(tmp_path: Path) -> None:
    from cacscore.cli.main import app

    out = tmp_path / "table1"
    result = CliRunner().invoke(
        app,
        ["experiment", "table1", "--out", str(out), "--scale", "tiny", "--device", "cpu", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    table = json.loads((out / "table.json").read_text())
    assert [s["n_train"] for s in table["sets"]] == list(SCALES["tiny"].train_sizes)
    assert all(len(s["members"]) == 5 for s in table["sets"])
    assert (out / "figure3.png").is_file()
