"""The rules engine: one ticket's model outputs and metadata + the compiled rules -> a `Decision`.

Pure and deterministic: no I/O, no clock (the caller passes `now`), the same input always gives
the same `Decision`. `urgency.scoring` runs it after the models (predict, then decide).

A decision is made in stages, each recorded in the explanation:
1. confidence: a head whose confidence is below its threshold is not trusted; the ticket needs
   human triage and the rules decide without that prediction (urgency falls back to a default);
2. impact: the most severe impact any impact rule gives (else the default);
3. matrix: urgency x impact -> a starting level;
4. priority rules: shifts (raise_by / lower_by) add up; then floors and caps (at_least / at_most),
   the rule with the smallest `order` having the last word; then a pin, if any, is final;
5. routing: the first matching routing rule gives the team and skills;
6. calendar and SLA policy: the first matching rule each; deadlines run in business time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from urgency.config import HEADS
from urgency.decision import NO_DEADLINE, Decision, HeadOutput, Step, iso
from urgency.rules.compiler import RuleSet
from urgency.rules.sections import CompiledRule
from urgency.rules.values import is_missing, parse_value


def parse_timestamp(raw: Any, zone: str) -> datetime | None:
    """ISO 8601 text or a datetime -> aware UTC datetime; no offset means `zone`. Raises ValueError."""
    if is_missing(raw) or raw is pd.NaT:
        return None
    moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw).strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC)


def _matching(rules: Sequence[CompiledRule], values: Mapping[str, Any]) -> list[CompiledRule]:
    return [rule for rule in rules if rule.condition.matches(values)]


def _first(rules: Sequence[CompiledRule], values: Mapping[str, Any]) -> CompiledRule | None:
    return next((rule for rule in rules if rule.condition.matches(values)), None)


def _duration(minutes: int | None) -> str:
    if minutes is None:
        return "none"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest:02d}m" if hours and rest else (f"{hours}h" if hours else f"{rest}m")


def decide(
    outputs: Mapping[str, HeadOutput | None],
    ticket: Mapping[str, Any],
    rules: RuleSet,
    now: datetime,
    *,
    surge: bool | None = None,
) -> Decision:
    """Decide one ticket.

    `outputs`: head name -> its prediction (a missing head counts as no prediction).
    `ticket`: the ticket's metadata keyed by input column names (as the rules' `fields` say).
    `now`: the moment of deciding (ageing; the created time when the ticket has none).
    `surge`: surge mode on or off; None follows the rules file (`auto` counts as off here:
    a single ticket cannot know the volume; `urgency.scoring` works it out for a batch).
    """
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    now = now.astimezone(UTC)
    spec = rules.spec
    steps: list[Step] = []
    notes: list[str] = []
    values: dict[str, Any] = {}
    for info in rules.input_fields:
        value, problem = parse_value(info, ticket.get(info.column))
        if problem:
            notes.append(f"{info.name} (column {info.column}): {problem}; treated as missing")
        values[info.name] = value
    try:
        created = parse_timestamp(ticket.get(spec.created_at.column), spec.created_at.timezone)
    except ValueError:
        created = None
        notes.append(
            f"created_at (column {spec.created_at.column}): {ticket.get(spec.created_at.column)!r} "
            "is not an ISO 8601 timestamp; using now"
        )
    if created is None:
        created = now
    surge_on = surge if surge is not None else spec.surge.mode == "on"

    # 1. Confidence: untrusted predictions are set aside and the ticket goes to a human.
    labels: dict[str, str | None] = {}
    confidences: dict[str, float | None] = {}
    untrusted: list[str] = []
    for head in HEADS:
        output = outputs.get(head)
        label = output.label if output is not None and not is_missing(output.label) else None
        confidence = output.confidence if output is not None and not is_missing(output.confidence) else None
        labels[head], confidences[head] = label, confidence
        threshold = spec.confidence.thresholds.get(head)
        fallback = spec.confidence.rules_only_urgency if head == "urgency" else None
        if label is None:
            untrusted.append(head)
            steps.append(
                Step(f"confidence.{head}", "confidence", head, None, fallback, "no prediction: rules only")
            )
        elif threshold is not None and (confidence is None or confidence < threshold):
            untrusted.append(head)
            shown = "none" if confidence is None else f"{confidence:.2f}"
            steps.append(
                Step(
                    f"confidence.{head}",
                    "confidence",
                    head,
                    label,
                    fallback,
                    f"confidence {shown} below threshold {threshold:.2f}: rules only",
                )
            )
        values[f"{head}_confidence"] = confidence
    trusted = {head: labels[head] if head not in untrusted else None for head in HEADS}
    urgency_used = trusted["urgency"] or spec.confidence.rules_only_urgency
    values["urgency"] = urgency_used.casefold()
    for head in ("category", "sentiment"):
        values[head] = trusted[head].casefold() if trusted[head] else None
    values["surge"] = surge_on
    values["age_hours"] = max(0.0, (now - created).total_seconds() / 3600)

    # 2. Impact: the most severe level any impact rule gives.
    impact = spec.impact.default
    winner = None
    for rule in _matching(rules.impact_rules, values):
        if winner is None or rules.impact_levels.index(rule.value) < rules.impact_levels.index(winner.value):
            winner = rule
    if winner is not None:
        impact = winner.value
        steps.append(Step(winner.name, "impact", "impact", spec.impact.default, impact, winner.description))
    values["impact"] = impact.casefold()

    # 3. The urgency x impact matrix.
    start = spec.matrix[urgency_used][impact]
    steps.append(
        Step("matrix", "priority", "priority", None, start, f"urgency {urgency_used} x impact {impact}")
    )
    base = rules.rank(start)
    last = len(rules.levels) - 1

    # 4. Priority rules. Shifts add up (order-free), then floors and caps, strongest last.
    total = 0
    for rule in _matching(rules.shifts, values):
        before = min(max(base + total, 0), last)
        total += -rule.value if rule.action == "raise_by" else rule.value
        after = min(max(base + total, 0), last)
        verb = "raise by" if rule.action == "raise_by" else "lower by"
        steps.append(
            Step(
                rule.name,
                "priority",
                "priority",
                rules.levels[before],
                rules.levels[after],
                f"{verb} {rule.value}" + (f": {rule.description}" if rule.description else ""),
            )
        )
    rank = min(max(base + total, 0), last)
    for rule in reversed(_matching(rules.bounds, values)):
        before = rank
        bound = rules.rank(rule.value)
        rank = min(rank, bound) if rule.action == "at_least" else max(rank, bound)
        steps.append(
            Step(
                rule.name,
                "priority",
                "priority",
                rules.levels[before],
                rules.levels[rank],
                f"{rule.action.replace('_', ' ')} {rule.value}"
                + (f": {rule.description}" if rule.description else ""),
            )
        )
    pin = _first(rules.pins, values)
    if pin is not None:
        before = rank
        rank = rules.rank(pin.value)
        steps.append(
            Step(
                pin.name,
                "priority",
                "priority",
                rules.levels[before],
                pin.value,
                "pinned" + (f": {pin.description}" if pin.description else ""),
            )
        )
    priority = rules.levels[rank]
    values["priority"] = priority.casefold()

    # 5. Routing.
    route = _first(rules.routes, values)
    if route is not None:
        team, skills = route.value
        steps.append(
            Step(
                route.name,
                "routing",
                "team",
                None,
                team,
                "skills " + ", ".join(skills) if skills else route.description,
            )
        )
    elif untrusted and spec.routing.triage_team:
        team, skills = spec.routing.triage_team, ()
        steps.append(
            Step("routing.triage_team", "routing", "team", None, team, "no rule matched; needs triage")
        )
    else:
        team, skills = spec.routing.default_team, ()
        steps.append(Step("routing.default_team", "routing", "team", None, team, "no rule matched"))

    # 6. Service calendar, SLA policy and deadlines.
    calendar_rule = _first(rules.calendar_rules, values)
    service_calendar = calendar_rule.value if calendar_rule else spec.calendar_selection.default
    if calendar_rule is not None:
        steps.append(
            Step(
                calendar_rule.name,
                "calendar",
                "calendar",
                spec.calendar_selection.default,
                service_calendar,
                calendar_rule.description,
            )
        )
    policy_rule = _first(rules.sla_rules, values)
    policy = rules.policy(policy_rule.value if policy_rule else spec.sla.default_policy)
    target = policy.targets[priority]
    calendar_name = target.calendar or policy.calendar or service_calendar
    calendar = rules.calendars[calendar_name]
    first_due = (
        calendar.add(created, timedelta(minutes=target.first_response)) if target.first_response else None
    )
    resolution_due = (
        calendar.add(created, timedelta(minutes=target.resolution)) if target.resolution else None
    )
    steps.append(
        Step(
            policy_rule.name if policy_rule else "sla.default_policy",
            "sla",
            "sla_policy",
            None,
            policy.name,
            f"{priority}: first response {_duration(target.first_response)}, resolution "
            f"{_duration(target.resolution)} on calendar {calendar_name}",
        )
    )

    due = first_due or resolution_due
    order_key = f"{rank:02d}|{iso(due) or NO_DEADLINE}|{iso(created)}"
    return Decision(
        priority=priority,
        priority_title=rules.level(priority).title,
        impact=impact,
        urgency=labels["urgency"],
        urgency_confidence=confidences["urgency"],
        urgency_used=urgency_used,
        category=labels["category"],
        category_confidence=confidences["category"],
        sentiment=labels["sentiment"],
        sentiment_confidence=confidences["sentiment"],
        team=team,
        skills=tuple(skills),
        sla_policy=policy.name,
        calendar=calendar_name,
        created_at=created,
        first_response_due=first_due,
        resolution_due=resolution_due,
        needs_human_triage=bool(untrusted),
        untrusted_heads=tuple(untrusted),
        surge=surge_on,
        order_key=order_key,
        explanation=tuple(steps),
        notes=tuple(notes),
    )


def surge_active(rules: RuleSet, created: Sequence[Any], now: datetime, *, counted_before: int = 0) -> bool:
    """Surge mode per the rules file: `on`, `off`, or `auto` - at least `min_tickets` tickets
    created in the `window_hours` before `now`. The one definition for files and the service:
    `created` are the created times of the tickets being scored (a ticket without a readable one
    is not counted); `counted_before` the tickets already scored in the window (the service's
    store, `Store.count_created_between`)."""
    mode = rules.spec.surge.mode
    if mode != "auto":
        return mode == "on"
    window = timedelta(hours=rules.spec.surge.window_hours)
    now = now.astimezone(UTC)
    count = counted_before
    for raw in created:
        try:
            moment = parse_timestamp(raw, rules.spec.created_at.timezone)
        except ValueError:
            continue
        if moment is not None and now - window <= moment <= now:
            count += 1
    return count >= rules.spec.surge.min_tickets
