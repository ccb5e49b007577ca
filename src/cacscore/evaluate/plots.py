"""PNG plots of an evaluation (matplotlib, object API, Agg canvas; no pyplot global state).

Each figure states its cohort size and key figure in its title so that it can
be read alone: the confusion matrix of risk categories, predicted vs reference
Agatston on log(1 + x) axes, Bland-Altman plots (raw and log-transformed) and
per-artery totals and lesion F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cacscore.evaluate.metrics import bland_altman
from cacscore.evaluate.runner import CaseEvaluation
from cacscore.scoring.conventions import RISK_CATEGORY_UPPER
from cacscore.scoring.results import ARTERY_ORDER

#: Category upper bounds of the Agatston score drawn on the scatter plot (A|B at 0 is the 0/1 gap).
CATEGORY_BOUNDS: tuple[float, ...] = tuple(v for v in RISK_CATEGORY_UPPER.values() if 0 < v < np.inf)
_DPI = 120


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _metric_text(metric: dict[str, Any] | None) -> str:
    return "n/a" if not metric or metric.get("value") is None else f"{metric['value']:.3f}"


def plot_confusion(path: Path, metrics: dict[str, Any]) -> Path:
    """Confusion matrix of risk categories with counts; correct cells outlined."""
    cat = metrics["category"]
    matrix = np.asarray(cat["confusion_matrix"])
    labels = cat["labels"]
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            colour = "white" if shown[i, j] > 0.55 else "black"
            weight = "bold" if i == j else "normal"
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                color=colour,
                fontsize=13,
                fontweight=weight,
            )
        ax.add_patch(_rect(i))
    ax.set_xticks(range(len(labels)), labels, fontsize=12)
    ax.set_yticks(range(len(labels)), labels, fontsize=12)
    ax.set_xlabel("predicted risk category", fontsize=12)
    ax.set_ylabel("reference risk category", fontsize=12)
    ax.set_title(
        f"Risk category, n = {matrix.sum()}\naccuracy {_metric_text(cat['accuracy'])}, "
        f"Harrell's C {_metric_text(cat['harrell_c'])}, kappa {_metric_text(cat['kappa_linear'])}",
        fontsize=11,
    )
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the reference row")
    fig.savefig(path)
    return path


def _rect(i: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#333333", linewidth=1.5)


def _log_ticks(ax: Any, axis: str, top: float) -> None:
    """Ticks at readable scores on a log(1 + x) axis; 400 (the D/E bound) only where it leaves room."""
    ticks = [0.0, 1.0, 10.0, 100.0]
    if top <= 3000:
        ticks.append(400.0)
    power = 1000.0
    while power <= top * 1.05:
        ticks.append(power)
        power *= 10
    labels = [_short_number(t) for t in ticks]
    positions = np.log1p(ticks)
    if axis == "x":
        ax.set_xticks(positions, labels)
    else:
        ax.set_yticks(positions, labels)


def _short_number(value: float) -> str:
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= size * 10:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def plot_scatter(path: Path, evaluations: Sequence[CaseEvaluation], metrics: dict[str, Any]) -> Path:
    """Predicted vs reference Agatston on log(1 + x) axes with identity line and category bounds."""
    ref = np.array([e.ref_agatston for e in evaluations], dtype=float)
    pred = np.array([e.pred_agatston for e in evaluations], dtype=float)
    match = np.array([e.ref_category == e.pred_category for e in evaluations], dtype=bool)
    top = float(max(ref.max(initial=0), pred.max(initial=0), 10.0))
    fig = _figure(6.0, 5.6)
    ax = fig.add_subplot()
    limit = np.log1p(top) * 1.05
    ax.plot([0, limit], [0, limit], color="#555555", linewidth=1, label="identity")
    for bound in CATEGORY_BOUNDS:
        if bound <= top:
            ax.axvline(np.log1p(bound), color="#bbbbbb", linewidth=0.8, linestyle="--")
            ax.axhline(np.log1p(bound), color="#bbbbbb", linewidth=0.8, linestyle="--")
    edges = [0.0, np.log1p(0.5), *np.log1p([b for b in CATEGORY_BOUNDS if b <= top]), limit]
    for letter, lo, hi in zip("ABCDE", edges[:-1], edges[1:], strict=False):
        ax.text((lo + hi) / 2, limit * 0.985, letter, ha="center", va="top", color="#777777", fontsize=10)
    ax.scatter(
        np.log1p(ref[match]),
        np.log1p(pred[match]),
        s=30,
        color="#2c7bb6",
        alpha=0.8,
        label=f"category correct ({int(match.sum())})",
    )
    ax.scatter(
        np.log1p(ref[~match]),
        np.log1p(pred[~match]),
        s=40,
        color="#d7191c",
        marker="x",
        label=f"category wrong ({int((~match).sum())})",
    )
    _log_ticks(ax, "x", top)
    _log_ticks(ax, "y", top)
    ax.set_xlim(-0.1, limit)
    ax.set_ylim(-0.1, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("reference Agatston (log(1 + x) axis)", fontsize=11)
    ax.set_ylabel("predicted Agatston (log(1 + x) axis)", fontsize=11)
    ax.set_title(
        f"Agatston score per case, n = {len(ref)}\nICC(2,1) {_metric_text(metrics['agatston']['icc'])}; "
        "dashed: category bounds 10, 100, 400",
        fontsize=11,
    )
    ax.legend(loc="lower right", fontsize=9)
    ax.grid(alpha=0.2)
    fig.savefig(path)
    return path


def _bland_altman_panel(
    ax: Any, ref: np.ndarray, pred: np.ndarray, title: str, unit: str, *, log_x: bool = False
) -> None:
    mean = (ref + pred) / 2
    diff = pred - ref
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax.scatter(np.log1p(mean) if log_x else mean, diff, s=22, color="#2c7bb6", alpha=0.8, label="one case")
    if diff.size:
        ba = bland_altman(ref, pred)
        bias, low, high = ba.mean_diff, ba.loa_low, ba.loa_high
        digits = 0 if max(abs(low), abs(high)) >= 100 else 2
        ax.axhline(bias, color="#d7191c", linewidth=1.2, label=f"bias (mean difference) {bias:+.{digits}f}")
        ax.axhline(
            high,
            color="#d7191c",
            linestyle="--",
            linewidth=1,
            label=f"95 % limits of agreement {low:+.{digits}f} to {high:+.{digits}f}",
        )
        ax.axhline(low, color="#d7191c", linestyle="--", linewidth=1)
    ax.set_xlabel(f"mean of reference and prediction {unit}", fontsize=10)
    ax.set_ylabel(f"prediction - reference {unit}", fontsize=10)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=8.5, loc="best")
    ax.grid(alpha=0.2)


def plot_bland_altman(path: Path, evaluations: Sequence[CaseEvaluation]) -> Path:
    """Bland-Altman of Agatston: raw scores (left) and log(1 + score) (right).

    Agatston differences grow with the score, so the raw limits of agreement
    are dominated by the highest scores; the log panel shows relative
    agreement across the whole range (a difference of 0.1 is about 10 %).
    """
    ref = np.array([e.ref_agatston for e in evaluations], dtype=float)
    pred = np.array([e.pred_agatston for e in evaluations], dtype=float)
    fig = _figure(11.0, 4.6)
    left, right = fig.subplots(1, 2)
    _bland_altman_panel(
        left,
        ref,
        pred,
        f"Bland-Altman, Agatston, n = {ref.size} (x: log(1 + x) axis)",
        "(Agatston)",
        log_x=True,
    )  # so that the many small scores do not pile up at 0
    top = float(max(ref.max(initial=0), pred.max(initial=0), 10.0))
    _log_ticks(left, "x", top)
    left.set_xlim(-0.1, np.log1p(top) * 1.05)
    _bland_altman_panel(
        right, np.log1p(ref), np.log1p(pred), "Bland-Altman on log(1 + Agatston)", "(log units)"
    )
    fig.savefig(path)
    return path


def plot_arteries(path: Path, metrics: dict[str, Any]) -> Path:
    """Per artery: reference vs predicted total Agatston (left) and lesion F1 by count and volume (right)."""
    totals = metrics["arteries_agatston"]
    names = [n for n in ARTERY_ORDER if n in totals]
    fig = _figure(11.0, 4.4)
    left, right = fig.subplots(1, 2)
    x = np.arange(len(names))
    ref = [totals[n]["ref_total"] for n in names]
    pred = [totals[n]["pred_total"] for n in names]
    left.bar(x - 0.2, ref, 0.4, color="#999999", label="reference")
    left.bar(x + 0.2, pred, 0.4, color="#2c7bb6", label="prediction")
    for xi, value in zip(x, pred, strict=True):
        left.annotate(f"{value:.0f}", (xi + 0.2, value), ha="center", va="bottom", fontsize=8)
    for xi, value in zip(x, ref, strict=True):
        left.annotate(
            f"{value:.0f}", (xi - 0.2, value), ha="center", va="bottom", fontsize=8, color="#555555"
        )
    left.set_xticks(x, names, fontsize=11)
    left.set_ylabel("total Agatston over the cohort", fontsize=10)
    left.set_title(
        "Total Agatston per artery over the cohort\n(calcium without an artery label is 'unspecified')",
        fontsize=11,
    )
    left.legend(fontsize=9)
    lesions = metrics["lesions"]["per_artery"]
    counts = metrics["lesions"]["counts"]["arteries"]
    lesion_names = [n for n in names if n in lesions]
    # An artery without any lesion on either side has F1 = 1 by definition; a bar would suggest a success.
    empty = [counts[n]["n_ref"] == 0 and counts[n]["n_pred"] == 0 for n in lesion_names]
    f1 = [None if e else lesions[n]["f1"] for n, e in zip(lesion_names, empty, strict=True)]
    f1_volume = [None if e else lesions[n]["f1_volume"] for n, e in zip(lesion_names, empty, strict=True)]
    xl = np.arange(len(lesion_names))
    right.bar(
        xl - 0.2, [np.nan if v is None else v for v in f1], 0.4, color="#2c7bb6", label="F1 by lesion count"
    )
    right.bar(
        xl + 0.2, [np.nan if v is None else v for v in f1_volume], 0.4, color="#abd9e9", label="F1 by volume"
    )
    for xi, a, b, none in zip(xl, f1, f1_volume, empty, strict=True):
        if none:
            right.annotate("no lesions", (xi, 0.02), ha="center", va="bottom", fontsize=8, color="#555555")
            continue
        for offset, value in ((-0.2, a), (0.2, b)):
            right.annotate(
                "n/a" if value is None else f"{value:.2f}",
                (xi + offset, value or 0),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    overall = metrics["lesions"]["overall"]
    right.set_xticks(xl, lesion_names, fontsize=11)
    right.set_ylim(0, 1.25)
    right.set_ylabel("F1", fontsize=10)
    right.set_title(
        "Lesion detection per artery (all: F1 "
        f"{overall['f1'] if overall['f1'] is None else round(overall['f1'], 3)}, "
        "FP/scan "
        f"{overall['fp_per_scan'] if overall['fp_per_scan'] is None else round(overall['fp_per_scan'], 2)})",
        fontsize=11,
    )
    right.legend(fontsize=9, loc="upper center", ncol=2)
    fig.savefig(path)
    return path


def write_plots(out: Path, metrics: dict[str, Any], evaluations: Sequence[CaseEvaluation]) -> list[Path]:
    """Write the four evaluation PNGs into ``out``."""
    return [
        plot_confusion(out / "confusion_matrix.png", metrics),
        plot_bland_altman(out / "bland_altman.png", evaluations),
        plot_scatter(out / "scatter_agatston.png", evaluations, metrics),
        plot_arteries(out / "arteries.png", metrics),
    ]
