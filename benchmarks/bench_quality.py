"""Quality of a model on a newly generated, balanced phantom cohort, against the quality targets.

Prints, for the model (and the naive threshold baseline):

- risk category accuracy (target >= 0.95) and Harrell's C (target >= 0.98),
  with :mod:`cacscore.evaluate.metrics`;
- lesion-level F1 as in orCaScore (target >= 0.90), with
  :func:`cacscore.evaluate.lesions.lesion_detection`;
- the % of cases where mitral annulus or aortic valve calcium was counted as
  coronary (target <= 2 %), with :func:`cacscore.evaluate.distractors.distractor_hit`;
  and, outside the targets, the same for aortic root plaques beside the
  coronary ostia, the commonest cause of added calcium;
- with ``--compare-paths``: whether the faster ways of running the members give
  the same masks and scores as the networks run exactly as trained in fp32:
  the shipped fp32 path (batch norm folded, oneDNN convolutions) and bf16
  autocast (CPU inference takes a path only where it does).

Usage::

    python benchmarks/bench_quality.py --n 100 --seed 77001 [--model DIR] [--workers 2] [--device cpu]
        [--compare-paths] [--cohort runs/quality-77001] [--json out.json]

The seed must never have been used to train the model (training cohorts:
2021/2022, see benchmarks/train_default_model.sh). The cohort folder is
kept, and generation resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from cacscore.evaluate.distractors import ROOT_KINDS, VALVE_KINDS, distractor_hit
from cacscore.evaluate.quality import print_rows, summarise
from cacscore.pipeline import labels_or_refusal


def _compare_paths(
    volume: Any,
    reference: Any,
    others: dict[str, Any],
    agreement: dict[str, dict[str, Any]],
) -> None:
    """Tally, per faster path, whether mask and category equal those of the networks as trained."""
    from cacscore.model import score_with_model

    exact = reference.predict(volume)
    a = score_with_model(volume, reference, prediction=exact)
    for name, fast in others.items():
        other = fast.predict(volume)
        b = score_with_model(volume, fast, prediction=other)
        tally = agreement[name]
        tally["same_masks"] += int(np.array_equal(other.labels, exact.labels))
        tally["same_categories"] += int(a.risk_category == b.risk_category)
        tally["max_agatston_diff"] = max(tally["max_agatston_diff"], abs(a.agatston - b.agatston))


def _cohort(args: argparse.Namespace) -> Path:
    """The cohort folder: generated (or completed) unless it is a `cacscore hybrid` cohort."""
    from cacscore.phantom import generate_cohort

    cohort: Path = args.cohort or Path("runs") / f"quality-{args.seed}"
    t0 = time.perf_counter()
    settings = cohort / "generation.json"
    if settings.is_file() and json.loads(settings.read_text()).get("family") == "hybrid":
        # A `cacscore hybrid` cohort: written with its backgrounds, never regenerated here.
        print(f"cohort: the hybrid cohort in {cohort}")
    elif (cohort / "cases.csv").is_file():
        # A complete cohort of any family or generator version (cases.csv is written last): judged as written.
        print(f"cohort: the complete cohort in {cohort}")
    else:
        generate_cohort(
            cohort, args.n, args.seed, fmt="nifti", balance=True, workers=args.workers, progress=True
        )
        seconds = time.perf_counter() - t0
        print(f"cohort: {args.n} balanced phantoms, seed {args.seed}, in {cohort} ({seconds:.0f} s)")
    return cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=77001)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--cohort", type=Path, default=None, help="cohort folder (default runs/quality-SEED)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compare-paths", action="store_true")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()

    import torch

    from cacscore.datasets import list_cases
    from cacscore.evaluate.runner import evaluate_case, threshold_baseline
    from cacscore.model import load_ensemble

    torch.set_num_threads(os.cpu_count() or 1)
    cohort = _cohort(args)
    ensemble = load_ensemble(args.model, precision="fp32", device=args.device)
    print(f"model: {ensemble.info()}")
    reference = others = None
    if args.compare_paths:
        reference = load_ensemble(args.model, precision="fp32", device=args.device, fast=False)
        others = {
            "fp32 (shipped)": ensemble,
            "bf16": load_ensemble(args.model, precision="bf16", device=args.device),
        }
    agreement = {
        name: {"same_masks": 0, "same_categories": 0, "max_agatston_diff": 0.0} for name in others or {}
    }

    model_evals, base_evals = [], []
    model_hits: dict[tuple[str, ...], list[bool]] = {VALVE_KINDS: [], ROOT_KINDS: []}
    base_hits: dict[tuple[str, ...], list[bool]] = {VALVE_KINDS: [], ROOT_KINDS: []}
    seconds = []
    refused: list[str] = []
    refs = list_cases(cohort)
    for i, ref in enumerate(refs):
        import warnings

        from cacscore.errors import CacScoreWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacScoreWarning)
            case = ref.load()
        if case.label is None:
            raise SystemExit(f"{ref.image_path}: case without a reference label")
        truth = json.loads((Path(ref.image_path).parent / "truth.json").read_text())
        start = time.perf_counter()
        labels, refusal = labels_or_refusal(case.volume, ensemble)
        refused += [f"{case.case_id}: {refusal}"] if refusal else []
        prediction = SimpleNamespace(labels=labels)
        seconds.append(time.perf_counter() - start)
        evaluation = evaluate_case(case.case_id, case.volume, case.label, prediction.labels)
        model_evals.append(evaluation)
        for kinds, hits in model_hits.items():
            hits.append(
                distractor_hit(case.volume, prediction.labels, case.label, truth["distractors"], kinds)
            )
        if reference is not None and others is not None:
            _compare_paths(case.volume, reference, others, agreement)
        if not args.no_baseline:
            base = threshold_baseline(case)
            base_evals.append(evaluate_case(case.case_id, case.volume, case.label, base))
            for kinds, hits in base_hits.items():
                hits.append(distractor_hit(case.volume, base, case.label, truth["distractors"], kinds))
        print(
            f"[{i + 1}/{len(refs)}] {case.case_id}: reference {evaluation.ref_agatston:.1f} "
            f"({evaluation.ref_category}), model {evaluation.pred_agatston:.1f} ({evaluation.pred_category})"
            f"{'  valve/annulus counted' if model_hits[VALVE_KINDS][-1] else ''}"
            f"{'  aortic root counted' if model_hits[ROOT_KINDS][-1] else ''}",
            flush=True,
        )

    rows = [
        summarise("model (5-member ensemble)", model_evals, model_hits[VALVE_KINDS], model_hits[ROOT_KINDS])
    ]
    if base_evals:
        rows.append(
            summarise(
                "baseline: every voxel >= 130 HU", base_evals, base_hits[VALVE_KINDS], base_hits[ROOT_KINDS]
            )
        )
    print()
    print_rows(rows)
    print(f"inference (read excluded) on {args.device}: {np.mean(seconds):.2f} s per case (mean)")
    print(
        f"refused by the domain check: {len(refused)} of {len(refs)}" + "".join(f"\n  {r}" for r in refused)
    )
    result: dict[str, Any] = {
        "seed": args.seed,
        "n": args.n,
        "model": ensemble.info(),
        "rows": rows,
        "seconds_per_case": float(np.mean(seconds)),
        "refused": refused,
        # Per case, so that benchmarks/pool_quality.py can pool cohorts (lesions summed, not F1 averaged).
        "cases": [
            {**e.to_dict(), "valve_or_annulus_counted": valve, "aortic_root_counted": root}
            for e, valve, root in zip(model_evals, model_hits[VALVE_KINDS], model_hits[ROOT_KINDS])
        ],
    }
    for name, tally in agreement.items():
        print(
            f"{name} vs fp32 as trained: identical masks in {tally['same_masks']}/{len(refs)} cases, "
            "identical "
            f"categories in {tally['same_categories']}/{len(refs)}, largest Agatston difference "
            f"{tally['max_agatston_diff']:.2f}"
        )
    if agreement:
        result["paths_vs_fp32_as_trained"] = {
            name: {**tally, "n": len(refs)} for name, tally in agreement.items()
        }
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
