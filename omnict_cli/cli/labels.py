"""``omnict labels train`` and ``omnict labels predict``: the CT-RATE report labeler on the command line.

Thin commands over ``omnict_cli.labels.classifier`` and
``omnict_cli.labels.labeler``; the library is imported inside each command
so ``omnict --help`` stays instant.
"""

from __future__ import annotations

import click

from omnict_cli.cli.label_options import convention_option
from omnict_cli.cli.main import main

METHOD_CHOICES = ("classifier", "rules")
"""Same as ``omnict_cli.labels.labeler.METHODS`` (not imported: it pulls in numpy)."""
"""Same as ``omnict_cli.labels.rules.CONVENTIONS``."""


@main.group()
def labels():
    """Label radiology reports with CT-RATE's 18 abnormality classes.

    \b
    Examples:
      omnict labels predict reports.jsonl --out labels.csv
      omnict labels train --reports train_reports.csv --labels train_labels.csv --out my_labeler.json.gz
    """


def _saved(write, path) -> None:
    """Run ``write()``; a failed write (disk full, folder removed meanwhile) becomes one OutputError line."""
    from omnict_cli.atomic import output_error

    try:
        write()
    except OSError as error:
        raise output_error(path, error) from error


def _warn(console, text: str) -> None:
    from rich.markup import escape

    console.print(f"[yellow]warning[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


@labels.command()
@click.option(
    "--reports",
    "reports_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="CT-RATE reports CSV (VolumeName, Findings_EN, Impressions_EN) or JSONL reports.",
)
@click.option(
    "--labels",
    "labels_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="CT-RATE label CSV (VolumeName + the 18 classes, 0/1) of the same studies.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Classifier file to write (JSON; gzip-compressed when the name ends in .gz).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration folds.")
def train(reports_path, labels_path, out_path, seed):
    """Train the report classifier (TF-IDF n-grams + rule features, calibrated
    logistic regression per class) on labelled reports, e.g. CT-RATE's own
    train_reports.csv and train_predicted_labels.csv.

    Reports and labels are joined by VolumeName (file name without folder
    and extension); names found on one side only are listed and left out.

    \b
    Example:
      omnict labels train --reports train_reports.csv --labels train_labels.csv --out ctrate_labeler.json.gz
    """
    from pathlib import Path

    from omnict_cli.atomic import check_destination
    from omnict_cli.errors import OmnictError
    from omnict_cli.labels.classifier import ClassifierConfig, ReportClassifier
    from omnict_cli.ui import progress, stderr_console

    console = stderr_console()
    try:
        check_destination(out_path)
        texts, label_matrix = _joined_training_set(reports_path, labels_path, console)
        with progress() as bar:
            task = bar.add_task("training (one model per class)", total=label_matrix.shape[1])
            model = ReportClassifier(ClassifierConfig(seed=seed)).fit(
                texts, label_matrix, corpus_name=Path(reports_path).name, on_class_done=lambda _: bar.advance(task)
            )
        _saved(lambda: model.save(out_path), out_path)
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    constant = model.metadata["constant_classes"]
    console.print(f"trained on {len(texts)} reports; wrote {out_path}", highlight=False, soft_wrap=True, markup=False)
    if constant:
        _warn(
            console,
            f"no positive (or no negative) training report for: {', '.join(constant)}; "
            "these classes get a constant probability",
        )


def _joined_training_set(reports_path, labels_path, console):
    """(texts, [n, 18] labels) of the studies in both files; unmatched names are printed, never dropped silently."""
    import numpy as np

    from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
    from omnict_cli.labels.ctrate_io import read_labels, read_reports, report_text
    from omnict_cli.metrics.score_files import first_names, join_studies

    reports = {report.volume_name: report for report in read_reports(reports_path)}
    labels_by_name = read_labels(labels_path)
    join = join_studies(
        list(labels_by_name), list(reports), prediction_source=labels_path, reference_source=reports_path
    )
    if join.no_prediction:
        _warn(
            console,
            f"{len(join.no_prediction)} reports in {reports_path} have no labels in {labels_path} "
            f"(not used): {first_names(join.no_prediction)}",
        )
    if join.no_reference:
        _warn(
            console,
            f"{len(join.no_reference)} labelled studies in {labels_path} have no report in "
            f"{reports_path} (not used): {first_names(join.no_reference)}",
        )
    if join.ambiguous:
        _warn(
            console,
            f"{len(join.ambiguous)} reports in {reports_path} match several label rows in {labels_path} and none "
            f"by its full name (not used): {first_names(join.ambiguous)}",
        )
    if len(join.matched) < 2:
        raise click.ClickException(
            f"{labels_path}: only {len(join.matched)} studies have both a report and labels; need at least 2 to train"
        )
    texts = [report_text(reports[report_name]) for _, report_name in join.matched]
    matrix = np.array(
        [[labels_by_name[label_name][label] for label in CTRATE_ABNORMALITIES] for label_name, _ in join.matched],
        dtype=np.int64,
    )
    return texts, matrix


@labels.command()
@click.argument("reports_path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="CT-RATE label CSV to write: VolumeName (or study id) + 18 columns of 0/1.",
)
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Classifier file from 'omnict labels train' (default: the bundled one).",
)
@click.option(
    "--method",
    type=click.Choice(METHOD_CHOICES),
    default="classifier",
    show_default=True,
    help="classifier = calibrated TF-IDF + rules model; rules = the transparent rule labeler alone.",
)
@convention_option()
@click.option(
    "--explain", "show_explanation", is_flag=True, help="Print every positive with the sentence and rule behind it."
)
def predict(reports_path, out_path, model_path, method, convention, show_explanation):
    """Label the reports in FILE: a CT-RATE reports CSV, or JSONL with
    study_id + findings/impression (or one 'report' text) per line, such as
    'omnict report' writes. Records with status "error" are skipped and counted.

    \b
    Examples:
      omnict labels predict generated.jsonl --out generated_labels.csv
      omnict labels predict valid_reports.csv --out labels.csv --method rules --explain
    """
    from rich.markup import escape

    from omnict_cli.atomic import check_destination
    from omnict_cli.errors import OmnictError
    from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
    from omnict_cli.labels.ctrate_io import read_reports, report_text, write_labels
    from omnict_cli.labels.labeler import explain, label_reports
    from omnict_cli.metrics.score_files import first_names, read_generated_reports
    from omnict_cli.ui import stderr_console

    console = stderr_console()
    try:
        check_destination(out_path)
        reports = read_reports(reports_path)
        failed = read_generated_reports(reports_path).failed
        texts = [report_text(report) for report in reports]
        label_matrix = label_reports(texts, method, model=model_path, convention=convention)
        _saved(
            lambda: write_labels(
                out_path,
                {
                    report.volume_name: dict(zip(CTRATE_ABNORMALITIES, map(int, row)))
                    for report, row in zip(reports, label_matrix)
                },
            ),
            out_path,
        )
        explanations = explain(texts, method, model=model_path, convention=convention) if show_explanation else []
    except OmnictError as error:
        raise click.ClickException(error.one_line()) from error
    for report, positives in zip(reports, explanations):
        click.echo(f"{report.volume_name}: {len(positives)} positive" + ("" if len(positives) == 1 else "s"))
        for positive in positives:
            for line in positive.lines():
                click.echo(f"  {line}")
    counts = label_matrix.sum(axis=0) if len(reports) else []
    summary = ", ".join(f"{name} {int(n)}" for name, n in zip(CTRATE_ABNORMALITIES, counts) if n)
    console.print(
        f"labelled {len(reports)} reports with the {method}; wrote {escape(str(out_path))}; "
        f"positives: {summary or 'none'}",
        highlight=False,
        soft_wrap=True,
    )
    if failed:
        _warn(
            console,
            f'{len(failed)} records with status "error" have no report and are not in the output: '
            f"{first_names(failed)}",
        )
