"""The Table 1 experiment's outputs: ``table.md`` (ours beside the paper's) and ``figure3.png``.

Pure presentation of ``table.json`` (:func:`cacscore.evaluate.experiment.run_table1`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The paper's Table 1 (Gogin et al. 2021), for the comparison row of table.md.
PAPER_TABLE1: dict[str, dict[str, Any]] = {
    "J1": {
        "n_train": 100,
        "single_c": (0.932, 0.008),
        "single_acc": (0.832, 0.010),
        "ensemble": (0.939, 0.847),
    },
    "J1 + J2": {
        "n_train": 422,
        "single_c": (0.943, 0.005),
        "single_acc": (0.849, 0.015),
        "ensemble": (0.944, 0.847),
    },
    "J1 + J2 + AD": {
        "n_train": 783,
        "single_c": (0.949, 0.006),
        "single_acc": (0.864, 0.010),
        "ensemble": (0.951, 0.857),
    },
}


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _mean_sd_text(stats: dict[str, float | None]) -> str:
    text = _f(stats["mean"])
    return text if stats["sd"] is None else f"{text} (std={_f(stats['sd'])})"


def table_markdown(table: dict[str, Any]) -> str:
    """Table 1 as Markdown: our rows, then the paper's for comparison."""
    scale = table["scale"]
    n_test = table["sets"][0]["n_evaluated"] if table["sets"] else 0
    hardware = table.get("hardware") or "not recorded"
    lines = [
        f"# Table 1 on phantoms (scale `{scale['name']}`)",
        "",
        (
            f"Date {table['date']}; hardware: {hardware}. Training sets of "
            f"{', '.join(str(s) for s in scale['train_sizes'])} "
            f"cases (+ {scale['n_val']} validation cases), {scale['n_members']} members each, "
            f"at most {scale['epochs']} epoch(s) x {scale['steps_per_epoch']} steps of batch {scale['batch']}"
            + (f" within {scale['max_minutes']} minutes per set" if scale.get("max_minutes") else "")
            + "; "
            f"test cohort of {n_test} evaluated cases "
            f"(reference categories {table['test_reference_counts']})."
        ),
        "For 1 model, mean and sample SD (ddof = 1) across the members.",
        "",
        "| Method | C-index (Harrell) | C-index (paper formula) | category accuracy |",
        "|---|---|---|---|",
    ]
    for s in table["sets"]:
        single = s["single"]
        lines.append(
            f"| 1 model trained on {s['set']} (n = {s['n_train']}) (average performance) | "
            f"{_mean_sd_text(single['harrell_c'])} | {_mean_sd_text(single['paper_c_index'])} | "
            f"{_mean_sd_text(single['accuracy'])} |"
        )
        ens = s["ensemble"]
        lines.append(
            f"| Ensemble of {len(s['members'])} models trained on {s['set']} | {_f(ens['harrell_c'])} | "
            f"{_f(ens['paper_c_index'])} | {_f(ens['accuracy'])} |"
        )
    failures = [f for s in table["sets"] for f in s["failures"]]
    if failures:
        lines += ["", f"Failed test cases (excluded for every model of that set): {len(failures)}"]
        lines += [
            f"- {s['set']}: {f['case_id']}: {f['reason']}" for s in table["sets"] for f in s["failures"]
        ]
    lines += [
        "",
        (
            "Paper (Gogin et al. 2021, Table 1; real CT, 98 test exams; the printed C-index formula cannot "
            "give these values, so they are read as Harrell's C):"
        ),
        "",
        "| Method | C-index | category accuracy |",
        "|---|---|---|",
    ]
    for name, row in PAPER_TABLE1.items():
        lines.append(
            f"| 1 model trained on {name} (n = {row['n_train']}) | "
            f"{row['single_c'][0]:.3f} (std={row['single_c'][1]:.3f}) "
            f"| {row['single_acc'][0]:.3f} (std={row['single_acc'][1]:.3f}) |"
        )
        lines.append(
            f"| Ensemble of 5 models trained on {name} | {row['ensemble'][0]:.3f} | "
            f"{row['ensemble'][1]:.3f} |"
        )
    lines += ["", "![C-index vs accuracy](figure3.png)", ""]
    return "\n".join(lines)


def plot_figure3(path: Path, table: dict[str, Any]) -> Path:
    """C-index (Harrell) vs category accuracy of every single model and ensemble (the paper's Figure 3)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.2), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = ("#2c7bb6", "#fdae61", "#d7191c")
    markers = ("o", "s", "^")
    # Later sets are drawn smaller on top, so coinciding models stay visible as nested rings.
    for i, (s, colour) in enumerate(zip(table["sets"], colours, strict=False)):
        points = [
            (m["accuracy"], m["harrell_c"])
            for m in s["members"]
            if None not in (m["accuracy"], m["harrell_c"])
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(
                xs,
                ys,
                s=90 - 25 * i,
                marker=markers[i],
                facecolor="none",
                edgecolor=colour,
                linewidth=1.6,
                label=f"1 model, {s['set']} (n = {s['n_train']})",
            )
        ens = s["ensemble"]
        if None not in (ens["accuracy"], ens["harrell_c"]):
            ax.scatter(
                [ens["accuracy"]],
                [ens["harrell_c"]],
                s=380 - 110 * i,
                marker="*",
                color=colour,
                edgecolor="black",
                linewidth=0.8,
                label=f"ensemble of {len(s['members'])}, {s['set']}",
            )
    ax.set_xlabel("category accuracy", fontsize=11)
    ax.set_ylabel("C-index (Harrell)", fontsize=11)
    n_test = table["sets"][0]["n_evaluated"] if table["sets"] else 0
    ax.set_title(
        f"C-index vs accuracy on the test cohort (n = {n_test}), scale {table['scale']['name']}", fontsize=11
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path)
    return path
