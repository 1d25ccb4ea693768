"""The rules engine (`urgency.rules.engine`): one ticket -> a `Decision`, stage by stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PROJECT
from tests.rules_helpers import NOW, SLA, make_rules, outputs, rule, run
from urgency.config import SENTIMENT_LABELS, URGENCY_LABELS, load_params
from urgency.decision import HeadOutput
from urgency.rules import RuleSet, load_rules
from urgency.rules.engine import decide, surge_active
from urgency.scoring import decide_frame

# ---------------------------------------------------------------------------------------------
# Table-driven: one row per strategy. (rules sections, model outputs, ticket fields, expected)

IMPACT = {
    "impact_rules": [
        rule("down", {"service_down": True}, impact="high"),
        rule("many", {"users": {"gte": 50}}, impact="high"),
        rule("some", {"users": {"gte": 5}}, impact="medium"),
    ]
}
PLANS = {
    "priority_rules": [
        rule("free-cap", {"plan": "free"}, at_most="P3"),
        rule("paid-floor", {"plan": ["premium", "enterprise"]}, at_least="P3"),
        rule("enterprise-up", {"plan": "enterprise"}, raise_by=1),
    ]
}
CUSTOMER = {
    "priority_rules": [
        rule("vip-up", {"vip": True}, raise_by=1),
        rule("internal-cap", {"account_type": "internal"}, at_most="P3"),
        rule("partner-floor", {"account_type": "partner"}, at_least="P3"),
        rule("at-risk-up", {"customer_category": "at_risk"}, raise_by=1),
        rule("new-floor", {"customer_category": "new"}, at_least="P3"),
        rule("executive-floor", {"persona": "executive"}, at_least="P2", order=1),
    ]
}
REQUEST = {
    "priority_rules": [
        rule("angry", {"sentiment": "negative", "sentiment_confidence": {"gte": 0.8}}, raise_by=1),
        rule("aged", {"age_hours": {"gte": 72}}, raise_by=1),
        rule("regulated-access", {"regulated": True, "category": "Access"}, at_least="P2", order=1),
        rule("free-cap", {"plan": "free"}, at_most="P3"),
        rule("security", {"request_type": "security"}, pin="P1", order=1),
        rule("purchases", {"category": "Purchase"}, pin="P4", order=2),
        rule("surge-cap", {"surge": True, "impact": ["medium", "low"]}, at_most="P2"),
    ]
}

STRATEGIES = [
    # matrix: urgency x impact (ITIL)
    pytest.param({}, outputs("high"), {}, {"priority": "P3", "impact": "low"}, id="matrix-high-x-low"),
    pytest.param(
        IMPACT,
        outputs("high"),
        {"service_down": "true"},
        {"priority": "P1", "impact": "high"},
        id="matrix-high-x-high",
    ),
    pytest.param(
        IMPACT,
        outputs("low"),
        {"users_affected": "7"},
        {"priority": "P4", "impact": "medium"},
        id="matrix-low-x-medium",
    ),
    pytest.param(
        IMPACT,
        outputs("medium"),
        {"users_affected": "7", "service_down": "yes"},
        {"impact": "high", "priority": "P2"},
        id="most-severe-impact-wins",
    ),
    pytest.param(
        IMPACT,
        outputs("medium"),
        {"users_affected": "lots"},
        {"impact": "low", "notes": "users (column users_affected): 'lots' is not a number"},
        id="bad-number-is-a-note",
    ),
    # customer strategies: plan / support package
    pytest.param(
        PLANS,
        outputs("high"),
        {"plan": "free", "service_down": "true"},
        {"priority": "P3"},
        id="plan-cap-free",
    ),
    pytest.param(PLANS, outputs("low"), {"plan": "premium"}, {"priority": "P3"}, id="plan-floor-premium"),
    pytest.param(
        PLANS, outputs("medium"), {"plan": "enterprise"}, {"priority": "P3"}, id="plan-raise-enterprise"
    ),
    pytest.param(
        PLANS, outputs("medium"), {"plan": "Enterprise "}, {"priority": "P3"}, id="plan-case-and-space"
    ),
    pytest.param(
        PLANS,
        outputs("medium"),
        {"plan": "gold"},
        {"priority": "P4", "notes": "plan (column plan): 'gold' is not one of"},
        id="unknown-plan-is-a-note",
    ),
    # VIP, account type, customer category, persona
    pytest.param(CUSTOMER, outputs("medium"), {"vip": "true"}, {"priority": "P3"}, id="vip-raise"),
    pytest.param(CUSTOMER, outputs("medium"), {"vip": "no"}, {"priority": "P4"}, id="not-vip"),
    pytest.param(
        CUSTOMER,
        outputs("high"),
        {"account_type": "internal", "vip": "1"},
        {"priority": "P3"},
        id="account-cap",
    ),
    pytest.param(
        CUSTOMER, outputs("low"), {"account_type": "partner"}, {"priority": "P3"}, id="account-floor"
    ),
    pytest.param(
        CUSTOMER, outputs("medium"), {"customer_category": "at_risk"}, {"priority": "P3"}, id="category-raise"
    ),
    pytest.param(
        CUSTOMER, outputs("low"), {"customer_category": "new"}, {"priority": "P3"}, id="category-floor"
    ),
    pytest.param(
        CUSTOMER,
        outputs("low"),
        {"persona": "executive", "account_type": "internal"},
        {"priority": "P2"},
        id="persona-floor-beats-cap-by-order",
    ),
    # request strategies: sentiment, ageing, custom field, pick-and-choose pins, surge
    pytest.param(
        REQUEST,
        outputs("medium", sentiment="negative", confidence=0.9),
        {},
        {"priority": "P3"},
        id="sentiment-raise",
    ),
    pytest.param(
        REQUEST,
        outputs("medium", sentiment="negative", confidences={"sentiment": 0.6}),
        {},
        {"priority": "P4"},
        id="sentiment-not-sure-enough",
    ),
    pytest.param(
        REQUEST,
        outputs("medium"),
        {"created_at": "2026-02-26T08:00:00Z"},
        {"priority": "P3"},
        id="ageing-raise",
    ),
    pytest.param(
        REQUEST,
        outputs("medium"),
        {"created_at": "2026-02-28T08:00:00Z"},
        {"priority": "P4"},
        id="not-aged-yet",
    ),
    pytest.param(
        REQUEST,
        outputs("low", category="Access"),
        {"custom_regulated": "true", "plan": "free"},
        {"priority": "P2"},
        id="custom-field-floor",
    ),
    pytest.param(
        REQUEST,
        outputs("low", category="Access"),
        {"custom_regulated": "false"},
        {"priority": "P4"},
        id="custom-field-off",
    ),
    pytest.param(
        REQUEST,
        outputs("low"),
        {"request_type": "security", "plan": "free"},
        {"priority": "P1"},
        id="pin-beats-cap",
    ),
    pytest.param(
        REQUEST,
        outputs("high", category="Purchase"),
        {"request_type": "security"},
        {"priority": "P1"},
        id="pin-smaller-order-wins",
    ),
    pytest.param(
        REQUEST, outputs("high", category="Purchase"), {}, {"priority": "P4"}, id="pin-request-type"
    ),
    pytest.param(
        REQUEST,
        outputs("high", category="Access"),
        {"custom_regulated": "true", "surge": True},
        {"priority": "P2"},
        id="surge-caps-p1",
    ),
]


@pytest.mark.parametrize(("sections", "model", "ticket", "expected"), STRATEGIES)
def test_strategies(
    sections: dict[str, Any], model: dict[str, HeadOutput], ticket: dict[str, Any], expected: dict[str, Any]
) -> None:
    rules = make_rules(**sections)
    surge = ticket.pop("surge", None)
    ticket.setdefault("created_at", "2026-03-02T09:00:00Z")
    decision = decide(model, ticket, rules, NOW, surge=surge)
    record = decision.to_record()
    for key, value in expected.items():
        if key == "notes":
            assert value in record["notes"], record["notes"]
        else:
            assert record[key] == value, decision.explanation
    # Every rule whose removal changes the outcome is in the explanation.
    for name in rules.rule_names():
        if decide(model, ticket, rules.without(name), NOW, surge=surge).outcome() != decision.outcome():
            assert name in decision.rules_fired


def test_surge_mode_follows_the_file_unless_given() -> None:
    cap = [rule("surge-cap", {"surge": True}, at_most="P3")]
    on = make_rules(priority_rules=cap, surge={"mode": "on"})
    off = make_rules(priority_rules=cap, surge={"mode": "off"})
    model = outputs("high")
    ticket = {"service_down": "true", "created_at": "2026-03-02T09:00:00Z"}
    assert decide(model, ticket, on, NOW).surge is True
    assert decide(model, ticket, off, NOW).surge is False
    assert decide(model, ticket, off, NOW, surge=True).surge is True
    # auto: the volume in the window before now decides.
    auto = make_rules(priority_rules=cap, surge={"mode": "auto", "window_hours": 1, "min_tickets": 3})
    recent = ["2026-03-02T08:10:00Z", "2026-03-02T08:30:00Z", "2026-03-02T08:59:00Z"]
    assert surge_active(auto, recent, NOW) is True
    assert surge_active(auto, [*recent[:2], "2026-03-02T07:00:00Z", "not a time", None], NOW) is False
    frame = pd.DataFrame(
        {"created_at": recent, "urgency": "high", "urgency_confidence": 0.9, "service_down": "true"}
    )
    decided = decide_frame(frame, auto, NOW)
    assert decided["surge"].all() and (decided["priority"] == "P3").all()


# Routing: skill-based, explicit team, default and triage.
ROUTES = {
    "routing": {
        "default_team": "desk",
        "triage_team": "triage",
        "rules": [
            rule("p1", {"priority": "P1"}, skills=["triage"], order=1),
            rule(
                "german-hardware",
                {"category": "Hardware", "language": "de"},
                skills=["hardware", "de"],
                order=2,
            ),
            rule("hardware", {"category": "Hardware"}, skills=["hardware"], order=3),
        ],
    },
    "confidence": {"thresholds": {"category": 0.6}},
}
ROUTING = [
    pytest.param(
        outputs("medium", category="Hardware"),
        {"language": "de"},
        ("hardware-de", "hardware;de", "german-hardware"),
        id="skills-pick-team",
    ),
    pytest.param(
        outputs("medium", category="Hardware"),
        {"language": "en"},
        ("hardware-en", "hardware", "hardware"),
        id="first-team-with-skills",
    ),
    pytest.param(
        outputs("medium", category="Access"), {}, ("desk", "", "routing.default_team"), id="default-team"
    ),
    pytest.param(
        outputs("medium", category="Hardware", confidences={"category": 0.6}),
        {},
        ("hardware-en", "hardware", "hardware"),
        id="confidence-at-threshold-is-trusted",
    ),
    pytest.param(
        outputs("medium", category="Hardware", confidences={"category": 0.4}),
        {},
        ("triage", "", "routing.triage_team"),
        id="category-untrusted-goes-to-triage",
    ),
    pytest.param(
        outputs("high", category="Access"),
        {"service_down": "true", "users_affected": "100"},
        ("desk", "", "routing.default_team"),
        id="no-impact-rules-here",
    ),
]


@pytest.mark.parametrize(("model", "ticket", "expected"), ROUTING)
def test_skill_based_routing(
    model: dict[str, HeadOutput], ticket: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    decision = run(make_rules(**ROUTES), model, **ticket)
    record = decision.to_record()
    assert (record["team"], record["skills"]) == expected[:2]
    assert expected[2] in decision.rules_fired


def test_priority_routes_after_priority_is_known() -> None:
    rules = make_rules(**ROUTES, impact_rules=[rule("down", {"service_down": True}, impact="high")])
    decision = run(rules, outputs("high", category="Hardware"), service_down="true")
    assert decision.priority == "P1" and decision.team == "triage" and decision.rules_fired[-2] == "p1"


# Confidence policy: untrusted heads -> human triage, rules-only decision.
def test_low_confidence_falls_back_to_rules_only() -> None:
    rules = make_rules(
        confidence={"thresholds": {"urgency": 0.7, "sentiment": 0.5}, "rules_only_urgency": "low"},
        priority_rules=[rule("angry", {"sentiment": "negative"}, raise_by=1)],
    )
    sure = run(rules, outputs("high", sentiment="negative", confidence=0.9))
    unsure = run(
        rules, outputs("high", sentiment="negative", confidences={"urgency": 0.69, "sentiment": 0.2})
    )
    assert (sure.priority, sure.needs_human_triage, sure.urgency_used) == ("P2", False, "high")
    assert (unsure.priority, unsure.needs_human_triage, unsure.urgency_used) == ("P4", True, "low")
    assert unsure.untrusted_heads == ("urgency", "sentiment")
    assert unsure.urgency == "high" and unsure.urgency_confidence == 0.69  # the model's view is kept
    assert "confidence 0.69 below threshold 0.70" in unsure.to_record()["explanation"]
    assert "angry" not in unsure.rules_fired
    # No prediction at all (empty text: every head answers None): rules only, flagged.
    empty = run(rules, outputs(None, None, None))
    assert empty.needs_human_triage and empty.urgency is None and empty.priority == "P4"


def test_a_head_with_no_model_is_absent_not_untrusted() -> None:
    """A helpdesk without sentiment labels has no sentiment head: its rules simply do not match,
    nobody goes to triage for it, and the explanation says why the rule could not fire."""
    rules = make_rules(
        confidence={"thresholds": {"urgency": 0.5, "sentiment": 0.5}},
        priority_rules=[rule("angry", {"sentiment": "negative"}, raise_by=1)],
    )
    two_heads = {head: output for head, output in outputs("high").items() if head != "sentiment"}
    decision = run(rules, two_heads)
    assert not decision.needs_human_triage and decision.untrusted_heads == ()
    assert decision.sentiment is None and decision.sentiment_confidence is None
    assert "angry" not in decision.rules_fired
    assert "no sentiment model: rule(s) reading sentiment see no value (angry)" in decision.explanation_text
    assert decision.priority == run(rules, outputs("high", sentiment="neutral")).priority
    # No urgency model either: the matrix uses the rules-only urgency, explained, not triage.
    alone = run(rules, {"category": outputs()["category"]})
    assert not alone.needs_human_triage and alone.urgency is None
    assert alone.urgency_used == rules.spec.confidence.rules_only_urgency
    assert "no urgency model" in alone.explanation_text


DEADLINES = [
    # Friday 17:00 Berlin (16:00 UTC), P3 enterprise: 2h business -> Monday 09:00 Berlin;
    # 16h -> 1h Friday + 10h Monday + 5h Tuesday = Tuesday 13:00 Berlin
    pytest.param(
        outputs("high"),
        {"plan": "enterprise", "created_at": "2026-03-06T16:00:00Z"},
        ("enterprise", "berlin", "2026-03-09T08:00:00Z", "2026-03-10T12:00:00Z"),
        id="over-the-weekend",
    ),
    # P1 enterprise runs around the clock
    pytest.param(
        outputs("high"),
        {"plan": "enterprise", "service_down": "true", "created_at": "2026-03-07T23:00:00Z"},
        ("enterprise", "always", "2026-03-07T23:15:00Z", "2026-03-08T03:00:00Z"),
        id="p1-24x7",
    ),
    # Good Friday 2026-04-03 is a holiday in Berlin: Thursday 17:00 + 2h -> Monday 09:00 (CEST)
    pytest.param(
        outputs("high"),
        {"plan": "enterprise", "created_at": "2026-04-02T15:00:00Z"},
        ("enterprise", "berlin", "2026-04-06T07:00:00Z", "2026-04-07T11:00:00Z"),
        id="holiday",
    ),
    # New York office (09:00-17:00 EST), the customer's region picks it: Monday 16:00 EST + 2h ->
    # Tuesday 10:00 EST; 16h -> 1h Monday + 8h Tuesday + 7h Wednesday = Wednesday 16:00 EST
    pytest.param(
        outputs("high"),
        {"plan": "enterprise", "region": "americas", "created_at": "2026-03-02T21:00:00Z"},
        ("enterprise", "new-york", "2026-03-03T15:00:00Z", "2026-03-04T21:00:00Z"),
        id="second-time-zone",
    ),
    # US clocks change on 2026-03-08: Friday 16:00 EST + 2h -> Monday 10:00 EDT (14:00 UTC)
    pytest.param(
        outputs("high"),
        {"plan": "enterprise", "region": "americas", "created_at": "2026-03-06T21:00:00Z"},
        ("enterprise", "new-york", "2026-03-09T14:00:00Z", "2026-03-10T20:00:00Z"),
        id="dst-change",
    ),
    # A policy's own calendar beats the customer's; no resolution target -> no resolution deadline
    pytest.param(
        outputs("high"),
        {"plan": "free", "region": "americas", "created_at": "2026-03-02T07:00:00Z"},
        ("basic", "berlin", "2026-03-02T15:00:00Z", None),
        id="policy-calendar",
    ),
    # No plan -> default policy; no created_at -> now (Monday 10:00 Berlin) + 8h
    pytest.param(
        outputs("high"), {"created_at": ""}, ("basic", "berlin", "2026-03-02T17:00:00Z", None), id="defaults"
    ),
]


@pytest.mark.parametrize(("model", "ticket", "expected"), DEADLINES)
def test_sla_deadlines(
    model: dict[str, HeadOutput], ticket: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    record = run(make_rules(**SLA), model, **ticket).to_record()
    assert (
        record["sla_policy"],
        record["calendar"],
        record["first_response_due"],
        record["resolution_due"],
    ) == expected


def test_created_at_forms() -> None:
    rules = make_rules(created_at={"column": "opened", "timezone": "Europe/Berlin"})
    naive = decide(outputs(), {"opened": "2026-03-02 10:00"}, rules, NOW)
    assert naive.created_at == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    offset = decide(outputs(), {"opened": "2026-03-02T10:00:00+01:00"}, rules, NOW)
    assert offset.created_at == naive.created_at
    stamp = decide(outputs(), {"opened": pd.Timestamp("2026-03-02 09:00", tz="UTC")}, rules, NOW)
    assert stamp.created_at == naive.created_at
    bad = decide(outputs(), {"opened": "yesterday"}, rules, NOW)
    assert bad.created_at == NOW and "not an ISO 8601 timestamp" in bad.notes[0]
    with pytest.raises(ValueError, match="time zone"):
        decide(outputs(), {}, rules, datetime(2026, 3, 2))


def test_same_input_same_output() -> None:
    rules = load_rules(PROJECT / "rules.yaml")
    ticket = {"plan": "premium", "vip": "true", "created_at": "2026-03-02T09:00:00Z", "users_affected": "9"}
    first = decide(outputs("high", sentiment="negative"), ticket, rules, NOW)
    again = decide(
        outputs("high", sentiment="negative"), dict(ticket), load_rules(PROJECT / "rules.yaml"), NOW
    )
    assert first == again and first.to_record() == again.to_record()


# ---------------------------------------------------------------------------------------------
# Properties of the shipped example rules (hypothesis)


@pytest.fixture(scope="module")
def shipped() -> dict[str, RuleSet]:
    params = load_params(PROJECT / "params.yaml")
    rules = load_rules(params.scoring.rules, category_labels=params.heads.category.labels)
    return {"rules": rules, **{f"without:{name}": rules.without(name) for name in rules.rule_names()}}


CATEGORY_LABELS = load_params(PROJECT / "params.yaml").heads.category.labels
PLANS_IN_ORDER = ["free", "standard", "premium", "enterprise"]


def _maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.sampled_from(values))


model_outputs = st.fixed_dictionaries(
    {
        "urgency": st.builds(HeadOutput, _maybe(list(URGENCY_LABELS)), st.floats(0, 1)),
        "category": st.builds(HeadOutput, _maybe(CATEGORY_LABELS), st.floats(0, 1)),
        "sentiment": st.builds(HeadOutput, _maybe(list(SENTIMENT_LABELS)), st.floats(0, 1)),
    }
)
# Minute-aligned times from 2025 to 2027: weekends, holidays and four DST changes per zone.
moments = st.datetimes(datetime(2025, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)).map(
    lambda moment: moment.replace(second=0, microsecond=0)
)
tickets = st.fixed_dictionaries(
    {
        "plan": _maybe([*PLANS_IN_ORDER, "gold"]),
        "vip": _maybe(["true", "false"]),
        "account_type": _maybe(["business", "consumer", "partner", "internal"]),
        "customer_category": _maybe(["new", "existing", "at_risk"]),
        "persona": _maybe(["end_user", "admin", "developer", "executive"]),
        "users_affected": _maybe(["0", "1", "4", "5", "49", "50", "5000"]),
        "service_down": _maybe(["true", "false"]),
        "request_type": _maybe(["incident", "service_request", "question", "security"]),
        "region": _maybe(["emea", "americas"]),
        "language": _maybe(["en", "de", "es"]),
        "custom_regulated": _maybe(["true", "false"]),
        "created_at": moments.map(lambda moment: moment.isoformat()),
    }
)
ages = st.integers(0, 200 * 60).map(lambda minutes: timedelta(minutes=minutes))
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _now(ticket: dict[str, Any], age: timedelta) -> datetime:
    return datetime.fromisoformat(ticket["created_at"]) + age


@PROPERTY
@given(model=model_outputs, ticket=tickets, age=ages, surge=st.booleans())
def test_a_higher_plan_never_lowers_priority(
    shipped: dict[str, RuleSet],
    model: dict[str, HeadOutput],
    ticket: dict[str, Any],
    age: timedelta,
    surge: bool,
) -> None:
    rules = shipped["rules"]
    ranks = [
        rules.rank(decide(model, {**ticket, "plan": plan}, rules, _now(ticket, age), surge=surge).priority)
        for plan in PLANS_IN_ORDER
    ]
    assert ranks == sorted(ranks, reverse=True), dict(zip(PLANS_IN_ORDER, ranks, strict=True))


@PROPERTY
@given(model=model_outputs, ticket=tickets, age=ages, surge=st.booleans())
def test_a_vip_is_never_below_the_same_ticket_without_vip(
    shipped: dict[str, RuleSet],
    model: dict[str, HeadOutput],
    ticket: dict[str, Any],
    age: timedelta,
    surge: bool,
) -> None:
    rules = shipped["rules"]
    now = _now(ticket, age)
    vip = decide(model, {**ticket, "vip": "true"}, rules, now, surge=surge)
    plain = decide(model, {**ticket, "vip": "false"}, rules, now, surge=surge)
    assert rules.rank(vip.priority) <= rules.rank(plain.priority)


@PROPERTY
@given(model=model_outputs, ticket=tickets, age=ages, surge=st.booleans())
def test_deadlines_follow_creation_and_business_hours(
    shipped: dict[str, RuleSet],
    model: dict[str, HeadOutput],
    ticket: dict[str, Any],
    age: timedelta,
    surge: bool,
) -> None:
    rules = shipped["rules"]
    decision = decide(model, ticket, rules, _now(ticket, age), surge=surge)
    policy = rules.policy(decision.sla_policy)
    target = policy.targets[decision.priority]
    calendar = rules.calendars[decision.calendar]
    created = datetime.fromisoformat(ticket["created_at"])
    assert decision.created_at == created
    for due, minutes in (
        (decision.first_response_due, target.first_response),
        (decision.resolution_due, target.resolution),
    ):
        if minutes is None:
            assert due is None
            continue
        assert due > created
        # The clock ran exactly the target's minutes of open time, and stopped inside open time.
        assert calendar.between(created, due) == timedelta(minutes=minutes)
        assert calendar.is_open(due - timedelta(microseconds=1))
    if decision.first_response_due and decision.resolution_due:
        assert decision.first_response_due <= decision.resolution_due


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model=model_outputs, ticket=tickets, age=ages, surge=st.booleans())
def test_the_explanation_names_every_rule_that_changed_the_outcome(
    shipped: dict[str, RuleSet],
    model: dict[str, HeadOutput],
    ticket: dict[str, Any],
    age: timedelta,
    surge: bool,
) -> None:
    rules = shipped["rules"]
    now = _now(ticket, age)
    decision = decide(model, ticket, rules, now, surge=surge)
    fired = decision.rules_fired
    assert len(fired) == len(decision.explanation) and fired[-1] in (
        *rules.rule_names(),
        "sla.default_policy",
    )
    for name in rules.rule_names():
        without = decide(model, ticket, shipped[f"without:{name}"], now, surge=surge)
        if without.outcome() != decision.outcome():
            assert name in fired, (name, decision.to_record()["explanation"])
