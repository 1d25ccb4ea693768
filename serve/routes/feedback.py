"""POST /v1/feedback: what an agent finally decided for a ticket (idempotent)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serve.deps import FeedbackKey, RuntimeDep, ServiceDep, StoreDep
from serve.errors import ERRORS, invalid
from serve.runtime import Runtime
from serve.schemas import Feedback, FeedbackAck, Problem
from serve.state import ServiceState
from urgency.store import FeedbackConflict, Store

router = APIRouter(tags=["feedback"])


@router.post(
    "/v1/feedback",
    response_model=FeedbackAck,
    responses={**ERRORS, 409: {"model": Problem, "description": "Same ids, different content"}},
)
def feedback(
    event: Feedback, runtime_now: RuntimeDep, store: StoreDep, service: ServiceDep, _key: FeedbackKey
) -> FeedbackAck | JSONResponse:
    """Record what an agent finally decided for a ticket. Idempotent by (ticket_id, event_id)."""
    # The labels, levels and teams depend on the models and rules served, so the schema alone
    # cannot check them (`serve.openapi` states them for this deployment).
    for name, values in runtime_now.allowed_values().items():
        value = getattr(event, name)
        if value is not None and value not in values:
            raise invalid(["body", name], f"{value!r} is not one of {sorted(values)}")
    try:
        result = store.record_feedback(event.model_dump())
    except FeedbackConflict as error:
        return JSONResponse({"detail": str(error)}, status_code=409)
    if result.stored and (event.assignee is not None or event.team is not None):
        record_move(service, runtime_now, store, event.ticket_id, event.assignee, event.team, "feedback")
    service.metrics.feedback.labels(str(result.stored).lower()).inc()
    return FeedbackAck(ticket_id=event.ticket_id, event_id=event.event_id, stored=result.stored)


def record_move(
    service: ServiceState,
    runtime_now: Runtime,
    store: Store,
    ticket_id: str,
    assignee: str | None,
    team: str | None,
    source: str,
    helpdesk: str | None = None,
) -> None:
    """A reassignment when an assigned ticket now has another agent or team (the assignee read
    as an agent of the agents file where it names one: id, email or helpdesk user id)."""
    agents, _ = service.agents(runtime_now)
    agent = assignee
    if assignee is not None and agents is not None:
        agent = agents.agent_id(assignee, helpdesk) or assignee
    store.record_move(ticket_id, agent=agent, team=team, at=datetime.now(UTC), source=source)
