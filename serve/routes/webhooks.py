"""POST /v1/webhooks/{helpdesk}: a helpdesk's own webhook, signed as that helpdesk signs.

Zendesk, Freshdesk, Zammad and Jira Service Management send their native payloads here
(`urgency.helpdesks` reads them). A created ticket is scored (models, then rules) and the answer
carries the decision in the helpdesk's own terms; an updated or solved ticket becomes feedback
(what the agents set), so the agreement report and retraining see real decisions. Each delivery
is stored once with what it caused, in one transaction: a retry gets the first answer again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError

from serve.deps import RuntimeDep, ServiceDep, StoreDep
from serve.errors import invalid
from serve.routes.assign import (
    assignment_row,
    choose,
    language_column,
    result_of,
    same_agent,
    ticket_from_score,
)
from serve.routes.feedback import record_move
from serve.routes.scoring import score_only
from serve.runtime import Runtime
from serve.schemas import (
    AssignmentResult,
    Feedback,
    HelpdeskValues,
    Id,
    Problem,
    Short,
    Ticket,
    WebhookResult,
)
from serve.state import ServiceState
from urgency.config import HelpdeskParams
from urgency.helpdesks import (
    AvailabilityEvent,
    HelpdeskEvent,
    PayloadError,
    SignatureError,
    decided,
    helpdesk_values,
    is_our_write,
    read_availability,
    read_event,
    rule_fields,
    ticket_status,
    verify,
)
from urgency.store import Store

router = APIRouter(tags=["webhooks"])

# The longest text a Ticket takes: a longer helpdesk description is cut, not refused (the
# helpdesk cannot send it shorter, and the models read far less).
MAX_BODY_CHARS = 20_000
MAX_SUBJECT_CHARS = 1_000

HelpdeskName = Literal["zendesk", "freshdesk", "zammad", "jira"]


@router.post(
    "/v1/webhooks/{helpdesk}",
    response_model=WebhookResult,
    responses={
        400: {"model": Problem, "description": "The body is not JSON"},
        401: {"model": Problem, "description": "Missing or wrong signature, or a replayed delivery"},
        404: {"model": Problem, "description": "No webhook secret is set for this helpdesk"},
        413: {"model": Problem, "description": "Request body too large"},
        503: {"model": Problem, "description": "Models not loaded"},
    },
)
async def webhook(
    helpdesk: HelpdeskName, request: Request, runtime_now: RuntimeDep, store: StoreDep, service: ServiceDep
) -> WebhookResult:
    """A helpdesk's delivery, authenticated by its signature (Zendesk, Zammad, Jira) or shared
    secret (Freshdesk), never by an API key. See docs/helpdesks.md for each helpdesk's set-up."""
    secret = service.settings.webhook_secrets.get(helpdesk)
    if secret is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"no webhook for {helpdesk}: set its secret in URGENCY_WEBHOOK_SECRETS"
        )
    body = await request.body()
    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        verify(helpdesk, headers, body, secret.get_secret_value())
    except SignatureError as error:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(error)) from None
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is not JSON") from None
    except ValueError:  # e.g. an integer longer than Python converts (4,300 digits)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body has a number too long to read") from None
    except RecursionError:  # nested deeper than Python's parser goes: no helpdesk sends that
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is nested too deeply") from None
    mapping = runtime_now.params.helpdesks.get(helpdesk, HelpdeskParams())
    try:
        availability = read_availability(helpdesk, payload)
        if availability is not None:
            return await run_in_threadpool(agent_availability, availability, service, runtime_now, store)
        event = read_event(helpdesk, payload, headers, body, mapping)
    except PayloadError as error:
        raise invalid(error.loc, error.message) from None
    return await run_in_threadpool(handle, checked_ids(event), mapping, service, runtime_now, store)


def agent_availability(
    event: AvailabilityEvent, service: ServiceState, runtime_now: Runtime, store: Store
) -> WebhookResult:
    """An agent's availability from the helpdesk (Zendesk's agent events): the agent the agents
    file names by that helpdesk user id is switched on (online) or off (away, offline), as
    `PUT /v1/agents/{agent}/availability` does. A retry sets the same value again."""
    agents, _ = service.agents(runtime_now)
    agent = agents.agent_id(event.user_id, event.helpdesk) if agents is not None else None
    answer: dict[str, Any] = {
        "helpdesk": event.helpdesk,
        "delivery_id": event.delivery_id,
        "kind": "agent_availability",
    }
    if agent is None:
        reason = f"no agent of the agents file has {event.helpdesk} user id {event.user_id!r}"
        return WebhookResult.model_validate({**answer, "action": "ignored", "reason": reason})
    store.set_availability(agent, event.available, source=event.helpdesk, at=event.at or datetime.now(UTC))
    reason = f"agent {agent} is {event.state}: {'available' if event.available else 'not available'}"
    return WebhookResult.model_validate({**answer, "action": "availability", "reason": reason})


class DeliveryIds(BaseModel):
    """What a delivery's ids must be to be stored: as `/v1/score` and `/v1/feedback` require."""

    delivery_id: Id
    ticket_id: Id
    actor: Short | None = None


def checked_ids(event: HelpdeskEvent) -> HelpdeskEvent:
    """The event with its ids checked (a 422 naming the one that is not storable: too long,
    empty, a NUL character), before anything is scored or stored."""
    try:
        ids = DeliveryIds(delivery_id=event.delivery_id, ticket_id=event.ticket_id, actor=event.actor)
    except ValidationError as error:
        first = error.errors()[0]
        raise invalid(["body", *map(str, first["loc"])], first["msg"]) from None
    return replace(event, delivery_id=ids.delivery_id, ticket_id=ids.ticket_id, actor=ids.actor)


def handle(
    event: HelpdeskEvent, mapping: HelpdeskParams, service: ServiceState, runtime_now: Runtime, store: Store
) -> WebhookResult:
    """Answer a delivery: the stored answer for a retry, else score or record it, and store it."""
    stored = store.delivery(event.helpdesk, event.delivery_id)
    if stored is not None:
        return WebhookResult.model_validate({**stored, "duplicate": True})
    with ExitStack() as held:
        return _handle(event, mapping, service, runtime_now, store, held)


def _handle(
    event: HelpdeskEvent,
    mapping: HelpdeskParams,
    service: ServiceState,
    runtime_now: Runtime,
    store: Store,
    held: ExitStack,
) -> WebhookResult:
    answer: dict[str, Any] = {
        "helpdesk": event.helpdesk,
        "delivery_id": event.delivery_id,
        "ticket_id": event.ticket_id,
        "kind": event.kind,
    }
    predicted: list[dict[str, Any]] = []
    keep_vectors: Callable[[], int] | None = None  # the scored ticket's vector, kept once stored
    chosen: list[dict[str, Any]] = []  # the assignment of a created ticket, stored with the delivery
    moved: tuple[str | None, str | None] | None = None  # (assignee, team) an update carries
    decision: dict[str, Any] | None = None
    write_back: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    if is_our_write(event, store.last_write_back(event.helpdesk, event.ticket_id), mapping):
        answer |= {"action": "ignored", "reason": "the change our own write-back made"}
    elif event.kind == "created":
        result, predicted, keep_vectors = scored(event, mapping, service, runtime_now, store)
        assignment, chosen = assigned(event, mapping, result, service, runtime_now, store, held)
        values = values_for(result, mapping, assignment, event.helpdesk)
        if mapping.api_url and event.helpdesk in service.settings.helpdesk_credentials:
            write_back = values.model_dump()
            if write_back["assignee"] is None:  # as queued before assignment existed
                del write_back["assignee"]
            if not write_back["auto_reply_articles"]:  # as queued before the knowledge base
                del write_back["auto_reply_articles"]
        answer |= {
            "action": "scored",
            "result": result,
            "helpdesk_values": values,
            "write_back": bool(write_back),
            "assignment": assignment,
        }
    else:
        moved = (event.assignee, decided(event, mapping).get("team"))
        status = ticket_status(event)
        decision = feedback_event(event, mapping, runtime_now, status)
        if decision is None:
            answer |= {"action": "ignored", "reason": "no priority, group or type the mapping knows"}
        else:
            answer |= {"action": "feedback", "feedback": _stored_form(decision)}
        # The backlog's state follows the helpdesk's status, whatever else the mapping knows, and
        # the group and assignee the agents moved it to (these alone move an existing state, open none).
        team = decision.get("team") if decision is not None else None
        if status is not None or team is not None or event.assignee is not None:
            state = {
                "at": datetime.now(UTC),
                "source": event.helpdesk,
                "status": status,
                "team": team,
                "assignee": event.assignee,
            }
        if status is not None:
            answer |= {"ticket_status": status}
    outcome = WebhookResult.model_validate(answer)
    delivery = {
        "helpdesk": event.helpdesk,
        "delivery_id": event.delivery_id,
        "ticket_id": event.ticket_id,
        "kind": event.kind,
        "received_at": datetime.now(UTC),
        "outcome": outcome.model_dump(mode="json"),
    }
    if not store.record_delivery(
        delivery,
        predicted=predicted,
        decided=decision,
        write_back=write_back,
        assigned=chosen,
        state=state,
    ):
        # The same delivery arrived twice at once and the other one was stored first.
        return WebhookResult.model_validate(
            {**store.delivery(event.helpdesk, event.delivery_id), "duplicate": True}
        )
    if keep_vectors is not None:
        keep_vectors()
    if outcome.result is not None:
        service.metrics.observe_results([outcome.result])
    if outcome.assignment is not None:
        service.metrics.assignments.labels(
            outcome.assignment.strategy, str(outcome.assignment.agent is not None).lower()
        ).inc()
    if moved is not None and (moved[0] is not None or moved[1] is not None):
        # An agent moved the ticket to another agent or team after it was assigned.
        record_move(service, runtime_now, store, event.ticket_id, *moved, event.helpdesk, event.helpdesk)
    return outcome


def scored(
    event: HelpdeskEvent, mapping: HelpdeskParams, service: ServiceState, runtime_now: Runtime, store: Store
) -> tuple[Any, list[dict[str, Any]], Callable[[], int]]:
    try:
        ticket = Ticket(
            ticket_id=event.ticket_id,
            subject=(event.subject or "")[:MAX_SUBJECT_CHARS] or None,
            body=event.body[:MAX_BODY_CHARS],
            created_at=event.created_at,
            fields=rule_fields(event, mapping),
        )
    except ValidationError as error:
        first = error.errors()[0]
        raise invalid(["body", "ticket", *map(str, first["loc"])], first["msg"]) from None
    results, rows, keep_vectors = score_only(service, runtime_now, store, [ticket])
    return results[0], rows, keep_vectors


def assigned(
    event: HelpdeskEvent,
    mapping: HelpdeskParams,
    result: Any,
    service: ServiceState,
    runtime_now: Runtime,
    store: Store,
    held: ExitStack,
) -> tuple[AssignmentResult | None, list[dict[str, Any]]]:
    """The agent for a created ticket and its assignment row, when agents are configured. The
    assignment lock is taken into `held`: it is released once the delivery (with the row) is
    stored, so the next round sees this ticket in the agent's load."""
    agents, _ = service.agents(runtime_now)
    if agents is None:
        return None, []
    language = rule_fields(event, mapping).get(language_column(runtime_now))
    ticket = ticket_from_score(
        event.ticket_id, result.model_dump(mode="json"), language, same_agent=same_agent(runtime_now)
    )
    now = datetime.now(UTC)
    held.enter_context(service.assign_lock)
    held.enter_context(store.assignment_lock())  # until the delivery, with its assignment, is stored
    one = choose(runtime_now, store, agents, [ticket], now)[0]
    return result_of(one, agents), [assignment_row(one, now, event.helpdesk)]


def values_for(
    result: Any,
    mapping: HelpdeskParams,
    assignment: AssignmentResult | None = None,
    helpdesk: str | None = None,
) -> HelpdeskValues:
    assignee = assignment.helpdesk_ids.get(helpdesk) if assignment is not None and helpdesk else None
    return HelpdeskValues.model_validate(
        helpdesk_values(
            priority=result.priority,
            priority_title=result.priority_title,
            team=result.team,
            needs_human_triage=result.needs_human_triage,
            first_response_due=result.first_response_due,
            resolution_due=result.resolution_due,
            explanation=result.explanation_text,
            mapping=mapping,
            assignee=assignee,
            assignment=assignment.explanation if assignment is not None else None,
            expected_first_response=result.expected_first_response,
            expected_first_response_at=result.expected_first_response_at,
            articles=[article.model_dump() for article in getattr(result, "articles", [])],
            auto_reply_articles=[
                article.model_dump() for article in getattr(result, "auto_reply_articles", [])
            ],
            duplicate_of=result.duplicate_of.model_dump() if result.duplicate_of is not None else None,
            similar_tickets=[similar.model_dump() for similar in result.similar_tickets],
        )
    )


def feedback_event(
    event: HelpdeskEvent, mapping: HelpdeskParams, runtime_now: Runtime, status: str | None = None
) -> dict[str, Any] | None:
    """The agents' decision as a feedback event (the delivery id is its event id), or None when
    the mapping knows none of its values (or they are not ones this deployment serves)."""
    found = decided(event, mapping)
    allowed = runtime_now.allowed_values()
    found = {name: value for name, value in found.items() if value in allowed.get(name, {value})}
    if not found:
        return None
    now = datetime.now(UTC)
    try:
        checked = Feedback(
            ticket_id=event.ticket_id,
            event_id=f"{event.helpdesk}:{event.delivery_id}"[:200],
            decided_at=now,
            agent=event.actor,
            first_response_at=event.first_response_at,
            resolved_at=event.resolved_at or (now if event.kind == "solved" else None),
            status=status,
            **found,
        )
    except ValidationError as error:  # e.g. a resolution time out of the years a ticket can have
        first = error.errors()[0]
        raise invalid(["body", *map(str, first["loc"])], first["msg"]) from None
    return checked.model_dump()


def _stored_form(decision: dict[str, Any]) -> dict[str, str | None]:
    return {name: None if value is None else str(value) for name, value in decision.items()}
