"""POST /v1/webhooks/{helpdesk}: each helpdesk's native, signed delivery scored or recorded
once, on both stores; bad signatures 401, malformed payloads 422 naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from serve.app import create_app
from tests.conftest import write_params
from tests.helpdesk_payloads import (
    SECRETS,
    created,
    freshdesk_webhook,
    jira_webhook,
    signed,
    zammad_webhook,
    zendesk_event,
)
from tests.serve_helpers import rows, settings
from urgency.helpdesks import HELPDESKS
from urgency.store import feedback, predictions, webhook_deliveries

PRIORITIES = {
    "zendesk": {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"},
    "freshdesk": {"P1": "urgent", "P2": "high", "P3": "medium", "P4": "low"},
    "zammad": {"P1": "3 high", "P2": "3 high", "P3": "2 normal", "P4": "1 low"},
    "jira": {"P1": "Highest", "P2": "High", "P3": "Medium", "P4": "Low"},
}
GROUPS = {"zendesk": "8447320466430", "freshdesk": "Billing", "zammad": "Users", "jira": "ops-team"}


@pytest.fixture(scope="module")
def webhook_params(service_params: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = yaml.safe_load(service_params.read_text())
    data["helpdesks"] = {
        helpdesk: {
            "priorities": PRIORITIES[helpdesk],
            "teams": {"desk": GROUPS[helpdesk]},
            "triage_group": "Triage",
            "fields": {"service_down": "service_down", "plan": "organization.plan"},
            "group_field": "customfield_team" if helpdesk == "jira" else None,
            "bot_user": "urgency-bot",
        }
        for helpdesk in HELPDESKS
    }
    return write_params(tmp_path_factory.mktemp("webhooks"), data)


@pytest.fixture
def hooks(webhook_params: Path, any_database: str) -> Iterator[tuple[TestClient, str]]:
    app = create_app(settings(webhook_params, any_database, webhook_secrets=SECRETS))
    with TestClient(app) as client:
        yield client, any_database


def deliver(client: TestClient, helpdesk: str, payload: Any) -> Any:
    body, headers = signed(helpdesk, payload)
    return client.post(f"/v1/webhooks/{helpdesk}", content=body, headers=headers)


@pytest.mark.parametrize("helpdesk", HELPDESKS)
def test_a_created_ticket_is_scored_once_however_often_delivered(
    hooks: tuple[TestClient, str], helpdesk: str
) -> None:
    client, database = hooks
    body, headers = signed(helpdesk, created(helpdesk))
    first = client.post(f"/v1/webhooks/{helpdesk}", content=body, headers=headers)
    assert first.status_code == 200, first.text
    answer = first.json()
    assert (answer["action"], answer["kind"], answer["duplicate"]) == ("scored", "created", False)
    result = answer["result"]
    assert result["ticket_id"] == answer["ticket_id"]
    assert "<" not in json.dumps(result["explanation_text"])  # HTML never reaches the answer
    values = answer["helpdesk_values"]
    assert values["priority"] == PRIORITIES[helpdesk][result["priority"]]
    assert values["tags"][0] == f"urgency-{result['priority'].lower()}"
    assert result["explanation_text"] in values["note"]
    # The helpdesk retries (it timed out waiting): the same answer, nothing stored again.
    again = client.post(f"/v1/webhooks/{helpdesk}", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert {**again.json(), "duplicate": False} == answer
    assert len(rows(database, predictions)) == 1
    assert len(rows(database, webhook_deliveries)) == 1


def test_rule_fields_come_from_the_mapping(hooks: tuple[TestClient, str]) -> None:
    client, database = hooks
    payload = zammad_webhook()
    payload["ticket"]["service_down"] = True  # a custom ticket attribute
    answer = deliver(client, "zammad", payload).json()
    assert answer["result"]["priority"] == "P1"  # the rules' impact rule: service_down -> high
    stored = rows(database, predictions)[0]
    assert stored["fields"] == {"service_down": True, "plan": "enterprise"}


@pytest.mark.parametrize(
    ("helpdesk", "payload", "decision"),
    [
        (
            "zendesk",
            zendesk_event(event="ticket.priority_changed", priority="HIGH"),
            {"priority": "P2", "team": "desk"},
        ),
        (
            "freshdesk",
            freshdesk_webhook(ticket_priority=4, ticket_status=4, event="ticket_updated"),
            {"priority": "P1", "team": "desk"},
        ),
        (
            "zammad",
            zammad_webhook(article_count=2, updated_at="2026-03-02T11:00:00Z", updated_by={"login": "maria"}),
            {"priority": "P3", "team": "desk"},
        ),
        (
            "jira",
            jira_webhook(event="jira:issue_updated", priority={"name": "Low"}, customfield_team="ops-team"),
            {"priority": "P4", "team": "desk"},
        ),
    ],
)
def test_an_agents_change_becomes_feedback(
    hooks: tuple[TestClient, str], helpdesk: str, payload: dict[str, Any], decision: dict[str, str]
) -> None:
    client, database = hooks
    answer = deliver(client, helpdesk, payload).json()
    assert answer["action"] == "feedback", answer
    stored = rows(database, feedback)
    assert len(stored) == 1 and stored[0]["ticket_id"] == answer["ticket_id"]
    assert {name: stored[0][name] for name in decision} == decision
    assert (stored[0]["resolved_at"] is not None) == (answer["kind"] == "solved")
    assert rows(database, predictions) == []


def test_our_own_write_back_is_not_feedback(hooks: tuple[TestClient, str]) -> None:
    client, database = hooks
    payload = zammad_webhook(
        article_count=2, updated_at="2026-03-02T11:00:00Z", updated_by={"login": "urgency-bot"}
    )
    answer = deliver(client, "zammad", payload).json()
    assert answer["action"] == "ignored" and "own write-back" in answer["reason"]
    assert rows(database, feedback) == []


@pytest.mark.parametrize("helpdesk", HELPDESKS)
def test_a_bad_signature_is_refused_and_stores_nothing(hooks: tuple[TestClient, str], helpdesk: str) -> None:
    client, database = hooks
    body, headers = signed(helpdesk, created(helpdesk))
    forged = {
        **headers,
        **{
            name: "forged"
            for name in headers
            if (name.lower() != "content-type" and "signature" in name.lower()) or "secret" in name.lower()
        },
    }
    response = client.post(f"/v1/webhooks/{helpdesk}", content=body, headers=forged)
    assert response.status_code == 401 and SECRETS[helpdesk] not in response.text
    assert rows(database, webhook_deliveries) == [] and rows(database, predictions) == []


def test_malformed_payloads_name_the_field(hooks: tuple[TestClient, str]) -> None:
    client, database = hooks
    response = deliver(client, "jira", {"webhookEvent": "jira:issue_created", "issue": {"key": "S-1"}})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "issue", "fields"]
    empty = deliver(client, "freshdesk", freshdesk_webhook(ticket_description=""))
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"][:3] == ["body", "ticket", "body"]
    broken = b"{not json"
    headers = {"X-Hub-Signature": signed_raw(broken), "X-Zammad-Delivery": "d-broken"}
    not_json = client.post("/v1/webhooks/zammad", content=broken, headers=headers)
    assert not_json.status_code == 400 and not_json.json()["detail"] == "the body is not JSON"
    huge = b'{"ticket": ' + b"9" * 5000 + b"}"
    headers = {"X-Hub-Signature": signed_raw(huge), "X-Zammad-Delivery": "d-huge"}
    assert client.post("/v1/webhooks/zammad", content=huge, headers=headers).status_code == 400
    nested = b"[" * 100_000 + b"]" * 100_000
    headers = {"X-Hub-Signature": signed_raw(nested), "X-Zammad-Delivery": "d-nested"}
    deep = client.post("/v1/webhooks/zammad", content=nested, headers=headers)
    assert deep.status_code == 400 and deep.json()["detail"] == "the body is nested too deeply"
    assert rows(database, webhook_deliveries) == []


def signed_raw(body: bytes) -> str:
    import hashlib
    import hmac

    return "sha1=" + hmac.new(SECRETS["zammad"].encode(), body, hashlib.sha1).hexdigest()


def test_a_helpdesk_without_a_secret_has_no_webhook(webhook_params: Path, database: str) -> None:
    with TestClient(create_app(settings(webhook_params, database, webhook_secrets={"jira": "x"}))) as client:
        response = deliver(client, "zendesk", created("zendesk"))
        assert response.status_code == 404 and "URGENCY_WEBHOOK_SECRETS" in response.json()["detail"]
        assert client.post("/v1/webhooks/otrs", content=b"{}").status_code == 422


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        (jira_webhook("S-" + "1" * 300), ["body", "ticket_id"]),
        (zendesk_event("12\u0000", event="ticket.priority_changed"), ["body", "ticket_id"]),
        (
            zammad_webhook(
                updated_by={"login": "x" * 300}, article_count=2, updated_at="2026-03-02T11:00:00Z"
            ),
            ["body", "actor"],
        ),
    ],
)
def test_ids_that_cannot_be_stored_are_refused_before_anything_is(
    hooks: tuple[TestClient, str], payload: dict[str, Any], loc: list[str]
) -> None:
    """Too long, or with a NUL character: a 422 naming the id, on both stores, nothing stored."""
    client, database = hooks
    helpdesk = "jira" if "webhookEvent" in payload else "zendesk" if "detail" in payload else "zammad"
    response = deliver(client, helpdesk, payload)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert rows(database, webhook_deliveries) == [] and rows(database, predictions) == []
