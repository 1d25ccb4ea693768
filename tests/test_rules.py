from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PROJECT
from tests.rules_helpers import CATEGORIES, make_rules, rules_dict
from urgency.config import load_params
from urgency.errors import ParamsError
from urgency.rules import covers, load_rules, overlap, parse_duration, parse_rules


def _pin(name: str, when: dict[str, Any], level: str, order: int | None = None) -> dict[str, Any]:
    rule = {"name": name, "when": when, "pin": level}
    return rule | ({"order": order} if order is not None else {})


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
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


def _add(section: str, *rules: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        for part in section.split("."):
            node = node[part]
        node.extend(rules)

    return change


# Every load-time error: (change to a valid rules mapping, words the message must contain).
ERRORS = [
    pytest.param(_set("colour", "red"), ["colour: unknown key"], id="unknown-top-level-key"),
    pytest.param(
        _add("priority_rules", {"name": "vip-up", "when": {"vip": True}, "rase_by": 1}),
        ["priority_rules.0 (vip-up).rase_by: unknown key"],
        id="unknown-key-in-rule-names-the-rule",
    ),
    pytest.param(
        _add("priority_rules", {"name": "both", "raise_by": 1, "at_most": "P2"}),
        ["'both'", "exactly one of"],
        id="two-actions",
    ),
    pytest.param(
        _add("priority_rules", {"name": "gold", "when": {"tier": "gold"}, "raise_by": 1}),
        ["priority rule 'gold'", "unknown field 'tier'"],
        id="unknown-field",
    ),
    pytest.param(
        _add("priority_rules", {"name": "op", "when": {"users": {"above": 3}}, "raise_by": 1}),
        ["priority rule 'op'", "unknown operator", "above"],
        id="unknown-operator",
    ),
    pytest.param(
        _add("priority_rules", {"name": "num", "when": {"users": {"gte": "many"}}, "raise_by": 1}),
        ["priority rule 'num'", "not a number"],
        id="bound-not-a-number",
    ),
    pytest.param(
        _add("priority_rules", {"name": "gte-text", "when": {"region": {"gte": 3}}, "raise_by": 1}),
        ["priority rule 'gte-text'", "gte needs a number field"],
        id="bound-on-text",
    ),
    pytest.param(
        _add("priority_rules", {"name": "plat", "when": {"plan": "platinum"}, "raise_by": 1}),
        ["priority rule 'plat'", "'platinum' is not a defined plan", "free, standard, premium, enterprise"],
        id="undefined-plan",
    ),
    pytest.param(
        _add("priority_rules", {"name": "cat", "when": {"category": "Hardwear"}, "raise_by": 1}),
        ["priority rule 'cat'", "'Hardwear'"],
        id="undefined-category",
    ),
    pytest.param(
        _add("priority_rules", {"name": "p5", "when": {"vip": True}, "at_least": "P5"}),
        ["priority rule 'p5'", "'P5' is not a defined level", "P1, P2, P3, P4"],
        id="undefined-level-in-rule",
    ),
    pytest.param(
        _add("priority_rules", {"name": "circular", "when": {"priority": "P1"}, "raise_by": 1}),
        ["priority rule 'circular'", "priority is not known yet"],
        id="priority-in-priority-rule",
    ),
    pytest.param(
        _add("impact.rules", {"name": "loop", "when": {"impact": "high"}, "impact": "high"}),
        ["impact rule 'loop'", "impact is not known yet"],
        id="impact-in-impact-rule",
    ),
    pytest.param(
        _add("impact.rules", {"name": "huge", "when": {"users": {"gte": 9}}, "impact": "huge"}),
        ["impact rule 'huge'", "'huge' is not a defined impact level"],
        id="undefined-impact-level",
    ),
    pytest.param(
        _set("matrix.high.low", "P9"), ["matrix.high.low", "'P9' is not a defined level"], id="matrix-level"
    ),
    pytest.param(_set("matrix.urgent", {}), ["matrix: needs one row per urgency"], id="matrix-rows"),
    pytest.param(
        _set("matrix.low", {"high": "P3", "medium": "P4"}),
        ["matrix.low: needs one entry per impact"],
        id="matrix-cells",
    ),
    pytest.param(
        _add("routing.rules", {"name": "net", "when": {"category": "Access"}, "team": "network"}),
        ["routing rule 'net'", "'network' is not a defined team"],
        id="undefined-team",
    ),
    pytest.param(
        _add("routing.rules", {"name": "fr", "when": {"language": "fr"}, "skills": ["fr"]}),
        ["routing rule 'fr'", "no team has skill(s) fr"],
        id="unknown-skill",
    ),
    pytest.param(
        _add(
            "routing.rules",
            {"name": "hw", "when": {"category": "Hardware"}, "team": "desk", "skills": ["hardware"]},
        ),
        ["routing rule 'hw'", "team desk lacks skill(s) ['hardware']"],
        id="team-lacks-skill",
    ),
    pytest.param(
        _add(
            "routing.rules",
            {"name": "combo", "when": {"category": "Hardware"}, "skills": ["hardware", "triage"]},
        ),
        ["routing rule 'combo'", "no single team has all of hardware, triage"],
        id="no-team-with-all-skills",
    ),
    pytest.param(
        _set("routing.default_team", "nobody"), ["routing.default_team", "'nobody'"], id="default-team"
    ),
    pytest.param(
        _set("calendars.berlin.timezone", "Mars/Olympus"), ["calendars.berlin", "Mars/Olympus"], id="zone"
    ),
    pytest.param(
        _set("calendars.berlin.hours", {"mon-fri": "18:00-08:00"}), ["calendars.berlin.hours"], id="hours"
    ),
    pytest.param(_set("calendars.berlin.hours", {"weekdays": "08:00-18:00"}), ["'weekdays'"], id="day-name"),
    pytest.param(_set("calendars.berlin.hours", {}), ["calendars.berlin: no working hours"], id="no-hours"),
    pytest.param(
        _set("calendars.berlin.holidays", ["25.12."]), ["calendars.berlin.holidays", "25.12."], id="holiday"
    ),
    pytest.param(
        _set("calendar_selection.default", "paris"), ["calendar_selection.default", "'paris'"], id="calendar"
    ),
    pytest.param(
        _set("sla.policies.0.targets.P9", {"first_response": "1h"}),
        ["sla policy 'basic'", "undefined level(s) P9"],
        id="sla-undefined-level",
    ),
    pytest.param(
        _set("sla.policies.0.targets", {"P1": {"first_response": "1h"}}),
        ["sla policy 'basic'", "no target for level(s) P2, P3, P4"],
        id="sla-missing-level",
    ),
    pytest.param(
        _set("sla.policies.0.targets.P1", {"first_response": 60}), ["not a duration"], id="duration"
    ),
    pytest.param(
        _set("sla.default_policy", "gold"),
        ["sla.default_policy", "'gold' is not a defined SLA policy"],
        id="sla",
    ),
    pytest.param(
        _add("priority_rules", {"name": "basic", "when": {"vip": True}, "raise_by": 1}),
        ["rule names must be unique", "basic"],
        id="repeated-rule-name",
    ),
    pytest.param(
        _set("fields.urgency", "urgency_column"), ["fields.urgency", "built-in"], id="builtin-field-name"
    ),
    pytest.param(
        _add(
            "priority_rules",
            _pin("security", {"request_type": "security"}, "P1"),
            _pin("purchases", {"category": "Purchase"}, "P4"),
        ),
        ["'security' and priority rule 'purchases' can match the same ticket", "P1 vs P4", "order"],
        id="overlapping-pins-without-order",
    ),
    pytest.param(
        _add(
            "priority_rules",
            {"name": "vip-floor", "when": {"vip": True}, "at_least": "P2"},
            {"name": "free-cap", "when": {"plan": "free"}, "at_most": "P3"},
        ),
        ["'vip-floor' (at least P2)", "'free-cap' (at most P3)", "contradict"],
        id="floor-above-cap-without-order",
    ),
    pytest.param(
        _add(
            "routing.rules",
            {"name": "hardware", "when": {"category": "Hardware"}, "team": "hardware-en"},
            {"name": "german", "when": {"language": "de"}, "team": "hardware-de"},
        ),
        ["routing rule 'hardware' and routing rule 'german'", "set the team differently"],
        id="overlapping-routes-without-order",
    ),
    pytest.param(
        _add(
            "sla.policies",
            {"name": "vips", "when": {"vip": True}, "targets": {"P1": {}, "P2": {}, "P3": {}, "P4": {}}},
        ),
        ["sla rule 'basic' and sla rule 'vips'", "(basic vs vips)"],  # basic has no `when`: it matches all
        id="catch-all-policy-and-a-conditional-one",
    ),
    pytest.param(
        _add(
            "sla.policies",
            {"name": "vips", "when": {"vip": True}, "targets": {"P1": {}, "P2": {}, "P3": {}, "P4": {}}},
            {
                "name": "enterprise",
                "when": {"plan": "enterprise"},
                "targets": {"P1": {}, "P2": {}, "P3": {}, "P4": {}},
            },
        ),
        ["sla rule 'vips' and sla rule 'enterprise'", "SLA policy"],
        id="overlapping-sla-policies-without-order",
    ),
]


@pytest.mark.parametrize(("change", "expected"), ERRORS)
def test_load_time_errors_name_the_rule(
    change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    data = rules_dict()
    change(data)
    with pytest.raises(ParamsError) as raised:
        parse_rules(data, category_labels=CATEGORIES, source="my-rules.yaml")
    message = str(raised.value)
    assert message.startswith("my-rules.yaml:")
    for words in expected:
        assert words in message, message


def test_all_problems_are_reported_at_once() -> None:
    data = rules_dict()
    _set("routing.default_team", "nobody")(data)
    _set("calendar_selection.default", "paris")(data)
    with pytest.raises(ParamsError) as raised:
        parse_rules(data)
    assert "2 problem(s)" in str(raised.value)


# Conflicts an explicit order resolves, and rules that do not conflict at all.
ACCEPTED = [
    pytest.param(
        [
            _pin("security", {"request_type": "security"}, "P1", order=1),
            _pin("purchases", {"category": "Purchase"}, "P4"),
        ],
        id="pins-one-ordered",
    ),
    pytest.param(
        [_pin("a", {"vip": True}, "P1"), _pin("b", {"vip": False}, "P4")],
        id="pins-disjoint-bool",
    ),
    pytest.param(
        [_pin("a", {"users": {"gte": 10}}, "P1"), _pin("b", {"users": {"lt": 10}}, "P4")],
        id="pins-disjoint-ranges",
    ),
    pytest.param(
        [
            _pin("a", {"plan": ["free", "standard"]}, "P4"),
            _pin("b", {"plan": {"not_in": ["free", "standard"]}}, "P1"),
        ],
        id="pins-disjoint-sets",
    ),
    pytest.param(
        [_pin("a", {"vip": True}, "P2"), _pin("b", {"plan": "free"}, "P2")],
        id="pins-agree",
    ),
    pytest.param(
        [
            {"name": "floor", "when": {"vip": True}, "at_least": "P2", "order": 1},
            {"name": "cap", "when": {"plan": "free"}, "at_most": "P3"},
        ],
        id="floor-cap-ordered",
    ),
    pytest.param(
        [
            {"name": "floor", "when": {"vip": True}, "at_least": "P3"},
            {"name": "cap", "when": {"plan": "free"}, "at_most": "P3"},
        ],
        id="floor-equals-cap",
    ),
]


@pytest.mark.parametrize("rules", ACCEPTED)
def test_rules_that_do_not_conflict_load(rules: list[dict[str, Any]]) -> None:
    loaded = make_rules(priority_rules=rules)
    assert loaded.warnings == ()


# Warnings: rules that load but can never fire, or that break the plan/VIP ordering.
WARNINGS = [
    pytest.param(
        {
            "routing_rules": [
                {"name": "all-hardware", "order": 1, "when": {"category": "Hardware"}, "team": "hardware-en"},
                {
                    "name": "german-hardware",
                    "order": 2,
                    "when": {"category": "Hardware", "language": "de"},
                    "team": "hardware-de",
                },
            ]
        },
        "routing rule 'german-hardware' is unreachable: routing rule 'all-hardware' comes first",
        id="shadowed-route",
    ),
    pytest.param(
        {"priority_rules": [{"name": "never", "when": {"users": {"gte": 10, "lt": 5}}, "raise_by": 1}]},
        "priority rule 'never' is unreachable: its `when` admits no ticket",
        id="empty-range",
    ),
    pytest.param(
        {
            "priority_rules": [
                {"name": "never2", "when": {"plan": {"in": ["free"], "not_in": ["free"]}}, "raise_by": 1}
            ]
        },
        "priority rule 'never2' is unreachable",
        id="empty-set",
    ),
    pytest.param(
        {"priority_rules": [{"name": "noop", "when": {"vip": True}, "at_least": "P4"}]},
        "priority rule 'noop' never changes a priority",
        id="floor-at-bottom",
    ),
    pytest.param(
        {"priority_rules": [{"name": "free-boost", "when": {"plan": "free"}, "raise_by": 1}]},
        "'free-boost' raises the priority for plan free but not for standard, premium, enterprise",
        id="raise-for-lower-plan-only",
    ),
    pytest.param(
        {"priority_rules": [{"name": "big-cap", "when": {"plan": "enterprise"}, "at_most": "P3"}]},
        "'big-cap' lowers the priority for plan enterprise but not for free, standard, premium",
        id="cap-for-higher-plan-only",
    ),
    pytest.param(
        {"priority_rules": [{"name": "vip-down", "when": {"vip": True}, "lower_by": 1}]},
        "'vip-down' could put a VIP below the same ticket without VIP",
        id="vip-lowered",
    ),
    pytest.param(
        {
            "calendar_rules": [
                {"name": "any", "order": 1, "when": {}, "calendar": "berlin"},
                {"name": "us", "order": 2, "when": {"region": "americas"}, "calendar": "new-york"},
            ]
        },
        "calendar rule 'us' is unreachable",
        id="catch-all-first",
    ),
]


@pytest.mark.parametrize(("sections", "warning"), WARNINGS)
def test_load_time_warnings_name_the_rule(sections: dict[str, Any], warning: str) -> None:
    loaded = make_rules(**sections)
    assert any(warning in text for text in loaded.warnings), loaded.warnings


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


@pytest.mark.parametrize(
    ("text", "minutes"), [("15m", 15), ("4h", 240), ("1h30m", 90), (" 2h 5m ", 125), ("120h", 7200)]
)
def test_durations(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize("text", ["", "90", "1d", "h", "1.5h", 90])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_the_shipped_rules_file_loads_cleanly_against_the_project_heads() -> None:
    params = load_params(PROJECT / "params.yaml")
    assert params.scoring.rules == PROJECT / "rules.yaml"
    rules = load_rules(params.scoring.rules, category_labels=params.heads.category.labels)
    assert rules.warnings == ()
    assert rules.levels == ("P1", "P2", "P3", "P4")
    assert all(level.definition.strip() for level in rules.spec.levels)
    assert set(rules.spec.plans) == {"free", "standard", "premium", "enterprise"}
    assert {calendar.timezone for calendar in rules.calendars.values() if not calendar.always_open} == {
        "Europe/Berlin",
        "America/New_York",
    }
    assert all(calendar.holidays or calendar.always_open for calendar in rules.calendars.values())


def test_without_removes_one_rule(tmp_path: Path) -> None:
    rules = load_rules(PROJECT / "rules.yaml")
    smaller = rules.without("vip-raise")
    assert "vip-raise" in rules.rule_names() and "vip-raise" not in smaller.rule_names()
    assert len(smaller.rule_names()) == len(rules.rule_names()) - 1
    # The default SLA policy cannot go: tickets without a plan still need one.
    assert "free" in rules.without("free").rule_names()


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="rules file not found"):
        load_rules(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("levels: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_rules(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_rules(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(rules_dict()))
    assert load_rules(good).source == str(good)
