"""Pool the quality figures of several cohorts: the per-case results of ``bench_quality.py --json`` files.

One cohort of 100 phantoms gives a standard error of about 0.03 in accuracy,
so the issue's targets are best judged on several cohorts together. Cases are
pooled (lesions summed over every case, as orCaScore does; Harrell's C over
all cases), not the cohorts' figures averaged.

Usage::

    python benchmarks/pool_quality.py runs/quality-111001-v6.json runs/quality-99001-v6.json ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cacscore.evaluate.quality import print_rows, summarise
from cacscore.evaluate.runner import CaseEvaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="JSON files written by bench_quality.py --json")
    args = parser.parse_args()
    evaluations, valve, root, models = [], [], [], set()
    for path in args.results:
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            cases = result["cases"]
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"{path}: cannot read ({exc})") from None
        except KeyError:
            raise SystemExit(
                f"{path}: no per-case results; rerun bench_quality.py --json with this version"
            ) from None
        models.add((result["model"]["name"], result["model"]["version"]))
        print(f"{path}: seed {result['seed']}, {len(cases)} cases, model {result['model']['version']}")
        evaluations += [CaseEvaluation.from_dict(c) for c in cases]
        valve += [bool(c["valve_or_annulus_counted"]) for c in cases]
        root += [bool(c["aortic_root_counted"]) for c in cases]
    if len(models) > 1:
        raise SystemExit(f"the files hold results of different models: {sorted(models)}")
    print()
    print_rows([summarise(f"pooled: {len(args.results)} cohorts", evaluations, valve, root)])


if __name__ == "__main__":
    main()
