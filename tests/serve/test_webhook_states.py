"""The backlog part through the helpdesks' webhooks (as tests/serve/test_webhooks.py): a created
ticket opens its state, an update or a solved ticket sets it from the helpdesk's status, on both
stores; the created answer's helpdesk values carry the expected first response."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpdesk_payloads import created, freshdesk_webhook, jira_webhook, zammad_webhook, zendesk_event
from tests.serve import test_webhooks
from tests.serve_helpers import ALL, rows
from urgency.helpdesks import HELPDESKS
from urgency.store import ticket_states

# The webhook tests' fixtures and helper: the same params, secrets and stores.
webhook_params = test_webhooks.webhook_params
hooks = test_webhooks.hooks
deliver = test_webhooks.deliver


@pytest.mark.parametrize("helpdesk", HELPDESKS)
def test_a_created_ticket_opens_its_state_and_is_told_its_wait(
    hooks: tuple[TestClient, str], helpdesk: str
) -> None:
    client, database = hooks
    answer = deliver(client, helpdesk, created(helpdesk)).json()
    assert answer["action"] == "scored", answer
    state = rows(database, ticket_states)
    assert [(row["status"], row["source"]) for row in state] == [("new", helpdesk)]
    values = answer["helpdesk_values"]
    assert values["expected_first_response"].startswith("We expect to reply within about")
    assert values["expected_first_response_at"] == answer["result"]["expected_first_response_at"]
    assert "customer told: We expect" in values["note"]


@pytest.mark.parametrize(
    ("helpdesk", "payload", "status"),
    [
        ("zendesk", zendesk_event(event="ticket.status_changed", status="pending"), "pending"),
        ("freshdesk", freshdesk_webhook(ticket_status=4, event="ticket_updated"), "solved"),
        (
            "zammad",
            zammad_webhook(
                article_count=2,
                updated_at="2026-03-02T11:00:00Z",
                updated_by={"login": "maria"},
                state={"name": "pending reminder"},
            ),
            "pending",
        ),
        (
            "jira",
            jira_webhook(
                event="jira:issue_updated",
                status={"name": "Waiting for customer", "statusCategory": {"key": "indeterminate"}},
            ),
            "pending",
        ),
    ],
)
def test_an_update_sets_the_state_from_the_helpdesks_status(
    hooks: tuple[TestClient, str], helpdesk: str, payload: dict[str, Any], status: str
) -> None:
    client, database = hooks
    assert deliver(client, helpdesk, created(helpdesk)).json()["action"] == "scored"
    answer = deliver(client, helpdesk, payload).json()
    assert answer["ticket_status"] == status, answer
    state = rows(database, ticket_states)
    assert [(row["ticket_id"], row["status"], row["source"]) for row in state] == [
        (answer["ticket_id"], status, helpdesk)
    ]
    # Recorded as feedback too, when the mapping knows a value of the update.
    if answer["action"] == "feedback":
        assert answer["feedback"]["status"] == status


def test_an_agents_group_change_moves_the_tickets_state(hooks: tuple[TestClient, str]) -> None:
    client, database = hooks
    ticket_id = deliver(client, "freshdesk", created("freshdesk")).json()["ticket_id"]
    moved = client.post(
        "/v1/feedback", json={"ticket_id": ticket_id, "event_id": "to-triage", "team": "triage"}, headers=ALL
    )
    assert moved.status_code == 200, moved.text
    assert [row["team"] for row in rows(database, ticket_states)] == ["triage"]
    # An update without a status, whose group maps onto our team desk: the state follows it.
    update = freshdesk_webhook(ticket_status=None, ticket_priority=4, event="ticket_updated")
    answer = deliver(client, "freshdesk", update).json()
    assert answer["action"] == "feedback" and answer["ticket_status"] is None, answer
    assert [(row["status"], row["team"]) for row in rows(database, ticket_states)] == [("new", "desk")]
