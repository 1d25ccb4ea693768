"""The compiler's first pass (`urgency.rules.sections`): every name a section uses is defined."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.rules_helpers import add_rules, assert_load_error, rules_dict, set_at
from urgency.errors import ParamsError
from urgency.rules import parse_rules

# Section errors: (change to a valid rules mapping, words the message must contain).
ERRORS = [
    pytest.param(
        add_rules("priority_rules", {"name": "p5", "when": {"vip": True}, "at_least": "P5"}),
        ["priority rule 'p5'", "'P5' is not a defined level", "P1, P2, P3, P4"],
        id="undefined-level-in-rule",
    ),
    pytest.param(
        add_rules("impact.rules", {"name": "huge", "when": {"users": {"gte": 9}}, "impact": "huge"}),
        ["impact rule 'huge'", "'huge' is not a defined impact level"],
        id="undefined-impact-level",
    ),
    pytest.param(
        set_at("matrix.high.low", "P9"), ["matrix.high.low", "'P9' is not a defined level"], id="matrix-level"
    ),
    pytest.param(set_at("matrix.urgent", {}), ["matrix: needs one row per urgency"], id="matrix-rows"),
    pytest.param(
        set_at("matrix.low", {"high": "P3", "medium": "P4"}),
        ["matrix.low: needs one entry per impact"],
        id="matrix-cells",
    ),
    pytest.param(
        add_rules("routing.rules", {"name": "net", "when": {"category": "Access"}, "team": "network"}),
        ["routing rule 'net'", "'network' is not a defined team"],
        id="undefined-team",
    ),
    pytest.param(
        add_rules("routing.rules", {"name": "fr", "when": {"language": "fr"}, "skills": ["fr"]}),
        ["routing rule 'fr'", "no team has skill(s) fr"],
        id="unknown-skill",
    ),
    pytest.param(
        add_rules(
            "routing.rules",
            {"name": "hw", "when": {"category": "Hardware"}, "team": "desk", "skills": ["hardware"]},
        ),
        ["routing rule 'hw'", "team desk lacks skill(s) ['hardware']"],
        id="team-lacks-skill",
    ),
    pytest.param(
        add_rules(
            "routing.rules",
            {"name": "combo", "when": {"category": "Hardware"}, "skills": ["hardware", "triage"]},
        ),
        ["routing rule 'combo'", "no single team has all of hardware, triage"],
        id="no-team-with-all-skills",
    ),
    pytest.param(
        set_at("routing.default_team", "nobody"), ["routing.default_team", "'nobody'"], id="default-team"
    ),
    pytest.param(
        set_at("calendars.berlin.timezone", "Mars/Olympus"), ["calendars.berlin", "Mars/Olympus"], id="zone"
    ),
    pytest.param(
        set_at("calendars.berlin.hours", {"mon-fri": "18:00-08:00"}), ["calendars.berlin.hours"], id="hours"
    ),
    pytest.param(
        set_at("calendars.berlin.hours", {"weekdays": "08:00-18:00"}), ["'weekdays'"], id="day-name"
    ),
    pytest.param(set_at("calendars.berlin.hours", {}), ["calendars.berlin: no working hours"], id="no-hours"),
    pytest.param(
        set_at("calendars.berlin.holidays", ["25.12."]), ["calendars.berlin.holidays", "25.12."], id="holiday"
    ),
    pytest.param(
        set_at("calendar_selection.default", "paris"),
        ["calendar_selection.default", "'paris'"],
        id="calendar",
    ),
    pytest.param(
        set_at("sla.policies.0.targets.P9", {"first_response": "1h"}),
        ["sla policy 'basic'", "undefined level(s) P9"],
        id="sla-undefined-level",
    ),
    pytest.param(
        set_at("sla.policies.0.targets", {"P1": {"first_response": "1h"}}),
        ["sla policy 'basic'", "no target for level(s) P2, P3, P4"],
        id="sla-missing-level",
    ),
    pytest.param(
        set_at("sla.default_policy", "gold"),
        ["sla.default_policy", "'gold' is not a defined SLA policy"],
        id="sla",
    ),
    pytest.param(
        add_rules("priority_rules", {"name": "basic", "when": {"vip": True}, "raise_by": 1}),
        ["rule names must be unique", "basic"],
        id="repeated-rule-name",
    ),
]


@pytest.mark.parametrize(("change", "expected"), ERRORS)
def test_load_time_errors_name_the_rule(
    change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    assert_load_error(change, expected)


def test_all_problems_are_reported_at_once() -> None:
    data = rules_dict()
    set_at("routing.default_team", "nobody")(data)
    set_at("calendar_selection.default", "paris")(data)
    with pytest.raises(ParamsError) as raised:
        parse_rules(data)
    assert "2 problem(s)" in str(raised.value)
