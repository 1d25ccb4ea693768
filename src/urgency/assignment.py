"""Assignment: an agent for each decided ticket, among its team's agents who can take it now.

Pure: no I/O, no clock. The caller gives the decided tickets, the agents (`urgency.agents`), the
agents' open load, availability set by an API call or a helpdesk, and `now`. An agent can take a
ticket when they are

- in the ticket's team, and not switched off (availability `false`),
- inside working hours on their calendar at `now`,
- below their `max_open` open tickets,
- have every skill the routing rule asked for (a skill that is a language tag, like `de` in
  `skills: [hardware, de]`, is met by speaking it), and speak the ticket's language when known.

Among those, the strategy chooses (params `operations.assignment_strategy`):

- `round-robin`: the team's agents in file order, starting after the last one given a ticket of
  that team;
- `least-loaded`: the smallest open load weighted by priority (the most urgent level counts
  most: with P1-P4, P1 4, P2 3, P3 2, P4 1), divided by the agent's `weight`;
- `capacity-aware`: the smallest share of `max_open` in use.

A probable duplicate (rules `duplicates.same_agent`) goes to the agent of the ticket it
duplicates when that agent can take it, whatever the strategy.

Ties go to the smaller agent id. Tickets are taken most urgent first (by `order_key`), each
assignment adding to the load the next one sees. A ticket no agent can take stays in its team's
queue (agent None) with the reason. Every choice is explained as text, as the rules explain theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from urgency.agents import Agent, Agents
from urgency.errors import DataValidationError, InputError
from urgency.language import normalise_tag

if TYPE_CHECKING:
    import pandas as pd

STRATEGIES = ("round-robin", "least-loaded", "capacity-aware")

# agent id -> priority level -> open tickets
Load = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class TicketToAssign:
    """What assignment needs of a decided ticket (`urgency.decision.Decision`)."""

    ticket_id: str
    priority: str
    order_key: str
    team: str
    skills: tuple[str, ...] = ()
    language: str | None = None
    # A probable duplicate (rules `duplicates.same_agent`): the open ticket it duplicates and
    # that ticket's agent, who takes it when eligible, whatever the strategy would choose.
    duplicate_of: str | None = None
    duplicate_agent: str | None = None


@dataclass(frozen=True)
class Availability:
    available: bool
    source: str = "api"  # who set it: "api", or the helpdesk's name


@dataclass(frozen=True)
class Assignment:
    ticket_id: str
    team: str
    priority: str
    agent: str | None  # None: no agent can take it now; it waits in the team's queue
    strategy: str
    explanation: str
    reason: str | None = None  # why no agent, when agent is None
    skipped: tuple[tuple[str, str], ...] = ()  # (agent id, why) of the team's agents not eligible


@dataclass(frozen=True)
class AssignmentRun:
    assignments: tuple[Assignment, ...]  # in the order the tickets were given
    load: dict[str, dict[str, int]]  # the open load after these assignments
    last_by_team: dict[str, str] = field(default_factory=dict)  # round-robin's position per team


def priority_weights(levels: Sequence[str]) -> dict[str, int]:
    """Most urgent first -> weights: with P1-P4, P1 4, P2 3, P3 2, P4 1."""
    return {level: len(levels) - position for position, level in enumerate(levels)}


def weighted_load(counts: Mapping[str, int], weights: Mapping[str, int]) -> int:
    """Open tickets weighted by priority (a level the rules do not know counts 1)."""
    return sum(weights.get(priority, 1) * count for priority, count in counts.items())


def open_count(counts: Mapping[str, int]) -> int:
    return sum(counts.values())


def load_by_agent(agents: Agents, stored: Load) -> dict[str, dict[str, int]]:
    """A stored load (by assignee as stored: an agent id, an email or a helpdesk user id) by
    agent id; an assignee no agent is known by is kept as it is."""
    load: dict[str, dict[str, int]] = {}
    for who, counts in stored.items():
        merged = load.setdefault(agents.agent_id(who) or who, {})
        for priority, count in counts.items():
            merged[priority] = merged.get(priority, 0) + count
    return load


def skip_reason(
    agent: Agent,
    ticket: TicketToAssign,
    counts: Mapping[str, int],
    availability: Availability | None,
    now: datetime,
) -> str | None:
    """Why `agent` cannot take `ticket` now, else None."""
    if availability is not None and not availability.available:
        return f"switched off ({availability.source})"
    if not agent.working(now):
        return f"outside working hours ({agent.calendar_name})"
    total = open_count(counts)
    if total >= agent.max_open:
        return f"at capacity ({total}/{agent.max_open} open)"
    missing = [skill for skill in ticket.skills if skill not in agent.skills and skill not in agent.languages]
    if missing:
        return f"lacks skill {', '.join(missing)}"
    language = normalise_tag(ticket.language)
    if language is not None and language not in agent.languages:
        return f"does not speak {language}"
    return None


def assign(
    tickets: Sequence[TicketToAssign],
    agents: Agents,
    load: Load,
    *,
    now: datetime,
    strategy: str,
    levels: Sequence[str],
    availability: Mapping[str, Availability] | None = None,
    last_by_team: Mapping[str, str] | None = None,
) -> AssignmentRun:
    """Choose an agent for each ticket (see the module's docstring). `last_by_team`: for
    round-robin, the agent last given a ticket of each team (it continues after them)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown assignment strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    weights = priority_weights(levels)
    availability = availability or {}
    current: dict[str, dict[str, int]] = {agent: dict(counts) for agent, counts in load.items()}
    last = dict(last_by_team or {})
    chosen: dict[int, Assignment] = {}
    order = sorted(range(len(tickets)), key=lambda i: (tickets[i].order_key, tickets[i].ticket_id, i))
    for index in order:
        ticket = tickets[index]
        assignment = _assign_one(ticket, agents, current, now, strategy, weights, availability, last)
        if assignment.agent is not None:
            counts = current.setdefault(assignment.agent, {})
            counts[ticket.priority] = counts.get(ticket.priority, 0) + 1
            last[ticket.team] = assignment.agent
        chosen[index] = assignment
    return AssignmentRun(
        assignments=tuple(chosen[i] for i in range(len(tickets))), load=current, last_by_team=last
    )


def _assign_one(
    ticket: TicketToAssign,
    agents: Agents,
    load: Mapping[str, Mapping[str, int]],
    now: datetime,
    strategy: str,
    weights: Mapping[str, int],
    availability: Mapping[str, Availability],
    last: Mapping[str, str],
) -> Assignment:
    team_agents = agents.of_team(ticket.team)
    eligible: list[Agent] = []
    skipped: list[tuple[str, str]] = []
    for agent in team_agents:
        why = skip_reason(agent, ticket, load.get(agent.id, {}), availability.get(agent.id), now)
        if why is None:
            eligible.append(agent)
        else:
            skipped.append((agent.id, why))
    skipped_text = "; skipped: " + ", ".join(f"{who} ({why})" for who, why in skipped) if skipped else ""
    if not eligible:
        reason = (
            f"team {ticket.team} has no agents in the agents file"
            if not team_agents
            else f"no agent of team {ticket.team} can take it now"
        )
        return Assignment(
            ticket_id=ticket.ticket_id,
            team=ticket.team,
            priority=ticket.priority,
            agent=None,
            strategy=strategy,
            explanation=f"{strategy}: {reason}, it waits in the team's queue{skipped_text}",
            reason=reason,
            skipped=tuple(skipped),
        )

    def described(agent: Agent) -> str:
        counts = load.get(agent.id, {})
        if strategy == "least-loaded":
            score = weighted_load(counts, weights) / agent.weight
            per = f", weight {agent.weight:g}" if agent.weight != 1 else ""
            return f"{agent.id} (load {score:g}: {open_count(counts)} open{per})"
        return f"{agent.id} ({open_count(counts)}/{agent.max_open} open)"

    same = next((agent for agent in eligible if agent.id == ticket.duplicate_agent), None)
    if same is not None:
        pick = same
        why = f"the agent of {ticket.duplicate_of}, which it probably duplicates"
    elif strategy == "round-robin":
        pick = _next_in_turn(team_agents, eligible, last.get(ticket.team))
        after = last.get(ticket.team)
        why = f"next in turn after {after}" if after else "first in turn"
    elif strategy == "least-loaded":
        pick = min(eligible, key=lambda a: (weighted_load(load.get(a.id, {}), weights) / a.weight, a.id))
        why = "least loaded (open tickets weighted by priority, divided by weight)"
    else:
        pick = min(eligible, key=lambda a: (open_count(load.get(a.id, {})) / a.max_open, a.id))
        why = "lowest share of capacity in use"
    others = [described(agent) for agent in eligible if agent is not pick]
    among = f" over {', '.join(others)}" if others else " (the only one who can take it)"
    return Assignment(
        ticket_id=ticket.ticket_id,
        team=ticket.team,
        priority=ticket.priority,
        agent=pick.id,
        strategy=strategy,
        explanation=f"{strategy}: {described(pick)}, {why}{among}{skipped_text}",
        skipped=tuple(skipped),
    )


def _next_in_turn(team_agents: Sequence[Agent], eligible: Sequence[Agent], last: str | None) -> Agent:
    """The first eligible agent after `last` in file order, wrapping around."""
    ids = [agent.id for agent in team_agents]
    start = ids.index(last) + 1 if last in ids else 0
    allowed = {agent.id for agent in eligible}
    for step in range(len(ids)):
        candidate = team_agents[(start + step) % len(ids)]
        if candidate.id in allowed:
            return candidate
    return eligible[0]  # not reached: every eligible agent is one of the team's


def queue_problems(
    frame: pd.DataFrame, id_column: str, levels: Sequence[str], teams: Sequence[str]
) -> list[str]:
    """What is wrong with a queue's rows (row numbers from 1, the header not counted), at most
    five: an id that is empty or given twice, a priority that is not one of the rules' levels,
    a team that is not one of the rules' teams."""
    problems: list[str] = []
    seen: dict[str, int] = {}
    for row, (ticket_id, priority, team) in enumerate(
        zip(frame[id_column], frame["priority"], frame["team"], strict=True), start=1
    ):
        ticket = "" if ticket_id is None or ticket_id != ticket_id else str(ticket_id).strip()
        if not ticket:
            problems.append(f"row {row}, column {id_column}: empty")
        elif ticket in seen:
            problems.append(f"row {row}, column {id_column}: {ticket!r} is also row {seen[ticket]}")
        seen.setdefault(ticket, row)
        if priority not in levels:
            problems.append(f"row {row}, column priority: {priority!r} is not one of {', '.join(levels)}")
        if team not in teams:
            problems.append(f"row {row}, column team: {team!r} is not a team of the rules")
        if len(problems) >= 5:
            break
    return problems[:5]


def assign_frame(
    frame: pd.DataFrame,
    agents: Agents,
    load: Load,
    *,
    now: datetime,
    strategy: str,
    levels: Sequence[str],
    availability: Mapping[str, Availability] | None = None,
    teams: Sequence[str],
    language_column: str = "language",
    source: str = "the queue",
) -> tuple[pd.DataFrame, AssignmentRun]:
    """A scored queue (what `urgency score` writes: `id` or `ticket_id`, `priority`,
    `order_key`, `team`, `skills`, the language column) with `assignee` and
    `assignment_explanation` added."""
    id_column = "ticket_id" if "ticket_id" in frame.columns else "id"
    needed = [id_column, "priority", "order_key", "team"]
    missing = [name for name in needed if name not in frame.columns]
    if missing:
        raise InputError(
            f"{source} lacks the column(s) {', '.join(missing)}: give the file `urgency score` wrote"
        )

    def text(value: object) -> str | None:
        return None if value is None or (isinstance(value, float) and value != value) else str(value)

    problems = queue_problems(frame, id_column, levels, teams)
    if problems:
        raise DataValidationError(f"{source}: " + "; ".join(problems))

    skills = frame["skills"] if "skills" in frame.columns else [None] * len(frame)
    languages = frame[language_column] if language_column in frame.columns else [None] * len(frame)
    tickets = [
        TicketToAssign(
            ticket_id=str(ticket_id),
            priority=str(priority),
            order_key=str(order_key),
            team=str(team),
            skills=tuple(part for part in (text(skill) or "").split(";") if part),
            language=text(language),
        )
        for ticket_id, priority, order_key, team, skill, language in zip(
            frame[id_column],
            frame["priority"],
            frame["order_key"],
            frame["team"],
            skills,
            languages,
            strict=True,
        )
    ]
    run = assign(tickets, agents, load, now=now, strategy=strategy, levels=levels, availability=availability)
    result = frame.copy()
    result["assignee"] = [assignment.agent for assignment in run.assignments]
    result["assignment_explanation"] = [assignment.explanation for assignment in run.assignments]
    return result, run
