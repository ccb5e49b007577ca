"""``cacscore evaluate`` and ``cacscore experiment table1``: prove how well a model scores.

``evaluate`` compares predictions (saved masks, a model, or the naive threshold
baseline) with the references of one or several datasets and writes
``metrics.json``, ``cases.csv``, ``report.md`` and four PNG plots, with the
figures of the pool and of each data source (dataset folder, generator family
and version). ``experiment table1`` repeats the protocol of Gogin et al. 2021,
Table 1, on phantom cohorts.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cacscore.cli.common import err_console, is_tty, prepare_output_dir, user_errors
from cacscore.errors import CacScoreWarning, InvalidInputError

if TYPE_CHECKING:
    from cacscore.evaluate.runner import Predictor


class Baseline(str, Enum):
    """Naive predictions that need no model (``--baseline``)."""

    threshold = "threshold"


class Scale(str, Enum):
    """Sizes of the Table 1 experiment (``--scale``)."""

    tiny = "tiny"
    small = "small"
    paper = "paper"


class Device(str, Enum):
    """Where training and inference run (``--device``)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def prediction_path(pred_dir: Path, case_id: str, dataset: str | None = None) -> Path:
    """The saved prediction of a case in ``pred_dir``.

    The file is ``<case_id>.nii.gz`` or ``<case_id>/prediction.nii.gz``.

    With several datasets, ``pred_dir/<dataset>/`` is looked in first (case ids may repeat across datasets).

    Raises
    ------
    InvalidInputError
        If no such file exists (the message names them).
    """
    folders = ([pred_dir / dataset] if dataset else []) + [pred_dir]
    names = (f"{case_id}.nii.gz", f"{case_id}/prediction.nii.gz")
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    where = " or ".join(str(f) for f in folders)
    raise InvalidInputError(f"no prediction for case {case_id} in {where} (looked for {' and '.join(names)})")


def _saved_predictor(pred_dir: Path, dataset: str | None = None) -> Predictor:
    from cacscore.io import read_mask

    def predict(case: Any) -> Any:
        return read_mask(prediction_path(pred_dir, case.case_id, dataset), like=case.volume)

    return predict


def dataset_labels(folders: Sequence[Path]) -> list[str]:
    """The name each ``--data`` folder is reported under: its folder name, or its path where names repeat.

    Examples
    --------
    >>> dataset_labels([Path("a/cohort"), Path("b/cohort"), Path("mine")])
    ['a/cohort', 'b/cohort', 'mine']
    """
    names = [Path(f).name or str(f) for f in folders]
    return [str(f) if names.count(n) > 1 else n for f, n in zip(folders, names, strict=True)]


def _model_predictor(model_dir: Path) -> Predictor:
    from cacscore.model import load_ensemble
    from cacscore.pipeline import labels_or_refusal

    ensemble = load_ensemble(model_dir)

    def predict(case: Any) -> Any:
        # Judged as `cacscore score` runs: a case the domain check refuses scores nothing, with a warning.
        labels, refusal = labels_or_refusal(case.volume, ensemble)
        if refusal is not None:
            warnings.warn(
                f"{case.case_id}: refused by the domain check ({refusal}); scored as 0",
                CacScoreWarning,
                stacklevel=2,
            )
        return labels

    return predict


def _choose_predictor(
    model: Path | None, pred: Path | None, baseline: Baseline | None
) -> tuple[Predictor, str]:
    chosen = [
        name for name, value in (("--model", model), ("--pred", pred), ("--baseline", baseline)) if value
    ]
    if len(chosen) != 1:
        raise InvalidInputError(
            "give exactly one of --model DIR, --pred DIR or --baseline threshold"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if pred is not None:
        if not pred.is_dir():
            raise InvalidInputError(f"{pred}: --pred folder not found")
        return _saved_predictor(pred), f"pred:{pred}"
    if model is not None:
        return _model_predictor(model), f"model:{model}"
    from cacscore.evaluate.runner import threshold_baseline

    return threshold_baseline, "baseline:threshold"


def run_evaluate(
    data: Path | Sequence[Path],
    out: Path,
    *,
    model: Path | None = None,
    pred: Path | None = None,
    baseline: Baseline | None = None,
    force: bool = False,
    n_bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = False,
    mask_labels: str | None = None,
) -> dict[str, Any]:
    """The body of ``cacscore evaluate``; returns the metrics dictionary.

    ``data`` is one dataset folder or several, each its own data source in the
    report (:func:`dataset_labels`); ``mask_labels`` declares the convention of
    their reference masks (``--mask-labels``).

    Raises
    ------
    CacScoreError
        Bad options, an unreadable dataset, existing results without ``force``.
    """
    from rich.progress import Progress

    from cacscore.datasets import list_cases
    from cacscore.evaluate.report import REPORT_FILES, write_report
    from cacscore.evaluate.runner import evaluate_cases, summarize

    if n_bootstrap < 0:
        raise InvalidInputError(f"--bootstrap must be >= 0 resamples, got {n_bootstrap}")
    folders = [Path(data)] if isinstance(data, str | Path) else [Path(d) for d in data]
    if not folders:
        raise InvalidInputError("give at least one --data folder")
    predictor, source = _choose_predictor(model, pred, baseline)
    labels = dataset_labels(folders)
    datasets = [
        (label, list_cases(folder, mask_labels=mask_labels)) for label, folder in zip(labels, folders)
    ]
    prepare_output_dir(out, list(REPORT_FILES), force=force)
    evaluations, failures = [], []
    with Progress(console=err_console, disable=not progress, transient=True) as bar:
        task = bar.add_task("evaluating", total=sum(len(cases) for _, cases in datasets))
        for label, cases in datasets:
            chosen = (
                _saved_predictor(pred, label if len(datasets) > 1 else None)
                if pred is not None
                else predictor
            )
            done, failed = evaluate_cases(cases, chosen, on_case=lambda _: bar.advance(task), dataset=label)
            evaluations += done
            failures += failed
    for failure in failures:
        err_console.print(f"[yellow]skipped[/] {failure.case_id}: {failure.reason}", soft_wrap=True)
    metrics = summarize(evaluations, failures, n_bootstrap=n_bootstrap, seed=seed, source=source)
    write_report(out, metrics, evaluations)
    return metrics


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and the ``experiment`` sub-app to ``app``."""

    @app.command("evaluate")
    def evaluate(
        data: Annotated[
            list[Path],
            typer.Option(
                "--data",
                help="Dataset folder with references (any layout cacscore reads); repeat for several, each "
                "reported as its own data source.",
            ),
        ],
        out: Annotated[
            Path, typer.Option("--out", help="Report folder (metrics.json, cases.csv, report.md, PNGs).")
        ],
        model: Annotated[
            Path | None, typer.Option("--model", help="Model folder: run this ensemble on every case.")
        ] = None,
        pred: Annotated[
            Path | None,
            typer.Option(
                "--pred",
                help="Folder of saved predicted masks: <case_id>.nii.gz or <case_id>/prediction.nii.gz.",
            ),
        ] = None,
        baseline: Annotated[
            Baseline | None,
            typer.Option(
                "--baseline", help="Naive prediction: 'threshold' calls every voxel >= 130 HU calcium."
            ),
        ] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Overwrite an existing report in --out.")
        ] = False,
        n_bootstrap: Annotated[
            int, typer.Option("--bootstrap", help="Bootstrap resamples for 95 % CIs (0: none).")
        ] = 1000,
        seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
        progress: Annotated[
            bool | None,
            typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
        ] = None,
        mask_labels: Annotated[
            str | None,
            typer.Option(
                "--mask-labels",
                help="Label convention of the reference masks: project (0-5), orcascore (1 LAD incl. "
                "LM, 2 LCX, 3 RCA) or binary (default: each layout's own).",
            ),
        ] = None,
    ) -> None:
        """Compare predicted calcium masks with the references of one or more datasets and write a report."""
        with user_errors():
            metrics = run_evaluate(
                data,
                out,
                model=model,
                pred=pred,
                baseline=baseline,
                force=force,
                n_bootstrap=n_bootstrap,
                seed=seed,
                progress=is_tty() if progress is None else progress,
                mask_labels=mask_labels,
            )
            cat = metrics["category"]

            def show(metric: dict[str, Any]) -> str:
                return "n/a" if metric["value"] is None else f"{metric['value']:.3f}"

            overall_f1 = metrics["lesions"]["overall"]["f1"]
            typer.echo(
                f"{metrics['n_evaluated']} cases evaluated, {metrics['n_failed']} failed; "
                f"category accuracy {show(cat['accuracy'])}, Harrell's C {show(cat['harrell_c'])} "
                f"(paper formula {show(cat['paper_c_index'])}), kappa {show(cat['kappa_linear'])}, "
                f"ICC Agatston {show(metrics['agatston']['icc'])}, lesion F1 "
                f"{'n/a' if overall_f1 is None else round(overall_f1, 3)}"
            )
            for key, table in (metrics.get("groups") or {}).items():
                if len(table) < 2:
                    continue  # one source: the pooled line above says it all
                for value, figures in table.items():
                    ratio = figures["median_ratio_de"]["value"]
                    f1 = figures["lesion_f1"]
                    typer.echo(
                        f"  {key} {value}: {figures['n_evaluated']} cases, "
                        f"accuracy {show(figures['accuracy'])}, "
                        f"Harrell's C {show(figures['harrell_c'])}, "
                        f"ICC Agatston {show(figures['icc_agatston'])}, "
                        f"median ratio D/E {'n/a' if ratio is None else f'{ratio:.2f}'}, "
                        f"lesion F1 {'n/a' if f1 is None else f'{f1:.3f}'}"
                    )
            typer.echo(f"report: {out / 'report.md'}")

    experiment = typer.Typer(help="Experiments that reproduce the paper's results.", no_args_is_help=True)

    @experiment.command("table1")
    def table1(
        out: Annotated[
            Path, typer.Option("--out", help="Experiment folder (data, models, table.md, table.json, PNG).")
        ],
        scale: Annotated[
            Scale,
            typer.Option(
                "--scale",
                help="tiny (minutes on a CPU), small (~6 min on one GPU, weak models), "
                "paper (hours on a GPU).",
            ),
        ] = Scale.tiny,
        device: Annotated[Device, typer.Option("--device", help="Training device.")] = Device.auto,
        progress: Annotated[
            bool | None,
            typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal)."),
        ] = None,
    ) -> None:
        """Gogin 2021 Table 1 on phantoms: 3 nested training sets x 5 members, single models vs ensemble.

        The run is resumable.
        """
        with user_errors():
            from cacscore.cli.experiment import run_table1_cli

            table = run_table1_cli(
                out,
                scale=scale.value,
                device=device.value,
                progress=is_tty() if progress is None else progress,
            )
            typer.echo(table)
            typer.echo(f"table: {out / 'table.md'}")

    app.add_typer(experiment, name="experiment")
