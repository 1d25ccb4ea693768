"""Write-back: a decision written onto the helpdesk's ticket through the helpdesk's REST API.

A scored webhook delivery leaves a pending row in the store's outbox (in the delivery's own
transaction); `drain` sends the due rows, marks them done, or schedules a retry with exponential
back-off (honouring `Retry-After`), so a helpdesk that is down loses nothing and a restarted
service resumes where it stopped. What each helpdesk receives (`calls_for`):

- Zendesk: `PUT /api/v2/tickets/{id}.json` - priority, group, `assignee_id`, `additional_tags`,
  and a private comment (the internal note), in one call.
- Freshdesk: `PUT /api/v2/tickets/{id}` (priority code, group id, `responder_id`, tags), then
  `POST /api/v2/tickets/{id}/notes` (private).
- Zammad: `PUT /api/v1/tickets/{id}` (priority, group, `owner_id`, an internal note article),
  then `POST /api/v1/tags/add` per tag.
- Jira Service Management: `PUT /rest/api/3/issue/{key}` (priority, assignee `accountId`,
  labels), then
  `POST /rest/servicedeskapi/request/{key}/comment` (internal).

A repeat-issue cluster alert (`Store.record_cluster_alert`) queues a `parent_incident` write
for the helpdesk its member tickets came from; `drain` sends it with the same back-off
(`send_parent_incident`, `incident_calls`): the parent is created, its id stored on the alert
row at once (a retry never creates it twice unless the helpdesk's answer was lost), then the
members are linked to it.

The updates are idempotent (a retry sets the same values); a note is posted last, so a retry
after a failed note posts it once - unless the helpdesk stored it and its answer was lost.
The writes are made as the token's user: set that user as `bot_user` in the helpdesk's params so
the webhook our own change triggers is not taken for an agent's decision.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from urgency.helpdesks import FRESHDESK_PRIORITIES
from urgency.store import ALERT_WEBHOOK, PARENT_INCIDENT, Store

log = logging.getLogger("urgency.writeback")

MAX_ATTEMPTS = 12  # with back-off from 2 s doubling to an hour: about 5 hours of trying
FIRST_RETRY = timedelta(seconds=2)
LONGEST_RETRY = timedelta(hours=1)
LEASE = timedelta(seconds=60)  # a process sending a write; after it, another may take it


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any


def calls_for(helpdesk: str, ticket_id: str, values: Mapping[str, Any]) -> list[Call]:
    """The REST calls that write `values` (`helpdesks.helpdesk_values`) onto the ticket."""
    priority, group, tags, note = values.get("priority"), values.get("group"), values["tags"], values["note"]
    # The agent chosen (`urgency.assignment`), as the helpdesk's user id (agents file `helpdesk_ids`).
    assignee = values.get("assignee")
    # Ticket fields to set (the customer's expected first response, params
    # `expected_reply_field`); absent from writes queued before there were any.
    fields_to_set: Mapping[str, Any] = values.get("fields") or {}
    # The id goes into the URL path as one segment: `7?x=1` or `1/../users/5` cannot reach another resource.
    raw_id, ticket_id = ticket_id, quote(ticket_id, safe="")
    if helpdesk == "zendesk":
        ticket: dict[str, Any] = {"additional_tags": tags, "comment": {"body": note, "public": False}}
        if priority:
            ticket["priority"] = priority
        if group and str(group).isdigit():
            ticket["group_id"] = int(group)
        if assignee and str(assignee).isdigit():
            ticket["assignee_id"] = int(assignee)
        if fields_to_set:
            ticket["custom_fields"] = [
                {"id": int(name) if str(name).isdigit() else name, "value": value}
                for name, value in fields_to_set.items()
            ]
        return [Call("PUT", f"/api/v2/tickets/{ticket_id}.json", {"ticket": ticket})]
    if helpdesk == "freshdesk":
        update: dict[str, Any] = {"tags": tags}
        codes = {name: code for code, name in FRESHDESK_PRIORITIES.items()}
        if priority and str(priority).lower() in codes:
            update["priority"] = codes[str(priority).lower()]
        if group and str(group).isdigit():
            update["group_id"] = int(group)
        if assignee and str(assignee).isdigit():
            update["responder_id"] = int(assignee)
        if fields_to_set:
            update["custom_fields"] = dict(fields_to_set)
        return [
            Call("PUT", f"/api/v2/tickets/{ticket_id}", update),
            Call("POST", f"/api/v2/tickets/{ticket_id}/notes", {"body": note, "private": True}),
        ]
    if helpdesk == "zammad":
        article = {"body": note, "type": "note", "internal": True, "content_type": "text/plain"}
        o_id: int | str = int(raw_id) if raw_id.isdecimal() else raw_id  # Zammad's ids are numbers
        change: dict[str, Any] = {"article": article}
        if priority:
            change["priority"] = priority
        if group:
            change["group"] = group
        if assignee:
            change["owner_id"] = int(assignee) if str(assignee).isdecimal() else assignee
        change |= {name: value for name, value in fields_to_set.items() if name not in change}
        return [
            Call("PUT", f"/api/v1/tickets/{ticket_id}", change),
            *(
                Call("POST", "/api/v1/tags/add", {"object": "Ticket", "o_id": o_id, "item": tag})
                for tag in tags
            ),
        ]
    if helpdesk == "jira":
        fields: dict[str, Any] = {"priority": {"name": priority}} if priority else {}
        if assignee:
            fields["assignee"] = {"accountId": assignee}
        fields |= {name: value for name, value in fields_to_set.items() if name not in fields}
        return [
            Call(
                "PUT",
                f"/rest/api/3/issue/{ticket_id}",
                {"fields": fields, "update": {"labels": [{"add": t} for t in tags]}},
            ),
            Call(
                "POST", f"/rest/servicedeskapi/request/{ticket_id}/comment", {"body": note, "public": False}
            ),
        ]
    raise ValueError(f"unknown helpdesk {helpdesk!r}")


def authorization(helpdesk: str, credential: str) -> str:
    """The Authorization header each helpdesk's API takes, from the credential in settings:
    Zendesk `email/token:API_TOKEN`, Freshdesk `API_KEY`, Zammad `TOKEN`, Jira `email:API_TOKEN`."""
    if helpdesk == "zammad":
        return f"Token token={credential}"
    user_and_password = f"{credential}:X" if helpdesk == "freshdesk" else credential
    return "Basic " + base64.b64encode(user_and_password.encode()).decode()


def retry_delay(attempts: int, retry_after: str | None, now: datetime) -> timedelta:
    """Exponential back-off from `FIRST_RETRY`, capped; a helpdesk's `Retry-After` (seconds or
    an HTTP date) when it asks for longer."""
    delay = min(FIRST_RETRY * (2**attempts), LONGEST_RETRY)
    if retry_after:
        asked: timedelta | None = None
        if retry_after.strip().isdecimal():  # capped before it becomes a timedelta: no overflow
            asked = timedelta(seconds=min(int(retry_after), int(LONGEST_RETRY.total_seconds())))
        else:
            try:
                asked = parsedate_to_datetime(retry_after) - now
            except (TypeError, ValueError, OverflowError):
                asked = None
        if asked is not None:
            delay = max(delay, min(asked, LONGEST_RETRY))
    return delay


class WriteFailed(Exception):
    def __init__(self, message: str, *, retry: bool, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


def send(
    client: httpx.Client, base_url: str, helpdesk: str, credential: str, write: Mapping[str, Any]
) -> None:
    """Make the write's calls in order; `WriteFailed` says whether trying again may help
    (network errors, 408, 429, 5xx) or not (any other refusal: a wrong token, a deleted ticket)."""
    headers = {"Authorization": authorization(helpdesk, credential), "Content-Type": "application/json"}
    for call in calls_for(helpdesk, write["ticket_id"], write["values"]):
        url = base_url.rstrip("/") + call.path
        try:
            response = client.request(call.method, url, json=call.json, headers=headers)
        except httpx.HTTPError as error:
            raise WriteFailed(f"{call.method} {call.path}: {type(error).__name__}", retry=True) from None
        if response.is_success:
            continue
        retry = response.status_code in (408, 429) or response.status_code >= 500
        raise WriteFailed(
            f"{call.method} {call.path}: HTTP {response.status_code}",
            retry=retry,
            retry_after=response.headers.get("retry-after"),
        )


def drain(
    store: Store,
    client: httpx.Client,
    api_urls: Mapping[str, str],
    credentials: Mapping[str, str],
    now: datetime,
    limit: int = 20,
    incident_fields: Mapping[str, Mapping[str, str]] | None = None,
    alert_webhook: tuple[str, str | None] | None = None,
) -> dict[str, int]:
    """Send the outbox's due writes (up to `limit`), each to its helpdesk's `api_urls` with its
    `credentials`; returns how many were done, retried later and failed for good.
    `incident_fields`: per helpdesk, params `helpdesks.<name>.incident_fields` (a cluster
    alert's parent incident, `send_parent_incident`); `alert_webhook`: (URL, secret or None)
    of the service's alert webhook (`send_alert_webhook`), None: off."""
    counts = {"done": 0, "retry": 0, "failed": 0}
    started = time.monotonic()
    for _ in range(limit):
        # One write claimed at a time, just before it is sent: a claim never outlives its lease
        # while earlier writes of the round are still being sent (another worker would send it too).
        clock = now + timedelta(seconds=time.monotonic() - started)
        claimed = store.claim_writes(clock, LEASE, 1)
        if not claimed:
            break
        write = claimed[0]
        helpdesk, kind = write["helpdesk"], write["values"].get("kind")
        if kind == ALERT_WEBHOOK:
            off = alert_webhook is None
        else:
            off = helpdesk not in api_urls or helpdesk not in credentials
        if off:
            # Write-back switched off since the write was queued: it stays, not sent, not lost.
            store.finish_write(
                write["id"],
                clock,
                error="write-back is off for this helpdesk",
                retry_at=clock + LONGEST_RETRY,
            )
            counts["retry"] += 1
            continue
        try:
            if kind == ALERT_WEBHOOK:
                assert alert_webhook is not None
                send_alert_webhook(client, *alert_webhook, write, store, clock)
            elif kind == PARENT_INCIDENT:
                send_parent_incident(
                    client,
                    api_urls[helpdesk],
                    helpdesk,
                    credentials[helpdesk],
                    write,
                    store,
                    clock,
                    (incident_fields or {}).get(helpdesk),
                )
            else:
                send(client, api_urls[helpdesk], helpdesk, credentials[helpdesk], write)
        except WriteFailed as failure:
            attempts = write["attempts"] + 1
            if failure.retry and attempts < MAX_ATTEMPTS:
                retry_at = clock + retry_delay(write["attempts"], failure.retry_after, clock)
                store.finish_write(write["id"], clock, error=str(failure), retry_at=retry_at)
                counts["retry"] += 1
            else:
                store.finish_write(write["id"], clock, error=str(failure))
                counts["failed"] += 1
            log.warning("write-back to %s for ticket %s: %s", helpdesk, write["ticket_id"], failure)
            continue
        except Exception as error:  # a write that cannot even be built: given up, the round goes on
            store.finish_write(write["id"], clock, error=f"cannot be sent: {type(error).__name__}")
            counts["failed"] += 1
            log.exception("write-back to %s for ticket %s", helpdesk, write["ticket_id"])
            continue
        store.finish_write(write["id"], clock)
        counts["done"] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# Cluster alerts: the parent incident (docs/repeat-issues.md "Clusters")

# Ids per bulk update (Zendesk's `update_many` takes up to 100).
UPDATE_MANY = 100


def incident_create(
    helpdesk: str, alert: Mapping[str, Any], members: list[str], fields: Mapping[str, str]
) -> Call:
    """The call that creates a cluster alert's parent incident, in each vendor's documented shape
    (confirmed against the vendors' API references):

    - Zendesk Support API, Tickets, "Create Ticket": `POST /api/v2/tickets.json` with
      `{"ticket": {"subject", "type": "problem", "comment": {"body", "public": false}}}` (a
      private first comment); the answer `{"ticket": {"id": N, ...}}`.
    - Freshdesk API v2, "Create a Tracker Ticket": `POST /api/v2/tickets` with
      `related_ticket_ids` (the members), a requester `email` (params `incident_fields.email`),
      `subject`, `description`, `status` 2 (open), `priority` 1; the answer the ticket (`id`).
      The tracker is linked to its members as it is created.
    - Zammad REST API, Tickets, "Create": `POST /api/v1/tickets` with `title`, `group`, the
      customer and a first `article` (type `note`, `internal`); the answer has `id` and `number`.
    - Jira Cloud platform REST API v3, "Create issue": `POST /rest/api/3/issue` with `fields`
      (`project.key`, `summary`, `issuetype.name`, `description` in Atlassian Document Format);
      the answer `{"id", "key", "self"}`.
    """
    title, note = str(alert["title"]), incident_note(alert, members)
    extra = dict(fields)
    if helpdesk == "zendesk":
        ticket: dict[str, Any] = {
            "subject": title,
            "type": "problem",
            "comment": {"body": note, "public": False},
        }
        for name, value in extra.items():
            ticket.setdefault(name, int(value) if str(value).isdecimal() else value)
        return Call("POST", "/api/v2/tickets.json", {"ticket": ticket})
    if helpdesk == "freshdesk":
        if not extra.get("email") and not extra.get("requester_id"):
            raise WriteFailed(
                "freshdesk tracker tickets need a requester: set params "
                "helpdesks.freshdesk.incident_fields.email",
                retry=False,
            )
        body: dict[str, Any] = {
            "subject": title,
            "description": note.replace("\n", "<br>"),
            "status": 2,
            "priority": 1,
            "related_ticket_ids": [int(member) for member in members if member.isdecimal()],
        }
        for name, value in extra.items():
            body.setdefault(name, int(value) if name == "requester_id" and str(value).isdecimal() else value)
        return Call("POST", "/api/v2/tickets", body)
    if helpdesk == "zammad":
        body = {
            "title": title,
            "group": extra.pop("group", "Users"),
            "article": {
                "subject": title,
                "body": note,
                "type": "note",
                "internal": True,
                "content_type": "text/plain",
            },
        }
        return Call("POST", "/api/v1/tickets", body | extra)
    if helpdesk == "jira":
        project = extra.pop("project", None) or next(
            (member.rsplit("-", 1)[0] for member in members if "-" in member), None
        )
        if not project:
            raise WriteFailed(
                "no Jira project for the parent incident: set params helpdesks.jira.incident_fields.project",
                retry=False,
            )
        extra.pop("link_type", None)
        issue = {
            "project": {"key": project},
            "summary": title,
            "issuetype": {"name": extra.pop("issuetype", "Problem")},
            "description": {
                "type": "doc",
                "version": 1,
                "content": [
                    {"type": "paragraph", "content": [{"type": "text", "text": line}]}
                    for line in note.splitlines()
                    if line.strip()
                ],
            },
        }
        return Call("POST", "/rest/api/3/issue", {"fields": issue | extra})
    raise ValueError(f"unknown helpdesk {helpdesk!r}")


def incident_links(
    helpdesk: str, parent: Mapping[str, Any], members: list[str], fields: Mapping[str, str]
) -> list[Call]:
    """The calls that link the members to the created parent (`parent`: the helpdesk's answer
    to `incident_create`, or `{"id"}` / Zammad `{"id", "number"}` on a retry):

    - Zendesk: `PUT /api/v2/tickets/update_many.json?ids=1,2,3` with `{"ticket": {"type":
      "incident", "problem_id": N}}` (Tickets, "Update Many Tickets": up to 100 ids a call; only
      an incident has a `problem_id`).
    - Freshdesk: none (the tracker was created with `related_ticket_ids`).
    - Zammad: `POST /api/v1/links/add` per member with `link_type` `parent`,
      `link_object_source` `Ticket` and `link_object_source_number` the parent's *number*,
      `link_object_target` `Ticket` and `link_object_target_value` the member's id (Zammad's
      links endpoint names the source by number, the target by id).
    - Jira: `POST /rest/api/3/issueLink` per member with `type.name` (params
      `incident_fields.link_type`, default `Relates`), `inwardIssue.key` the member and
      `outwardIssue.key` the parent (Issue links, "Create issue link").
    """
    if helpdesk == "zendesk":
        numbered = [member for member in members if member.isdecimal()]
        return [
            Call(
                "PUT",
                "/api/v2/tickets/update_many.json?ids=" + ",".join(numbered[start : start + UPDATE_MANY]),
                {"ticket": {"type": "incident", "problem_id": int(parent["id"])}},
            )
            for start in range(0, len(numbered), UPDATE_MANY)
        ]
    if helpdesk == "freshdesk":
        return []
    if helpdesk == "zammad":
        return [
            Call(
                "POST",
                "/api/v1/links/add",
                {
                    "link_type": "parent",
                    "link_object_source": "Ticket",
                    "link_object_source_number": str(parent["number"]),
                    "link_object_target": "Ticket",
                    "link_object_target_value": int(member),
                },
            )
            for member in members
            if member.isdecimal()
        ]
    if helpdesk == "jira":
        link_type = fields.get("link_type") or "Relates"
        return [
            Call(
                "POST",
                "/rest/api/3/issueLink",
                {
                    "type": {"name": link_type},
                    "inwardIssue": {"key": member},
                    "outwardIssue": {"key": str(parent["key"])},
                },
            )
            for member in members
        ]
    raise ValueError(f"unknown helpdesk {helpdesk!r}")


def incident_note(alert: Mapping[str, Any], members: list[str]) -> str:
    """The parent incident's private note: why it was proposed and its member tickets."""
    return (
        f"Repeat-issue cluster alert: {alert['explanation']}\n"
        f"{len(members)} member ticket(s): {', '.join(members)}\n"
        f"Proposed by urgency (alert {alert['id']}, raised at {alert['raised_at']})."
    )


def incident_url(helpdesk: str, base_url: str, incident_id: str) -> str:
    """Where an agent opens the parent incident (the helpdesk's agent interface)."""
    base = base_url.rstrip("/")
    paths = {
        "zendesk": f"/agent/tickets/{incident_id}",
        "freshdesk": f"/a/tickets/{incident_id}",
        "zammad": f"/#ticket/zoom/{incident_id}",
        "jira": f"/browse/{incident_id}",
    }
    return base + paths[helpdesk]


def _call(client: httpx.Client, base_url: str, headers: Mapping[str, str], call: Call) -> httpx.Response:
    """One call to the helpdesk's REST API (`_request`)."""
    url = base_url.rstrip("/") + call.path
    label = f"{call.method} {call.path}"
    return _request(client, call.method, url, label, json=call.json, headers=dict(headers))


def _request(client: httpx.Client, method: str, url: str, label: str, **options: Any) -> httpx.Response:
    """One HTTP request of a write; `WriteFailed` as `send` says (retry on network errors, 408,
    429, 5xx, honouring `Retry-After`), named by `label`."""
    try:
        response = client.request(method, url, **options)
    except httpx.HTTPError as error:
        raise WriteFailed(f"{label}: {type(error).__name__}", retry=True) from None
    if not response.is_success:
        raise WriteFailed(
            f"{label}: HTTP {response.status_code}",
            retry=response.status_code in (408, 429) or response.status_code >= 500,
            retry_after=response.headers.get("retry-after"),
        )
    return response


def send_parent_incident(
    client: httpx.Client,
    base_url: str,
    helpdesk: str,
    credential: str,
    write: Mapping[str, Any],
    store: Store,
    now: datetime,
    fields: Mapping[str, str] | None = None,
) -> str:
    """Create a cluster alert's parent incident in `helpdesk` and link the alert's members that
    came from it (their ids as the store has them now, so a member whose delivery was stored
    after the alert is linked too). The created id (Jira: the key) is stored on the alert row as
    soon as the helpdesk answers; a retry after a failed link creates nothing again. Returns
    the parent's id."""
    fields = fields or {}
    alert = store.cluster_alert(int(write["values"]["alert_id"]))
    if alert is None:
        raise WriteFailed(f"cluster alert {write['values']['alert_id']} is not stored", retry=False)
    # A later write of the episode names the members merged after the parent was sent.
    later = write["values"].get("members") if alert["incident_id"] is not None else None
    members = store.helpdesk_tickets(helpdesk, later or alert["ticket_ids"])
    headers = {"Authorization": authorization(helpdesk, credential), "Content-Type": "application/json"}
    if alert["incident_id"] is None:
        answer = _call(client, base_url, headers, incident_create(helpdesk, alert, members, fields)).json()
        parent = answer.get("ticket", answer) if helpdesk == "zendesk" else answer
        incident_id = str(parent["key"] if helpdesk == "jira" else parent["id"])
        store.set_alert_incident(alert["id"], incident_id, incident_url(helpdesk, base_url, incident_id), now)
    else:
        incident_id = alert["incident_id"]
        parent = {"id": incident_id, "key": incident_id}
        if helpdesk == "zammad":  # its links name the parent by number: read it back
            parent = _call(
                client, base_url, headers, Call("GET", f"/api/v1/tickets/{quote(incident_id, safe='')}", None)
            ).json()
    for call in incident_links(helpdesk, parent, members, fields):
        _call(client, base_url, headers, call)
    return incident_id


def alert_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The alert webhook's `X-Urgency-Signature`: `sha256=` and the hex HMAC-SHA256, keyed by the
    secret, of the timestamp, a dot and the raw body (a receiver recomputes it, compares in
    constant time and refuses an old timestamp: a replayed delivery)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def send_alert_webhook(
    client: httpx.Client,
    url: str,
    secret: str | None,
    write: Mapping[str, Any],
    store: Store,
    now: datetime,
) -> None:
    """POST a new cluster alert episode to the service's alert webhook as JSON (`event`
    `cluster_alert`, the `alert`'s stored figures and members), with `X-Urgency-Delivery` (the
    same on every retry: a receiver drops a repeat), `X-Urgency-Timestamp` and, with a secret,
    `X-Urgency-Signature` (`alert_signature`). Failures as `send`'s."""
    alert = store.cluster_alert(int(write["values"]["alert_id"]))
    if alert is None:
        raise WriteFailed(f"cluster alert {write['values']['alert_id']} is not stored", retry=False)
    fields = ("id", "title", "size", "count", "burst_hours", "baseline_per_hour", "expected", "p_value")
    shown = {name: alert[name] for name in fields} | {
        "raised_at": _iso(alert["raised_at"]),
        "last_seen_at": _iso(alert["last_seen_at"]),
        "explanation": alert["explanation"],
        "ticket_ids": list(alert["ticket_ids"]),
        "helpdesk": alert["helpdesk"],
    }
    body = json.dumps({"event": "cluster_alert", "alert": shown}, sort_keys=True).encode()
    timestamp = str(int(now.timestamp()))
    headers = {
        "Content-Type": "application/json",
        "X-Urgency-Event": "cluster_alert",
        "X-Urgency-Delivery": str(write["delivery_id"]),
        "X-Urgency-Timestamp": timestamp,
    }
    if secret:
        headers["X-Urgency-Signature"] = alert_signature(secret, timestamp, body)
    _request(client, "POST", url, "POST alert webhook", content=body, headers=headers)


def _iso(moment: datetime) -> str:
    """A stored instant in ISO 8601, UTC (SQLite gives it back without its offset)."""
    return (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)).isoformat()
