"""The rules engine: one ticket's model outputs and metadata + the compiled rules -> a `Decision`.

Pure and deterministic: no I/O, no clock (the caller passes `now`), the same input always gives
the same `Decision`. `urgency.scoring` runs it after the models (predict, then decide).

A decision is made in stages, one function each, in this order; each records in the explanation
what it decided and passes on what the later stages need (`decide` reads them in sequence):
1. confidence (`_confidence`): a head whose confidence is below its threshold is not trusted; the
   ticket needs human triage and the rules decide without that prediction (urgency falls back to
   a default). A head with no model at all (absent from the outputs: the helpdesk has no labels
   for it) is not "untrusted" and sends nobody to triage: its fields are empty, so a rule reading
   it does not match (unless it asks for a missing value), and the explanation says so;
   text signals (`_text_signals`): a signal the file lists under `text_signals` is true at or
   above its threshold (the signals model's confidence, read from the ticket's text); a rule
   that fires on one says so in its explanation ("text: service down (0.99)");
   duplicate (`_duplicate`, with a `duplicates` section): what the duplicate check found
   (`DUPLICATE_COLUMNS`, written by the service's `urgency.duplicates.duplicate_of` before it
   decides) as `duplicate` and `duplicate_similarity`, so any rule can lower a duplicate's
   priority or route it;
2. impact (`_impact`): the most severe impact any impact rule gives (else the default);
3. matrix (`_matrix`): urgency x impact -> a starting level;
4. priority rules (`_priority_rules`): shifts (raise_by / lower_by) add up; then floors and caps
   (at_least / at_most), the rule with the smallest `order` having the last word; then a pin, if
   any, is final;
5. routing (`_route`): the first matching routing rule gives the team and skills;
6. calendar (`_service_calendar`): the first matching calendar rule gives the service hours;
7. SLA policy (`_deadlines`): the first matching policy; deadlines run in business time.
Before them, `_read_fields` reads the ticket's metadata (unreadable values become notes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from urgency.config import HEADS, signal_column
from urgency.decision import NO_DEADLINE, Decision, HeadOutput, Step, iso
from urgency.language import normalise_tag
from urgency.rules.compiler import RuleSet
from urgency.rules.sections import CompiledRule
from urgency.rules.values import DUPLICATE_COLUMNS, is_missing, parse_value


def parse_timestamp(raw: Any, zone: str) -> datetime | None:
    """ISO 8601 text or a datetime -> aware UTC datetime; no offset means `zone`. Raises ValueError."""
    if is_missing(raw) or raw is pd.NaT:
        return None
    moment = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw).strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC)


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


def decide(
    outputs: Mapping[str, HeadOutput | None],
    ticket: Mapping[str, Any],
    rules: RuleSet,
    now: datetime,
    *,
    surge: bool | None = None,
) -> Decision:
    """Decide one ticket.

    `outputs`: head name -> its prediction; None or a None label: no prediction for this ticket
    (e.g. empty text: the head is untrusted). A head absent from `outputs` has no model: its
    fields stay empty without sending the ticket to triage (see `_confidence`).
    `ticket`: the ticket's metadata keyed by input column names (as the rules' `fields` say).
    `now`: the moment of deciding (ageing; the created time when the ticket has none).
    `surge`: surge mode on or off; None follows the rules file (`auto` counts as off here:
    a single ticket cannot know the volume; `urgency.scoring` works it out for a batch).
    """
    if now.tzinfo is None:
        raise ValueError("now must carry a time zone")
    now = now.astimezone(UTC)
    surge_on = surge if surge is not None else rules.spec.surge.mode == "on"
    steps: list[Step] = []  # the explanation: every stage appends what it decided, in order

    metadata = _read_fields(ticket, rules, now)
    heads = _confidence(outputs, rules, steps)
    signals = _text_signals(ticket, rules, steps)
    duplicate = _duplicate(ticket, rules, steps)
    # What the rules' `when` can read; each stage adds what it decides for the stages after it.
    values = {
        **metadata.values,
        **heads.rule_values(),
        **signals.rule_values(),
        **duplicate,
        "surge": surge_on,
        "age_hours": max(0.0, (now - metadata.created).total_seconds() / 3600),
    }
    impact = _impact(rules, values, steps)
    values["impact"] = impact.casefold()
    start = _matrix(rules, heads.urgency_used, impact, steps)
    rank = _priority_rules(rules, values, start, steps)
    priority = rules.levels[rank]
    values["priority"] = priority.casefold()
    route = _route(rules, values, heads.untrusted, steps)
    service_calendar = _service_calendar(rules, values, steps)
    deadlines = _deadlines(rules, values, priority, metadata.created, service_calendar, steps)
    return _decision(rules, metadata, heads, signals, impact, rank, route, deadlines, surge_on, steps)


# ---------------------------------------------------------------------------------------------
# The stages, in the order `decide` runs them


@dataclass(frozen=True)
class _Metadata:
    """The ticket's metadata as the rules read it."""

    values: Mapping[str, Any]  # field name -> parsed value (None: missing or unreadable)
    created: datetime  # UTC; now when the ticket has no readable created time
    notes: tuple[str, ...]  # values that could not be read, and were treated as missing


def _read_fields(ticket: Mapping[str, Any], rules: RuleSet, now: datetime) -> _Metadata:
    """The ticket's metadata parsed as the rules' `fields` say; what cannot be read becomes a note."""
    spec = rules.spec
    notes: list[str] = []
    values: dict[str, Any] = {}
    for info in rules.input_fields:
        raw = ticket.get(info.column)
        if info.name == "language" and isinstance(raw, str):
            # `en-US`, `en_us` and `EN` are the language `en` a rule names (batch and service).
            raw = normalise_tag(raw)
        value, problem = parse_value(info, raw)
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
    return _Metadata(values, created if created is not None else now, tuple(notes))


@dataclass(frozen=True)
class _Predictions:
    """The models' outputs, and which of them the rules may use."""

    labels: Mapping[str, str | None]  # head -> label (the model's view, kept in the decision)
    confidences: Mapping[str, float | None]
    untrusted: tuple[str, ...]  # heads set aside: no prediction, or below their threshold
    urgency_used: str  # the urgency the matrix uses: the model's, or the rules-only fallback

    def rule_values(self) -> dict[str, Any]:
        """The fields rules read from the models: confidences always, labels only when trusted."""
        values: dict[str, Any] = {f"{head}_confidence": self.confidences[head] for head in HEADS}
        values["urgency"] = self.urgency_used.casefold()
        for head in ("category", "sentiment"):
            label = self.labels[head] if head not in self.untrusted else None
            values[head] = label.casefold() if label else None
        return values


def _confidence(outputs: Mapping[str, HeadOutput | None], rules: RuleSet, steps: list[Step]) -> _Predictions:
    """1. Untrusted predictions are set aside and the ticket goes to a human; a head with no
    model is left empty and explained when a rule reads it."""
    spec = rules.spec
    labels: dict[str, str | None] = {}
    confidences: dict[str, float | None] = {}
    untrusted: list[str] = []
    for head in HEADS:
        if head not in outputs:
            # No model for this head (not merely no prediction): nothing to trust or distrust.
            labels[head], confidences[head] = None, None
            readers = {name for f in (head, f"{head}_confidence") for name in rules.readers.get(f, ())}
            if readers and head != "urgency":  # urgency falls back to the rules-only level (below)
                names = ", ".join(sorted(readers))
                reason = f"no {head} model: rule(s) reading {head} see no value ({names})"
                steps.append(Step(f"confidence.{head}", "confidence", head, None, None, reason))
            continue
        output = outputs.get(head)
        label = output.label if output is not None and not is_missing(output.label) else None
        confidence = output.confidence if output is not None and not is_missing(output.confidence) else None
        labels[head], confidences[head] = label, confidence
        threshold = spec.confidence.thresholds.get(head)
        fallback = spec.confidence.rules_only_urgency if head == "urgency" else None
        if label is None:
            reason = "no prediction: rules only"
        elif threshold is not None and (confidence is None or confidence < threshold):
            shown = "none" if confidence is None else f"{confidence:.2f}"
            reason = f"confidence {shown} below threshold {threshold:.2f}: rules only"
        else:
            continue  # trusted
        untrusted.append(head)
        steps.append(Step(f"confidence.{head}", "confidence", head, label, fallback, reason))
    trusted_urgency = labels["urgency"] if "urgency" not in untrusted else None
    if "urgency" not in outputs:
        reason = "no urgency model: the matrix uses the rules-only urgency"
        fallback = spec.confidence.rules_only_urgency
        steps.append(Step("confidence.urgency", "confidence", "urgency", None, fallback, reason))
    urgency_used = trusted_urgency or spec.confidence.rules_only_urgency
    return _Predictions(labels, confidences, tuple(untrusted), urgency_used)


@dataclass(frozen=True)
class _Signals:
    """The text signals the rules file lists, as read from the ticket's predicted columns."""

    confidences: Mapping[str, float | None]  # name -> confidence (None: no model or no text)
    thresholds: Mapping[str, float]

    @property
    def fired(self) -> tuple[tuple[str, float], ...]:
        """(name, confidence) of every signal at or above its threshold, in the file's order."""
        return tuple(
            (name, confidence)
            for name, confidence in self.confidences.items()
            if confidence is not None and confidence >= self.thresholds[name]
        )

    def rule_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, confidence in self.confidences.items():
            field = signal_column(name)
            values[field] = None if confidence is None else confidence >= self.thresholds[name]
            values[f"{field}_confidence"] = confidence
        return values


def _text_signals(ticket: Mapping[str, Any], rules: RuleSet, steps: list[Step]) -> _Signals:
    """1b. The text signals: each listed signal's confidence from its column (`text_<name>`,
    written by the signals model). A ticket scored without a signals model has no such column:
    rules reading the signal see no value, and the explanation says so."""
    confidences: dict[str, float | None] = {}
    absent = []
    for name in rules.spec.text_signals:
        column = signal_column(name)
        if column not in ticket:
            absent.append(name)
        raw = ticket.get(column)
        confidences[name] = None if is_missing(raw) else float(raw)
    readers = {
        rule
        for name in absent
        for field in (signal_column(name), f"{signal_column(name)}_confidence")
        for rule in rules.readers.get(field, ())
    }
    if readers:
        reason = (
            f"no text signal {', '.join(absent)} (no signals model, or it reads no such signal): "
            f"rule(s) reading them see no value ({', '.join(sorted(readers))})"
        )
        steps.append(Step("confidence.text_signals", "confidence", "text_signals", None, None, reason))
    return _Signals(confidences, rules.spec.text_signals)


def _duplicate(ticket: Mapping[str, Any], rules: RuleSet, steps: list[Step]) -> dict[str, Any]:
    """1c. The duplicate check's answer (`DUPLICATE_COLUMNS`) as `duplicate`,
    `duplicate_similarity` and `duplicate_same`. Without a `duplicates` section there is nothing
    to read; without the columns (a file scored without the service's check) rules reading them
    see no value, and the explanation says so."""
    if rules.spec.duplicates is None:
        return {}
    if DUPLICATE_COLUMNS[0] not in ticket:
        names = ("duplicate", "duplicate_similarity", "duplicate_same")
        readers = sorted({rule for name in names for rule in rules.readers.get(name, ())})
        if readers:
            reason = (
                "no duplicate check (no similar-tickets index): rule(s) reading it see no value "
                f"({', '.join(readers)})"
            )
            steps.append(Step("duplicates", "duplicates", "duplicate_of", None, None, reason))
        return {"duplicate": None, "duplicate_similarity": None, "duplicate_same": None}
    found, similarity, why, same = (ticket.get(column) for column in DUPLICATE_COLUMNS)
    if is_missing(found) or found == "":
        return {"duplicate": False, "duplicate_similarity": None, "duplicate_same": None}
    detail = "" if is_missing(why) else str(why)
    steps.append(Step("duplicates", "duplicates", "duplicate_of", None, str(found), detail))
    return {
        "duplicate": True,
        "duplicate_similarity": None if is_missing(similarity) else float(similarity),
        "duplicate_same": None if is_missing(same) else str(same).casefold(),
    }


def _impact(rules: RuleSet, values: Mapping[str, Any], steps: list[Step]) -> str:
    """2. The most severe level any impact rule gives, else the default."""
    default = rules.spec.impact.default
    winner = None
    for rule in _matching(rules.impact_rules, values):
        if winner is None or rules.impact_levels.index(rule.value) < rules.impact_levels.index(winner.value):
            winner = rule
    if winner is None:
        return default
    reason = "; ".join(part for part in (winner.description, _signals_read(winner, rules, values)) if part)
    steps.append(Step(winner.name, "impact", "impact", default, winner.value, reason))
    return winner.value


def _matrix(rules: RuleSet, urgency: str, impact: str, steps: list[Step]) -> int:
    """3. The urgency x impact matrix -> the starting level's rank."""
    start = rules.spec.matrix[urgency][impact]
    steps.append(_priority_step("matrix", None, start, f"urgency {urgency} x impact {impact}"))
    return rules.rank(start)


def _priority_rules(rules: RuleSet, values: Mapping[str, Any], start: int, steps: list[Step]) -> int:
    """4. Shifts add up (order-free), then floors and caps (strongest last), then a pin is final.
    Ranks: 0 is the most urgent level."""
    rank = _shifts(rules, values, start, steps)
    rank = _bounds(rules, values, rank, steps)
    return _pin(rules, values, rank, steps)


def _shifts(rules: RuleSet, values: Mapping[str, Any], base: int, steps: list[Step]) -> int:
    # The running total is not clamped, so the sum does not depend on the order the shifts are
    # listed in; each step shows the level clamped to the defined ones.
    last = len(rules.levels) - 1
    total = 0
    for rule in _matching(rules.shifts, values):
        before = min(max(base + total, 0), last)
        total += -rule.value if rule.action == "raise_by" else rule.value
        after = min(max(base + total, 0), last)
        verb = "raise by" if rule.action == "raise_by" else "lower by"
        reason = f"{verb} {rule.value}" + _description(rule, rules, values)
        steps.append(_priority_step(rule.name, rules.levels[before], rules.levels[after], reason))
    return min(max(base + total, 0), last)


def _bounds(rules: RuleSet, values: Mapping[str, Any], rank: int, steps: list[Step]) -> int:
    # Applied weakest first, so the rule with the smallest `order` has the last word.
    for rule in reversed(_matching(rules.bounds, values)):
        before = rank
        bound = rules.rank(rule.value)
        rank = min(rank, bound) if rule.action == "at_least" else max(rank, bound)
        reason = f"{rule.action.replace('_', ' ')} {rule.value}" + _description(rule, rules, values)
        steps.append(_priority_step(rule.name, rules.levels[before], rules.levels[rank], reason))
    return rank


def _pin(rules: RuleSet, values: Mapping[str, Any], rank: int, steps: list[Step]) -> int:
    pin = _first(rules.pins, values)
    if pin is None:
        return rank
    reason = "pinned" + _description(pin, rules, values)
    steps.append(_priority_step(pin.name, rules.levels[rank], pin.value, reason))
    return rules.rank(pin.value)


def _route(
    rules: RuleSet, values: Mapping[str, Any], untrusted: Sequence[str], steps: list[Step]
) -> tuple[str, tuple[str, ...]]:
    """5. The first matching routing rule -> (team, skills); else triage (when a prediction was set
    aside and the file names a triage team), else the default team."""
    routing = rules.spec.routing
    route = _first(rules.routes, values)
    if route is not None:
        team, skills = route.value
        reason = "skills " + ", ".join(skills) if skills else route.description
        steps.append(Step(route.name, "routing", "team", None, team, reason))
        return team, tuple(skills)
    if untrusted and routing.triage_team:
        team, rule, reason = routing.triage_team, "routing.triage_team", "no rule matched; needs triage"
    else:
        team, rule, reason = routing.default_team, "routing.default_team", "no rule matched"
    steps.append(Step(rule, "routing", "team", None, team, reason))
    return team, ()


@dataclass(frozen=True)
class _Deadlines:
    policy: str  # the SLA policy's name
    calendar: str  # the calendar the SLA clock runs on
    first_response_due: datetime | None
    resolution_due: datetime | None


def _service_calendar(rules: RuleSet, values: Mapping[str, Any], steps: list[Step]) -> str:
    """6. The customer's service hours: the first matching calendar rule, else the default."""
    default = rules.spec.calendar_selection.default
    rule = _first(rules.calendar_rules, values)
    if rule is None:
        return default
    steps.append(Step(rule.name, "calendar", "calendar", default, rule.value, rule.description))
    return rule.value


def _deadlines(
    rules: RuleSet,
    values: Mapping[str, Any],
    priority: str,
    created: datetime,
    service_calendar: str,
    steps: list[Step],
) -> _Deadlines:
    """7. The SLA policy (the first matching rule, else the default) and its target for the
    priority; the deadlines run in business time from the ticket's creation."""
    policy_rule = _first(rules.sla_rules, values)
    policy = rules.policy(policy_rule.value if policy_rule else rules.spec.sla.default_policy)
    target = policy.targets[priority]
    # A level's own calendar beats the policy's, which beats the customer's service hours.
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
    return _Deadlines(policy.name, calendar_name, first_due, resolution_due)


def _decision(
    rules: RuleSet,
    metadata: _Metadata,
    heads: _Predictions,
    signals: _Signals,
    impact: str,
    rank: int,
    route: tuple[str, tuple[str, ...]],
    deadlines: _Deadlines,
    surge: bool,
    steps: Sequence[Step],
) -> Decision:
    """The stages' results -> the decided-ticket record."""
    priority = rules.levels[rank]
    team, skills = route
    due = deadlines.first_response_due or deadlines.resolution_due
    return Decision(
        priority=priority,
        priority_title=rules.level(priority).title,
        impact=impact,
        urgency=heads.labels["urgency"],
        urgency_confidence=heads.confidences["urgency"],
        urgency_used=heads.urgency_used,
        category=heads.labels["category"],
        category_confidence=heads.confidences["category"],
        sentiment=heads.labels["sentiment"],
        sentiment_confidence=heads.confidences["sentiment"],
        text_signals=signals.fired,
        team=team,
        skills=skills,
        sla_policy=deadlines.policy,
        calendar=deadlines.calendar,
        created_at=metadata.created,
        first_response_due=deadlines.first_response_due,
        resolution_due=deadlines.resolution_due,
        needs_human_triage=bool(heads.untrusted),
        untrusted_heads=heads.untrusted,
        surge=surge,
        # The queue sorts on this: priority, then the earliest deadline, then first come.
        order_key=f"{rank:02d}|{iso(due) or NO_DEADLINE}|{iso(metadata.created)}",
        explanation=tuple(steps),
        notes=metadata.notes,
    )


# ---------------------------------------------------------------------------------------------
# Small helpers


def _matching(rules: Sequence[CompiledRule], values: Mapping[str, Any]) -> list[CompiledRule]:
    return [rule for rule in rules if rule.condition.matches(values)]


def _first(rules: Sequence[CompiledRule], values: Mapping[str, Any]) -> CompiledRule | None:
    return next((rule for rule in rules if rule.condition.matches(values)), None)


def _priority_step(rule: str, before: str | None, after: str, reason: str) -> Step:
    return Step(rule, "priority", "priority", before, after, reason)


def _description(rule: CompiledRule, rules: RuleSet, values: Mapping[str, Any]) -> str:
    parts = [part for part in (rule.description, _signals_read(rule, rules, values)) if part]
    return f": {'; '.join(parts)}" if parts else ""


def _signals_read(rule: CompiledRule, rules: RuleSet, values: Mapping[str, Any]) -> str:
    """The text signals a fired rule read that are true, and how sure the signals model was:
    "text: service down (0.99)" - the signal came from the ticket's text, not its fields."""
    read = rule.condition.by_field()
    shown = [
        f"text: {name.replace('_', ' ')} ({values[f'{signal_column(name)}_confidence']:.2f})"
        for name in rules.spec.text_signals
        if signal_column(name) in read and values.get(signal_column(name))
    ]
    return ", ".join(shown)


def _duration(minutes: int | None) -> str:
    if minutes is None:
        return "none"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest:02d}m" if hours and rest else (f"{hours}h" if hours else f"{rest}m")
