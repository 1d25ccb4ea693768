"""The compiler (`urgency.rules.compiler`): how rules interact, and loading a rules file."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PROJECT
from tests.rules_helpers import add_rules, assert_load_error, make_rules, pin_rule, rules_dict
from urgency.config import load_params
from urgency.errors import ParamsError
from urgency.rules import load_rules

# Conflicts that need an explicit order: (change to a valid rules mapping, words the message must contain).
ERRORS = [
    pytest.param(
        add_rules(
            "priority_rules",
            pin_rule("security", {"request_type": "security"}, "P1"),
            pin_rule("purchases", {"category": "Purchase"}, "P4"),
        ),
        ["'security' and priority rule 'purchases' can match the same ticket", "P1 vs P4", "order"],
        id="overlapping-pins-without-order",
    ),
    pytest.param(
        add_rules(
            "priority_rules",
            {"name": "vip-floor", "when": {"vip": True}, "at_least": "P2"},
            {"name": "free-cap", "when": {"plan": "free"}, "at_most": "P3"},
        ),
        ["'vip-floor' (at least P2)", "'free-cap' (at most P3)", "contradict"],
        id="floor-above-cap-without-order",
    ),
    pytest.param(
        add_rules(
            "routing.rules",
            {"name": "hardware", "when": {"category": "Hardware"}, "team": "hardware-en"},
            {"name": "german", "when": {"language": "de"}, "team": "hardware-de"},
        ),
        ["routing rule 'hardware' and routing rule 'german'", "set the team differently"],
        id="overlapping-routes-without-order",
    ),
    pytest.param(
        add_rules(
            "sla.policies",
            {"name": "vips", "when": {"vip": True}, "targets": {"P1": {}, "P2": {}, "P3": {}, "P4": {}}},
        ),
        ["sla rule 'basic' and sla rule 'vips'", "(basic vs vips)"],  # basic has no `when`: it matches all
        id="catch-all-policy-and-a-conditional-one",
    ),
    pytest.param(
        add_rules(
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
    assert_load_error(change, expected)


# Conflicts an explicit order resolves, and rules that do not conflict at all.
ACCEPTED = [
    pytest.param(
        [
            pin_rule("security", {"request_type": "security"}, "P1", order=1),
            pin_rule("purchases", {"category": "Purchase"}, "P4"),
        ],
        id="pins-one-ordered",
    ),
    pytest.param(
        [pin_rule("a", {"vip": True}, "P1"), pin_rule("b", {"vip": False}, "P4")],
        id="pins-disjoint-bool",
    ),
    pytest.param(
        [pin_rule("a", {"users": {"gte": 10}}, "P1"), pin_rule("b", {"users": {"lt": 10}}, "P4")],
        id="pins-disjoint-ranges",
    ),
    pytest.param(
        [
            pin_rule("a", {"plan": ["free", "standard"]}, "P4"),
            pin_rule("b", {"plan": {"not_in": ["free", "standard"]}}, "P1"),
        ],
        id="pins-disjoint-sets",
    ),
    pytest.param(
        [pin_rule("a", {"vip": True}, "P2"), pin_rule("b", {"plan": "free"}, "P2")],
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


def _billion_laughs(indent: str, levels: int = 9) -> str:
    """Nested aliases: each level lists the previous one nine times (9**9 values in about 1 KB)."""
    lines = [f'{indent}- &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"{indent}- &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_nested_aliases_are_refused_fast(tmp_path: Path) -> None:
    """A 'billion laughs' under `gte:` once took 50 s and 3 GB (error messages format every copy)."""
    data = rules_dict()
    data.pop("priority_rules")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        yaml.safe_dump(data)
        + "priority_rules:\n- name: bomb\n  pin: P1\n  when:\n    users:\n      gte:\n"
        + _billion_laughs(" " * 8)
    )
    assert len(bomb.read_bytes()) < 5_000
    started = time.perf_counter()
    with pytest.raises(ParamsError, match=r"aliases \(\*name\) expand to more than") as raised:
        load_rules(bomb)
    assert time.perf_counter() - started < 2
    assert str(raised.value).startswith(str(bomb))


def test_a_few_aliases_still_load(tmp_path: Path) -> None:
    shared = {"first_response": "1h", "resolution": "8h"}
    data = rules_dict()
    data["sla"]["policies"][0]["targets"] = {level: shared for level in ["P1", "P2", "P3", "P4"]}
    aliased = tmp_path / "aliased.yaml"
    aliased.write_text(yaml.safe_dump(data))
    assert "*id001" in aliased.read_text()  # one mapping, named four times
    assert load_rules(aliased).source == str(aliased)


def test_a_long_padded_duration_is_refused_fast(tmp_path: Path) -> None:
    """2,500 spaces then 'x' once took 28 s in parse_duration (a cubic regular expression)."""
    data = rules_dict()
    data["sla"]["policies"][0]["targets"]["P1"]["first_response"] = " " * 2500 + "x"
    padded = tmp_path / "padded.yaml"
    padded.write_text(yaml.safe_dump(data))
    started = time.perf_counter()
    with pytest.raises(ParamsError, match="'x' is not a duration"):
        load_rules(padded)
    assert time.perf_counter() - started < 2
