"""Report commands: report agreement, report backlog, and demo-agents (the demo's simulated agents)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from urgency.cli.common import (
    DatabaseOption,
    ModelDirOption,
    ParamsOption,
    RulesOption,
    console,
    load_models,
    load_rules,
    parse_now,
    progress,
    setup_logging,
    user_errors,
)
from urgency.config import HEADS, load_params


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
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="--input is `urgency score`'s output on this params source's export, whose label "
            "columns hold the agents' values (mapped by the source's value maps).",
        ),
    ] = None,
    output_prefix: Annotated[
        str, typer.Option("--output-prefix", help="With --source: the prefix `urgency score` was given.")
    ] = "",
    params_path: ParamsOption = Path("params.yaml"),
    rules_path: RulesOption = None,
) -> None:
    """Do the models agree with the agents? Agreement, kappa, coverage, slices, trend and SLA."""
    from urgency import report
    from urgency.store import database_url as store_url
    from urgency.tickets import choose_source

    if input is not None and database_url is not None:
        raise typer.BadParameter("give --input or --database-url, not both", param_hint="--input")
    if week_of not in ("created_at", "scored_at"):
        raise typer.BadParameter("use created_at or scored_at", param_hint="--week-of")
    try:
        since_at, until_at = report.parse_period(since, until)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since/--until") from None
    if source is not None and input is None:
        raise typer.BadParameter("--source reads an --input file", param_hint="--source")
    params = load_params(params_path)
    settings = report.report_settings(params, load_rules(params, rules_path))
    # Only a named source: a closed-tickets CSV (demo-agents, a store export) has its own layout.
    export = choose_source(params.data.sources, source) if source is not None else None
    figures, json_path = report.agreement_report(
        settings,
        output,
        input=input,
        database_url=store_url(database_url, params_path),
        since=since_at,
        until=until_at,
        week_of=week_of,  # type: ignore[arg-type]  # checked above
        top=top,
        export=export,
        prefix=output_prefix,
    )
    fields = figures["fields"]
    summary = ", ".join(
        f"{name} {fields[name]['agreement']:.1%} of {fields[name]['used']}"
        for name in ("urgency", "category", "sentiment", "priority")
        if name in fields and fields[name]["agreement"] is not None
    )
    console.print(
        f"[green]ok[/green]: {figures['tickets']} decided tickets ({figures['period']}); agreement: "
        f"{summary or 'no agent values'}; written to {output} and {json_path}",
        highlight=False,
    )


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

    setup_logging()
    moment = parse_now(now) if now else default_now()
    params = load_params(params_path)
    rules = load_rules(params, rules_path)
    # As `urgency score` decides: the text signals' model too, when there is one.
    models = load_models(params, None, model_dir, signals=True)
    tickets = load_configured(params.data).tickets
    with progress() as bar:
        task = bar.add_task("deciding held-back tickets", total=None)
        closed = simulate_closed_tickets(
            models,
            rules,
            tickets,
            params.data,
            params.splits,
            now=moment,
            rows=rows,
            seed=seed,
            on_day=lambda count: bar.advance(task, count),
        )
    write_closed_tickets(closed, output)
    heads = [head for head in HEADS if head in models]
    known = ", ".join(f"{head} {int(closed[f'agent_{head}'].notna().sum())}" for head in heads)
    console.print(
        f"[green]ok[/green]: {len(closed)} closed tickets written to {output} (agents' values: {known})",
        highlight=False,
    )


@user_errors
def report_backlog(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the backlog: .json (summary and tickets) or .csv (tickets)."
        ),
    ] = None,
    database_url: DatabaseOption = None,
    now: Annotated[
        str | None, typer.Option(help="The moment the hours left count from (default: now).")
    ] = None,
    top: Annotated[int, typer.Option(min=0, help="Most urgent tickets to print.")] = 10,
    params_path: ParamsOption = Path("params.yaml"),
    rules_path: RulesOption = None,
) -> None:
    """The open backlog from the service's store: time left to each deadline, queue, breach risk."""
    from urgency.agents import read_agents
    from urgency.backlog import BACKLOG_COLUMNS, backlog_json, load_breach_model, read_backlog
    from urgency.files import write_table_atomic, write_text_atomic
    from urgency.store import Store, StoreError, check_schema, make_engine, sqlite_path
    from urgency.store import database_url as store_url

    if output is not None and output.suffix.lower() not in (".json", ".csv"):
        raise typer.BadParameter("write a .json or a .csv file", param_hint="--output")
    moment = parse_now(now)
    params = load_params(params_path)
    rules = load_rules(params, rules_path)
    url = store_url(database_url, params_path)
    path = sqlite_path(url)
    # make_engine would create an empty SQLite file; a missing one means nothing was scored.
    if path is not None and not path.exists():
        raise StoreError(f"no store at {path}: the service has not run yet")
    engine = make_engine(url)
    try:
        check_schema(engine)
        frame = read_backlog(
            Store(engine),
            levels=rules.levels,
            operations=params.operations,
            now=moment,
            breach_model=load_breach_model(params),
            agents=None if params.operations.agents is None else read_agents(params.operations.agents, rules),
        )
    finally:
        engine.dispose()
    figures = backlog_json(frame, now=moment)
    if output is not None and output.suffix.lower() == ".json":
        write_text_atomic(json.dumps(figures, indent=2) + "\n", output)
    elif output is not None:
        write_table_atomic(frame[list(BACKLOG_COLUMNS)], output)
    table = Table("priority", "team", "open", "breached", "at risk", title="Open backlog")
    for row in figures["summary"]:
        table.add_row(
            str(row["priority"]),
            str(row["team"]),
            str(row["tickets"]),
            str(row["breached"]),
            str(row["at_risk"]),
        )
    console.print(table)
    tickets = Table(
        "ticket", "priority", "team", "next deadline", "hours left", "queue", "risk", title="Most urgent"
    )
    for ticket in figures["tickets"][:top]:
        left, risk = ticket["hours_left"], ticket["breach_risk"]
        tickets.add_row(
            str(ticket["ticket_id"]),
            str(ticket["priority"]),
            str(ticket["team"]),
            ticket["next_deadline"] or "-",
            "-" if left is None else f"{left:.1f}",
            str(ticket["queue_ahead"]),
            "-" if risk is None else f"{risk:.0%}",
        )
    if top and figures["tickets"]:
        console.print(tickets)
    written = f"; written to {output}" if output is not None else ""
    console.print(
        f"[green]ok[/green]: {figures['open_tickets']} open tickets as of {figures['generated_at']}{written}",
        highlight=False,
    )
