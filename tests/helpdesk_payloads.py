"""Helpdesk webhook deliveries as each helpdesk sends them: its native payload, signed as it
signs (the shapes of the vendors' documentation; see docs/helpdesks.md). Shared by the unit
tests of `urgency.helpdesks` and the service's webhook tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

SECRETS = {"zendesk": "zd-secret", "freshdesk": "fd-secret", "zammad": "zm-secret", "jira": "jr-secret"}
OUTAGE = "Production outage: payments failing. Customers cannot check out since 09:00."


def zendesk_event(ticket_id: str = "35436", event: str = "ticket.created", **detail: Any) -> dict[str, Any]:
    """An event subscription's payload (`zen:event-type:ticket.created`)."""
    return {
        "account_id": 22129848,
        "detail": {
            "actor_id": "8447388090494",
            "assignee_id": None,
            "brand_id": "8447346621310",
            "created_at": "2026-03-02T09:00:00Z",
            "description": f"<p>{OUTAGE}</p>",
            "group_id": "8447320466430",
            "id": ticket_id,
            "organization_id": "8447346622462",
            "priority": "LOW",
            "requester_id": "8447388090494",
            "status": "NEW",
            "subject": "Payments down",
            "tags": ["checkout"],
            "type": "INCIDENT",
            "updated_at": "2026-03-02T09:00:00Z",
            "via": {"channel": "web_service"},
            **detail,
        },
        "event": {},
        "id": str(uuid.uuid4()),
        "subject": f"zen:ticket:{ticket_id}",
        "time": "2026-03-02T09:00:01.000000000Z",
        "type": f"zen:event-type:{event}",
        "zendesk_event_version": "2022-11-06",
    }


def zendesk_headers(
    body: bytes, secret: str = SECRETS["zendesk"], at: datetime | None = None
) -> dict[str, str]:
    timestamp = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return {
        "X-Zendesk-Webhook-Signature": base64.b64encode(digest).decode(),
        "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        "X-Zendesk-Webhook-Id": "01GZ0000000000000000000000",
        "X-Zendesk-Webhook-Invocation-Id": str(uuid.uuid4().int)[:18],
    }


def freshdesk_webhook(ticket_id: int = 42, event: str = "ticket_created", **ticket: Any) -> dict[str, Any]:
    """The automation rule's webhook body (the JSON template in docs/helpdesks.md)."""
    return {
        "freshdesk_webhook": {
            "ticket_id": ticket_id,
            "ticket_subject": "Payments down",
            "ticket_description": f"<div>{OUTAGE}</div>",
            "ticket_priority": 1,
            "ticket_status": 2,
            "ticket_group_name": "Billing",
            "ticket_type": "Incident",
            "ticket_created_at": "2026-03-02T09:00:00Z",
            "ticket_tags": "checkout, payments",
            "ticket_company_name": "Acme",
            "triggered_event": event,
            **ticket,
        }
    }


def freshdesk_headers(secret: str = SECRETS["freshdesk"]) -> dict[str, str]:
    return {"X-Urgency-Webhook-Secret": secret}


def zammad_webhook(ticket_id: int = 7, **ticket: Any) -> dict[str, Any]:
    """Zammad's default trigger webhook payload: the ticket and its article (HTML body)."""
    return {
        "ticket": {
            "id": ticket_id,
            "number": "31007",
            "title": "Payments down",
            "group": {"id": 1, "name": "Users"},
            "priority": {"id": 2, "name": "2 normal"},
            "state": {"id": 1, "name": "new"},
            "organization": {"id": 3, "name": "Acme", "plan": "enterprise"},
            "customer": {"id": 9, "login": "ops@acme.example", "vip": True},
            "updated_by": {"id": 9, "login": "ops@acme.example"},
            "article_count": 1,
            "created_at": "2026-03-02T09:00:00.000Z",
            "updated_at": "2026-03-02T09:00:00.000Z",
            **ticket,
        },
        "article": {
            "id": 71,
            "subject": "Payments down",
            "content_type": "text/html",
            "body": f"<div>{OUTAGE}</div><blockquote>old thread</blockquote>",
        },
    }


def zammad_headers(body: bytes, secret: str = SECRETS["zammad"]) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return {
        "X-Hub-Signature": f"sha1={signature}",
        "X-Zammad-Delivery": str(uuid.uuid4()),
        "X-Zammad-Trigger": "urgency",
    }


def jira_webhook(key: str = "SUP-12", event: str = "jira:issue_created", **fields: Any) -> dict[str, Any]:
    """A Jira Cloud issue webhook; the description in Atlassian Document Format."""
    return {
        "timestamp": 1772442000000,
        "webhookEvent": event,
        "issue_event_type_name": event.removeprefix("jira:"),
        "user": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Ops"},
        "issue": {
            "id": "10012",
            "key": key,
            "fields": {
                "summary": "Payments down",
                "description": {
                    "type": "doc",
                    "version": 1,
                    "content": [{"type": "paragraph", "content": [{"type": "text", "text": OUTAGE}]}],
                },
                "priority": {"id": "3", "name": "Medium"},
                "status": {"name": "Open", "statusCategory": {"key": "new"}},
                "issuetype": {"name": "Incident"},
                "labels": ["checkout"],
                "created": "2026-03-02T09:00:00.000+0000",
                "customfield_10050": {"value": "enterprise"},
                **fields,
            },
        },
    }


def jira_headers(body: bytes, secret: str = SECRETS["jira"]) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature": f"sha256={signature}",
        "X-Atlassian-Webhook-Identifier": str(uuid.uuid4().int)[:12],
    }


def signed(helpdesk: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The delivery's body and headers as the helpdesk sends them."""
    body = json.dumps(payload).encode()
    headers = {
        "zendesk": lambda: zendesk_headers(body),
        "freshdesk": freshdesk_headers,
        "zammad": lambda: zammad_headers(body),
        "jira": lambda: jira_headers(body),
    }[helpdesk]()
    return body, {"Content-Type": "application/json", **headers}


def created(helpdesk: str) -> dict[str, Any]:
    """Each helpdesk's ticket-created payload."""
    return {
        "zendesk": zendesk_event,
        "freshdesk": freshdesk_webhook,
        "zammad": zammad_webhook,
        "jira": jira_webhook,
    }[helpdesk]()


def zendesk_agent_state(
    agent_id: str = "9001", new_state: str = "away", channel: str = "support"
) -> dict[str, Any]:
    """Zendesk's "Agent Per Channel Status Changed" event (webhooks, agent availability events)."""
    return {
        "account_id": 2,
        "detail": {"account_id": "2", "agent_id": agent_id, "version": "3"},
        "event": {
            "updated_at": "2026-12-01T09:30:58Z",
            "previous_state": "online",
            "new_state": new_state,
            "channel": channel,
        },
        "id": f"01GX79ST1QX01C889XV42S2J5T-{agent_id}-{new_state}-{channel}",
        "subject": f"zen:agent:{agent_id}",
        "time": "2026-12-01T09:30:58Z",
        "type": "zen:event-type:agent.state_changed",
        "zendesk_event_version": "2022-11-06",
    }
