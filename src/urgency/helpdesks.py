"""Helpdesk webhooks: each helpdesk's native payload read into one event, its signature checked.

Zendesk, Freshdesk, Zammad and Jira Service Management each send a ticket in their own shape,
sign it their own way (or not at all) and say in their own way which delivery it is. This module
turns one delivery into a `HelpdeskEvent` (a ticket that was created, updated or solved: the text
to score, the rule fields, and what the helpdesk's agents set: priority, group, category), so the
service scores and records every helpdesk alike. The helpdesk's own values map onto ours through
`config.HelpdeskParams` (params `helpdesks.<name>`).

Pure functions: no I/O, no FastAPI. A payload that cannot be read raises `PayloadError` naming
the field; a delivery whose signature does not hold raises `SignatureError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from urgency.config import HelpdeskParams
from urgency.errors import UrgencyError

HELPDESKS = ("zendesk", "freshdesk", "zammad", "jira")
EventKind = Literal["created", "updated", "solved"]

# Zendesk signs the timestamp with the body; a delivery older than this is refused as a replay.
REPLAY_WINDOW = timedelta(minutes=5)
# Freshdesk signs nothing: its webhook sends this header (set in the automation) or Basic auth.
FRESHDESK_SECRET_HEADER = "x-urgency-webhook-secret"

# Freshdesk's API codes (https://developers.freshdesk.com/api/#tickets).
FRESHDESK_PRIORITIES = {1: "low", 2: "medium", 3: "high", 4: "urgent"}
FRESHDESK_STATUSES = {2: "open", 3: "pending", 4: "resolved", 5: "closed"}
SOLVED_STATUSES = frozenset({"solved", "closed", "resolved", "done", "merged"})


class PayloadError(UrgencyError):
    """The payload lacks a field or has one of the wrong kind; `loc` says where."""

    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(f"{'.'.join(map(str, loc))}: {message}")
        self.loc = loc
        self.message = message


class SignatureError(UrgencyError):
    """The delivery is not signed with the configured secret (or is too old)."""


@dataclass(frozen=True)
class HelpdeskEvent:
    """One delivery, in the helpdesk's terms: the ticket and what its agents set on it."""

    helpdesk: str
    kind: EventKind
    delivery_id: str
    ticket_id: str
    subject: str | None
    body: str
    created_at: datetime | None
    # The helpdesk's ticket object (as sent): rule fields are read from it by path.
    ticket: Mapping[str, Any]
    priority: str | None = None  # the helpdesk's own priority name
    group: str | None = None  # the helpdesk's group (name or id)
    category: str | None = None
    status: str | None = None
    actor: str | None = None  # who made the change (user id, login or account id)
    # Who the ticket is assigned to (the helpdesk's user id, login or email): Zendesk
    # `assignee_id`, Freshdesk `responder_id` / the template's agent email, Zammad `owner_id`,
    # Jira `assignee.accountId`.
    assignee: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    # When the customer was first answered and when the ticket was resolved, where the payload
    # says (Zammad `first_response_at` / `close_at`, Jira `resolutiondate`, Freshdesk template).
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None


# ---------------------------------------------------------------------------------------------
# Signatures


def _same(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(expected.encode(), presented.strip().encode())


def verify(
    helpdesk: str, headers: Mapping[str, str], body: bytes, secret: str, *, now: datetime | None = None
) -> None:
    """Check a delivery as the helpdesk signs it; `headers` with lower-case names. Raises
    `SignatureError` with what is wrong (never the secret or the expected value)."""
    if helpdesk == "zendesk":
        # base64(HMAC-SHA256(secret, timestamp + body)), timestamp in its own header.
        timestamp = headers.get("x-zendesk-webhook-signature-timestamp")
        signature = headers.get("x-zendesk-webhook-signature")
        if not timestamp or not signature:
            raise SignatureError(
                "missing X-Zendesk-Webhook-Signature or X-Zendesk-Webhook-Signature-Timestamp"
            )
        digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
        if not _same(base64.b64encode(digest).decode(), signature):
            raise SignatureError("X-Zendesk-Webhook-Signature does not match the body")
        check_fresh(timestamp, now or datetime.now(UTC))
    elif helpdesk in ("zammad", "jira"):
        # X-Hub-Signature: "sha1=<hex>" (Zammad) or "sha256=<hex>" (Jira) of the body; Jira
        # without a webhook secret can send a bearer token instead.
        signature = headers.get("x-hub-signature")
        if signature is None and helpdesk == "jira":
            if not _same(f"Bearer {secret}", headers.get("authorization")):
                raise SignatureError("missing X-Hub-Signature or a valid Authorization: Bearer token")
            return
        method = "sha1" if helpdesk == "zammad" else "sha256"
        if not signature:
            raise SignatureError("missing X-Hub-Signature")
        expected = f"{method}=" + hmac.new(secret.encode(), body, getattr(hashlib, method)).hexdigest()
        if not _same(expected, signature):
            raise SignatureError(f"X-Hub-Signature ({method}) does not match the body")
    elif helpdesk == "freshdesk":
        basic = "Basic " + base64.b64encode(f"urgency:{secret}".encode()).decode()
        if not (
            _same(secret, headers.get(FRESHDESK_SECRET_HEADER)) or _same(basic, headers.get("authorization"))
        ):
            raise SignatureError(
                f"missing or wrong {FRESHDESK_SECRET_HEADER} header (or Basic auth user 'urgency')"
            )
    else:
        raise SignatureError(f"unknown helpdesk {helpdesk!r}")


def check_fresh(timestamp: str, now: datetime) -> None:
    try:
        sent = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        raise SignatureError("X-Zendesk-Webhook-Signature-Timestamp is not an ISO 8601 time") from None
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    if abs(now - sent) > REPLAY_WINDOW:
        raise SignatureError(
            f"X-Zendesk-Webhook-Signature-Timestamp is more than {REPLAY_WINDOW.seconds // 60} "
            "minutes from now (a replay, or a clock off)"
        )


# ---------------------------------------------------------------------------------------------
# Reading payloads


def _get(value: Any, loc: list[str | int], *names: str) -> Any:
    """`value[name1][name2]...`, or a PayloadError naming the first missing or wrong part."""
    for name in names:
        if not isinstance(value, Mapping):
            raise PayloadError(loc, "must be an object")
        loc = [*loc, name]
        if value.get(name) is None:
            raise PayloadError(loc, "field required")
        value = value[name]
    return value


def _object(value: Any, loc: list[str | int], name: str) -> Mapping[str, Any]:
    """`value[name]`, which must be an object."""
    found = _get(value, loc, name)
    if not isinstance(found, Mapping):
        raise PayloadError([*loc, name], "must be an object")
    return found


def _optional(value: Any, *names: str) -> Any:
    for name in names:
        if not isinstance(value, Mapping) or value.get(name) is None:
            return None
        value = value[name]
    return value


def _text(value: Any, loc: list[str | int]) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PayloadError(loc, "must be a string or a number")
    return str(value)


def _name(value: Any) -> str | None:
    """A helpdesk value as text: objects by their `name` (Zammad, Jira), numbers as digits."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("name", value.get("value"))
        return None if value is None else str(value)
    return str(value)


def _moment(value: Any) -> datetime | None:
    """A helpdesk time (ISO 8601, Jira's `+0000` offsets, Zendesk's `2024-05-01 10:00:00 UTC`)."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace(" UTC", "+00:00").replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":  # Jira: 2024-05-01T10:00:00.000+0000
        text = text[:-2] + ":" + text[-2:]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None  # a human-readable date from a template: the service's clock is used
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Atlassian Document Format nests a few levels (doc > list > item > paragraph > text); deeper
# is not a document Jira writes, and is read no further.
ADF_DEPTH = 20


def _adf_text(node: Any, depth: int = 0) -> str:
    """Plain text of an Atlassian Document Format node (Jira Cloud's description)."""
    if isinstance(node, str):
        return node
    if not isinstance(node, Mapping) or depth > ADF_DEPTH:
        return ""
    if node.get("type") == "text":
        return str(node.get("text", ""))
    content = node.get("content")
    parts = [_adf_text(child, depth + 1) for child in content if child] if isinstance(content, list) else []
    separator = "\n" if node.get("type") in ("doc", "bulletList", "orderedList") else ""
    return separator.join(part for part in parts if part)


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(tag for tag in value.replace(",", " ").split() if tag)
    if isinstance(value, list):
        return tuple(str(tag) for tag in value)
    return ()


def _kind(status: str | None, created: bool) -> EventKind:
    if status is not None and status.lower() in SOLVED_STATUSES:
        return "solved"
    return "created" if created else "updated"


def read_zendesk(payload: Any, delivery_id: str | None) -> HelpdeskEvent:
    """An event subscription (`{"type": "zen:event-type:ticket.created", "id", "detail": {...}}`)
    or a trigger's JSON (`{"ticket": {...}, "event": "created"}`, the template in docs)."""
    if isinstance(payload, Mapping) and str(payload.get("type", "")).startswith("zen:event-type:"):
        ticket = _object(payload, ["body"], "detail")
        event_type = str(payload["type"]).removeprefix("zen:event-type:")
        if not event_type.startswith("ticket."):
            raise PayloadError(["body", "type"], f"{payload['type']!r} is not a ticket event")
        delivery = _text(_get(payload, ["body"], "id"), ["body", "id"])
        created = event_type == "ticket.created"
        loc: list[str | int] = ["body", "detail"]
        actor = _optional(ticket, "actor_id") or _optional(payload, "event", "actor_id")
    else:
        ticket = _object(payload, ["body"], "ticket")
        event = str(_optional(payload, "event") or "created").lower()
        if event not in ("created", "updated", "solved"):
            raise PayloadError(["body", "event"], "must be created, updated or solved")
        if not delivery_id:
            raise PayloadError(["header", "X-Zendesk-Webhook-Invocation-Id"], "field required")
        delivery, created, loc = delivery_id, event == "created", ["body", "ticket"]
        actor = _optional(ticket, "updated_by") or _optional(payload, "current_user", "id")
    status = _name(_optional(ticket, "status"))
    return HelpdeskEvent(
        helpdesk="zendesk",
        kind=_kind(status, created),
        delivery_id=delivery,
        ticket_id=_text(_get(ticket, loc, "id"), [*loc, "id"]),
        subject=_name(_optional(ticket, "subject")),
        body=_text(_get(ticket, loc, "description"), [*loc, "description"]),
        created_at=_moment(_optional(ticket, "created_at")),
        ticket=ticket,
        priority=_lower(_name(_optional(ticket, "priority"))),
        group=_name(_optional(ticket, "group_id") or _optional(ticket, "group")),
        category=_name(_optional(ticket, "type")),
        status=_lower(status),
        actor=_name(actor),
        assignee=_name(_optional(ticket, "assignee_id") or _optional(ticket, "assignee", "id")),
        tags=_tags(_optional(ticket, "tags")),
        resolved_at=_moment(_optional(ticket, "solved_at")),
    )


def read_freshdesk(payload: Any, body_digest: str) -> HelpdeskEvent:
    """An automation rule's webhook, `{"freshdesk_webhook": {"ticket_id", ...}}` (the template in
    docs); priority and status as Freshdesk's codes (1-4, 2-5) or names. Freshdesk sends no
    delivery id: a retry is the same body, so the body's digest is the id."""
    loc: list[str | int] = ["body", "freshdesk_webhook"]
    ticket = _object(payload, ["body"], "freshdesk_webhook")
    status = _code(_optional(ticket, "ticket_status"), FRESHDESK_STATUSES)
    event = str(_optional(ticket, "triggered_event") or "").lower()
    return HelpdeskEvent(
        helpdesk="freshdesk",
        kind=_kind(status, "created" in event or not event),
        delivery_id=body_digest,
        ticket_id=_text(_get(ticket, loc, "ticket_id"), [*loc, "ticket_id"]),
        subject=_name(_optional(ticket, "ticket_subject")),
        body=_text(_get(ticket, loc, "ticket_description"), [*loc, "ticket_description"]),
        created_at=_moment(_optional(ticket, "ticket_created_at")),
        ticket=ticket,
        priority=_code(_optional(ticket, "ticket_priority"), FRESHDESK_PRIORITIES),
        group=_name(_optional(ticket, "ticket_group_name") or _optional(ticket, "group_id")),
        category=_name(_optional(ticket, "ticket_type")),
        status=status,
        actor=_name(_optional(ticket, "triggered_by") or _optional(ticket, "updated_by")),
        assignee=_name(_optional(ticket, "responder_id") or _optional(ticket, "ticket_agent_email")),
        tags=_tags(_optional(ticket, "ticket_tags")),
        first_response_at=_moment(_optional(ticket, "ticket_first_responded_at")),
        resolved_at=_moment(_optional(ticket, "ticket_resolved_at")),
    )


def _code(value: Any, codes: Mapping[int, str]) -> str | None:
    """A Freshdesk code (4, "4") as its name ("urgent"); a name as itself, lower case."""
    if value is None:
        return None
    text = str(value).strip()
    if text.isascii() and text.isdecimal() and len(text) < 4:
        return codes.get(int(text), text)
    return text.lower()


def _lower(value: str | None) -> str | None:
    return None if value is None else value.lower()


def read_zammad(payload: Any, delivery_id: str | None) -> HelpdeskEvent:
    """A trigger's webhook: `{"ticket": {...}, "article": {...}}` (Zammad's default payload),
    the article's body HTML. Created: the ticket has one article and was not updated since."""
    if not delivery_id:
        raise PayloadError(["header", "X-Zammad-Delivery"], "field required")
    ticket = _object(payload, ["body"], "ticket")
    article = _optional(payload, "article") or {}
    status = _lower(_name(_optional(ticket, "state")))
    created = _optional(ticket, "article_count") in (None, 0, 1) and _optional(
        ticket, "created_at"
    ) == _optional(ticket, "updated_at")
    body = _optional(article, "body")
    if body is None:
        body = _get(payload, ["body"], "article", "body")
    return HelpdeskEvent(
        helpdesk="zammad",
        kind=_kind(status, created),
        delivery_id=delivery_id,
        ticket_id=_text(_get(ticket, ["body", "ticket"], "id"), ["body", "ticket", "id"]),
        subject=_name(_optional(ticket, "title") or _optional(article, "subject")),
        body=_text(body, ["body", "article", "body"]),
        created_at=_moment(_optional(ticket, "created_at")),
        ticket=ticket,
        priority=_lower(_name(_optional(ticket, "priority"))),
        group=_name(_optional(ticket, "group")),
        category=_name(_optional(ticket, "type")),
        status=status,
        actor=_name(_optional(ticket, "updated_by", "login") or _optional(ticket, "updated_by")),
        assignee=_zammad_owner(ticket),
        tags=_tags(_optional(ticket, "tags")),
        first_response_at=_moment(_optional(ticket, "first_response_at")),
        resolved_at=_moment(_optional(ticket, "close_at")),
    )


def _zammad_owner(ticket: Mapping[str, Any]) -> str | None:
    """Zammad's owner: `owner_id` (1 is Zammad's "nobody"), else the owner object's login."""
    owner = _optional(ticket, "owner_id")
    if owner is not None and str(owner) != "1":
        return _name(owner)
    login = _optional(ticket, "owner", "login")
    return None if login in (None, "-") else _name(login)


def read_jira(payload: Any, delivery_id: str | None, body_digest: str, group_field: str) -> HelpdeskEvent:
    """`{"webhookEvent": "jira:issue_created" | "jira:issue_updated", "issue": {"key", "fields"}}`;
    the description plain text or Atlassian Document Format; the group from the issue field
    `group_field` (Jira Cloud's Team field by default). The delivery id is the
    `X-Atlassian-Webhook-Identifier` header (the same on every retry), else the body's digest."""
    event = _text(_get(payload, ["body"], "webhookEvent"), ["body", "webhookEvent"])
    if event not in ("jira:issue_created", "jira:issue_updated"):
        raise PayloadError(["body", "webhookEvent"], "must be jira:issue_created or jira:issue_updated")
    issue = _object(payload, ["body"], "issue")
    fields = _object(issue, ["body", "issue"], "fields")
    loc: list[str | int] = ["body", "issue", "fields"]
    status_category = _optional(fields, "status", "statusCategory", "key")
    status = "done" if status_category == "done" else _lower(_name(_optional(fields, "status")))
    description = _optional(fields, "description")
    return HelpdeskEvent(
        helpdesk="jira",
        kind=_kind(status, event == "jira:issue_created"),
        delivery_id=delivery_id or body_digest,
        ticket_id=_text(_get(issue, ["body", "issue"], "key"), ["body", "issue", "key"]),
        subject=_name(_optional(fields, "summary")),
        body=_adf_text(description) if description is not None else _text(_get(fields, loc, "summary"), loc),
        created_at=_moment(_optional(fields, "created")),
        ticket={**fields, "key": issue.get("key")},
        priority=_lower(_name(_optional(fields, "priority"))),
        group=_name(_path(fields, group_field)),
        category=_name(_optional(fields, "issuetype")),
        status=status,
        actor=_name(_optional(payload, "user", "accountId") or _optional(payload, "user", "name")),
        assignee=_name(_optional(fields, "assignee", "accountId")),
        tags=_tags(_optional(fields, "labels")),
        resolved_at=_moment(_optional(fields, "resolutiondate")),
    )


def read_event(
    helpdesk: str, payload: Any, headers: Mapping[str, str], body: bytes, mapping: HelpdeskParams
) -> HelpdeskEvent:
    """The delivery as a `HelpdeskEvent`; `headers` with lower-case names."""
    digest = hashlib.sha256(body).hexdigest()
    if helpdesk == "zendesk":
        return read_zendesk(payload, headers.get("x-zendesk-webhook-invocation-id"))
    if helpdesk == "freshdesk":
        return read_freshdesk(payload, digest)
    if helpdesk == "zammad":
        return read_zammad(payload, headers.get("x-zammad-delivery"))
    if helpdesk == "jira":
        group_field = mapping.group_field or "customfield_10001"
        return read_jira(payload, headers.get("x-atlassian-webhook-identifier"), digest, group_field)
    raise PayloadError(["path", "helpdesk"], f"must be one of {', '.join(HELPDESKS)}")


# ---------------------------------------------------------------------------------------------
# Agents' availability (Zendesk's agent availability events)

# Zendesk's agent availability event types (developer.zendesk.com, webhooks, "Agent
# Availability Events"): the unified status, and the status per channel (only "support", the
# ticket channel, counts here).
ZENDESK_AVAILABILITY_TYPES = (
    "zen:event-type:agent.unified_state_changed",
    "zen:event-type:agent.state_changed",
)


@dataclass(frozen=True)
class AvailabilityEvent:
    """An agent's availability as a helpdesk reports it: `user_id` is the helpdesk's user id
    (the agents file's `helpdesk_ids`), `available` whether they take tickets now."""

    helpdesk: str
    delivery_id: str
    user_id: str
    available: bool
    state: str
    at: datetime | None


def read_availability(helpdesk: str, payload: Any) -> AvailabilityEvent | None:
    """The delivery as an `AvailabilityEvent` when it is one (Zendesk's agent events; online is
    available, away and offline are not), else None (a ticket event: `read_event`)."""
    if helpdesk != "zendesk" or not isinstance(payload, Mapping):
        return None
    if payload.get("type") not in ZENDESK_AVAILABILITY_TYPES:
        return None
    detail, change = payload.get("detail"), payload.get("event")
    if not isinstance(detail, Mapping) or not isinstance(change, Mapping):
        raise PayloadError(["body", "event"], "an agent event needs its detail and event objects")
    if change.get("channel", "support") != "support":
        return None  # another channel's status (messaging, talk): not the tickets'
    agent, state = detail.get("agent_id"), change.get("new_state", change.get("new_unified_state"))
    if not isinstance(agent, str | int) or isinstance(agent, bool) or str(agent) == "":
        raise PayloadError(["body", "detail", "agent_id"], "missing or not an id")
    if not isinstance(state, str):
        raise PayloadError(["body", "event", "new_state"], "missing or not text")
    delivery = payload.get("id")
    if not isinstance(delivery, str) or not delivery:
        raise PayloadError(["body", "id"], "missing or not text")
    return AvailabilityEvent(
        helpdesk=helpdesk,
        delivery_id=delivery,
        user_id=str(agent),
        available=state.lower() == "online",
        state=state.lower(),
        at=_moment(change.get("updated_at") or payload.get("time")),
    )


# ---------------------------------------------------------------------------------------------
# Mapping onto our ticket and our decisions


def rule_fields(event: HelpdeskEvent, mapping: HelpdeskParams) -> dict[str, str | int | float | bool]:
    """The rule fields (`plan`, `vip`, ...) read from the helpdesk's ticket by the paths in
    `mapping.fields` (dotted: `organization.plan`, `custom_fields.360001`); a missing one is left
    out (the rules' defaults apply)."""
    fields: dict[str, str | int | float | bool] = {}
    for name, path in mapping.fields.items():
        value = _path(event.ticket, path)
        if isinstance(value, Mapping):  # {"name": ...} objects, {"value": ...} custom fields
            value = value.get("value", value.get("name"))
        if isinstance(value, str | int | float | bool):
            fields[name] = value
    return fields


def _path(value: Any, path: str) -> Any:
    """`value` followed along a dotted path (`organization.plan`, `labels.0`); None if absent."""
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def decided(event: HelpdeskEvent, mapping: HelpdeskParams) -> dict[str, str]:
    """What the helpdesk's agents set, in our terms: priority and team through the inverse of
    `mapping.priorities` / `mapping.teams`, category through `mapping.categories`; values the
    mapping does not know are left out."""
    found: dict[str, str] = {}
    priority = _inverse(mapping.priorities).get((event.priority or "").lower())
    team = _inverse(mapping.teams).get((event.group or "").lower())
    category = mapping.categories.get(event.category or "", None)
    for name, value in (("priority", priority), ("team", team), ("category", category)):
        if value is not None:
            found[name] = value
    return found


def _inverse(ours_to_theirs: Mapping[str, str]) -> dict[str, str]:
    """Theirs -> ours; where several of ours map to one of theirs, the first in the mapping."""
    inverse: dict[str, str] = {}
    for ours, theirs in ours_to_theirs.items():
        inverse.setdefault(theirs.lower(), ours)
    return inverse


# Each helpdesk's status names (lower case, as `HelpdeskEvent.status` has them) -> ours
# (`urgency.store.TICKET_STATUSES`): the ticket's state in the open backlog. Zendesk's six,
# Freshdesk's four plus its usual custom ones, Zammad's states, Jira Service Management's
# default workflows' statuses (any other Jira status counts as open until its category is done).
TICKET_STATUS_MAPS: dict[str, dict[str, str]] = {
    "zendesk": {
        "new": "new",
        "open": "open",
        "pending": "pending",
        "hold": "on_hold",
        "on-hold": "on_hold",
        "solved": "solved",
        "closed": "closed",
    },
    "freshdesk": {
        "open": "open",
        "pending": "pending",
        "resolved": "solved",
        "closed": "closed",
        "waiting on customer": "pending",
        "waiting on third party": "on_hold",
    },
    "zammad": {
        "new": "new",
        "open": "open",
        "pending reminder": "pending",
        "pending close": "pending",
        "closed": "closed",
        "merged": "closed",
        "removed": "closed",
    },
    "jira": {
        "to do": "new",
        "open": "open",
        "new": "new",
        "waiting for support": "open",
        "in progress": "open",
        "work in progress": "open",
        "escalated": "open",
        "waiting for customer": "pending",
        "pending": "pending",
        "on hold": "on_hold",
        "resolved": "solved",
        "done": "solved",
        "closed": "closed",
        "canceled": "closed",
        "cancelled": "closed",
        "declined": "closed",
    },
}


def ticket_status(event: HelpdeskEvent) -> str | None:
    """The ticket's state in our terms (`TICKET_STATUS_MAPS`): a status the map does not know is
    `solved` for a solved event and `open` otherwise (a custom status of a ticket not solved);
    None when the payload says no status."""
    if event.status is None:
        return None
    known = TICKET_STATUS_MAPS.get(event.helpdesk, {}).get(event.status.strip().lower())
    if known is not None:
        return known
    return "solved" if event.kind == "solved" else "open"


TRIAGE_TAG = "urgency-triage"
# Tags a probable duplicate (rules `duplicates`): a view or merge macro in the helpdesk finds it.
DUPLICATE_TAG = "urgency-duplicate"


def helpdesk_values(
    *,
    priority: str,
    priority_title: str,
    team: str,
    needs_human_triage: bool,
    first_response_due: str | None,
    resolution_due: str | None,
    explanation: str,
    mapping: HelpdeskParams,
    assignee: str | None = None,
    assignment: str | None = None,
    expected_first_response: str | None = None,
    expected_first_response_at: str | None = None,
    articles: Sequence[Mapping[str, Any]] = (),
    auto_reply_articles: Sequence[Mapping[str, Any]] = (),
    duplicate_of: Mapping[str, Any] | None = None,
    similar_tickets: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A decision in the helpdesk's terms: its priority and group (`mapping`; the triage group
    when a person must decide), tags to add, an internal note saying what was decided and why,
    and what the customer is told (`expected_first_response`, a sentence): in the note, and in
    the ticket field `mapping.expected_reply_field` (`fields`) an auto-reply can quote.
    `articles` (knowledge-base matches: `id`, `title`, `url`, `score`, `why`) go into the note;
    `auto_reply_articles` (the confident one) into `auto_reply_articles` and the ticket field
    `mapping.articles_field`, for the customer-facing reply. A probable duplicate
    (`duplicate_of`: `ticket_id`, `explanation`) is linked in the note and tagged
    `DUPLICATE_TAG` (a helpdesk view or merge macro can find it); `similar_tickets` (`ticket_id`,
    `similarity`, `category`, `priority`, `status`) are listed in the note."""
    group = mapping.triage_group if needs_human_triage and mapping.triage_group else mapping.teams.get(team)
    tags = [f"urgency-{priority.lower()}", f"urgency-team-{team}"]
    if needs_human_triage:
        tags.append(TRIAGE_TAG)
    if duplicate_of:
        tags.append(DUPLICATE_TAG)
    due = [f"first response by {first_response_due}" if first_response_due else None]
    due.append(f"resolution by {resolution_due}" if resolution_due else None)
    lines = [
        f"urgency: {priority} ({priority_title}), team {team}"
        + (" - unsure, a person should triage" if needs_human_triage else ""),
        "; ".join(part for part in due if part) or "no deadline",
        f"why: {explanation}",
    ]
    if assignment:
        lines.append(f"assigned: {assignment}")
    if expected_first_response:
        lines.append(f"customer told: {expected_first_response}")
    if duplicate_of:
        lines.append(f"probable {duplicate_of['explanation']}")
    for similar in similar_tickets:
        facts = [f"{similar['similarity']:.2f}"] + [
            str(similar[key]) for key in ("category", "priority", "status") if similar.get(key) is not None
        ]
        lines.append(f"similar: {similar['ticket_id']} ({', '.join(facts)})")
    for n, article in enumerate(articles, 1):
        score = f"score {article['score']:.2f}: {article['why']}"
        lines.append(f"article {n}: {article['title']} {article['url']} ({score})")
    fields = (
        {mapping.expected_reply_field: expected_first_response}
        if mapping.expected_reply_field and expected_first_response
        else {}
    )
    quoted = [{key: str(article[key]) for key in ("id", "title", "url")} for article in auto_reply_articles]
    if mapping.articles_field and quoted:
        fields[mapping.articles_field] = "\n".join(f"{a['title']} - {a['url']}" for a in quoted)
    values = {
        "priority": mapping.priorities.get(priority),
        "group": group,
        "tags": tags,
        "note": "\n".join(lines),
        "fields": fields,
        "expected_first_response": expected_first_response,
        "expected_first_response_at": expected_first_response_at,
    }
    # Only when there is one: the values queued before the knowledge base keep their shape.
    if quoted:
        values["auto_reply_articles"] = quoted
    # Only when assigned: the values queued before assignment existed keep their shape.
    if assignee is not None:
        values["assignee"] = assignee
    return values


def is_our_write(event: HelpdeskEvent, written: Mapping[str, Any] | None, mapping: HelpdeskParams) -> bool:
    """Whether an update is the echo of our own write-back: made by `bot_user`, or - when the
    payload does not say who changed the ticket (Freshdesk) - carrying exactly the priority and
    group we last wrote (`written`, the outbox's values) with our tags."""
    if mapping.bot_user is not None and event.actor == mapping.bot_user:
        return True
    # By values only where the payload names no author, and never a solved ticket (we never
    # change a ticket's status): a named agent who keeps our values is an agent's decision.
    if not written or event.kind != "updated" or event.actor is not None:
        return False
    ours_tags = set(written.get("tags") or ())
    same_priority = (written.get("priority") or "").lower() == (event.priority or "").lower()
    same_group = written.get("group") is None or str(written["group"]).lower() == (event.group or "").lower()
    return same_priority and same_group and (not event.tags or ours_tags <= set(event.tags))
