"""POST /v1/feedback: what an agent finally decided for a ticket (idempotent)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serve.deps import FeedbackKey, RuntimeDep, ServiceDep, StoreDep
from serve.errors import ERRORS, invalid
from serve.schemas import Feedback, FeedbackAck, Problem
from urgency.store import FeedbackConflict

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
    service.metrics.feedback.labels(str(result.stored).lower()).inc()
    return FeedbackAck(ticket_id=event.ticket_id, event_id=event.event_id, stored=result.stored)
