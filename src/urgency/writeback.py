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

The updates are idempotent (a retry sets the same values); a note is posted last, so a retry
after a failed note posts it once - unless the helpdesk stored it and its answer was lost.
The writes are made as the token's user: set that user as `bot_user` in the helpdesk's params so
the webhook our own change triggers is not taken for an agent's decision.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from urgency.helpdesks import FRESHDESK_PRIORITIES
from urgency.store import Store

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
) -> dict[str, int]:
    """Send the outbox's due writes (up to `limit`), each to its helpdesk's `api_urls` with its
    `credentials`; returns how many were done, retried later and failed for good."""
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
        helpdesk = write["helpdesk"]
        if helpdesk not in api_urls or helpdesk not in credentials:
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
