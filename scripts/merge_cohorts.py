"""Merge phantom cohorts into one dataset folder of links: ``merge_cohorts.py OUT COHORT [COHORT ...]``.

Each case folder of each cohort is linked as ``OUT/<cohort>_<case_id>`` and ``OUT/cases.csv`` lists them
all, so that ``cacscore train --data OUT`` sees one dataset made of several families.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def merge(out: Path, cohorts: list[Path]) -> int:
    """Write the merged folder; returns the number of cases."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    fields: list[str] = []
    for cohort in cohorts:
        with (cohort / "cases.csv").open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                old = row["case_id"]
                new = f"{cohort.name}_{old}"
                link = out / new
                if not link.exists():
                    link.symlink_to((cohort / old).resolve(), target_is_directory=True)
                for key, value in row.items():
                    if isinstance(value, str) and value.startswith(old + "/"):
                        row[key] = new + value[len(old) :]
                row["case_id"] = new
                row["source"] = cohort.name
                rows.append(row)
                fields += [key for key in row if key not in fields]
    with (out / "cases.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


if __name__ == "__main__":
    n = merge(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
    print(f"{n} cases in {sys.argv[1]}")
