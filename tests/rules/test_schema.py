"""The rules file's shape (`urgency.rules.schema`): unknown keys, one action per rule, durations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.rules_helpers import add_rules, assert_load_error, set_at
from urgency.rules import parse_duration

# Shape errors: (change to a valid rules mapping, words the message must contain).
ERRORS = [
    pytest.param(set_at("colour", "red"), ["colour: unknown key"], id="unknown-top-level-key"),
    pytest.param(
        add_rules("priority_rules", {"name": "vip-up", "when": {"vip": True}, "rase_by": 1}),
        ["priority_rules.0 (vip-up).rase_by: unknown key"],
        id="unknown-key-in-rule-names-the-rule",
    ),
    pytest.param(
        add_rules("priority_rules", {"name": "both", "raise_by": 1, "at_most": "P2"}),
        ["'both'", "exactly one of"],
        id="two-actions",
    ),
    pytest.param(
        set_at("sla.policies.0.targets.P1", {"first_response": 60}), ["not a duration"], id="duration"
    ),
]


@pytest.mark.parametrize(("change", "expected"), ERRORS)
def test_load_time_errors_name_the_rule(
    change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    assert_load_error(change, expected)


@pytest.mark.parametrize(
    ("text", "minutes"), [("15m", 15), ("4h", 240), ("1h30m", 90), (" 2h 5m ", 125), ("120h", 7200)]
)
def test_durations(text: str, minutes: int) -> None:
    assert parse_duration(text) == minutes


@pytest.mark.parametrize(
    "text", ["", "90", "1d", "h", "1.5h", 90, " " * 2500 + "x", "1" * 2500 + "x", "1h" + " " * 5000 + "30mx"]
)
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_a_duration_longer_than_a_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 32 characters"):
        parse_duration("1" * 100 + "h")
