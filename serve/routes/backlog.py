"""GET /v1/backlog: the open tickets by priority, with time left, queue and breach risk."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from serve.deps import AdminKey, RuntimeDep, ServiceDep, StoreDep
from serve.errors import ERRORS, invalid
from serve.schemas import Backlog

router = APIRouter(tags=["reports"])


@router.get("/v1/backlog", response_model=Backlog, responses=ERRORS)
def backlog(
    runtime_now: RuntimeDep,
    store: StoreDep,
    service: ServiceDep,
    _key: AdminKey,
    team: Annotated[str | None, Query(max_length=200, description="Only this team's tickets.")] = None,
    priority: Annotated[str | None, Query(max_length=50, description="Only this priority.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many tickets listed.")] = 500,
) -> Backlog:
    """The open backlog (tickets whose state is new, open, pending or on hold), most urgent
    first: hours left to each deadline (negative: breached), the queue ahead in the team and
    the rules-based breach risk of the nearest unmet deadline (docs/operations.md); the summary
    counts every ticket the filters keep, `tickets` lists the first `limit`."""
    from urgency.backlog import backlog_json, filtered, read_backlog

    # A filter the rules do not know would list nothing, silently: say so, as /v1/assign does.
    rules = runtime_now.rules
    if priority is not None and priority not in rules.levels:
        raise invalid(["query", "priority"], f"{priority!r} is not one of {', '.join(rules.levels)}")
    if team is not None and team not in rules.team_skills:
        raise invalid(["query", "team"], f"{team!r} is not a team of the rules")
    now = datetime.now(UTC)
    # A plain `def`: FastAPI runs it in its thread pool (the store's reads block).
    frame = read_backlog(
        store,
        levels=runtime_now.rules.levels,
        operations=runtime_now.params.operations,
        now=now,
        breach_model=service.breach_model(runtime_now),
        agents=service.agents(runtime_now)[0],
    )
    return Backlog.model_validate(
        backlog_json(filtered(frame, team=team, priority=priority), now=now, limit=limit)
    )
