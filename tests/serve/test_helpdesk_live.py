"""Helpdesks end to end over real HTTP on loopback: a signed webhook into `urgency serve`, the
decision written back to a fake of the helpdesk's REST API (a real server, `tests.fake_helpdesk`),
retried while the helpdesk is down, resumed after a restart, and no loop on our own change."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import write_params
from tests.helpdesk_payloads import (
    SECRETS,
    freshdesk_webhook,
    jira_webhook,
    signed,
    zammad_webhook,
    zendesk_event,
)
from tests.postgres import free_port
from tests.serve_helpers import migrated, rows, running_server
from urgency.helpdesks import HELPDESKS
from urgency.store import feedback, outbox, predictions, webhook_deliveries

CREDENTIALS = {
    "zendesk": "bot@acme.example/token:zd-api",
    "freshdesk": "fd-api-key",
    "zammad": "zm-token",
    "jira": "bot@acme.example:jr-api",
}
PRIORITIES = {
    "zendesk": {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"},
    "freshdesk": {"P1": "urgent", "P2": "high", "P3": "medium", "P4": "low"},
    "zammad": {"P1": "3 high", "P2": "3 high", "P3": "2 normal", "P4": "1 low"},
    "jira": {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low"},
}


@contextmanager
def fake_helpdesk() -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "tests.fake_helpdesk",
        "--port",
        str(port),
        "--credentials",
        json.dumps(CREDENTIALS),
    ]
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2])
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base), "the fake helpdesk to start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/_calls", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_calls(fake: str, ticket_id: str, count: int) -> list[dict[str, Any]]:
    """The fake's calls for a ticket, once there are `count` of them."""
    return wait_for(
        lambda: (calls := calls_for(fake, ticket_id)) and len(calls) >= count and calls, f"{count} calls"
    )


def calls_for(fake: str, ticket_id: str) -> list[dict[str, Any]]:
    return [
        call
        for call in httpx.get(f"{fake}/_calls").json()
        if f"/{ticket_id}" in call["path"] or str(call["json"].get("o_id")) == ticket_id
    ]


def live_params(service_params: Path, folder: Path, fake: str) -> Path:
    data = yaml.safe_load(service_params.read_text())
    data["helpdesks"] = {
        helpdesk: {
            "priorities": PRIORITIES[helpdesk],
            "teams": {"desk": "12"},
            "api_url": fake,
            "bot_user": "urgency-bot",
        }
        for helpdesk in HELPDESKS
    }
    return write_params(folder, data)


@pytest.fixture
def params(service_params: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with fake_helpdesk() as fake:
        yield live_params(service_params, tmp_path, fake), fake


@pytest.fixture(scope="module")
def live(service_params: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One fake helpdesk and one `urgency serve` (SQLite) for the per-helpdesk flows."""
    folder = tmp_path_factory.mktemp("helpdesk-live")
    database = migrated(f"sqlite:///{folder / 'service.db'}")
    with (
        fake_helpdesk() as fake,
        running_server(live_params(service_params, folder, fake), database, env=ENV) as base,
    ):
        yield {"base": base, "fake": fake, "database": database}


ENV = {
    "URGENCY_WEBHOOK_SECRETS": json.dumps(SECRETS),
    "URGENCY_HELPDESK_CREDENTIALS": json.dumps(CREDENTIALS),
    "URGENCY_OUTBOX_SECONDS": "0.2",
}


def deliver(base: str, helpdesk: str, payload: dict[str, Any]) -> dict[str, Any]:
    body, headers = signed(helpdesk, payload)
    response = httpx.post(f"{base}/v1/webhooks/{helpdesk}", content=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def updated(
    helpdesk: str, ticket_id: str, theirs: str, group: str | None, tags: list[str], author: str = "maria"
) -> dict[str, Any]:
    """The helpdesk's ticket-updated delivery with its priority, group, tags and (where the
    helpdesk's payload says who changed the ticket; Freshdesk's does not) its author."""
    if helpdesk == "zendesk":
        detail = {"priority": theirs.upper(), "group_id": group, "tags": tags, "actor_id": author}
        return zendesk_event(ticket_id, event="ticket.priority_changed", **detail)
    if helpdesk == "freshdesk":
        code = FRESHDESK_CODES[theirs]
        return freshdesk_webhook(
            int(ticket_id),
            event="ticket_updated",
            ticket_priority=code,
            ticket_group_name=group,
            ticket_tags=", ".join(tags),
        )
    if helpdesk == "zammad":
        return zammad_webhook(
            int(ticket_id),
            article_count=2,
            updated_at="2026-03-02T11:00:00Z",
            priority={"name": theirs},
            group={"name": group},
            updated_by={"login": author},
        )
    payload = jira_webhook(
        ticket_id, event="jira:issue_updated", priority={"name": theirs}, labels=tags, customfield_10001=group
    )
    payload["user"] = {"accountId": author}
    return payload


FRESHDESK_CODES = {"urgent": 4, "high": 3, "medium": 2, "low": 1}
TICKETS = {"zendesk": "5001", "freshdesk": "5002", "zammad": "5003", "jira": "SUP-5004"}


def created_ticket(helpdesk: str) -> dict[str, Any]:
    ticket_id = TICKETS[helpdesk]
    return {
        "zendesk": lambda: zendesk_event(ticket_id),
        "freshdesk": lambda: freshdesk_webhook(int(ticket_id)),
        "zammad": lambda: zammad_webhook(int(ticket_id)),
        "jira": lambda: jira_webhook(ticket_id),
    }[helpdesk]()


@pytest.mark.parametrize("helpdesk", HELPDESKS)
def test_a_helpdesk_end_to_end(live: dict[str, str], helpdesk: str) -> None:
    """Signed webhook in, decision out, written back; the retry stored once; the echo of our own
    write ignored; an agent's change stored as feedback; a forged or malformed delivery refused."""
    base, fake, database = live["base"], live["fake"], live["database"]
    ticket_id = TICKETS[helpdesk]
    body, headers = signed(helpdesk, created_ticket(helpdesk))
    first = httpx.post(f"{base}/v1/webhooks/{helpdesk}", content=body, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["action"], answer["ticket_id"], answer["write_back"]) == ("scored", ticket_id, True)
    values = answer["helpdesk_values"]
    written = PRIORITIES[helpdesk][answer["result"]["priority"]]
    assert values["priority"] == written
    calls = wait_calls(fake, ticket_id, {"zendesk": 1, "zammad": 1 + len(values["tags"])}.get(helpdesk, 2))
    sent = json.dumps(calls)
    as_sent = f'"priority": {FRESHDESK_CODES[written]}' if helpdesk == "freshdesk" else json.dumps(written)
    assert as_sent in sent and values["tags"][0] in sent and answer["result"]["explanation_text"][:40] in sent

    # The helpdesk retries the delivery: the first answer again, one prediction.
    again = httpx.post(f"{base}/v1/webhooks/{helpdesk}", content=body, headers=headers, timeout=30).json()
    assert again["duplicate"] is True and again["result"] == answer["result"]
    assert [row["ticket_id"] for row in rows(database, predictions)].count(ticket_id) == 1

    # Our own write comes back as an update: recognised, not an agent's decision.
    echo = updated(helpdesk, ticket_id, written, values["group"], values["tags"], author="urgency-bot")
    assert deliver(base, helpdesk, echo)["action"] == "ignored"
    if helpdesk != "freshdesk":  # a named agent who keeps our values decided them: feedback
        kept = deliver(base, helpdesk, updated(helpdesk, ticket_id, written, values["group"], values["tags"]))
        assert kept["action"] == "feedback"
    # An agent moves the ticket to another priority: stored as feedback, in our terms.
    theirs_now = next(theirs for theirs in PRIORITIES[helpdesk].values() if theirs != written)
    ours_now = next(ours for ours, theirs in PRIORITIES[helpdesk].items() if theirs == theirs_now)
    change = deliver(
        base, helpdesk, updated(helpdesk, ticket_id, theirs_now, values["group"], values["tags"])
    )
    assert change["action"] == "feedback" and change["feedback"]["priority"] == ours_now
    stored = [row for row in rows(database, feedback) if row["ticket_id"] == ticket_id]
    assert stored[-1]["priority"] == ours_now and len(stored) == (1 if helpdesk == "freshdesk" else 2)

    # Forged: 401, nothing stored; malformed: 422 naming the field.
    deliveries = len(rows(database, webhook_deliveries))
    forged = {
        name: value
        for name, value in headers.items()
        if "signature" not in name.lower() and "secret" not in name.lower()
    }
    refused = httpx.post(f"{base}/v1/webhooks/{helpdesk}", content=body, headers=forged, timeout=30)
    assert refused.status_code == 401
    broken_body, broken_headers = signed(helpdesk, {"unexpected": True})
    broken = httpx.post(
        f"{base}/v1/webhooks/{helpdesk}", content=broken_body, headers=broken_headers, timeout=30
    )
    assert broken.status_code == 422 and broken.json()["detail"][0]["loc"][0] == "body"
    assert len(rows(database, webhook_deliveries)) == deliveries


def test_a_helpdesk_that_is_down_loses_nothing_across_a_restart(
    params: tuple[Path, str], tmp_path: Path
) -> None:
    params_path, fake = params
    database = migrated(f"sqlite:///{tmp_path / 'service.db'}")
    httpx.post(f"{fake}/_down", json={"down": True})
    with running_server(params_path, database, env=ENV) as base:
        answer = deliver(base, "jira", jira_webhook())
        wait_for(lambda: (rows(database, outbox)[0]["attempts"] >= 1) or None, "a failed attempt")
        write = rows(database, outbox)[0]
        assert write["status"] == "pending" and "HTTP 503" in write["last_error"]
    # Stopped with the write pending; the helpdesk comes back; a new process sends it.
    httpx.post(f"{fake}/_down", json={"down": False})
    assert calls_for(fake, answer["ticket_id"]) == []
    with running_server(params_path, database, env=ENV):
        wait_for(
            lambda: rows(database, outbox)[0]["status"] == "done", "the write after the restart", timeout=60
        )
    assert len(calls_for(fake, answer["ticket_id"])) == 2
    assert len(rows(database, predictions)) == 1
