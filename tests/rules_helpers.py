"""A small rules mapping for the rules and scoring tests: each test adds the rules it is about."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from urgency.decision import Decision, HeadOutput
from urgency.errors import ParamsError
from urgency.rules import RuleSet, parse_rules
from urgency.rules.engine import decide

CATEGORIES = ["Hardware", "Access", "Purchase"]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday

BASE: dict[str, Any] = {
    "fields": {
        "plan": "plan",
        "vip": {"column": "vip", "type": "bool"},
        "users": {"column": "users_affected", "type": "number"},
        "service_down": {"column": "service_down", "type": "bool"},
        "region": {"column": "region", "values": ["emea", "americas"]},
        "account_type": {"column": "account_type", "values": ["business", "internal", "partner"]},
        "customer_category": {"column": "customer_category", "values": ["new", "existing", "at_risk"]},
        "persona": {"column": "persona", "values": ["end_user", "executive"]},
        "request_type": {"column": "request_type"},
        "language": "language",
        "regulated": {"column": "custom_regulated", "type": "bool"},
    },
    "plans": ["free", "standard", "premium", "enterprise"],
    "levels": [
        {"name": "P1", "title": "Critical", "definition": "down for many"},
        {"name": "P2", "title": "High", "definition": "a team is blocked"},
        {"name": "P3", "title": "Medium", "definition": "one person, workaround"},
        {"name": "P4", "title": "Low", "definition": "questions"},
    ],
    "impact": {"levels": ["high", "medium", "low"], "default": "low", "rules": []},
    "matrix": {
        "high": {"high": "P1", "medium": "P2", "low": "P3"},
        "medium": {"high": "P2", "medium": "P3", "low": "P4"},
        "low": {"high": "P3", "medium": "P4", "low": "P4"},
    },
    "confidence": {"thresholds": {}, "rules_only_urgency": "medium"},
    "priority_rules": [],
    "teams": [
        {"name": "desk", "skills": ["general", "en"]},
        {"name": "hardware-en", "skills": ["hardware", "en"]},
        {"name": "hardware-de", "skills": ["hardware", "de", "en"]},
        {"name": "triage", "skills": ["triage"]},
    ],
    "routing": {"default_team": "desk", "rules": []},
    "calendars": {
        "berlin": {
            "timezone": "Europe/Berlin",
            "hours": {"mon-fri": "08:00-18:00"},
            "holidays": ["12-25", "2026-04-03"],
        },
        "new-york": {"timezone": "America/New_York", "hours": {"mon-fri": "09:00-17:00"}},
        "always": {"always_open": True},
    },
    "calendar_selection": {"default": "always", "rules": []},
    "sla": {
        "default_policy": "basic",
        "policies": [
            {
                "name": "basic",
                "targets": {
                    level: {"first_response": "1h", "resolution": "8h"} for level in ["P1", "P2", "P3", "P4"]
                },
            }
        ],
    },
}


def rules_dict(**sections: Any) -> dict[str, Any]:
    """BASE with sections replaced; `impact_rules=`, `routing_rules=`, `calendar_rules=` and
    `sla_policies=` fill the nested lists."""
    data = copy.deepcopy(BASE)
    nested = {
        "impact_rules": ("impact", "rules"),
        "routing_rules": ("routing", "rules"),
        "calendar_rules": ("calendar_selection", "rules"),
        "sla_policies": ("sla", "policies"),
    }
    for key, value in sections.items():
        if key in nested:
            outer, inner = nested[key]
            data[outer][inner] = value
        else:
            data[key] = value
    return data


def make_rules(**sections: Any) -> RuleSet:
    return parse_rules(rules_dict(**sections), category_labels=CATEGORIES, source="test-rules")


def outputs(
    urgency: str | None = "medium",
    category: str | None = "Hardware",
    sentiment: str | None = "neutral",
    confidence: float = 0.9,
    confidences: dict[str, float] | None = None,
) -> dict[str, HeadOutput]:
    """Model outputs with `confidence` for every head, except those in `confidences`."""
    labels = {"urgency": urgency, "category": category, "sentiment": sentiment}
    return {
        head: HeadOutput(label, None if label is None else (confidences or {}).get(head, confidence))
        for head, label in labels.items()
    }


def run(
    rules: RuleSet, model: dict[str, HeadOutput] | None = None, now: datetime = NOW, **ticket: Any
) -> Decision:
    ticket.setdefault("created_at", "2026-03-02T09:00:00Z")
    return decide(model if model is not None else outputs(), ticket, rules, now)


def rule(name: str, when: dict[str, Any], **action: Any) -> dict[str, Any]:
    return {"name": name, "when": when, **action}


def pin_rule(name: str, when: dict[str, Any], level: str, order: int | None = None) -> dict[str, Any]:
    pinned = {"name": name, "when": when, "pin": level}
    return pinned | ({"order": order} if order is not None else {})


# Changes to a valid rules mapping, for tests of what loading says about a broken one.


def set_at(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


def add_rules(section: str, *rules: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        for part in section.split("."):
            node = node[part]
        node.extend(rules)

    return change


def load_error(change: Callable[[dict[str, Any]], None]) -> str:
    """The message `parse_rules` raises for BASE with `change` applied (source `my-rules.yaml`)."""
    data = rules_dict()
    change(data)
    with pytest.raises(ParamsError) as raised:
        parse_rules(data, category_labels=CATEGORIES, source="my-rules.yaml")
    return str(raised.value)


def assert_load_error(change: Callable[[dict[str, Any]], None], expected: list[str]) -> None:
    """Loading BASE with `change` fails with a message that names the file and says `expected`."""
    message = load_error(change)
    assert message.startswith("my-rules.yaml:")
    for words in expected:
        assert words in message, message


# SLA policies per plan x priority, business hours, calendars, deadlines.
SLA = {
    "sla_policies": [
        {
            "name": "enterprise",
            "when": {"plan": "enterprise"},
            "targets": {
                "P1": {"first_response": "15m", "resolution": "4h", "calendar": "always"},
                "P2": {"first_response": "1h", "resolution": "8h"},
                "P3": {"first_response": "2h", "resolution": "16h"},
                "P4": {"first_response": "4h"},
            },
        },
        {
            "name": "basic",
            "calendar": "berlin",
            "when": {"plan": {"not_in": ["enterprise"]}},
            "targets": {level: {"first_response": "8h"} for level in ["P1", "P2", "P3", "P4"]},
        },
    ],
    "calendar_selection": {
        "default": "berlin",
        "rules": [rule("us", {"region": "americas"}, calendar="new-york")],
    },
    "impact_rules": [rule("down", {"service_down": True}, impact="high")],
}
