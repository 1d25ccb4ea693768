"""Scoring commands: predict, score (the prioritized queue), validate-rules, check-incidents."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from urgency.cli.common import (
    BodyColumnOption,
    ChunkSizeOption,
    HeadsOption,
    JobsOption,
    ModelDirOption,
    ParamsOption,
    RulesOption,
    SubjectColumnOption,
    console,
    dask_client,
    heads,
    load_models,
    load_rules,
    model_source,
    parse_now,
    progress,
    setup_logging,
    stdout,
    user_errors,
)
from urgency.config import Params, load_params
from urgency.parallel import default_jobs

if TYPE_CHECKING:
    from datetime import datetime

    from urgency.distributed import FileOptions
    from urgency.rules import RuleSet

InputOption = Annotated[
    Path,
    typer.Option(
        "--input", "-i", help="Tickets to score (.csv, .parquet, .jsonl), or a quoted glob of such files."
    ),
]
SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="Read the input through this source of params data.sources (its columns, meta fields, "
        "constants); default: the only source, or with several the canonical columns (subject, body, ...).",
    ),
]
OutputPrefixOption = Annotated[
    str,
    typer.Option(
        "--output-prefix",
        help="Put this before every column the output adds (e.g. model_ -> model_priority), so an input "
        "column of the same name is kept; default: none (such an input column is an error).",
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        envvar="URGENCY_SCHEDULER",
        help="Dask scheduler address (tcp://HOST:8786), or `local` for a cluster of this machine's cores; "
        "--output is then a folder of Parquet parts.",
    ),
]


@user_errors
def predict(
    input: InputOption,
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
    source: SourceOption = None,
    output_prefix: OutputPrefixOption = "",
    subject_column: SubjectColumnOption = None,
    body_column: BodyColumnOption = None,
    chunk_size: ChunkSizeOption = None,
    jobs: JobsOption = None,
    scheduler: SchedulerOption = None,
    head: HeadsOption = None,
) -> None:
    """Score a file of tickets with the champion models; every input column is kept unchanged.

    A glob pattern (--input 'tickets/*.parquet') or a --scheduler scores many files, one Parquet
    part per file, into the --output folder."""
    from urgency.distributed import is_pattern
    from urgency.predict import predict_file

    setup_logging()
    params = load_params(params_path)
    options = _file_options(params, source, output_prefix, subject_column, body_column, chunk_size)
    if scheduler or is_pattern(str(input)):
        _many_files(
            params, str(input), output, options, scheduler=scheduler, model_dir=model_dir, heads=heads(head)
        )
        return
    models = load_models(params, heads(head), model_dir, signals=True)
    with progress() as bar:
        task = bar.add_task(f"scoring {input.name}", total=None)
        stats = predict_file(
            models,
            input,
            output,
            **asdict(options),
            on_chunk=lambda rows: bar.advance(task, rows),
            jobs=jobs or default_jobs(),
        )
    versions = ", ".join(
        f"{head} v{model.version}" if model.version else head for head, model in models.items()
    )
    console.print(
        f"[green]ok[/green]: {stats.rows} tickets scored into {output} "
        f"({stats.rows_with_error} with a row error; models: {versions})"
    )


def _file_options(
    params: Params,
    source_name: str | None,
    prefix: str,
    subject_column: str | None,
    body_column: str | None,
    chunk_size: int | None,
) -> FileOptions:
    """How files are read and turned into model input: through the --source (or the only
    source in params; `urgency.tickets.choose_source`), else the canonical subject and body
    columns; --subject-column and --body-column override either."""
    from urgency.distributed import FileOptions
    from urgency.tickets import choose_source

    source = choose_source(params.data.sources, source_name)
    if source is not None and (subject_column or body_column):
        columns = source.columns.model_copy(
            update={
                "subject": subject_column or source.columns.subject,
                "body": body_column or source.columns.body,
            }
        )
        source = source.model_copy(update={"columns": columns})
    if source is None:
        console.print(
            f"reading the input's {subject_column or 'subject'}/{body_column or 'body'} columns "
            f"(params has {len(params.data.sources)} sources: --source NAME reads one's columns)",
            highlight=False,
        )
    return FileOptions(
        subject_column=subject_column or "subject",
        body_column=body_column or "body",
        max_text_chars=params.data.max_text_chars,
        chunk_size=chunk_size or params.predict.chunk_size,
        source=source,
        prefix=prefix,
    )


def _many_files(
    params: Params,
    pattern: str,
    output: Path,
    options: FileOptions,
    *,
    scheduler: str | None,
    model_dir: Path | None,
    heads: list[str] | None = None,
    scoring: tuple[RuleSet, datetime, bool | None] | None = None,
) -> None:
    """Many files (or a cluster): one Parquet part per input file in the output folder;
    predicted, or with `scoring` (rules, now, surge) predicted and decided."""
    from urgency import distributed

    # Checked before a cluster starts: a typo should not cost a cluster start-up.
    files = distributed.input_files(pattern)
    distributed.check_output(output)
    source = model_source(params, heads, model_dir, signals=True)
    with progress() as bar:
        task = bar.add_task(f"scoring {len(files)} file(s)", total=len(files))
        with dask_client(scheduler) as client:
            on_part = lambda _: bar.advance(task)  # noqa: E731
            if scoring is None:
                result = distributed.predict_files(
                    pattern, output, source, options, client=client, on_part=on_part
                )
            else:
                rules, now, surge = scoring
                result = distributed.score_files(
                    pattern,
                    output,
                    source,
                    options,
                    rules=rules,
                    now=now,
                    surge=surge,
                    client=client,
                    on_part=on_part,
                )
    versions = ", ".join(f"{ref.head} v{ref.version}" if ref.version else ref.head for ref in source.heads)
    console.print(
        f"[green]ok[/green]: {result.rows} tickets from {result.files} file(s) scored into {output}/ "
        f"({result.rows_with_error} with a row error; models: {versions}; "
        f"{'Dask scheduler ' + scheduler if scheduler else 'this process'})",
        highlight=False,
    )


@user_errors
def score(
    input: InputOption,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="The prioritized queue (.csv, .parquet, .jsonl); a folder for a glob or --scheduler.",
        ),
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
    source: SourceOption = None,
    output_prefix: OutputPrefixOption = "",
    subject_column: SubjectColumnOption = None,
    body_column: BodyColumnOption = None,
    chunk_size: ChunkSizeOption = None,
    jobs: JobsOption = None,
    scheduler: SchedulerOption = None,
    head: HeadsOption = None,
) -> None:
    """Predict, apply the scoring rules and write the queue: priority, then deadline, then age.

    A glob pattern or a --scheduler scores many files, one Parquet part per file in input order
    (sort by the order_key column for the queue), into the --output folder."""
    from urgency.distributed import is_pattern
    from urgency.scoring import score_file

    setup_logging()
    if surge not in (None, "on", "off"):
        raise typer.BadParameter("use on or off", param_hint="--surge")
    moment = parse_now(now)
    params = load_params(params_path)
    rules = load_rules(params, rules_path)
    surge_on = None if surge is None else surge == "on"
    options = _file_options(params, source, output_prefix, subject_column, body_column, chunk_size)
    if scheduler or is_pattern(str(input)):
        scoring = (rules, moment, surge_on)
        _many_files(
            params,
            str(input),
            output,
            options,
            scheduler=scheduler,
            model_dir=model_dir,
            heads=heads(head),
            scoring=scoring,
        )
        return
    models = load_models(params, heads(head), model_dir, signals=True)
    with progress() as bar:
        task = bar.add_task(f"scoring {input.name}", total=None)
        stats = score_file(
            models,
            rules,
            input,
            output,
            now=moment,
            surge=surge_on,
            **asdict(options),
            on_chunk=lambda rows: bar.advance(task, rows),
            jobs=jobs or default_jobs(),
        )
    levels = ", ".join(f"{level} {count}" for level, count in stats.by_priority.items())
    console.print(
        f"[green]ok[/green]: {stats.rows} tickets queued into {output} ({levels}; "
        f"{stats.needs_human_triage} need human triage; {stats.rows_with_error} with a row error; "
        f"surge {'on' if stats.surge else 'off'})"
    )


@user_errors
def validate_rules(params_path: ParamsOption = Path("params.yaml"), rules_path: RulesOption = None) -> None:
    """Check the scoring rules file: errors stop with every problem listed, warnings are shown."""
    params = load_params(params_path)
    rules = load_rules(params, rules_path)
    console.print(
        f"[green]ok[/green]: {rules.source}: {len(rules.levels)} levels, {len(rules.rule_names())} rules, "
        f"{len(rules.spec.teams)} teams, {len(rules.spec.sla.policies)} SLA policies, "
        f"{len(rules.warnings)} warning(s)"
    )


@user_errors
def check_incidents(
    log: Annotated[
        Path,
        typer.Option(
            "--log",
            help="ServiceNow incident event log (.csv or .csv.gz), e.g. the shared data's "
            "../shared/data/incident_event_log.csv.gz.",
        ),
    ],
    min_agreement: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Fail (exit 1) when the matrix agrees less often.")
    ] = 1.0,
    params_path: ParamsOption = Path("params.yaml"),
    rules_path: RulesOption = None,
) -> None:
    """Does the rules' urgency x impact matrix reproduce a real log's priorities? And SLA attainment."""
    from urgency.incidents import check_incidents as check
    from urgency.incidents import read_incident_log

    params = load_params(params_path)
    rules = load_rules(params, rules_path)
    report = check(read_incident_log(log), rules)
    out = stdout()
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
