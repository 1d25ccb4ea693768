"""Helpdesk webhooks (`urgency.helpdesks`): each helpdesk's payload read, its signature checked,
its values mapped onto ours."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpdesk_payloads import (
    OUTAGE,
    SECRETS,
    freshdesk_webhook,
    jira_webhook,
    signed,
    zammad_webhook,
    zendesk_agent_state,
    zendesk_event,
    zendesk_headers,
)
from urgency.config import HelpdeskParams
from urgency.helpdesks import (
    DUPLICATE_TAG,
    HELPDESKS,
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
from urgency.store import TICKET_STATUSES

MAPPING = HelpdeskParams(
    priorities={"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"},
    teams={"billing": "Billing", "desk": "8447320466430"},
    categories={"Incident": "Outage"},
    fields={"plan": "organization.plan", "vip": "customer.vip", "contract": "customfield_10050"},
)


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


@pytest.mark.parametrize("helpdesk", HELPDESKS)
def test_a_signed_delivery_passes_and_a_changed_body_does_not(helpdesk: str) -> None:
    body, headers = signed(helpdesk, {"any": "payload"})
    verify(helpdesk, lower(headers), body, SECRETS[helpdesk])
    with pytest.raises(SignatureError):
        verify(helpdesk, lower(headers), body, "another-secret")
    if helpdesk != "freshdesk":  # Freshdesk signs nothing: its shared secret does not cover the body
        with pytest.raises(SignatureError, match="does not match"):
            verify(helpdesk, lower(headers), body.replace(b"payload", b"Payload"), SECRETS[helpdesk])
    with pytest.raises(SignatureError, match="missing"):
        verify(helpdesk, {}, body, SECRETS[helpdesk])


def test_zendesk_refuses_a_replayed_delivery() -> None:
    body = b'{"type": "zen:event-type:ticket.created"}'
    old = datetime.now(UTC) - timedelta(minutes=6)
    with pytest.raises(SignatureError, match="more than 5 minutes"):
        verify("zendesk", lower(zendesk_headers(body, at=old)), body, SECRETS["zendesk"])
    verify(
        "zendesk",
        lower(zendesk_headers(body, at=old)),
        body,
        SECRETS["zendesk"],
        now=old + timedelta(minutes=4),
    )


def test_jira_and_freshdesk_take_their_other_documented_auth() -> None:
    verify("jira", {"authorization": f"Bearer {SECRETS['jira']}"}, b"{}", SECRETS["jira"])
    basic = base64.b64encode(f"urgency:{SECRETS['freshdesk']}".encode()).decode()
    verify("freshdesk", {"authorization": f"Basic {basic}"}, b"{}", SECRETS["freshdesk"])
    with pytest.raises(SignatureError):
        verify("jira", {"authorization": "Bearer wrong"}, b"{}", SECRETS["jira"])


@pytest.mark.parametrize("helpdesk", HELPDESKS)
def test_each_helpdesks_created_ticket_reads_alike(helpdesk: str) -> None:
    payload = {
        "zendesk": zendesk_event,
        "freshdesk": freshdesk_webhook,
        "zammad": zammad_webhook,
        "jira": jira_webhook,
    }[helpdesk]()
    body, headers = signed(helpdesk, payload)
    event = read_event(helpdesk, json.loads(body), lower(headers), body, MAPPING)
    assert event.kind == "created" and event.helpdesk == helpdesk
    assert OUTAGE in event.body  # HTML kept as sent: the models clean it
    assert event.subject == "Payments down"
    assert event.created_at == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert event.delivery_id  # the helpdesk's delivery id, or the body's digest (Freshdesk)


def test_each_helpdesks_own_values_are_read() -> None:
    fresh = read_event("freshdesk", freshdesk_webhook(ticket_priority=4, ticket_status=4), {}, b"{}", MAPPING)
    assert (fresh.priority, fresh.status, fresh.kind, fresh.tags) == (
        "urgent",
        "resolved",
        "solved",
        ("checkout", "payments"),
    )
    zammad = zammad_webhook(article_count=3, updated_at="2026-03-02T10:00:00Z", priority={"name": "3 high"})
    event = read_event("zammad", zammad, {"x-zammad-delivery": "d-1"}, b"{}", MAPPING)
    assert (event.kind, event.priority, event.group, event.actor) == (
        "updated",
        "3 high",
        "Users",
        "ops@acme.example",
    )
    jira = read_event(
        "jira", jira_webhook(status={"name": "Done", "statusCategory": {"key": "done"}}), {}, b"{}", MAPPING
    )
    assert (jira.kind, jira.ticket_id, jira.priority, jira.category) == (
        "solved",
        "SUP-12",
        "medium",
        "Incident",
    )
    zendesk = read_event(
        "zendesk", zendesk_event(event="ticket.priority_changed", priority="URGENT"), {}, b"{}", MAPPING
    )
    assert (zendesk.kind, zendesk.priority, zendesk.group) == ("updated", "urgent", "8447320466430")


def test_a_zendesk_trigger_payload_needs_its_invocation_id() -> None:
    trigger = {
        "ticket": {"id": "5", "subject": "s", "description": "d", "priority": "high"},
        "event": "created",
    }
    event = read_event("zendesk", trigger, {"x-zendesk-webhook-invocation-id": "inv-1"}, b"{}", MAPPING)
    assert (event.ticket_id, event.delivery_id, event.priority) == ("5", "inv-1", "high")
    with pytest.raises(PayloadError) as missing:
        read_event("zendesk", trigger, {}, b"{}", MAPPING)
    assert missing.value.loc == ["header", "X-Zendesk-Webhook-Invocation-Id"]


@pytest.mark.parametrize(
    ("helpdesk", "payload", "loc"),
    [
        (
            "zendesk",
            {"type": "zen:event-type:ticket.created", "id": "e", "detail": {"id": "1"}},
            ["body", "detail", "description"],
        ),
        ("zendesk", {"ticket": "not an object"}, ["body", "ticket"]),
        (
            "freshdesk",
            {"freshdesk_webhook": {"ticket_description": "x"}},
            ["body", "freshdesk_webhook", "ticket_id"],
        ),
        ("freshdesk", [], ["body"]),
        ("zammad", {"ticket": {"id": 1}}, ["body", "article"]),
        ("jira", {"webhookEvent": "jira:issue_created", "issue": {"fields": {}}}, ["body", "issue", "key"]),
        ("jira", {"webhookEvent": "comment_created"}, ["body", "webhookEvent"]),
    ],
)
def test_a_malformed_payload_names_the_field(helpdesk: str, payload: object, loc: list[str]) -> None:
    with pytest.raises(PayloadError) as error:
        read_event(helpdesk, payload, {"x-zammad-delivery": "d"}, b"{}", MAPPING)
    assert error.value.loc == loc


def test_rule_fields_follow_the_mapping_paths() -> None:
    zammad = read_event("zammad", zammad_webhook(), {"x-zammad-delivery": "d"}, b"{}", MAPPING)
    assert rule_fields(zammad, MAPPING) == {"plan": "enterprise", "vip": True}
    jira = read_event("jira", jira_webhook(), {}, b"{}", MAPPING)
    assert rule_fields(jira, MAPPING) == {"contract": "enterprise"}  # {"value": ...} custom field


def test_agents_values_map_back_onto_ours() -> None:
    update = read_event(
        "freshdesk", freshdesk_webhook(ticket_priority=3, event="ticket_updated"), {}, b"{}", MAPPING
    )
    assert decided(update, MAPPING) == {"priority": "P2", "team": "billing", "category": "Outage"}
    unknown = read_event(
        "freshdesk",
        freshdesk_webhook(ticket_priority=9, ticket_group_name="?", ticket_type="?"),
        {},
        b"{}",
        MAPPING,
    )
    assert decided(unknown, MAPPING) == {}


def test_a_decision_in_the_helpdesks_terms() -> None:
    common = {
        "priority_title": "Critical",
        "first_response_due": "2026-03-02T09:15:00+00:00",
        "resolution_due": None,
        "explanation": "text: service down (0.99)",
    }
    values = helpdesk_values(
        priority="P1", team="billing", needs_human_triage=False, mapping=MAPPING, **common
    )
    assert values["priority"] == "urgent" and values["group"] == "Billing"
    assert values["tags"] == ["urgency-p1", "urgency-team-billing"]
    assert (
        "first response by 2026-03-02T09:15:00+00:00" in values["note"]
        and "service down (0.99)" in values["note"]
    )
    unsure = helpdesk_values(
        priority="P3",
        team="billing",
        needs_human_triage=True,
        mapping=MAPPING.model_copy(update={"triage_group": "Triage"}),
        **common,
    )
    assert unsure["group"] == "Triage" and "urgency-triage" in unsure["tags"]


def test_several_of_ours_on_one_of_theirs_read_back_as_the_first() -> None:
    zammad = HelpdeskParams(priorities={"P1": "3 high", "P2": "3 high", "P3": "2 normal"})
    event = read_event(
        "zammad", zammad_webhook(priority={"name": "3 high"}), {"x-zammad-delivery": "d"}, b"{}", zammad
    )
    assert decided(event, zammad) == {"priority": "P1"}


def test_response_and_resolution_times_are_read_where_sent() -> None:
    closed = zammad_webhook(
        state={"name": "closed"}, first_response_at="2026-03-02T09:20:00Z", close_at="2026-03-02T15:00:00Z"
    )
    event = read_event("zammad", closed, {"x-zammad-delivery": "d"}, b"{}", MAPPING)
    assert event.kind == "solved"
    assert (event.first_response_at, event.resolved_at) == (
        datetime(2026, 3, 2, 9, 20, tzinfo=UTC),
        datetime(2026, 3, 2, 15, 0, tzinfo=UTC),
    )
    jira = read_event("jira", jira_webhook(resolutiondate="2026-03-03T10:00:00.000+0100"), {}, b"{}", MAPPING)
    assert jira.resolved_at == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def test_a_jira_description_is_read_as_text_however_it_nests() -> None:
    adf = {
        "type": "doc",
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "printer on fire"}]}],
    }
    deep: dict[str, object] = {"type": "text", "text": "lost"}
    for _ in range(1000):
        deep = {"type": "paragraph", "content": [deep]}
    for description, expected in (
        (adf, "printer on fire"),
        ("plain text", "plain text"),
        ({"content": "x"}, ""),
    ):
        event = read_event("jira", jira_webhook(description=description), {}, b"{}", MAPPING)
        assert event.body == expected
    assert read_event("jira", jira_webhook(description=deep), {}, b"{}", MAPPING).body == ""


def test_our_own_echo_is_told_from_an_agents_decision() -> None:
    bot = MAPPING.model_copy(update={"bot_user": "urgency-bot"})
    written = {"priority": "high", "group": "Billing", "tags": ["urgency-p2", "urgency-team-billing"]}
    tags = "urgency-p2, urgency-team-billing"
    anonymous = read_event(
        "freshdesk",
        freshdesk_webhook(ticket_priority=3, event="ticket_updated", ticket_tags=tags),
        {},
        b"{}",
        bot,
    )
    assert is_our_write(anonymous, written, bot)  # no author in the payload: by the values
    named = read_event(
        "zammad",
        zammad_webhook(
            priority={"name": "high"},
            group={"name": "Billing"},
            article_count=2,
            updated_at="2026-03-02T11:00:00Z",
        ),
        {"x-zammad-delivery": "d"},
        b"{}",
        bot,
    )
    assert not is_our_write(named, {**written, "tags": []}, bot)  # a named agent kept our values
    solved = read_event(
        "freshdesk", freshdesk_webhook(ticket_priority=3, ticket_status=4, ticket_tags=tags), {}, b"{}", bot
    )
    assert not is_our_write(solved, written, bot)  # we never solve a ticket
    by_bot = read_event(
        "zammad",
        zammad_webhook(
            updated_by={"login": "urgency-bot"}, article_count=2, updated_at="2026-03-02T11:00:00Z"
        ),
        {"x-zammad-delivery": "d"},
        b"{}",
        bot,
    )
    assert is_our_write(by_bot, None, bot)


@pytest.mark.parametrize(
    ("sent", "read"),
    [(4, "urgent"), ("2", "medium"), ("Urgent", "urgent"), ("²", "²"), ("9" * 5000, "9" * 5000)],
)
def test_freshdesk_codes_and_names(sent: object, read: str) -> None:
    assert (
        read_event("freshdesk", freshdesk_webhook(ticket_priority=sent), {}, b"{}", MAPPING).priority == read
    )


def test_each_helpdesks_assignee_is_read() -> None:
    zendesk = read_event("zendesk", zendesk_event(assignee_id=9001), {}, b"{}", MAPPING)
    fresh = read_event(
        "freshdesk", freshdesk_webhook(ticket_agent_email="maria@example.com"), {}, b"{}", MAPPING
    )
    owned = zammad_webhook(owner_id=3)
    zammad = read_event("zammad", owned, {"x-zammad-delivery": "d-1"}, b"{}", MAPPING)
    nobody = read_event("zammad", zammad_webhook(owner_id=1), {"x-zammad-delivery": "d-2"}, b"{}", MAPPING)
    jira = read_event("jira", jira_webhook(assignee={"accountId": "5b10a2"}), {}, b"{}", MAPPING)
    unassigned = read_event("jira", jira_webhook(assignee=None), {}, b"{}", MAPPING)
    assert (zendesk.assignee, fresh.assignee, zammad.assignee, nobody.assignee) == (
        "9001",
        "maria@example.com",
        "3",
        None,  # Zammad's user 1 is "nobody"
    )
    assert (jira.assignee, unassigned.assignee) == ("5b10a2", None)


def test_the_note_says_who_was_assigned_and_why() -> None:
    values = helpdesk_values(
        priority="P1",
        priority_title="Critical",
        team="desk",
        needs_human_triage=False,
        first_response_due=None,
        resolution_due=None,
        explanation="x",
        mapping=MAPPING,
        assignee="9001",
        assignment="least-loaded: ana (load 0: 0 open)",
    )
    assert values["assignee"] == "9001"
    assert values["note"].endswith("assigned: least-loaded: ana (load 0: 0 open)")
    unassigned = helpdesk_values(
        priority="P1",
        priority_title="Critical",
        team="desk",
        needs_human_triage=False,
        first_response_due=None,
        resolution_due=None,
        explanation="x",
        mapping=MAPPING,
    )
    assert "assignee" not in unassigned and "assigned:" not in unassigned["note"]


def test_a_probable_duplicate_is_tagged_and_linked_in_the_note_with_the_similar_tickets() -> None:
    common: dict[str, Any] = dict(
        priority="P3",
        priority_title="Normal",
        team="desk",
        needs_human_triage=False,
        first_response_due=None,
        resolution_due=None,
        explanation="x",
        mapping=MAPPING,
    )
    values = helpdesk_values(
        **common,
        duplicate_of={"ticket_id": "T-12", "explanation": "duplicate of T-12 (0.93, same requester, open)"},
        similar_tickets=[
            {"ticket_id": "T-12", "similarity": 0.93, "category": "Access", "priority": "P2"}
            | {"status": "open"},
            {"ticket_id": "T-3", "similarity": 0.81, "category": None, "priority": None, "status": None},
        ],
    )
    assert DUPLICATE_TAG in values["tags"]
    lines = values["note"].splitlines()
    assert "probable duplicate of T-12 (0.93, same requester, open)" in lines
    assert "similar: T-12 (0.93, Access, P2, open)" in lines and "similar: T-3 (0.81)" in lines
    plain = helpdesk_values(**common)
    assert DUPLICATE_TAG not in plain["tags"] and "similar:" not in plain["note"]


# ---------------------------------------------------------------------------------------------
# The backlog part: each helpdesk's status as our ticket state, what the customer is told


@pytest.mark.parametrize(
    ("helpdesk", "payload", "expected"),
    [
        ("zendesk", zendesk_event(event="ticket.status_changed", status="HOLD"), "on_hold"),
        ("zendesk", zendesk_event(event="ticket.status_changed", status="pending"), "pending"),
        ("zendesk", zendesk_event(event="ticket.status_changed", status="solved"), "solved"),
        ("freshdesk", freshdesk_webhook(ticket_status=3, event="ticket_updated"), "pending"),
        ("freshdesk", freshdesk_webhook(ticket_status=5, event="ticket_updated"), "closed"),
        (
            "freshdesk",
            freshdesk_webhook(ticket_status="Waiting on Customer", event="ticket_updated"),
            "pending",
        ),
        ("freshdesk", freshdesk_webhook(ticket_status=7, event="ticket_updated"), "open"),  # a custom one
        ("zammad", zammad_webhook(state={"name": "pending reminder"}, article_count=2), "pending"),
        ("zammad", zammad_webhook(state={"name": "merged"}, article_count=2), "closed"),
        (
            "jira",
            jira_webhook(
                event="jira:issue_updated",
                status={"name": "Waiting for customer", "statusCategory": {"key": "indeterminate"}},
            ),
            "pending",
        ),
        (
            "jira",
            jira_webhook(
                event="jira:issue_updated", status={"name": "Triaging", "statusCategory": {"key": "new"}}
            ),
            "open",
        ),
        (
            "jira",
            jira_webhook(
                event="jira:issue_updated", status={"name": "Shipped", "statusCategory": {"key": "done"}}
            ),
            "solved",
        ),
    ],
)
def test_a_helpdesk_status_becomes_our_ticket_state(helpdesk: str, payload: dict, expected: str) -> None:
    body, headers = signed(helpdesk, payload)
    lower = {name.lower(): value for name, value in headers.items()}
    event = read_event(helpdesk, json.loads(body), lower, body, MAPPING)
    assert ticket_status(event) == expected
    assert expected in TICKET_STATUSES


def test_the_expected_first_response_goes_into_the_note_and_the_configured_field() -> None:
    common = {
        "priority": "P1",
        "priority_title": "Critical",
        "team": "billing",
        "needs_human_triage": False,
        "first_response_due": "2026-03-02T09:15:00+00:00",
        "resolution_due": None,
        "explanation": "text: service down (0.99)",
        "expected_first_response": "We expect to reply within about 2 hours (by 11:00 UTC on 2 March 2026).",
        "expected_first_response_at": "2026-03-02T11:00:00Z",
    }
    plain = helpdesk_values(mapping=MAPPING, **common)
    assert plain["fields"] == {} and "customer told: We expect to reply" in plain["note"]
    assert plain["expected_first_response_at"] == "2026-03-02T11:00:00Z"
    field = helpdesk_values(mapping=MAPPING.model_copy(update={"expected_reply_field": "360001"}), **common)
    assert field["fields"] == {"360001": common["expected_first_response"]}
    silent = helpdesk_values(mapping=MAPPING, **{**common, "expected_first_response": None})
    assert "customer told" not in silent["note"] and silent["fields"] == {}


def test_zendesk_agent_availability_events_are_read() -> None:
    away = read_availability("zendesk", zendesk_agent_state("9001", "away"))
    assert away is not None and (away.user_id, away.available, away.state) == ("9001", False, "away")
    assert away.at == datetime(2026, 12, 1, 9, 30, 58, tzinfo=UTC)
    online = read_availability("zendesk", zendesk_agent_state("9001", "online"))
    assert online is not None and online.available
    # Another channel's status, a ticket event, another helpdesk: not an availability event.
    assert read_availability("zendesk", zendesk_agent_state(channel="messaging")) is None
    assert read_availability("zendesk", zendesk_event()) is None
    assert read_availability("freshdesk", zendesk_agent_state()) is None
    broken = zendesk_agent_state()
    del broken["detail"]["agent_id"]
    with pytest.raises(PayloadError) as error:
        read_availability("zendesk", broken)
    assert error.value.loc == ["body", "detail", "agent_id"]
