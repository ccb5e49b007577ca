"""Whether bf16 inference scores as fp32 does, cohort by cohort, as ``cacscore score`` runs them.

For every case of every cohort given, the shipped path is run twice after
one domain check (:mod:`cacscore.pipeline`): fp32 (the default) and bf16
(``--precision bf16``). Printed per cohort:

- identical masks, identical categories and the largest Agatston difference
  between the two (the cases the domain check refuses score nothing either way
  and count as identical);
- category accuracy against the reference of each precision, where the cohort
  has references: a bf16 path is only worth offering if it is as right as fp32
  on families the model was not made from, not only on its own;
- the seconds of each precision's forward passes and postprocessing.

Folders of real CT without references (``--real FILE``) are compared the
same way, without accuracy.

Usage::

    python benchmarks/bench_precision.py runs/quality-122001 runs/sdf-quality-91001 ...
        [--real lung1.nrrd ...] [--model DIR] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _compare(volume: Any, fp32: Any, bf16: Any) -> dict[str, Any]:
    """Labels, Agatston and seconds of each precision for one volume, after one domain check."""
    from cacscore.pipeline import check_volume, score_checked

    check = check_volume(volume)
    out: dict[str, Any] = {"refused": check.refusal}
    for name, ensemble in (("fp32", fp32), ("bf16", bf16)):
        if check.refusal is not None:
            out[name] = (np.zeros(volume.shape, np.uint8), 0.0, "A", 0.0)
            continue
        start = time.perf_counter()
        result, _extra, labels = score_checked(volume, check, ensemble)
        out[name] = (labels, result.agatston, result.risk_category, time.perf_counter() - start)
    return out


def tally(
    name: str, items: Iterator[tuple[str, Any, np.ndarray | None]], fp32: Any, bf16: Any
) -> dict[str, Any]:
    """Compare the two precisions on every case of ``items`` (case id, volume, reference label or None)."""
    from cacscore.evaluate.runner import evaluate_case

    rows = []
    for case_id, volume, label in items:
        both = _compare(volume, fp32, bf16)
        row: dict[str, Any] = {
            "case": case_id,
            "refused": both["refused"],
            "same_mask": bool(np.array_equal(both["fp32"][0], both["bf16"][0])),
            "agatston": [both["fp32"][1], both["bf16"][1]],
            "category": [both["fp32"][2], both["bf16"][2]],
            "seconds": [both["fp32"][3], both["bf16"][3]],
        }
        if label is not None:
            row["reference"] = evaluate_case(case_id, volume, label, label).ref_category
        rows.append(row)
        print(
            f"  {name} {case_id}: fp32 {row['agatston'][0]:.1f} ({row['category'][0]}), "
            f"bf16 {row['agatston'][1]:.1f} ({row['category'][1]})"
            f"{'' if row['same_mask'] else '  masks differ'}",
            flush=True,
        )
    n = len(rows)
    figures: dict[str, Any] = {
        "n": n,
        "identical_masks": sum(r["same_mask"] for r in rows),
        "identical_categories": sum(r["category"][0] == r["category"][1] for r in rows),
        "largest_agatston_difference": max(
            (abs(r["agatston"][0] - r["agatston"][1]) for r in rows), default=0.0
        ),
    }
    line = (
        f"{name}: {n} cases, identical masks {figures['identical_masks']}/{n}, identical categories "
        f"{figures['identical_categories']}/{n}, largest Agatston difference "
        f"{figures['largest_agatston_difference']:.2f}"
    )
    with_ref = [r for r in rows if "reference" in r]
    if with_ref:
        accuracy = [float(np.mean([r["category"][k] == r["reference"] for r in with_ref])) for k in (0, 1)]
        line += f"; accuracy fp32 {accuracy[0]:.3f}, bf16 {accuracy[1]:.3f}"
        figures["accuracy"] = {"fp32": accuracy[0], "bf16": accuracy[1]}
    scored = [r for r in rows if r["refused"] is None]
    if scored:
        seconds = [float(np.median([r["seconds"][k] for r in scored])) for k in (0, 1)]
        line += f"; median s per scan (model, postprocessing) fp32 {seconds[0]:.2f}, bf16 {seconds[1]:.2f}"
        figures["median_seconds"] = {"fp32": seconds[0], "bf16": seconds[1]}
    print(line, flush=True)
    return {**figures, "cases": rows}


def cohort_cases(cohort: Path) -> Iterator[tuple[str, Any, np.ndarray | None]]:
    """Case id, volume and reference label of each case, one in memory at a time (a cohort is GBs)."""
    from cacscore.datasets import list_cases
    from cacscore.errors import CacScoreWarning

    for ref in list_cases(cohort):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacScoreWarning)
            case = ref.load()
        yield case.case_id, case.volume, case.label


def real_cases(paths: list[Path]) -> Iterator[tuple[str, Any, np.ndarray | None]]:
    """File name and volume of each real CT, without a reference."""
    from cacscore.errors import CacScoreWarning
    from cacscore.io import read_volume

    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacScoreWarning)
            yield path.name, read_volume(path), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohorts", nargs="*", type=Path, help="cohort folders (cacscore phantom / hybrid)")
    parser.add_argument("--real", nargs="*", type=Path, default=[], help="CT files without references")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from cacscore.model import load_ensemble

    torch.set_num_threads(args.threads)
    fp32 = load_ensemble(args.model, precision="fp32")
    bf16 = load_ensemble(args.model, precision="bf16")
    print(f"model: {fp32.info()}; torch threads {args.threads}")
    summary = {str(cohort): tally(str(cohort), cohort_cases(cohort), fp32, bf16) for cohort in args.cohorts}
    if args.real:
        summary["real CT"] = tally("real CT", real_cases(args.real), fp32, bf16)
    print("\nsummary")
    for name, figures in summary.items():
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in figures.items() if k != "cases"))
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
