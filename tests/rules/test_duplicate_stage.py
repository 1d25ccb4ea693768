"""The rule stage for probable duplicates (rules `duplicates`): the duplicate check's answer
(`engine.DUPLICATE_COLUMNS`) read as `duplicate` / `duplicate_similarity`, which any rule can use
to lower a duplicate's priority or route it; explained; clear errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.rules_helpers import BASE, assert_load_error, make_rules, outputs, rule, run
from urgency.errors import ParamsError
from urgency.rules.engine import DUPLICATE_COLUMNS

SECTIONS: dict[str, Any] = {
    "duplicates": {"same_fields": ["region"]},
    "priority_rules": [rule("probable-duplicate", {"duplicate": True}, lower_by=1)],
    "routing_rules": [
        {"name": "close-duplicates", "when": {"duplicate_similarity": {"gte": 0.97}}, "team": "desk"}
    ],
}
FOUND = dict(
    zip(
        DUPLICATE_COLUMNS,
        ("T-12", 0.93, "duplicate of T-12 (0.93, same region, open)", "region"),
        strict=True,
    )
)
NONE_FOUND = dict.fromkeys(DUPLICATE_COLUMNS)


def test_a_duplicate_is_lowered_and_explained_by_the_rules_that_read_it() -> None:
    rules = make_rules(**SECTIONS)
    plain = run(rules, outputs(urgency="high"), **NONE_FOUND)
    duplicate = run(rules, outputs(urgency="high"), **FOUND)
    assert rules.levels.index(duplicate.priority) == rules.levels.index(plain.priority) + 1
    step = duplicate.explanation[[s.rule for s in duplicate.explanation].index("duplicates")]
    assert (step.stage, step.changed, step.after) == ("duplicates", "duplicate_of", "T-12")
    assert step.detail == "duplicate of T-12 (0.93, same region, open)"
    assert "probable-duplicate" in duplicate.rules_fired
    assert "duplicates" not in plain.rules_fired and "probable-duplicate" not in plain.rules_fired
    # duplicate_similarity is a number rules compare: 0.93 is below the routing rule's 0.97.
    assert "close-duplicates" not in duplicate.rules_fired
    closer = run(rules, outputs(urgency="high"), **{**FOUND, "duplicate_similarity": 0.98})
    assert "close-duplicates" in closer.rules_fired


def test_without_the_check_rules_reading_it_see_no_value_and_the_explanation_says_so() -> None:
    decision = run(make_rules(**SECTIONS), outputs(urgency="high"))  # no DUPLICATE_COLUMNS
    [step] = [s for s in decision.explanation if s.rule == "duplicates"]
    assert step.after is None and "no duplicate check" in step.detail
    assert "probable-duplicate" in step.detail
    assert "probable-duplicate" not in decision.rules_fired


def test_the_section_is_optional_and_only_it_makes_duplicate_a_field() -> None:
    assert make_rules().spec.duplicates is None
    with pytest.raises(ParamsError, match="duplicate"):
        make_rules(priority_rules=[rule("dup", {"duplicate": True}, lower_by=1)])
    spec = make_rules(duplicates={"same_fields": ["region"]}, similar_tickets={}).spec
    assert spec.duplicates is not None and spec.duplicates.threshold == 0.87
    assert spec.similar_tickets is not None and (
        spec.similar_tickets.k,
        spec.similar_tickets.window_days,
    ) == (5, 30)


def _set(section: str, value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        data[section] = value

    return change


@pytest.mark.parametrize(
    ("section", "value", "expected"),
    [
        (
            "duplicates",
            {"same_fields": ["requester"]},
            ["duplicates.same_fields[0]", "'requester'", "declared:"],
        ),
        ("duplicates", {"same_fields": []}, ["duplicates.same_fields"]),
        ("duplicates", {"threshold": 1.2, "same_fields": ["region"]}, ["duplicates.threshold"]),
        ("duplicates", {"same_fields": ["region"], "same_agnt": True}, ["duplicates.same_agnt: unknown key"]),
        ("similar_tickets", {"k": 0}, ["similar_tickets.k", "greater than or equal to 1"]),
        ("similar_tickets", {"window_days": 0}, ["similar_tickets.window_days"]),
    ],
)
def test_a_wrong_value_names_its_key(section: str, value: Any, expected: list[str]) -> None:
    assert_load_error(_set(section, value), expected)


@pytest.mark.parametrize(("name", "column"), [("duplicate_of", None), ("original", "duplicate_why")])
def test_a_field_read_from_the_checks_column_is_refused(name: str, column: str | None) -> None:
    """The duplicate check writes its answer into these columns before the rules run: a ticket
    field read from one would be silently replaced."""

    def change(data: dict[str, Any]) -> None:
        data["duplicates"] = {"same_fields": ["region"]}
        data["fields"][name] = {"type": "text", "column": column or name}

    assert_load_error(change, [f"fields.{name}", "written by the duplicate check"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    urgency=st.sampled_from(["high", "medium", "low"]),
    vip=st.booleans(),
    users=st.integers(min_value=0, max_value=5000),
    similarity=st.floats(min_value=0.87, max_value=1.0),
)
def test_a_duplicate_is_never_more_urgent_than_the_same_ticket_not_flagged(
    urgency: str, vip: bool, users: int, similarity: float
) -> None:
    rules = RULES
    ticket = {"vip": vip, "users_affected": users}
    plain = run(rules, outputs(urgency=urgency), **ticket, **NONE_FOUND)
    flagged = run(rules, outputs(urgency=urgency), **ticket, **{**FOUND, "duplicate_similarity": similarity})
    assert rules.levels.index(flagged.priority) >= rules.levels.index(plain.priority)
    # Deadlines follow the priority: a lowered duplicate's come no earlier.
    if plain.first_response_due and flagged.first_response_due:
        assert flagged.first_response_due >= plain.first_response_due


RULES = make_rules(
    **SECTIONS,
    impact_rules=[rule("many", {"users": {"gte": 100}}, impact="high")],
)


def test_rules_can_tell_the_same_person_from_the_same_organisation() -> None:
    rules = make_rules(
        fields={**BASE["fields"], "requester": "requester"},
        duplicates={"same_fields": ["requester", "region"]},
        priority_rules=[rule("same-person", {"duplicate_same": "requester"}, lower_by=1)],
    )
    person = run(rules, outputs(urgency="high"), **{**FOUND, "duplicate_same": "requester"})
    colleague = run(rules, outputs(urgency="high"), **{**FOUND, "duplicate_same": "region"})
    assert "same-person" in person.rules_fired and "same-person" not in colleague.rules_fired
    with pytest.raises(ParamsError, match="duplicate_same"):  # only the section's same_fields
        make_rules(
            duplicates={"same_fields": ["region"]},
            priority_rules=[rule("x", {"duplicate_same": "requester"}, lower_by=1)],
        )
