"""Read seeded damaged copies of three phantom DICOM series and print what the reader made of them.

The cases and the judgement are those of ``tests/io/test_dicom_fuzz.py`` (``tests/io/dicom_fuzz.py``):
each case is read in a worker process by default and with ``skip_unreadable``, 10 s per read.

Usage::

    .venv/bin/python benchmarks/fuzz_damaged_series.py [--cases 160] [--seed 20261204]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "io"))

from dicom_fuzz import make_cases, run_cases, write_bases  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=160)
    parser.add_argument("--seed", type=int, default=20261204)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        bases = write_bases(Path(tmp) / "bases")
        cases = make_cases(args.cases, args.seed, bases, Path(tmp) / "cases")
        records = run_cases(cases, bases)
        elapsed = time.perf_counter() - start
    for skip in (False, True):
        chosen = [r for r in records if r["skip_unreadable"] == skip]
        outcome: Counter[str] = Counter()
        for record in chosen:
            result = record["result"]
            if record["failure"]:
                outcome["FAILED"] += 1
            elif result["status"] == "error":
                outcome["one-line error naming a damaged file"] += 1
            elif result["warnings"]:
                outcome["volume with a warning"] += 1
            else:
                outcome["volume identical to the undamaged one"] += 1
        slowest = max(r["result"].get("seconds", 0.0) for r in chosen)
        print(
            f"skip_unreadable={skip}: {len(chosen)} reads, "
            + ", ".join(f"{k} {v}" for k, v in outcome.items())
            + f"; slowest read {slowest:.2f} s"
        )
    kinds = Counter(r["kind"] for r in records if not r["skip_unreadable"])
    print("kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    failures = [r for r in records if r["failure"]]
    for record in failures:
        print(f"FAILED case {record['index']} {record['kind']} {record['detail']}: {record['failure']}")
    print(
        f"{args.cases} cases in {elapsed:.1f} s; "
        f"hangs {sum(r['result']['status'] == 'hang' for r in records)}, "
        f"tracebacks {sum(r['result']['status'] == 'traceback' for r in records)}, failures {len(failures)}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
