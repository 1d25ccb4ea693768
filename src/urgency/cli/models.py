"""Model commands: train, distill, evaluate, compare, export-models, tune, thresholds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from urgency.cli.common import (
    HeadsOption,
    ModelDirOption,
    ParamsOption,
    check_family,
    console,
    dask_client,
    heads,
    load_models,
    one_head,
    progress,
    setup_logging,
    stdout,
    user_errors,
)
from urgency.config import HEADS, Params, load_params

if TYPE_CHECKING:
    from urgency.hand_labelled import LabelledSet


def support_sentiment_set(params_path: Path, params: Params, path: Path | None = None) -> LabelledSet | None:
    """The hand-labelled support-sentiment set at `path`, default data/labelled/ beside the params
    file; None when it (or the source it labels) is absent: its check is then not made."""
    from urgency.hand_labelled import SUPPORT_SENTIMENT_FILE, configured_support_sentiment

    return configured_support_sentiment(params, path or params_path.resolve().parent / SUPPORT_SENTIMENT_FILE)


@user_errors
def train(
    params_path: ParamsOption = Path("params.yaml"),
    head: HeadsOption = None,
    family: Annotated[
        str | None,
        typer.Option(
            help="Model family: baseline, embedding, hybrid, finetune or label-free "
            "(default: training.family)."
        ),
    ] = None,
    promote_if_better: Annotated[
        bool,
        typer.Option(
            "--promote-if-better",
            help="Make each new version champion when it passes the promotion policy (params "
            "promotion:) on the validation split.",
        ),
    ] = False,
) -> None:
    """Validate the data, train each head, evaluate it on its test split and register it."""
    from urgency.hand_labelled import promotion_checks
    from urgency.promote import PromotionDecision, promote_each_if_better
    from urgency.train import train as train_heads

    setup_logging()
    chosen = heads(head)
    check_family(family)
    params = load_params(params_path)
    with progress() as bar:
        # The total is the heads really trained (known once the data is read): a head without
        # labels is left out, and the bar still ends full.
        task = bar.add_task(f"training heads ({family or params.training.family})", total=None)
        result = train_heads(
            params,
            chosen,
            params_path=params_path,
            on_start=lambda trained: bar.update(task, total=len(trained)),
            on_head=lambda _: bar.advance(task),
            family=family,
        )
    print_quality(
        {name: outcome.test_report for name, outcome in result.heads.items()},
        title=f"test split (MLflow run {result.parent_run_id})",
        versions={
            name: f"{o.registered_name} v{o.version} ({'champion' if o.champion_set else 'champion kept'})"
            for name, o in result.heads.items()
        },
    )
    if result.fit_seconds:
        each = ", ".join(f"{head} {seconds:.1f}" for head, seconds in result.fit_seconds.items())
        console.print(f"fit seconds (side by side): {each}", highlight=False)
    if result.signals_version:
        name = params.mlflow.model_name("signals")
        console.print(f"text signals: {name} v{result.signals_version} (champion)", highlight=False)
    if not promote_if_better:
        return

    def show(decision: PromotionDecision) -> None:
        verdict = "[green]promoted[/green]" if decision.promoted else "kept champion"
        console.print(f"{decision.head}: v{decision.candidate} {verdict}: {decision.reason}", highlight=False)

    promote_each_if_better(
        params,
        {name: o.version for name, o in result.heads.items()},
        by="urgency train --promote-if-better",
        on_decision=show,
        checks=promotion_checks(params, support_sentiment_set(params_path, params)),
    )


@user_errors
def distill(
    head: Annotated[str, typer.Option("--head", help="Head whose student to fit.")],
    teacher: Annotated[
        str,
        typer.Option(
            help="The teacher: a registered version (e.g. 3), alias (e.g. champion) or model family "
            "(e.g. label-free: its newest version) of the head's model."
        ),
    ],
    params_path: ParamsOption = Path("params.yaml"),
    unlabelled: Annotated[
        list[str] | None,
        typer.Option(
            "--unlabelled",
            help="A source (data.sources name) of unlabelled tickets (repeat); default: "
            "distill.sources, else every source without the head's labels.",
        ),
    ] = None,
    promote_if_better: Annotated[
        bool,
        typer.Option(
            "--promote-if-better",
            help="Make the student champion when it passes the promotion policy (params "
            "promotion:) on the validation split.",
        ),
    ] = False,
) -> None:
    """Fit a fast baseline-family student on the head's labelled rows plus unlabelled tickets
    the teacher labels (soft targets), and register it (family student). The hand-labelled
    support-sentiment tickets are never among the unlabelled ones."""
    from urgency.distill import distill as distill_head
    from urgency.hand_labelled import promotion_checks
    from urgency.promote import promote_each_if_better

    setup_logging()
    chosen = one_head(head)
    params = load_params(params_path)
    checked = support_sentiment_set(params_path, params)
    with progress() as bar:
        bar.add_task(f"distilling {chosen} from {teacher}", total=None)
        result = distill_head(
            params, chosen, teacher, sources=unlabelled, support_sentiment=checked, params_path=params_path
        )
    console.print(
        f"{chosen}: student {result.registered_name} v{result.version} from teacher {result.teacher} "
        f"on {result.unlabelled_rows} unlabelled tickets (MLflow run {result.run_id})",
        highlight=False,
    )
    for key, value in result.figures.items():
        typer.echo(f"{key}: {value:.4f}")
    if promote_if_better:
        promote_each_if_better(
            params,
            {chosen: result.version},
            by="urgency distill --promote-if-better",
            checks=promotion_checks(params, checked),
            on_decision=lambda d: console.print(
                f"{d.head}: v{d.candidate} {'promoted' if d.promoted else 'kept champion'}: {d.reason}",
                highlight=False,
            ),
        )


def print_quality(reports: dict[str, Any], title: str, versions: dict[str, str] | None = None) -> None:
    table = Table(title=title)
    columns = [
        "head",
        "model",
        "test rows",
        "accuracy",
        "macro-F1",
        "ECE",
        "majority acc.",
        "majority macro-F1",
    ]
    for column in columns if versions else [c for c in columns if c != "model"]:
        table.add_column(column)
    for name, report in reports.items():
        figures = [
            str(report["n"]),
            f"{report['accuracy']:.3f}",
            f"{report['macro_f1']:.3f}",
            f"{report['ece']:.3f}",
            f"{report['majority_accuracy']:.3f}",
            f"{report['majority_macro_f1']:.3f}",
        ]
        table.add_row(name, *([versions[name]] if versions else []), *figures)
    stdout().print(table)


@user_errors
def evaluate(
    params_path: ParamsOption = Path("params.yaml"),
    head: HeadsOption = None,
    model_dir: ModelDirOption = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="A labelled file (.csv, .parquet, .jsonl) to evaluate on, read as its --source "
            "describes; default: each head's test split of the configured data.",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(help="The params source describing --input (columns, label maps); default: the only."),
    ] = None,
    log: Annotated[
        bool, typer.Option("--log", help="Also log the figures to MLflow (an `evaluate` run).")
    ] = False,
    output: Annotated[Path | None, typer.Option(help="Write the full report as JSON here.")] = None,
    leave_one_source_out: Annotated[
        bool,
        typer.Option(
            "--leave-one-source-out",
            help="Instead: for each head labelled by several sources (or the --head ones), fit the "
            "--family without one source and test on all its labelled rows, beside the "
            "in-split figure; always logged to MLflow (a `leave-one-source-out` run).",
        ),
    ] = False,
    family: Annotated[
        str | None,
        typer.Option(
            help="With --leave-one-source-out: the family to fit, baseline, embedding or hybrid "
            "(default: baseline)."
        ),
    ] = None,
) -> None:
    """Evaluate the champion models (or a model folder) on each head's test split, or on a
    labelled --input file: accuracy, macro-F1, per-class figures, confusion matrix, calibration.
    Only heads with both a model and labels are reported. --leave-one-source-out trains instead
    of loading: how a head does on a source it never saw."""
    from urgency.evaluate import evaluate_file, evaluate_models, log_evaluation

    setup_logging()
    params = load_params(params_path)
    if leave_one_source_out:
        if input is not None or model_dir is not None:
            raise typer.BadParameter(
                "trains its own models on the configured sources: no --input or --model-dir",
                param_hint="--leave-one-source-out",
            )
        held_out(params, heads(head), output, family or "baseline")
        return
    if family is not None:
        raise typer.BadParameter("only with --leave-one-source-out", param_hint="--family")
    models = load_models(params, heads(head), model_dir)
    if input is None:
        reports, what = evaluate_models(models, params), "test split"
    else:
        reports, what = evaluate_file(models, params, input, source), str(input)
    left_out = [name for name in models if name not in reports]
    print_quality(reports, title=what)
    for name, report in reports.items():
        print_confusion(name, report)
    if left_out:
        console.print(f"no {', '.join(left_out)} labels in the {what}: not evaluated", highlight=False)
    if output:
        output.write_text(json.dumps(reports, indent=2))
        console.print(f"report written to {output}")
    if log:
        console.print(f"logged to MLflow run {log_evaluation(reports, params, what=what)}", highlight=False)


def held_out(params: Params, chosen: list[str] | None, output: Path | None, family: str) -> None:
    """`urgency evaluate --leave-one-source-out`: the table, printed and logged."""
    from urgency.source_holdout import holdout_markdown, leave_one_source_out_heads, log_holdout

    with progress() as bar:
        bar.add_task(f"leave-one-source-out ({family})", total=None)
        table = leave_one_source_out_heads(params, chosen, family=family)
    typer.echo(holdout_markdown(table))  # whole lines: a markdown table, also when piped
    sample = params.data.sample_per_source
    if sample is not None:
        console.print(f"measured on a sample of {sample} rows per source (data.sample_per_source)")
    if output:
        output.write_text(json.dumps(table.to_dict(orient="records"), indent=2))
        console.print(f"report written to {output}")
    console.print(f"logged to MLflow run {log_holdout(table, params, sample=sample)}", highlight=False)


def print_confusion(head: str, report: dict[str, Any]) -> None:
    """A head's confusion matrix (rows: true label, columns: predicted) and its reliability bins."""
    table = Table(title=f"{head}: confusion matrix (rows true, columns predicted)")
    table.add_column("true label")
    for label in report["labels"]:
        table.add_column(label)
    for label, row in zip(report["labels"], report["confusion_matrix"], strict=True):
        table.add_row(label, *(str(count) for count in row))
    stdout().print(table)
    bins = ", ".join(
        f"{b['lower']:.1f}-{b['upper']:.1f}: conf {b['confidence']:.2f} acc {b['accuracy']:.2f} (n {b['n']})"
        for b in report.get("reliability", [])
    )
    stdout().print(f"{head} reliability: {bins}", highlight=False)


@user_errors
def export_models(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write DIR/<head> into.")] = Path(
        "models"
    ),
    params_path: ParamsOption = Path("params.yaml"),
    head: HeadsOption = None,
) -> None:
    """Copy the champion models out of the registry into a folder that --model-dir loads
    (every head that has a champion, or the --head ones; nothing is written unless all are)."""
    from urgency.tracking import export_champions

    params = load_params(params_path)
    exported = export_champions(params.mlflow, heads(head), output)
    console.print(
        "[green]ok[/green]: "
        + ", ".join(f"{head} v{version}" for head, version in exported.items())
        + f" -> {output}"
    )


@user_errors
def compare(
    params_path: ParamsOption = Path("params.yaml"),
    output: Annotated[Path | None, typer.Option(help="Also write the markdown table here.")] = None,
    support_sentiment: Annotated[
        Path | None,
        typer.Option(
            "--support-sentiment",
            help="The hand-labelled support-sentiment set the sentiment models are checked on; "
            "default: data/labelled/support_sentiment.csv beside the params file (skipped if absent).",
        ),
    ] = None,
) -> None:
    """Compare the newest version of each model family per head (logged to MLflow as a `compare`
    run); sentiment models also on the hand-labelled support-sentiment set."""
    from urgency.comparison import compare_and_log, comparison_markdown
    from urgency.errors import InputError

    params = load_params(params_path)
    if support_sentiment is not None and not support_sentiment.exists():
        raise InputError(f"{support_sentiment}: file not found")
    checked = support_sentiment_set(params_path, params, support_sentiment)
    if checked is None:
        console.print("no support-sentiment set (or no support_tickets_synthetic source): column left out")
    table, run_id = compare_and_log(params.mlflow, HEADS, output, checked)
    typer.echo(comparison_markdown(table))  # whole lines, also when piped
    console.print(f"logged to MLflow run {run_id}" + (f", written to {output}" if output else ""))


@user_errors
def tune(
    head: Annotated[str, typer.Option("--head", help="Head whose baseline settings to search.")],
    params_path: ParamsOption = Path("params.yaml"),
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            envvar="URGENCY_SCHEDULER",
            help="Dask scheduler address (tcp://HOST:8786), or `local` for a local cluster; "
            "default: this machine's cores.",
        ),
    ] = None,
) -> None:
    """Search a head's baseline settings (params `tune:`); register the best as the challenger.

    The configurations are fitted in parallel: on the Dask cluster of --scheduler, or on this
    machine's cores. The champion never moves: `urgency promote` does that."""
    from urgency.tune import Trial
    from urgency.tune import tune as run_tune

    setup_logging()
    name = one_head(head)
    params = load_params(params_path)

    def show(trials: list[Trial]) -> None:
        table = Table(title=f"{name}: {len(trials)} configuration(s), macro-F1")
        for column in ("#", "settings", "macro-F1", "fit seconds"):
            table.add_column(column)
        for trial in sorted(trials, key=lambda t: -t.score):
            settings = ", ".join(f"{key}={value}" for key, value in trial.settings.items())
            table.add_row(str(trial.number), settings, f"{trial.score:.4f}", f"{trial.fit_seconds:.1f}")
        stdout().print(table)

    # joblib's backend: the cluster's ("dask", once a client exists) or this machine's processes.
    with dask_client(scheduler):
        backend = "dask" if scheduler else "loky"
        result = run_tune(params, name, backend=backend, params_path=params_path, on_searched=show)
    outcome = result.registered
    console.print(
        f"[green]ok[/green]: best {result.best.settings} (macro-F1 {result.best.score:.4f}) registered as "
        f"{outcome.registered_name} v{outcome.version} @{result.alias}; test macro-F1 "
        f"{outcome.test_report['macro_f1']:.4f} (MLflow run {result.parent_run_id})",
        highlight=False,
    )
    verdict = "would replace" if result.verdict.promoted else "would not replace"
    console.print(f"promotion policy: {verdict} the champion: {result.verdict.reason}", highlight=False)


@user_errors
def thresholds(
    target_precision: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="Share of trusted predictions that must be right.")
    ] = 0.8,
    split: Annotated[
        str, typer.Option(help="Split to choose on: validation (default) or test.")
    ] = "validation",
    params_path: ParamsOption = Path("params.yaml"),
    head: HeadsOption = None,
    model_dir: ModelDirOption = None,
) -> None:
    """Choose per-head confidence thresholds for a target precision; show the coverage they cost."""
    from urgency.thresholds import choose_thresholds, rules_thresholds

    setup_logging()
    if split not in ("validation", "test"):
        raise typer.BadParameter("use validation or test", param_hint="--split")
    params = load_params(params_path)
    models = load_models(params, heads(head), model_dir)
    choices = choose_thresholds(models, params, list(models), split=split, target_precision=target_precision)
    table = Table(title=f"confidence thresholds for precision >= {target_precision:.2f} ({split} split)")
    for column in ("head", "rows", "accuracy (all)", "threshold", "precision", "coverage", "to human triage"):
        table.add_column(column)
    for name, choice in choices.items():
        shown = "unreachable" if choice.threshold is None else f"{choice.threshold:.3f}"
        table.add_row(
            name,
            str(choice.n),
            f"{choice.accuracy:.3f}",
            shown,
            f"{choice.precision:.3f}",
            f"{choice.coverage:.1%}",
            f"{1 - choice.coverage:.1%}",
        )
    stdout().print(table)
    stdout().print(
        "for the rules file:\nconfidence:\n  thresholds: {"
        + ", ".join(f"{name}: {value}" for name, value in rules_thresholds(choices).items())
        + "}",
        highlight=False,
    )
