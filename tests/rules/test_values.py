"""Fields and values (`urgency.rules.values`): rule literals must name defined values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.rules_helpers import add_rules, assert_load_error, set_at

# Field and literal errors: (change to a valid rules mapping, words the message must contain).
ERRORS = [
    pytest.param(
        add_rules("priority_rules", {"name": "plat", "when": {"plan": "platinum"}, "raise_by": 1}),
        ["priority rule 'plat'", "'platinum' is not a defined plan", "free, standard, premium, enterprise"],
        id="undefined-plan",
    ),
    pytest.param(
        add_rules("priority_rules", {"name": "cat", "when": {"category": "Hardwear"}, "raise_by": 1}),
        ["priority rule 'cat'", "'Hardwear'"],
        id="undefined-category",
    ),
    pytest.param(
        set_at("fields.urgency", "urgency_column"), ["fields.urgency", "built-in"], id="builtin-field-name"
    ),
]


@pytest.mark.parametrize(("change", "expected"), ERRORS)
def test_load_time_errors_name_the_rule(
    change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    assert_load_error(change, expected)


@pytest.mark.parametrize("raw", [int("9" * 400), "9" * 400, "1e400", float("inf"), "-inf"])
def test_a_number_no_float_can_hold_is_a_note_and_missing(raw: Any) -> None:
    from urgency.rules.values import FieldInfo, parse_value

    value, problem = parse_value(FieldInfo("users", "number", column="users_affected"), raw)
    assert value is None and problem is not None and "not a readable number" in problem
    assert len(problem) < 120  # the note does not repeat a 400-digit number
