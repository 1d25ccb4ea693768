"""The scoring layer: model outputs + ticket metadata + rules -> priority, team, deadlines, reasons.

Pure and deterministic: no I/O, no clock (the caller passes `now`), the same input always gives
the same `Decision`. The CLI (`urgency score`), evaluation and the service all call `decide` (one
ticket) or `decide_frame` (a batch, e.g. the output of `urgency.predict.predict_frame`).

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

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from urgency.config import HEADS
from urgency.rules import CompiledRule, RuleSet, is_missing, parse_value

NO_DEADLINE = "9999-12-31T23:59:59Z"
# Columns `decide_frame` adds (a stable interface for files and reports).
DECISION_COLUMNS: tuple[str, ...] = (
    "priority",
    "priority_title",
    "impact",
    "urgency_used",
    "team",
    "skills",
    "sla_policy",
    "calendar",
    "first_response_due",
    "resolution_due",
    "needs_human_triage",
    "untrusted_heads",
    "surge",
    "order_key",
    "explanation",
    "explanation_json",
    "notes",
)


@dataclass(frozen=True)
class HeadOutput:
    """One head's prediction for one ticket (label None: no prediction, e.g. empty text)."""

    label: str | None
    confidence: float | None = None


@dataclass(frozen=True)
class Step:
    """One rule that fired: what it decided, from what to what."""

    rule: str
    stage: str
    changed: str
    before: str | None
    after: str | None
    detail: str = ""

    def text(self) -> str:
        after = "none" if self.after is None else self.after
        if self.before is None:
            change = f"{self.changed} {after}"
        elif self.before == self.after:
            change = f"{self.changed} {after} (no change)"
        else:
            change = f"{self.changed} {self.before} -> {after}"
        return f"{self.rule}: {change}" + (f" [{self.detail}]" if self.detail else "")


@dataclass(frozen=True)
class Decision:
    priority: str
    priority_title: str
    impact: str
    urgency: str | None
    urgency_confidence: float | None
    urgency_used: str
    category: str | None
    category_confidence: float | None
    sentiment: str | None
    sentiment_confidence: float | None
    team: str
    skills: tuple[str, ...]
    sla_policy: str
    calendar: str
    created_at: datetime
    first_response_due: datetime | None
    resolution_due: datetime | None
    needs_human_triage: bool
    untrusted_heads: tuple[str, ...]
    surge: bool
    order_key: str
    explanation: tuple[Step, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def rules_fired(self) -> list[str]:
        return [step.rule for step in self.explanation]

    def outcome(self) -> tuple[Any, ...]:
        """What the decision settles (without the reasons): compare two decisions with this."""
        return (
            self.priority,
            self.impact,
            self.urgency_used,
            self.team,
            self.skills,
            self.sla_policy,
            self.calendar,
            self.first_response_due,
            self.resolution_due,
            self.needs_human_triage,
        )

    def to_record(self) -> dict[str, Any]:
        """Flat, JSON-ready fields; timestamps as ISO 8601 UTC text."""
        return {
            "priority": self.priority,
            "priority_title": self.priority_title,
            "impact": self.impact,
            "urgency": self.urgency,
            "urgency_confidence": self.urgency_confidence,
            "urgency_used": self.urgency_used,
            "category": self.category,
            "category_confidence": self.category_confidence,
            "sentiment": self.sentiment,
            "sentiment_confidence": self.sentiment_confidence,
            "team": self.team,
            "skills": ";".join(self.skills),
            "sla_policy": self.sla_policy,
            "calendar": self.calendar,
            "created_at": iso(self.created_at),
            "first_response_due": iso(self.first_response_due),
            "resolution_due": iso(self.resolution_due),
            "needs_human_triage": self.needs_human_triage,
            "untrusted_heads": ";".join(self.untrusted_heads),
            "surge": self.surge,
            "order_key": self.order_key,
            "explanation": "; ".join(step.text() for step in self.explanation),
            "explanation_json": json.dumps([step.__dict__ for step in self.explanation], ensure_ascii=False),
            "notes": "; ".join(self.notes),
        }


def iso(moment: datetime | None) -> str | None:
    # isoformat, not strftime: strftime("%Y") does not pad years before 1000 on Linux.
    return (
        None
        if moment is None
        else moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    )


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
    a single ticket cannot know the volume; `decide_frame` works it out for a batch).
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


# ---------------------------------------------------------------------------------------------
# Batches


def head_outputs(row: Mapping[str, Any]) -> dict[str, HeadOutput]:
    """A `predict_frame` row's columns (`<head>`, `<head>_confidence`) -> `HeadOutput`s."""
    outputs = {}
    for head in HEADS:
        if head in row:
            label = row[head]
            confidence = row.get(f"{head}_confidence")
            outputs[head] = HeadOutput(
                None if is_missing(label) or label is pd.NA else str(label),
                None
                if confidence is None or confidence is pd.NA or pd.isna(confidence)
                else float(confidence),
            )
    return outputs


def frame_records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of `frame` as dicts with None for every missing value (NaN, NA, NaT)."""
    values = frame[list(columns)].to_numpy(dtype=object)
    return [
        {
            name: None if value is None or value is pd.NA or value is pd.NaT or value != value else value
            for name, value in zip(columns, row, strict=True)
        }
        for row in values
    ]


def surge_active(rules: RuleSet, created: Sequence[Any], now: datetime) -> bool:
    """Surge mode per the rules file; `auto` counts tickets created in the window before `now`."""
    mode = rules.spec.surge.mode
    if mode != "auto":
        return mode == "on"
    window = timedelta(hours=rules.spec.surge.window_hours)
    now = now.astimezone(UTC)
    count = 0
    for raw in created:
        try:
            moment = parse_timestamp(raw, rules.spec.created_at.timezone)
        except ValueError:
            continue
        if moment is not None and now - window <= moment <= now:
            count += 1
    return count >= rules.spec.surge.min_tickets


def decide_frame(
    frame: pd.DataFrame, rules: RuleSet, now: datetime, *, surge: bool | None = None
) -> pd.DataFrame:
    """`decide` for every row of `frame` (model columns as `predict_frame` writes them, plus the
    metadata columns the rules read). Returns `DECISION_COLUMNS`, index aligned with `frame`."""
    column = rules.spec.created_at.column
    if surge is None:
        created = frame[column].tolist() if column in frame.columns else []
        surge = surge_active(rules, created, now)
    wanted = [
        name
        for name in {
            *HEADS,
            *(f"{head}_confidence" for head in HEADS),
            column,
            *(info.column for info in rules.input_fields),
        }
        if name in frame.columns
    ]
    rows = []
    for record in frame_records(frame, sorted(wanted)):
        decision = decide(head_outputs(record), record, rules, now, surge=surge)
        full = decision.to_record()
        rows.append([full[name] for name in DECISION_COLUMNS])
    return pd.DataFrame(rows, index=frame.index, columns=list(DECISION_COLUMNS))


def queue_order(scored: pd.DataFrame) -> pd.DataFrame:
    """Sort a scored frame into the work queue: priority, then the nearest deadline, then the
    created time (first come, first served), then input order."""
    return scored.sort_values("order_key", kind="stable")


def missing_columns(frame_columns: Sequence[str], rules: RuleSet) -> list[str]:
    """Columns the rules read that a frame lacks (their fields are treated as empty)."""
    wanted = [info.column for info in rules.input_fields] + [rules.spec.created_at.column]
    return [column for column in dict.fromkeys(wanted) if column is not None and column not in frame_columns]
