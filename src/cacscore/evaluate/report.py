"""Evaluation report files: ``metrics.json``, ``cases.csv``, ``report.md`` and the plots."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cacscore.evaluate.runner import GROUP_KEYS, UNKNOWN, CaseEvaluation
from cacscore.io.atomic import write_json_atomic, write_text_atomic

#: Files :func:`write_report` creates (the command refuses to overwrite them without ``--force``).
REPORT_FILES: tuple[str, ...] = (
    "metrics.json",
    "cases.csv",
    "report.md",
    "confusion_matrix.png",
    "bland_altman.png",
    "scatter_agatston.png",
    "arteries.png",
)

CASE_COLUMNS: tuple[str, ...] = (
    "case_id",
    "ref_agatston",
    "pred_agatston",
    "ref_volume_mm3",
    "pred_volume_mm3",
    "ref_category",
    "pred_category",
    "category_match",
    "lesion_tp",
    "lesion_fp",
    "lesion_fn",
    "lesion_pred_tp",
    *GROUP_KEYS,
)
#: Titles of the per-source tables of ``report.md``.
GROUP_TITLES: dict[str, str] = {
    "dataset": "dataset (--data)",
    "family": "generator family",
    "generator_version": "generator version",
}


def cases_csv(evaluations: Sequence[CaseEvaluation]) -> str:
    """Per-case table as CSV text (columns :data:`CASE_COLUMNS`).

    ``lesion_tp`` counts detected reference lesions, ``lesion_fn`` missed ones,
    ``lesion_fp`` predicted lesions on no compatible reference lesion and
    ``lesion_pred_tp`` predicted lesions on one (see :mod:`cacscore.evaluate.lesions`).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CASE_COLUMNS)
    for e in evaluations:
        c = e.lesions.overall
        writer.writerow(
            [
                e.case_id,
                f"{e.ref_agatston:.3f}",
                f"{e.pred_agatston:.3f}",
                f"{e.ref_volume_mm3:.3f}",
                f"{e.pred_volume_mm3:.3f}",
                e.ref_category,
                e.pred_category,
                int(e.ref_category == e.pred_category),
                c.tp,
                c.fp,
                c.fn,
                c.n_pred_true,
                *(e.groups.get(key, UNKNOWN) for key in GROUP_KEYS),
            ]
        )
    return buffer.getvalue()


def _fmt(metric: dict[str, Any] | None, digits: int = 3) -> str:
    if metric is None or metric.get("value") is None:
        return "n/a"
    text = f"{metric['value']:.{digits}f}"
    ci = metric.get("ci95")
    if ci and ci[0] is not None:
        text += f" ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})"
    return text


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report_markdown(metrics: dict[str, Any], title: str = "cacscore evaluation") -> str:
    """Human-readable summary of a ``metrics.json`` dictionary, with the plots embedded."""
    cat = metrics["category"]
    lines = [
        f"# {title}",
        "",
        (
            f"Predictions: `{metrics['source']}`. Cases: {metrics['n_cases']} listed, "
            f"{metrics['n_evaluated']} evaluated, "
            f"**{metrics['n_failed']} failed**. 95 % CIs: bootstrap, "
            f"{metrics['bootstrap']['n_resamples']} resamples "
            f"of cases, seed {metrics['bootstrap']['seed']}."
        ),
        "",
    ]
    if metrics["failures"]:
        lines += ["## Failed cases", "", "| case | reason |", "|---|---|"]
        lines += [f"| {f['case_id']} | {f['reason'].replace('|', '/')} |" for f in metrics["failures"]]
        lines.append("")
    ba = metrics["agatston"]["bland_altman"] or {}
    lines += [
        "## Risk category (A-E) and agreement",
        "",
        "| metric | value (95 % CI) |",
        "|---|---|",
        f"| category accuracy | {_fmt(cat['accuracy'])} |",
        "| C-index, Harrell (pairs with different reference "
        f"category; prediction ties 1/2) | {_fmt(cat['harrell_c'])} |",
        f"| C-index, formula printed in the paper (concordant / all pairs) | {_fmt(cat['paper_c_index'])} |",
        f"| linear weighted kappa | {_fmt(cat['kappa_linear'])} |",
        f"| ICC(2,1) Agatston | {_fmt(metrics['agatston']['icc'])} |",
        f"| ICC(2,1) volume | {_fmt(metrics['volume_mm3']['icc'])} |",
        f"| Bland-Altman Agatston: bias (pred - ref) | {_num(ba.get('mean_diff'), 1)} |",
        (
            f"| Bland-Altman Agatston: 95 % limits of agreement | {_num(ba.get('loa_low'), 1)} to "
            f"{_num(ba.get('loa_high'), 1)} |"
        ),
        "",
        (
            "Harrell's C is the comparable C-index; the paper's printed formula cannot reach 1 when "
            "reference categories tie (see `docs/evaluation.md`)."
        ),
        "",
        "### Confusion matrix (rows: reference, columns: prediction)",
        "",
        "| ref \\ pred | " + " | ".join(cat["labels"]) + " |",
        "|---" * (len(cat["labels"]) + 1) + "|",
    ]
    for label, row in zip(cat["labels"], cat["confusion_matrix"], strict=True):
        lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    lines += _group_lines(metrics.get("groups") or {})
    lesions = metrics["lesions"]
    lines += [
        "",
        "## Lesions (orCaScore definition: 6-connected >= 130 HU, overlap with a compatible artery)",
        "",
        "| artery | sensitivity | PPV | F1 | FP / scan | F1 by volume |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("all", lesions["overall"]), *lesions["per_artery"].items()]
    for name, m in rows:
        lines.append(
            f"| {name} | {_num(m['sensitivity'])} | {_num(m['ppv'])} | {_num(m['f1'])} | "
            f"{_num(m['fp_per_scan'], 2)} | {_num(m['f1_volume'])} |"
        )
    lines += [
        "",
        "## Plots",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "![predicted vs reference Agatston](scatter_agatston.png)",
        "![Bland-Altman](bland_altman.png)",
        "![per artery](arteries.png)",
        "",
        "Per-case values: `cases.csv`; every figure above with its CI: `metrics.json`.",
        "",
    ]
    return "\n".join(lines)


def _group_lines(groups: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The per-source tables: one per key of ``groups`` whose cases are not all of unknown source."""
    lines: list[str] = []
    for key, table in groups.items():
        if not table or set(table) == {UNKNOWN}:
            continue
        if not lines:
            lines += [
                "",
                "## By data source",
                "",
                "Each source's cases alone (95 % CIs as above). Median ratio: predicted / reference Agatston "
                "in the cases of reference category D or E.",
            ]
        lines += [
            "",
            f"### By {GROUP_TITLES.get(key, key)}",
            "",
            "| " + key + " | cases (failed) | accuracy | Harrell's C | kappa | ICC Agatston | "
            "median ratio D/E (n) | lesion sensitivity | lesion PPV | lesion F1 | FP / scan |",
            "|---" * 11 + "|",
        ]
        for value, m in table.items():
            ratio = m["median_ratio_de"]
            lines.append(
                f"| {value} | {m['n_evaluated']} ({m['n_failed']}) "
                f"| {_fmt(m['accuracy'])} | {_fmt(m['harrell_c'])} "
                f"| {_fmt(m['kappa_linear'])} | {_fmt(m['icc_agatston'])} "
                f"| {_num(ratio['value'], 2)} ({ratio['n']}) "
                f"| {_num(m['lesion_sensitivity'])} | {_num(m['lesion_ppv'])} | {_num(m['lesion_f1'])} "
                f"| {_num(m['fp_per_scan'], 2)} |"
            )
    return lines


def write_report(
    out: Path,
    metrics: dict[str, Any],
    evaluations: Sequence[CaseEvaluation],
    *,
    title: str = "cacscore evaluation",
) -> list[Path]:
    """Write every file of :data:`REPORT_FILES` into ``out`` (which must exist) and return their paths."""
    from cacscore.evaluate.plots import write_plots

    write_json_atomic(out / "metrics.json", metrics, indent=2)
    write_text_atomic(out / "cases.csv", cases_csv(evaluations))
    write_text_atomic(out / "report.md", report_markdown(metrics, title))
    return [
        out / "metrics.json",
        out / "cases.csv",
        out / "report.md",
        *write_plots(out, metrics, evaluations),
    ]
