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
from tests.helpdesk_payloads import SECRETS, created, signed, zammad_webhook
from tests.postgres import free_port
from tests.serve_helpers import migrated, rows, running_server
from urgency.helpdesks import HELPDESKS
from urgency.store import feedback, outbox, predictions

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
        if f"/{ticket_id}" in call["path"] or call["json"].get("o_id") == ticket_id
    ]


@pytest.fixture
def params(service_params: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    with fake_helpdesk() as fake:
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
        yield write_params(tmp_path, data), fake


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


def test_each_helpdesk_gets_its_decision_written_back(params: tuple[Path, str], tmp_path: Path) -> None:
    params_path, fake = params
    database = migrated(f"sqlite:///{tmp_path / 'service.db'}")
    with running_server(params_path, database, env=ENV) as base:
        for helpdesk in HELPDESKS:
            answer = deliver(base, helpdesk, created(helpdesk))
            assert answer["write_back"] is True
            theirs = PRIORITIES[helpdesk][answer["result"]["priority"]]
            calls = wait_calls(fake, answer["ticket_id"], 1)
            first = calls[0]["json"]
            if helpdesk == "zendesk":
                assert first["ticket"]["priority"] == theirs and first["ticket"]["group_id"] == 12
                assert first["ticket"]["comment"]["public"] is False
                assert answer["result"]["explanation_text"] in first["ticket"]["comment"]["body"]
            elif helpdesk == "freshdesk":
                assert first == {
                    "tags": answer["helpdesk_values"]["tags"],
                    "priority": {"urgent": 4, "high": 3, "medium": 2, "low": 1}[theirs],
                    "group_id": 12,
                }
                wait_calls(fake, answer["ticket_id"], 2)
            elif helpdesk == "zammad":
                assert first["priority"] == theirs and first["article"]["internal"] is True
                tags = answer["helpdesk_values"]["tags"]
                wait_calls(fake, answer["ticket_id"], 1 + len(tags))
            else:
                assert first["fields"] == {"priority": {"name": theirs}}
                wait_calls(fake, answer["ticket_id"], 2)
        wait_for(lambda: all(row["status"] == "done" for row in rows(database, outbox)), "every write done")
        # The helpdesk's webhook caused by our own write comes back: recognised, not feedback.
        echo = zammad_webhook(
            article_count=2, updated_at="2026-03-02T11:00:00Z", updated_by={"login": "urgency-bot"}
        )
        assert deliver(base, "zammad", echo)["action"] == "ignored"
    assert len(rows(database, predictions)) == 4 and rows(database, feedback) == []


def test_a_helpdesk_that_is_down_loses_nothing_across_a_restart(
    params: tuple[Path, str], tmp_path: Path
) -> None:
    params_path, fake = params
    database = migrated(f"sqlite:///{tmp_path / 'service.db'}")
    httpx.post(f"{fake}/_down", json={"down": True})
    with running_server(params_path, database, env=ENV) as base:
        answer = deliver(base, "jira", created("jira"))
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
