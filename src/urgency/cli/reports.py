"""Report commands: report agreement, backlog and operations, and demo-agents / demo-operations
(the demo's simulated agents and operations)."""

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
    model_source,
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


@user_errors
def report_operations(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The HTML page; the figures go beside it as .json.")
    ] = Path("data/operations_report.html"),
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help="Closed-tickets CSV with the operations columns (docs/operations.md); default: the store.",
        ),
    ] = None,
    open_tickets: Annotated[
        Path | None, typer.Option("--open", help="Open tickets CSV (the backlog; with --input).")
    ] = None,
    assignments: Annotated[
        Path | None, typer.Option("--assignments", help="Assignments CSV (with --input).")
    ] = None,
    promotions: Annotated[
        Path | None, typer.Option("--promotions", help="Alias moves CSV (at, head, alias, from, to, action).")
    ] = None,
    registry: Annotated[
        bool,
        typer.Option(
            "--registry/--no-registry",
            help="Mark the champion alias moves of the params' MLflow registry (its audit trail).",
        ),
    ] = False,
    database_url: DatabaseOption = None,
    since: Annotated[str | None, typer.Option(help="First day (ISO 8601, e.g. 2026-01-01).")] = None,
    until: Annotated[str | None, typer.Option(help="Last day, included (a date-time: excluded).")] = None,
    now: Annotated[
        str | None, typer.Option(help="The backlog's time left counts from this (default: the clock).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="At-risk tickets and bounces to list.")] = 20,
    params_path: ParamsOption = Path("params.yaml"),
    rules_path: RulesOption = None,
) -> None:
    """The support operation: backlog and breach risk, SLA over time, response and resolution
    times, workload, reassignments, common requests, CSAT; model versions on every trend."""
    from urgency import operations_report as ops
    from urgency.agents import read_agents
    from urgency.backlog import load_breach_model, read_backlog
    from urgency.report import parse_period, report_settings
    from urgency.store import database_url as store_url

    moment = parse_now(now)

    if input is not None and database_url is not None:
        raise typer.BadParameter("give --input or --database-url, not both", param_hint="--input")
    if input is None and (open_tickets is not None or assignments is not None):
        raise typer.BadParameter("--open and --assignments go with --input", param_hint="--open")
    try:
        since_at, until_at = parse_period(since, until)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since/--until") from None
    params = load_params(params_path)
    rules = load_rules(params, rules_path)
    moves = None
    if registry and promotions is None:
        from mlflow.exceptions import MlflowException

        from urgency.models import registry_client
        from urgency.promote import AliasLog, alias_moves

        try:
            found = alias_moves(registry_client(params.mlflow.tracking_uri), AliasLog.of(params.mlflow))
        except MlflowException as error:  # the report without the trail beats no report
            console.print(
                f"[yellow]warning:[/yellow] the registry's audit trail could not be read ({error}); "
                "promotions are the new model versions seen in the tickets",
                highlight=False,
            )
        else:
            if not found.empty and "alias" in found.columns:
                moves = found[found["alias"] == params.mlflow.champion_alias]
    figures, json_path = ops.operations_report(
        ops.operations_settings(rules, top=top),
        output,
        input=input,
        database_url=store_url(database_url, params_path),
        open_tickets=open_tickets,
        assignments=assignments,
        promotions=promotions,
        promotion_moves=moves,
        labels=report_settings(params, rules).labels,
        since=since_at,
        until=until_at,
        now=moment,
        backlog_now=lambda store: read_backlog(
            store,
            levels=rules.levels,
            operations=params.operations,
            now=moment,
            breach_model=load_breach_model(params),
            agents=None if params.operations.agents is None else read_agents(params.operations.agents, rules),
        ),
    )
    backlog, sla = figures["backlog"], figures["sla"]
    attainment = sla.get("all", {}).get("resolution_attainment")
    resolution = "–" if attainment is None else f"{attainment:.1%}"
    console.print(
        f"[green]ok[/green]: {figures['closed_tickets']} closed, {figures['open_tickets']} open "
        f"({backlog.get('breached', 0)} past a deadline, {backlog.get('at_risk', 0)} at risk); "
        f"resolution SLA {resolution}; {len(figures['weeks'])} week(s), "
        f"{len(figures['partial_weeks'])} partial; written to {output} and {json_path}",
        highlight=False,
    )


@user_errors
def demo_operations(
    closed: Annotated[
        Path, typer.Option("--closed", help="The closed-tickets CSV `urgency demo-agents` wrote.")
    ] = Path("data/demo_closed_tickets.csv"),
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Where the four CSV files go.")] = Path(
        "data"
    ),
    incident_log: Annotated[
        Path, typer.Option("--incident-log", help="The ServiceNow incident event log (reassignment pattern).")
    ] = Path("../shared/data/incident_event_log.csv.gz"),
    now: Annotated[
        str | None, typer.Option(help="Open tickets are those not resolved by this (default: this hour).")
    ] = None,
    open_days: Annotated[float, typer.Option(min=0, help="Open tickets: created in these last days.")] = 3.0,
    csat_share: Annotated[
        float, typer.Option(min=0, max=1, help="Share of tickets with a CSAT score.")
    ] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 0,
    params_path: ParamsOption = Path("params.yaml"),
    model_dir: ModelDirOption = None,
    rules_path: RulesOption = None,
) -> None:
    """Operations for the demo: agents, assignments with reassignments (as often as in the
    incident log), CSAT and open tickets, simulated on demo-agents' closed tickets."""
    import pandas as pd

    from urgency.errors import InputError, ModelNotFoundError
    from urgency.files import write_table_atomic
    from urgency.incidents import read_incident_log
    from urgency.simulate import default_now
    from urgency.simulate_operations import reassignment_pattern, simulate_operations

    moment = parse_now(now) if now else default_now()
    params = load_params(params_path)
    rules = load_rules(params, rules_path)
    if not closed.is_file():
        raise InputError(f"closed-tickets file {closed} does not exist (run `urgency demo-agents` first)")
    frame = pd.read_csv(closed, dtype=str, keep_default_na=False).replace({"": None})
    pattern = reassignment_pattern(read_incident_log(incident_log))
    try:  # the versions that scored the demo's tickets: the champions (or the folders) now
        versions = model_source(params, None, model_dir).versions()
    except ModelNotFoundError:
        versions = {}
    roster = {}
    if params.operations.agents is not None:  # the demo's agents file, when params names one
        from urgency.agents import read_agents

        agents = read_agents(params.operations.agents, rules)
        roster = {team: [agent.id for agent in agents.of_team(team)] for team in rules.team_skills}
    made = simulate_operations(
        frame,
        pattern,
        now=moment,
        teams=list(rules.team_skills),
        model_versions=versions,
        roster=roster,
        open_days=open_days,
        csat_share=csat_share,
        seed=seed,
    )
    paths = {
        "closed": output_dir / "demo_operations_closed.csv",
        "open": output_dir / "demo_open_tickets.csv",
        "assignments": output_dir / "demo_assignments.csv",
        "agents": output_dir / "demo_operations_agents.csv",
    }
    for name, path in paths.items():
        write_table_atomic(made[name], path, kind="csv")
    moved = int((made["closed"]["reassignments"] > 0).sum())
    console.print(
        f"[green]ok[/green]: {len(made['agents'])} agents, {len(made['closed'])} closed tickets "
        f"({moved} moved; the incident log moves {pattern.rate:.1%} of {pattern.incidents} incidents, "
        f"{pattern.team_move_share:.1%} of moves change team, "
        f"{pattern.bounce_back_share:.1%} of those go back), "
        f"{len(made['open'])} open as of {moment.isoformat()}, "
        f"{int(made['closed']['csat'].notna().sum())} CSAT scores; written to "
        + ", ".join(str(path) for path in paths.values()),
        highlight=False,
    )
