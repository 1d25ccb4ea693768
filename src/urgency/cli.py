"""The `urgency` command line: one typer app wiring params onto the library functions.

Exit codes (for scripts): 0 success, 1 unexpected error, 2 usage error, 3 params error,
4 invalid ticket data, 5 model not found, 6 unreadable input to score, 7 database unreachable or
not migrated, 8 nothing to report (no decided ticket in the period), 9 Dask cluster unreachable
or a worker failed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from urgency.config import FAMILIES, HEADS, Params, load_params
from urgency.errors import ParamsError, UrgencyError

app = typer.Typer(
    help="Learn how urgent, what kind and how upset a support ticket is.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# soft_wrap: messages stay on one line, so scripts can grep them.
console = Console(stderr=True, soft_wrap=True)

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Params file (YAML).", envvar="URGENCY_PARAMS")
]
HeadsOption = Annotated[
    list[str] | None, typer.Option("--head", help="Head(s) to work on (repeat); default: all three.")
]

SubjectColumnOption = Annotated[str | None, typer.Option(help="Subject column (may be absent).")]
BodyColumnOption = Annotated[str | None, typer.Option(help="Body column.")]
ChunkSizeOption = Annotated[int | None, typer.Option(min=1, help="Rows per chunk.")]

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(command: F) -> F:
    """Print an UrgencyError's message (never a stack trace) and exit with its code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UrgencyError as error:
            console.print(f"[red]error:[/red] {error}", highlight=False)
            raise typer.Exit(error.exit_code) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise  # usage errors and exits keep click's own handling
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as error:
            if os.environ.get("URGENCY_DEBUG"):
                raise
            console.print(
                f"[red]unexpected error:[/red] {type(error).__name__}: {error}\n"
                "(set URGENCY_DEBUG=1 to see the stack trace)",
                highlight=False,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _heads(selected: list[str] | None) -> list[str]:
    heads = selected or list(HEADS)
    unknown = [head for head in heads if head not in HEADS]
    if unknown:
        raise typer.BadParameter(f"unknown head(s) {unknown}; choose from {list(HEADS)}", param_hint="--head")
    return heads


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # MLflow and alembic are chatty about database set-up, Dask about cluster life; warnings still show.
    for name in ("mlflow", "alembic", "matplotlib", "distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # We log our own scikit-learn models with pickle on purpose (see train.py); no warning each time.
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _load(params_path: Path) -> Params:
    return load_params(params_path)


def _registry_client(params: Params) -> Any:
    """An MLflow client on the configured tracking server, which also holds the registry."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)


@app.command("validate-data")
@user_errors
def validate_data(params_path: ParamsOption = Path("params.yaml")) -> None:
    """Check every configured ticket source; report all problems with row numbers."""
    from urgency.data import load_configured

    _setup_logging()
    params = _load(params_path)
    result = load_configured(params.data)
    table = Table(title="ticket sources")
    for column in ("source", "rows read", "rows kept", "dropped", "labelled"):
        table.add_column(column)
    for report in result.reports:
        labelled = ", ".join(f"{head} {count}" for head, count in report.labelled.items())
        table.add_row(
            report.name, str(report.rows_read), str(report.rows_kept), str(report.rows_dropped), labelled
        )
    _stdout().print(table)
    console.print(f"[green]ok[/green]: {len(result.tickets)} tickets valid")


@app.command()
@user_errors
def train(
    params_path: ParamsOption = Path("params.yaml"),
    head: HeadsOption = None,
    family: Annotated[
        str | None,
        typer.Option(help="Model family: baseline, embedding or finetune (default: params training.family)."),
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
    from urgency.train import train as train_heads

    _setup_logging()
    heads = _heads(head)
    if family is not None and family not in FAMILIES:
        raise typer.BadParameter(
            f"unknown family {family!r}; choose from {list(FAMILIES)}", param_hint="--family"
        )
    params = _load(params_path)
    with _progress() as progress:
        task = progress.add_task(f"training heads ({family or params.training.family})", total=len(heads))
        result = train_heads(
            params,
            heads,
            params_path=params_path,
            on_head=lambda _: progress.advance(task),
            family=family,
        )
    _print_quality(
        {name: outcome.test_report for name, outcome in result.heads.items()},
        title=f"test split (MLflow run {result.parent_run_id})",
        versions={
            name: f"{o.registered_name} v{o.version} ({'champion' if o.champion_set else 'champion kept'})"
            for name, o in result.heads.items()
        },
    )
    if promote_if_better:
        _promote_if_better(params, {name: o.version for name, o in result.heads.items()})


def _promote_if_better(params: Params, versions: dict[str, str]) -> None:
    from urgency.promote import AliasLog, promote_if_better

    client = _registry_client(params)
    log = AliasLog.of(params.mlflow)
    for head, version in versions.items():
        decision = promote_if_better(
            client,
            head,
            params.mlflow.model_name(head),
            version,
            params.mlflow.champion_alias,
            min_gain=params.promotion.min_macro_f1_gain,
            max_recall_drop=params.promotion.max_recall_drop,
            by="urgency train --promote-if-better",
            log=log,
        )
        verdict = "[green]promoted[/green]" if decision.promoted else "kept champion"
        console.print(f"{head}: v{decision.candidate} {verdict}: {decision.reason}", highlight=False)


def _print_quality(reports: dict[str, Any], title: str, versions: dict[str, str] | None = None) -> None:
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
    _stdout().print(table)


def _stdout() -> Console:
    # Off a terminal rich assumes 80 columns and would cut the tables; logs want whole lines.
    return Console(width=None if sys.stdout.isatty() else 160)


def _models(params: Params, heads: list[str], model_dir: Path | None) -> dict[str, Any]:
    from urgency.models import load_model_dir, load_registered_models

    if model_dir is not None:
        return load_model_dir(model_dir, heads)
    return load_registered_models(
        heads,
        tracking_uri=params.mlflow.tracking_uri,
        model_names={head: params.mlflow.model_name(head) for head in heads},
        alias=params.mlflow.champion_alias,
    )


ModelDirOption = Annotated[
    Path | None,
    typer.Option(
        "--model-dir", help="Folder with one MLflow model per head (DIR/<head>); default: registry champions."
    ),
]


@app.command()
@user_errors
def evaluate(
    params_path: ParamsOption = Path("params.yaml"),
    head: HeadsOption = None,
    model_dir: ModelDirOption = None,
    output: Annotated[Path | None, typer.Option(help="Write the full report as JSON here.")] = None,
) -> None:
    """Evaluate the champion models (or a model folder) on each head's test split."""
    from urgency.evaluate import evaluate_models

    _setup_logging()
    heads = _heads(head)
    params = _load(params_path)
    models = _models(params, heads, model_dir)
    reports = evaluate_models(models, params)
    _print_quality(reports, title="test split")
    if output:
        output.write_text(json.dumps(reports, indent=2))
        console.print(f"report written to {output}")


SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        envvar="URGENCY_SCHEDULER",
        help="Dask scheduler address (tcp://HOST:8786), or `local` for a cluster of this machine's cores; "
        "--output is then a folder of Parquet parts.",
    ),
]


def _predict_many(
    params: Params,
    pattern: str,
    output: Path,
    *,
    scheduler: str | None,
    model_dir: Path | None,
    subject_column: str | None,
    body_column: str | None,
    chunk_size: int | None,
) -> None:
    """Many files (or a cluster): one Parquet part per input file in the output folder."""
    from urgency import distributed
    from urgency.models import resolve_dir, resolve_registry

    heads = list(HEADS)
    # Checked before a cluster starts: a typo should not cost a cluster start-up.
    files = distributed.input_files(pattern)
    distributed.check_output(output)
    if model_dir is not None:
        source = resolve_dir(model_dir, heads)
    else:
        source = resolve_registry(
            heads,
            tracking_uri=params.mlflow.tracking_uri,
            model_names={head: params.mlflow.model_name(head) for head in heads},
            alias=params.mlflow.champion_alias,
        )
    options = distributed.FileOptions(
        subject_column=subject_column or params.predict.subject_column,
        body_column=body_column or params.predict.body_column,
        max_text_chars=params.data.max_text_chars,
        chunk_size=chunk_size or params.predict.chunk_size,
    )
    with _progress() as progress:
        task = progress.add_task(f"scoring {len(files)} file(s)", total=len(files))

        def run(client: Any) -> distributed.FilesResult:
            return distributed.predict_files(
                pattern, output, source, options, client=client, on_part=lambda _: progress.advance(task)
            )

        if scheduler:
            with distributed.dask_client(scheduler) as client:
                result = run(client)
        else:
            result = run(None)
    versions = ", ".join(f"{ref.head} v{ref.version}" if ref.version else ref.head for ref in source.heads)
    console.print(
        f"[green]ok[/green]: {result.rows} tickets from {result.files} file(s) scored into {output}/ "
        f"({result.rows_with_error} with a row error; models: {versions}; "
        f"{'Dask scheduler ' + scheduler if scheduler else 'this process'})",
        highlight=False,
    )


@app.command()
@user_errors
def predict(
    input: Annotated[
        Path,
        typer.Option(
            "--input", "-i", help="Tickets to score (.csv, .parquet, .jsonl), or a quoted glob of such files."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Scored tickets (.csv, .parquet, .jsonl); a folder for a glob or --scheduler.",
        ),
    ],
    params_path: ParamsOption = Path("params.yaml"),
    model_dir: ModelDirOption = None,
    subject_column: SubjectColumnOption = None,
    body_column: BodyColumnOption = None,
    chunk_size: ChunkSizeOption = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Score a file of tickets with the champion models; every input column is kept.

    A glob pattern (--input 'tickets/*.parquet') or a --scheduler scores many files, one Parquet
    part per file, into the --output folder."""
    from urgency.distributed import is_pattern
    from urgency.predict import predict_file

    _setup_logging()
    params = _load(params_path)
    if scheduler or is_pattern(str(input)):
        _predict_many(
            params,
            str(input),
            output,
            scheduler=scheduler,
            model_dir=model_dir,
            subject_column=subject_column,
            body_column=body_column,
            chunk_size=chunk_size,
        )
        return
    models = _models(params, list(HEADS), model_dir)
    with _progress() as progress:
        task = progress.add_task(f"scoring {input.name}", total=None)
        stats = predict_file(
            models,
            input,
            output,
            subject_column=subject_column or params.predict.subject_column,
            body_column=body_column or params.predict.body_column,
            max_text_chars=params.data.max_text_chars,
            chunk_size=chunk_size or params.predict.chunk_size,
            on_chunk=lambda rows: progress.advance(task, rows),
        )
    versions = ", ".join(
        f"{head} v{model.version}" if model.version else head for head, model in models.items()
    )
    console.print(
        f"[green]ok[/green]: {stats.rows} tickets scored into {output} "
        f"({stats.rows_with_error} with a row error; models: {versions})"
    )


@app.command("export-models")
@user_errors
def export_models(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write DIR/<head> into.")] = Path(
        "models"
    ),
    params_path: ParamsOption = Path("params.yaml"),
) -> None:
    """Copy the champion models out of the registry into a folder that --model-dir loads."""
    from mlflow import MlflowClient

    from urgency import tracking

    params = _load(params_path)
    tracking.use_tracking(
        params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location
    )
    names = {head: params.mlflow.model_name(head) for head in HEADS}
    exported = tracking.export_models(MlflowClient(), names, params.mlflow.champion_alias, output)
    console.print(
        "[green]ok[/green]: "
        + ", ".join(f"{head} v{version}" for head, version in exported.items())
        + f" -> {output}"
    )


# ---------------------------------------------------------------------------------------------
# Scoring: rules, the prioritized queue, confidence thresholds, the incident-log check

RulesOption = Annotated[
    Path | None, typer.Option("--rules", help="Rules file (YAML); default: scoring.rules in the params.")
]


def _rules(params: Params, rules_path: Path | None) -> Any:
    from urgency.rules import load_rules

    rules = load_rules(rules_path or params.scoring.rules, category_labels=params.heads.category.labels)
    for warning in rules.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    return rules


def _now(text: str | None) -> Any:
    from datetime import UTC, datetime

    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 timestamp", param_hint="--now") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("validate-rules")
@user_errors
def validate_rules(params_path: ParamsOption = Path("params.yaml"), rules_path: RulesOption = None) -> None:
    """Check the scoring rules file: errors stop with every problem listed, warnings are shown."""
    params = _load(params_path)
    rules = _rules(params, rules_path)
    console.print(
        f"[green]ok[/green]: {rules.source}: {len(rules.levels)} levels, {len(rules.rule_names())} rules, "
        f"{len(rules.spec.teams)} teams, {len(rules.spec.sla.policies)} SLA policies, "
        f"{len(rules.warnings)} warning(s)"
    )


@app.command()
@user_errors
def score(
    input: Annotated[Path, typer.Option("--input", "-i", help="Tickets to score (.csv, .parquet, .jsonl).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The prioritized queue (.csv, .parquet, .jsonl).")
    ],
    now: Annotated[
        str | None, typer.Option(help="Decide as of this ISO 8601 time (no offset: UTC); default: the clock.")
    ] = None,
    surge: Annotated[
        str | None, typer.Option(help="Surge mode on or off; default: as the rules file says (off/on/auto).")
    ] = None,
    params_path: ParamsOption = Path("params.yaml"),
    model_dir: ModelDirOption = None,
    rules_path: RulesOption = None,
    subject_column: SubjectColumnOption = None,
    body_column: BodyColumnOption = None,
    chunk_size: ChunkSizeOption = None,
) -> None:
    """Predict, apply the scoring rules and write the queue: priority, then deadline, then age."""
    from urgency.scoring import score_file

    _setup_logging()
    if surge not in (None, "on", "off"):
        raise typer.BadParameter("use on or off", param_hint="--surge")
    moment = _now(now)
    params = _load(params_path)
    rules = _rules(params, rules_path)
    models = _models(params, list(HEADS), model_dir)
    with _progress() as progress:
        task = progress.add_task(f"scoring {input.name}", total=None)
        stats = score_file(
            models,
            rules,
            input,
            output,
            now=moment,
            surge=None if surge is None else surge == "on",
            subject_column=subject_column or params.predict.subject_column,
            body_column=body_column or params.predict.body_column,
            max_text_chars=params.data.max_text_chars,
            chunk_size=chunk_size or params.predict.chunk_size,
            on_chunk=lambda rows: progress.advance(task, rows),
        )
    levels = ", ".join(f"{level} {count}" for level, count in stats.by_priority.items())
    console.print(
        f"[green]ok[/green]: {stats.rows} tickets queued into {output} ({levels}; "
        f"{stats.needs_human_triage} need human triage; {stats.rows_with_error} with a row error; "
        f"surge {'on' if stats.surge else 'off'})"
    )


@app.command()
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
    from urgency.data import configured_head_dataset, load_configured
    from urgency.predict import predict_proba
    from urgency.thresholds import choose_threshold

    _setup_logging()
    if split not in ("validation", "test"):
        raise typer.BadParameter("use validation or test", param_hint="--split")
    heads = _heads(head)
    params = _load(params_path)
    models = _models(params, heads, model_dir)
    tickets = load_configured(params.data).tickets
    table = Table(title=f"confidence thresholds for precision >= {target_precision:.2f} ({split} split)")
    for column in ("head", "rows", "accuracy (all)", "threshold", "precision", "coverage", "to human triage"):
        table.add_column(column)
    chosen = {}
    for name in heads:
        dataset = configured_head_dataset(tickets, name, params.data, params.splits)
        part = dataset[dataset["split"] == split]
        choice = choose_threshold(
            name, part["label"], predict_proba(models[name], part["text"]), target_precision
        )
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
        chosen[name] = 1.0 if choice.threshold is None else round(choice.threshold, 3)
    _stdout().print(table)
    _stdout().print(
        "for the rules file:\nconfidence:\n  thresholds: {"
        + ", ".join(f"{name}: {value}" for name, value in chosen.items())
        + "}",
        highlight=False,
    )


@app.command("check-incidents")
@user_errors
def check_incidents(
    log: Annotated[
        Path | None,
        typer.Option(
            help="ServiceNow incident event log; default: ../shared/data/incident_event_log.csv.gz."
        ),
    ] = None,
    min_agreement: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fail (exit 1) when the matrix agrees less often.")
    ] = 1.0,
    params_path: ParamsOption = Path("params.yaml"),
    rules_path: RulesOption = None,
) -> None:
    """Does the rules' urgency x impact matrix reproduce a real log's priorities? And SLA attainment."""
    from urgency.incidents import check_incidents as check
    from urgency.incidents import read_incident_log

    params = _load(params_path)
    rules = _rules(params, rules_path)
    path = log or params_path.resolve().parent / "../shared/data/incident_event_log.csv.gz"
    report = check(read_incident_log(path), rules)
    out = _stdout()
    matrix = Table(title=f"matrix vs recorded priority ({report.incidents} incidents, last row of each)")
    for column in ("impact", "urgency", "recorded", "matrix says", "incidents", "agreeing"):
        matrix.add_column(column)
    for row in report.matrix.itertuples(index=False):
        matrix.add_row(
            row.impact, row.urgency, row.recorded, row.expected, str(row.incidents), str(row.agreeing)
        )
    out.print(matrix)
    sla = Table(title="SLA attainment per recorded priority (made_sla)")
    for column in ("priority", "incidents", "made SLA", "attainment"):
        sla.add_column(column)
    for row in report.sla.itertuples(index=False):
        sla.add_row(row.priority, str(row.incidents), str(row.made_sla), f"{row.attainment:.1%}")
    out.print(sla)
    summary = (
        f"agreement {report.agreement:.2%} on {report.compared} incidents "
        f"({report.unmapped} with codes the rules do not map)"
    )
    if report.agreement < min_agreement:
        console.print(f"[red]failed:[/red] {summary}, below {min_agreement:.2%}", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]ok[/green]: {summary}", highlight=False)


@app.command()
@user_errors
def promote(
    head: Annotated[str, typer.Option("--head", help="Head whose champion to move.")],
    version: Annotated[str, typer.Option("--version", help="Registered version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (kept as a tag on the version).")] = "promoted by hand",
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    params_path: ParamsOption = Path("params.yaml"),
) -> None:
    """Point the champion alias of a head at a model version; who, when and why become tags."""
    from urgency import promote as promotion

    heads = _heads([head])
    params = _load(params_path)
    name = params.mlflow.model_name(heads[0])
    client = _registry_client(params)
    log = promotion.AliasLog.of(params.mlflow)
    previous = promotion.promote(
        client,
        name,
        version,
        params.mlflow.champion_alias,
        reason=reason,
        by=by,
        log=log,
    )
    was = f"v{previous}" if previous else "unset"
    console.print(
        f"[green]ok[/green]: {name}@{params.mlflow.champion_alias} -> v{version} (was {was}); "
        f"recorded in MLflow experiment {log.experiment}",
        highlight=False,
    )


@app.command()
@user_errors
def rollback(
    head: Annotated[str, typer.Option("--head", help="Head whose champion to move back.")],
    reason: Annotated[str, typer.Option(help="Why (kept as a tag and in the alias-move run).")],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Version to make champion; default: the one the champion replaced."),
    ] = None,
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    params_path: ParamsOption = Path("params.yaml"),
) -> None:
    """Move a head's champion back to the version it replaced (or --to VERSION); recorded in MLflow."""
    from urgency import promote as promotion

    heads = _heads([head])
    params = _load(params_path)
    name = params.mlflow.model_name(heads[0])
    client = _registry_client(params)
    log = promotion.AliasLog.of(params.mlflow)
    before, after = promotion.rollback(
        client,
        name,
        params.mlflow.champion_alias,
        reason=reason,
        to=to,
        by=by,
        log=log,
    )
    console.print(
        f"[green]ok[/green]: {name}@{params.mlflow.champion_alias} -> v{after} (was v{before}); "
        f"recorded in MLflow experiment {log.experiment}",
        highlight=False,
    )


@app.command()
@user_errors
def retrain(
    history: Annotated[
        list[Path],
        typer.Option("--history", help="New ticket history (.csv, .parquet, .jsonl; repeat for more files)."),
    ],
    params_path: ParamsOption = Path("params.yaml"),
    head: Annotated[
        list[str] | None,
        typer.Option(
            "--head", help="Head(s) to retrain (repeat); default: those the held-out slice has labels for."
        ),
    ] = None,
    family: Annotated[
        str | None, typer.Option(help="Model family of the challenger (default: params training.family).")
    ] = None,
    database_url: DatabaseOption = None,
    output: Annotated[
        Path | None, typer.Option(help="Also write drift.json/.md and retrain.json/.md into this folder.")
    ] = None,
    by: Annotated[
        str | None, typer.Option(help="Who (recorded with a promotion; default: the login name).")
    ] = None,
) -> None:
    """Train a challenger on new history plus agents' corrections; promote it only through the gate.

    The newest retrain.holdout_fraction of the history (by created_at) is held out; the
    challenger replaces a head's champion when its held-out macro-F1 is higher by
    promotion.min_macro_f1_gain and no class's recall drops more than promotion.max_recall_drop.
    Heads default to those the held-out slice has labels for."""
    import getpass

    from urgency.retrain import read_decisions
    from urgency.retrain import retrain as run_retrain
    from urgency.store import redact, sqlite_path

    _setup_logging()
    heads = _heads(head) if head else None
    if family is not None and family not in FAMILIES:
        raise typer.BadParameter(
            f"unknown family {family!r}; choose from {list(FAMILIES)}", param_hint="--family"
        )
    params = _load(params_path)
    decisions = None
    if params.retrain.use_corrections:
        url = _service_settings(params_path, database_url=database_url).store_url()
        path = sqlite_path(url)
        if database_url is None and path is not None and not path.exists():
            console.print(f"no service store at {path}: no agents' corrections to merge")
        else:
            decisions = read_decisions(url)
            console.print(f"agents' corrections: {len(decisions)} decided ticket(s) in {redact(url)}")
    result = run_retrain(
        params,
        history,
        heads=heads,
        family=family,
        decisions=decisions,
        by=by or f"{getpass.getuser()} (urgency retrain)",
        params_path=params_path,
        output=output,
        on_stage=lambda text: console.print(text),
    )
    out = _stdout()
    drift = Table(title="drift: new history vs the training data")
    for column in ("feature", "PSI", "JS", "drifted", "rule"):
        drift.add_column(column)
    for feature in result.drift.features:
        drift.add_row(
            feature.feature,
            f"{feature.psi:.3f}",
            f"{feature.js:.3f}",
            "yes" if feature.drifted else "no",
            feature.rule,
        )
    out.print(drift)
    counts = ", ".join(f"{key} {value}" for key, value in result.counts.items())
    console.print(counts, highlight=False)
    for name, outcome in result.heads.items():
        verdict = "[green]promoted[/green]" if outcome.promoted else "[yellow]champion kept[/yellow]"
        console.print(
            f"{name}: challenger v{outcome.challenger_version} vs champion v{outcome.champion_version} on "
            f"{outcome.gate.rows} held-out tickets: {verdict}",
            highlight=False,
        )
        for reason in outcome.gate.reasons:
            console.print(f"  - {reason}", highlight=False)
    if any(outcome.promoted for outcome in result.heads.values()):
        import yaml

        sources = [s.model_dump(mode="json", exclude_defaults=True) for s in result.history_sources]
        console.print(
            "add the history to data.sources in the params file, so the next retrain counts it as "
            "training data:\n" + yaml.safe_dump(sources, sort_keys=False),
            highlight=False,
        )
    console.print(
        f"MLflow run {result.run_id}" + (f"; reports in {output}" if output else ""), highlight=False
    )


@app.command()
@user_errors
def compare(
    params_path: ParamsOption = Path("params.yaml"),
    output: Annotated[Path | None, typer.Option(help="Also write the markdown table here.")] = None,
) -> None:
    """Compare the newest version of each model family per head (logged to MLflow as a `compare` run)."""
    from mlflow import MlflowClient

    from urgency import tracking
    from urgency.promote import compare as compare_families
    from urgency.promote import comparison_markdown, log_comparison

    params = _load(params_path)
    experiment_id = tracking.use_tracking(
        params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location
    )
    names = {head: params.mlflow.model_name(head) for head in HEADS}
    table = compare_families(MlflowClient(), names, params.mlflow.champion_alias)
    run_id = log_comparison(table, experiment_id, output)
    Console().print(comparison_markdown(table))
    console.print(f"logged to MLflow run {run_id}" + (f", written to {output}" if output else ""))


# ---------------------------------------------------------------------------------------------
# The service and its store

db_app = typer.Typer(
    help="The service's database (SQLite by default, PostgreSQL by URL).", no_args_is_help=True
)
app.add_typer(db_app, name="db")

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="URGENCY_DATABASE_URL",
        help="SQLAlchemy URL; default: sqlite:///<params folder>/data/service.db.",
    ),
]


def _service_settings(params_path: Path, **overrides: Any) -> Any:
    from pydantic import ValidationError

    from serve.settings import ServiceSettings

    try:
        return ServiceSettings(params=params_path, **{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        from urgency.config import format_validation_error

        raise ParamsError(format_validation_error(error, "service settings (URGENCY_* variables)")) from None


@db_app.command("upgrade")
@user_errors
def db_upgrade(params_path: ParamsOption = Path("params.yaml"), database_url: DatabaseOption = None) -> None:
    """Create the store's tables or apply the migrations it lacks."""
    from urgency.store import make_engine, redact, upgrade

    settings = _service_settings(params_path, database_url=database_url)
    before, after = upgrade(make_engine(settings.store_url()))
    console.print(
        f"[green]ok[/green]: {redact(settings.store_url())} at revision {after} (was {before or 'empty'})"
    )


@app.command("api-key")
@user_errors
def api_key(
    name: Annotated[str, typer.Option(help="A name for the key (shown in logs and 403 messages).")],
    scope: Annotated[list[str], typer.Option("--scope", help="score, feedback or admin (repeat).")],
) -> None:
    """Make a new random API key; prints the key once and the entry for URGENCY_API_KEYS."""
    import secrets

    from serve.settings import SCOPES, hash_key

    unknown = [s for s in scope if s not in SCOPES]
    if unknown:
        raise typer.BadParameter(f"unknown scope(s) {unknown}; choose from {list(SCOPES)}")
    key = secrets.token_urlsafe(32)
    entry = {"name": name, "sha256": hash_key(key), "scopes": list(dict.fromkeys(scope))}
    _stdout().print(f"key (give it to the client; it is not stored): {key}", highlight=False)
    _stdout().print(f"URGENCY_API_KEYS entry: {json.dumps(entry)}", highlight=False, soft_wrap=True)


@app.command()
@user_errors
def serve(
    params_path: ParamsOption = Path("params.yaml"),
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (each loads the models).")] = 1,
    model_dir: ModelDirOption = None,
    database_url: DatabaseOption = None,
    migrate: Annotated[bool, typer.Option(help="Apply the store's migrations before starting.")] = True,
) -> None:
    """Start the prediction service (uvicorn); settings also come from URGENCY_* variables."""
    import uvicorn

    from serve.app import create_app
    from serve.runtime import load_runtime
    from urgency.store import check_schema, make_engine, redact, upgrade

    _setup_logging()
    settings = _service_settings(params_path, model_dir=model_dir, database_url=database_url)
    problems = settings.problems()
    if problems:
        raise ParamsError("refusing to start: " + "; ".join(problems))
    engine = make_engine(settings.store_url())
    if migrate:
        upgrade(engine)
    check_schema(engine)
    engine.dispose()
    console.print(f"store: {redact(settings.store_url())}")
    if settings.mode == "local" and not settings.api_keys:
        console.print("[yellow]local mode[/yellow]: API key 'local-dev-key' has every scope")
    if workers == 1:
        # Load here, so a missing model is a clear error before the server starts.
        runtime = load_runtime(_load(params_path), model_dir=settings.model_dir, alias=settings.model_alias)
        uvicorn.run(create_app(settings, runtime), host=host, port=port, log_level="info")
        return
    # Worker processes build their own app from the same settings (passed on as variables).
    os.environ["URGENCY_PARAMS"] = str(params_path.resolve())
    os.environ["URGENCY_DATABASE_URL"] = settings.store_url()
    if settings.model_dir is not None:
        os.environ["URGENCY_MODEL_DIR"] = str(settings.model_dir.resolve())
    uvicorn.run("serve.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")


@app.command()
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

    _setup_logging()
    heads = _heads([head])
    params = _load(params_path)

    def show(trials: list[Trial]) -> None:
        table = Table(title=f"{heads[0]}: {len(trials)} configuration(s), macro-F1")
        for column in ("#", "settings", "macro-F1", "fit seconds"):
            table.add_column(column)
        for trial in sorted(trials, key=lambda t: -t.score):
            settings = ", ".join(f"{key}={value}" for key, value in trial.settings.items())
            table.add_row(str(trial.number), settings, f"{trial.score:.4f}", f"{trial.fit_seconds:.1f}")
        _stdout().print(table)

    def run(backend: str) -> Any:
        return run_tune(params, heads[0], backend=backend, params_path=params_path, on_searched=show)

    if scheduler:
        from urgency.distributed import dask_client

        with dask_client(scheduler):
            result = run("dask")
    else:
        result = run("loky")
    outcome = result.registered
    console.print(
        f"[green]ok[/green]: best {result.best.settings} (macro-F1 {result.best.score:.4f}) registered as "
        f"{outcome.registered_name} v{outcome.version} @{result.alias}; test macro-F1 "
        f"{outcome.test_report['macro_f1']:.4f} (MLflow run {result.parent_run_id})",
        highlight=False,
    )
    verdict = "would replace" if result.verdict.promoted else "would not replace"
    console.print(f"promotion policy: {verdict} the champion: {result.verdict.reason}", highlight=False)


# ---------------------------------------------------------------------------------------------
# Reports for managers, and the demo's simulated agents

report_app = typer.Typer(help="Reports for managers (HTML page plus a JSON file of the figures).")
app.add_typer(report_app, name="report")


@report_app.command("agreement")
@user_errors
def report_agreement(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The HTML page; the figures go beside it as .json.")
    ] = Path("report.html"),
    input: Annotated[
        Path | None,
        typer.Option(
            "--input", "-i", help="Closed-tickets CSV (docs/reports.md); default: the service's store."
        ),
    ] = None,
    database_url: DatabaseOption = None,
    since: Annotated[str | None, typer.Option(help="First day (ISO 8601, e.g. 2026-01-01).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day, included (a date-time: excluded).")] = None,
    week_of: Annotated[str, typer.Option(help="Weeks of created_at or scored_at.")] = "created_at",
    top: Annotated[int, typer.Option(min=0, help="Confident disagreements to list for review.")] = 20,
    params_path: ParamsOption = Path("params.yaml"),
    rules_path: RulesOption = None,
) -> None:
    """Do the models agree with the agents? Agreement, kappa, coverage, slices, trend and SLA."""
    from urgency import report
    from urgency.store import Store, StoreError, check_schema, make_engine, redact, sqlite_path

    if input is not None and database_url is not None:
        raise typer.BadParameter("give --input or --database-url, not both", param_hint="--input")
    if week_of not in ("created_at", "scored_at"):
        raise typer.BadParameter("use created_at or scored_at", param_hint="--week-of")
    try:
        since_at, until_at = report.parse_period(since, until)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since/--until") from None
    params = _load(params_path)
    settings = report.report_settings(params, _rules(params, rules_path))
    options: dict[str, Any] = {"since": since_at, "until": until_at, "week_of": week_of, "top": top}
    if input is not None:
        figures = report.figures_from_csv(input, settings, **options)
    else:
        url = _service_settings(params_path, database_url=database_url).store_url()
        path = sqlite_path(url)
        if path is not None and not path.exists():
            raise StoreError(f"no store at {path}: the service has not run yet (or use --input closed.csv)")
        engine = make_engine(url)
        try:
            check_schema(engine)
            figures = report.figures_from_store(Store(engine), settings, source=redact(url), **options)
        finally:
            engine.dispose()
    json_path = report.write_report(figures, output)
    fields = figures["fields"]
    summary = ", ".join(
        f"{name} {fields[name]['agreement']:.1%} of {fields[name]['used']}"
        for name in ("urgency", "category", "sentiment", "priority")
        if fields[name]["agreement"] is not None
    )
    console.print(
        f"[green]ok[/green]: {figures['tickets']} decided tickets ({figures['period']}); agreement: "
        f"{summary or 'no agent values'}; written to {output} and {json_path}",
        highlight=False,
    )


@app.command("demo-agents")
@user_errors
def demo_agents(
    output: Annotated[Path, typer.Option("--output", "-o", help="The closed-tickets CSV to write.")] = Path(
        "data/demo_closed_tickets.csv"
    ),
    rows: Annotated[int, typer.Option(min=1, help="At most this many tickets.")] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the sample and the simulated metadata.")] = 0,
    now: Annotated[
        str | None, typer.Option(help="Tickets are created in the 8 weeks before this (default: this hour).")
    ] = None,
    params_path: ParamsOption = Path("params.yaml"),
    model_dir: ModelDirOption = None,
    rules_path: RulesOption = None,
) -> None:
    """Closed tickets for the demo: agents simulated from the held-back test labels (docs/reports.md)."""
    from urgency.data import load_configured
    from urgency.simulate import default_now, simulate_closed_tickets, write_closed_tickets

    _setup_logging()
    moment = _now(now) if now else default_now()
    params = _load(params_path)
    rules = _rules(params, rules_path)
    models = _models(params, list(HEADS), model_dir)
    tickets = load_configured(params.data).tickets
    with _progress() as progress:
        task = progress.add_task("deciding held-back tickets", total=None)
        closed = simulate_closed_tickets(
            models,
            rules,
            tickets,
            params.data,
            params.splits,
            now=moment,
            rows=rows,
            seed=seed,
            subject_column=params.predict.subject_column,
            body_column=params.predict.body_column,
            on_day=lambda count: progress.advance(task, count),
        )
    write_closed_tickets(closed, output)
    known = ", ".join(f"{head} {int(closed[f'agent_{head}'].notna().sum())}" for head in HEADS)
    console.print(
        f"[green]ok[/green]: {len(closed)} closed tickets written to {output} (agents' values: {known})",
        highlight=False,
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
