"""Assignment commands: assign (a scored queue's tickets to agents, the batch case)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from urgency.cli.common import (
    DatabaseOption,
    ParamsOption,
    RulesOption,
    console,
    load_rules,
    parse_now,
    setup_logging,
    user_errors,
)
from urgency.config import load_params
from urgency.errors import ParamsError

if TYPE_CHECKING:
    from urgency.agents import Agents
    from urgency.assignment import Availability


@user_errors
def assign(
    input: Annotated[
        Path,
        typer.Option(
            "--input", "-i", help="The scored queue `urgency score` wrote (.csv, .parquet, .jsonl)."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The queue with `assignee` and `assignment_explanation` added."),
    ],
    now: Annotated[
        str | None, typer.Option(help="Assign as of this ISO 8601 time (no offset: UTC); default: the clock.")
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="round-robin, least-loaded or capacity-aware; default: operations.assignment_strategy."
        ),
    ] = None,
    agents_path: Annotated[
        Path | None,
        typer.Option("--agents", help="The agents file; default: operations.agents in the params."),
    ] = None,
    params_path: ParamsOption = Path("params.yaml"),
    rules_path: RulesOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Assign a scored queue's tickets to agents, most urgent first, and write the queue with the
    agent and why. The agents' open load starts from the service's store when it exists (the
    open tickets it knows), else from zero; nothing is written to the store."""
    from urgency.agents import read_agents
    from urgency.assignment import STRATEGIES, assign_frame
    from urgency.files import check_not_input, read_table, write_table_atomic

    setup_logging()
    if strategy is not None and strategy not in STRATEGIES:
        raise typer.BadParameter(f"use one of {', '.join(STRATEGIES)}", param_hint="--strategy")
    moment = parse_now(now)
    params = load_params(params_path)
    rules = load_rules(params, rules_path)
    path = agents_path or params.operations.agents
    if path is None:
        raise ParamsError(f"{params_path}: no agents file: set operations.agents (or give --agents)")
    agents = read_agents(path, rules)
    check_not_input(input, output)
    queue = read_table(input)
    load, availability, where = _stored_load(database_url, params_path, agents)
    language = rules.fields.get("language")
    assigned, run = assign_frame(
        queue,
        agents,
        load,
        now=moment,
        strategy=strategy or params.operations.assignment_strategy,
        levels=rules.levels,
        teams=list(rules.team_skills),
        availability=availability,
        language_column=language.column if language is not None and language.column else "language",
        source=str(input),
    )
    write_table_atomic(assigned, output)
    waiting = sum(1 for one in run.assignments if one.agent is None)
    console.print(
        f"[green]ok[/green]: {len(run.assignments) - waiting} of {len(run.assignments)} tickets assigned "
        f"({waiting} wait in their team's queue), load from {where} -> {output}",
        highlight=False,
    )


def _stored_load(
    database_url: str | None, params_path: Path, agents: Agents
) -> tuple[dict[str, dict[str, int]], dict[str, Availability], str]:
    """The open load and availability in the service's store, when there is one."""
    from urgency.assignment import Availability, load_by_agent
    from urgency.store import Store, check_schema, make_engine, redact, sqlite_path
    from urgency.store import database_url as store_url

    url = store_url(database_url, params_path)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return {}, {}, "zero (no store)"
    engine = make_engine(url)
    try:
        check_schema(engine)
        store = Store(engine)
        load = load_by_agent(agents, store.open_load())
        availability = {
            agent: Availability(row["available"], row["source"])
            for agent, row in store.availability().items()
        }
    finally:
        engine.dispose()
    return load, availability, f"the store {redact(url)}"
