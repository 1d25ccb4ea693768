"""Agents and assignment: POST /v1/assign, GET /v1/agents, PUT /v1/agents/{agent}/availability.

The agents come from the agents file (params `operations.agents`), read again whenever it changes
on disk (`ServiceState.agents`); the choice is `urgency.assignment.assign`'s; every assignment is
stored (`assignments`), and the open load it starts from is the store's (`Store.open_load`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status

from serve.deps import FeedbackKey, RuntimeDep, ScoreKey, ServiceDep, StoreDep
from serve.errors import ERRORS, invalid
from serve.runtime import Runtime
from serve.schemas import (
    AgentsResult,
    AgentState,
    AssignmentResult,
    AssignRequest,
    AssignResult,
    AvailabilityAck,
    AvailabilityChange,
    DecidedTicket,
    Problem,
)
from serve.state import ServiceState
from urgency.agents import Agents
from urgency.assignment import (
    Assignment,
    Availability,
    TicketToAssign,
    assign,
    load_by_agent,
    open_count,
    priority_weights,
    weighted_load,
)
from urgency.language import normalise_tag
from urgency.store import Store

router = APIRouter(tags=["assignment"])

NO_AGENTS = {409: {"model": Problem, "description": "No agents file is configured, or none could be read"}}


def agents_or_409(service: ServiceState, runtime_now: Runtime) -> Agents:
    agents, watch = service.agents(runtime_now)
    if agents is None:
        detail = (
            "no agents are configured: set operations.agents in the params"
            if watch is None
            else f"no agents file could be read: {watch.error}"
        )
        raise HTTPException(status.HTTP_409_CONFLICT, detail)
    return agents


@router.post("/v1/assign", response_model=AssignResult, responses={**ERRORS, **NO_AGENTS})
def assign_tickets(
    request: AssignRequest, runtime_now: RuntimeDep, store: StoreDep, service: ServiceDep, _key: ScoreKey
) -> AssignResult:
    """Choose an agent for each ticket among its team's available agents (params
    `operations.assignment_strategy`), most urgent first; store and explain each choice."""
    agents = agents_or_409(service, runtime_now)
    if request.ticket_ids is not None:
        tickets = stored_tickets(runtime_now, store, request.ticket_ids)
    else:
        given = request.tickets or []
        first = {}
        for position, ticket in enumerate(given):
            # One ticket, one assignment: a second copy would be assigned again (and counted twice).
            if first.setdefault(ticket.ticket_id, position) != position:
                raise invalid(
                    ["body", "tickets", position, "ticket_id"],
                    f"ticket {ticket.ticket_id!r} is given twice (also at {first[ticket.ticket_id]})",
                )
        tickets = [given_ticket(runtime_now, ticket, position) for position, ticket in enumerate(given)]
    now = request.now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    done = assign_and_store(service, runtime_now, store, agents, tickets, now, source="api")
    return AssignResult(assignments=[result_of(one, agents) for one in done])


def stored_tickets(runtime_now: Runtime, store: Store, ticket_ids: Sequence[str]) -> list[TicketToAssign]:
    """The tickets' latest scores in the store (a 422 naming an id never scored)."""
    found = store.latest_predictions(ticket_ids)
    language = language_column(runtime_now)
    tickets = []
    for position, ticket_id in enumerate(dict.fromkeys(ticket_ids)):
        row = found.get(ticket_id)
        if row is None:
            raise invalid(["body", "ticket_ids", position], f"ticket {ticket_id!r} was never scored")
        tickets.append(
            ticket_from_score(
                ticket_id,
                row["decision"],
                (row["fields"] or {}).get(language),
                same_agent=same_agent(runtime_now),
            )
        )
    return tickets


def ticket_from_score(
    ticket_id: str, decision: dict[str, Any], language: Any, *, same_agent: bool = False
) -> TicketToAssign:
    """A scored ticket (its answer, `ScoreResult` as JSON) to assign; with `same_agent` (rules
    `duplicates.same_agent`) a probable duplicate names the agent of the ticket it duplicates."""
    skills = decision.get("skills") or ()
    if isinstance(skills, str):
        skills = [part for part in skills.split(";") if part]
    duplicate = (decision.get("duplicate_of") or {}) if same_agent else {}
    return TicketToAssign(
        ticket_id=ticket_id,
        priority=str(decision["priority"]),
        order_key=str(decision.get("order_key") or decision["priority"]),
        team=str(decision["team"]),
        skills=tuple(skills),
        language=normalise_tag(language) if isinstance(language, str) else None,
        duplicate_of=duplicate.get("ticket_id"),
        duplicate_agent=duplicate.get("assignee"),
    )


def same_agent(runtime_now: Runtime) -> bool:
    """Whether a probable duplicate goes to the agent of the ticket it duplicates."""
    spec = runtime_now.rules.spec.duplicates
    return spec is not None and spec.same_agent


def language_column(runtime_now: Runtime) -> str:
    """The ticket field the rules read the language from (`fields.language.column`)."""
    info = runtime_now.rules.fields.get("language")
    return info.column if info is not None and info.column else "language"


def given_ticket(runtime_now: Runtime, ticket: DecidedTicket, position: int) -> TicketToAssign:
    levels = runtime_now.rules.levels
    teams = {team.name for team in runtime_now.rules.spec.teams}
    loc: list[str | int] = ["body", "tickets", position]
    if ticket.priority not in levels:
        raise invalid([*loc, "priority"], f"{ticket.priority!r} is not one of {list(levels)}")
    if ticket.team not in teams:
        raise invalid([*loc, "team"], f"{ticket.team!r} is not one of {sorted(teams)}")
    rank = levels.index(ticket.priority)
    return TicketToAssign(
        ticket_id=ticket.ticket_id,
        priority=ticket.priority,
        order_key=ticket.order_key or f"{rank:02d}",
        team=ticket.team,
        skills=tuple(ticket.skills),
        language=normalise_tag(ticket.language),
    )


def agent_load(agents: Agents, store: Store, exclude: Sequence[str] = ()) -> dict[str, dict[str, int]]:
    """The store's open load by agent id (a helpdesk user id or email read as its agent)."""
    return load_by_agent(agents, store.open_load(exclude=exclude))


def availability_of(store: Store) -> dict[str, Availability]:
    return {
        agent: Availability(row["available"], row["source"]) for agent, row in store.availability().items()
    }


def assign_and_store(
    service: ServiceState,
    runtime_now: Runtime,
    store: Store,
    agents: Agents,
    tickets: Sequence[TicketToAssign],
    now: datetime,
    *,
    source: str,
) -> tuple[Assignment, ...]:
    """Assign the tickets from the store's load and availability, and store the assignments.
    One round at a time (in this process, and across the workers: `Store.assignment_lock`), so
    a round sees the load the last one wrote."""
    with service.assign_lock, store.assignment_lock():
        chosen = choose(runtime_now, store, agents, tickets, now)
        store.record_assignments([assignment_row(one, now, source) for one in chosen])
    count_assignments(service, chosen)
    return chosen


def count_assignments(service: ServiceState, chosen: Sequence[Assignment]) -> None:
    for one in chosen:
        service.metrics.assignments.labels(one.strategy, str(one.agent is not None).lower()).inc()


def choose(
    runtime_now: Runtime, store: Store, agents: Agents, tickets: Sequence[TicketToAssign], now: datetime
) -> tuple[Assignment, ...]:
    """The agents for the tickets, from the store's load, availability and round-robin turns
    (not stored: the caller stores them, holding `ServiceState.assign_lock` until it has)."""
    run = assign(
        tickets,
        agents,
        # A ticket assigned again does not count against the agent who had it.
        agent_load(agents, store, exclude=[ticket.ticket_id for ticket in tickets]),
        now=now,
        strategy=runtime_now.params.operations.assignment_strategy,
        levels=runtime_now.rules.levels,
        availability=availability_of(store),
        last_by_team=store.last_agents_by_team(),
    )
    return run.assignments


def assignment_row(assignment: Assignment, now: datetime, source: str) -> dict[str, Any]:
    return {
        "ticket_id": assignment.ticket_id,
        "assigned_at": now,
        "agent": assignment.agent,
        "team": assignment.team,
        "priority": assignment.priority,
        "strategy": assignment.strategy,
        "reassignment": False,
        "previous_agent": None,
        "previous_team": None,
        "source": source,
        "explanation": assignment.explanation,
    }


def result_of(assignment: Assignment, agents: Agents) -> AssignmentResult:
    agent = agents.by_id.get(assignment.agent) if assignment.agent else None
    return AssignmentResult(
        ticket_id=assignment.ticket_id,
        team=assignment.team,
        priority=assignment.priority,
        agent=assignment.agent,
        strategy=assignment.strategy,
        explanation=assignment.explanation,
        reason=assignment.reason,
        helpdesk_ids=dict(agent.helpdesk_ids) if agent is not None else {},
    )


@router.get("/v1/agents", response_model=AgentsResult, responses=ERRORS)
def list_agents(
    runtime_now: RuntimeDep, store: StoreDep, service: ServiceDep, _key: ScoreKey
) -> AgentsResult:
    """The agents in use with their open load, availability and whether they work now; `error`
    says why a changed agents file was not taken (the one read before stays in use)."""
    agents, watch = service.agents(runtime_now)
    strategy = runtime_now.params.operations.assignment_strategy
    if agents is None:
        return AgentsResult(
            strategy=strategy, source=None, digest=None, error=watch.error if watch else None, agents=[]
        )
    load = agent_load(agents, store)
    availability = availability_of(store)
    weights = priority_weights(runtime_now.rules.levels)
    now = datetime.now(UTC)
    states = []
    for agent in agents.agents:
        counts = load.get(agent.id, {})
        setting = availability.get(agent.id)
        available = setting is None or setting.available
        working = agent.working(now)
        states.append(
            AgentState(
                id=agent.id,
                name=agent.name,
                teams=list(agent.teams),
                skills=sorted(agent.skills),
                languages=sorted(agent.languages),
                calendar=agent.calendar_name,
                max_open=agent.max_open,
                weight=agent.weight,
                open=open_count(counts),
                open_by_priority=dict(sorted(counts.items())),
                load=weighted_load(counts, weights) / agent.weight,
                available=available,
                availability_source=setting.source if setting else None,
                working_now=working,
                can_take=available and working and open_count(counts) < agent.max_open,
            )
        )
    return AgentsResult(
        strategy=strategy,
        source=agents.source,
        digest=agents.digest,
        error=watch.error if watch else None,
        agents=states,
    )


@router.put(
    "/v1/agents/{agent}/availability",
    response_model=AvailabilityAck,
    responses={**ERRORS, 404: {"model": Problem, "description": "No such agent"}, **NO_AGENTS},
)
def set_availability(
    agent: str,
    change: AvailabilityChange,
    runtime_now: RuntimeDep,
    store: StoreDep,
    service: ServiceDep,
    _key: FeedbackKey,
) -> AvailabilityAck:
    """Switch an agent off (`available: false`: no new tickets) or on again (their working
    hours still apply)."""
    agents = agents_or_409(service, runtime_now)
    found = agents.agent_id(agent)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no agent {agent!r} in {agents.source}")
    now = datetime.now(UTC)
    store.set_availability(found, change.available, source="api", at=now)
    return AvailabilityAck(agent=found, available=change.available, source="api", updated_at=now)
