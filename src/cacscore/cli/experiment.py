"""``cacscore experiment table1``: generate the cohorts, run the Table 1 protocol with a progress bar."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from cacscore.cli.common import err_console
from cacscore.errors import InvalidInputError
from cacscore.evaluate.experiment import SCALES, SET_NAMES, run_table1
from cacscore.evaluate.table1_wiring import (
    TEST_COHORT_SEED,
    TRAIN_COHORT_SEED,
    hardware_description,
    make_cohort,
    predict_with_cacscore,
    train_with_cacscore,
)


def run_table1_cli(out: Path, *, scale: str, device: str, progress: bool) -> str:
    """``cacscore experiment table1``: generate the cohorts, run the experiment, return ``table.md``'s text.

    Raises
    ------
    InvalidInputError
        Unknown scale.
    """
    from rich.progress import Progress

    if scale not in SCALES:
        raise InvalidInputError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
    spec = SCALES[scale]
    out.mkdir(parents=True, exist_ok=True)
    train_cases = make_cohort(
        out / "data" / "train",
        spec.n_val + spec.train_sizes[-1],
        TRAIN_COHORT_SEED,
        balance=False,
        progress=progress,
    )
    test_cases = make_cohort(
        out / "data" / "test", spec.n_test, TEST_COHORT_SEED, balance=True, progress=progress
    )
    with Progress(console=err_console, disable=not progress, transient=True) as bar:
        task = bar.add_task("training", total=None)

        def on_event(kind: str, *args: Any) -> None:
            if kind == "train":
                bar.update(task, description=f"training {SET_NAMES[args[0]]}: {spec.n_members} members")
            elif kind == "test":
                bar.update(task, description="testing every model", completed=0, total=args[0])
            elif kind == "case":
                bar.update(task, completed=args[0])

        provenance = {
            "hardware": hardware_description(),
            "train_cohort": {"path": "data/train", "seed": TRAIN_COHORT_SEED, "balance": False},
            "test_cohort": {"path": "data/test", "seed": TEST_COHORT_SEED, "balance": True},
        }
        run_table1(
            out,
            train_cases=train_cases,
            test_cases=test_cases,
            scale=spec,
            train_fn=train_with_cacscore,
            predict_fn=functools.partial(predict_with_cacscore, device=device),
            device=device,
            workers=os.cpu_count() or 1,
            on_event=on_event,
            provenance=provenance,
        )
    return (out / "table.md").read_text(encoding="utf-8")
