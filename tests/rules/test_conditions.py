"""Conditions (`urgency.rules.conditions`): compiling a rule's `when`; overlap and cover."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.rules_helpers import add_rules, assert_load_error, make_rules
from urgency.rules import covers, overlap

# `when` errors: (change to a valid rules mapping, words the message must contain).
ERRORS = [
    pytest.param(
        add_rules("priority_rules", {"name": "gold", "when": {"tier": "gold"}, "raise_by": 1}),
        ["priority rule 'gold'", "unknown field 'tier'"],
        id="unknown-field",
    ),
    pytest.param(
        add_rules("priority_rules", {"name": "op", "when": {"users": {"above": 3}}, "raise_by": 1}),
        ["priority rule 'op'", "unknown operator", "above"],
        id="unknown-operator",
    ),
    pytest.param(
        add_rules("priority_rules", {"name": "num", "when": {"users": {"gte": "many"}}, "raise_by": 1}),
        ["priority rule 'num'", "not a number"],
        id="bound-not-a-number",
    ),
    pytest.param(
        add_rules("priority_rules", {"name": "gte-text", "when": {"region": {"gte": 3}}, "raise_by": 1}),
        ["priority rule 'gte-text'", "gte needs a number field"],
        id="bound-on-text",
    ),
    pytest.param(
        add_rules("priority_rules", {"name": "circular", "when": {"priority": "P1"}, "raise_by": 1}),
        ["priority rule 'circular'", "priority is not known yet"],
        id="priority-in-priority-rule",
    ),
    pytest.param(
        add_rules("impact.rules", {"name": "loop", "when": {"impact": "high"}, "impact": "high"}),
        ["impact rule 'loop'", "impact is not known yet"],
        id="impact-in-impact-rule",
    ),
]


@pytest.mark.parametrize(("change", "expected"), ERRORS)
def test_load_time_errors_name_the_rule(
    change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    assert_load_error(change, expected)


CONDITIONS = [
    # (when A, when B, overlap, A covers B)
    ({"users": {"gte": 10}}, {"users": {"gte": 20}}, True, True),
    ({"users": {"gte": 10}}, {"users": {"lt": 10}}, False, False),
    ({"users": {"gt": 10}}, {"users": {"lte": 10}}, False, False),
    ({"users": {"gte": 10}}, {"users": {"lte": 10}}, True, False),
    ({"users": {"gte": 10}}, {}, True, False),
    ({}, {"users": {"gte": 10}}, True, True),
    ({"plan": ["free", "standard"]}, {"plan": "free"}, True, True),
    ({"plan": {"not_in": ["free"]}}, {"plan": "premium"}, True, True),
    ({"plan": {"not_in": ["free"]}}, {"plan": "free"}, False, False),
    ({"language": "de"}, {"language": "en"}, False, False),
    ({"language": {"not_in": ["de"]}}, {"language": {"not_in": ["en"]}}, True, False),
    ({"language": {"present": False}}, {"language": "de"}, False, False),
    ({"vip": True, "plan": "free"}, {"vip": True}, True, False),
    ({"vip": True}, {"vip": True, "plan": "free"}, True, True),
]


@pytest.mark.parametrize(("a", "b", "overlapping", "covering"), CONDITIONS)
def test_overlap_and_cover(a: dict[str, Any], b: dict[str, Any], overlapping: bool, covering: bool) -> None:
    loaded = make_rules(
        priority_rules=[
            {"name": "a", "when": a, "raise_by": 1},
            {"name": "b", "when": b, "raise_by": 1},
        ]
    )
    rule_a, rule_b = loaded.shifts
    assert overlap(rule_a.condition, rule_b.condition, loaded.fields) is overlapping
    assert overlap(rule_b.condition, rule_a.condition, loaded.fields) is overlapping
    assert covers(rule_a.condition, rule_b.condition, loaded.fields) is covering
