"""The scoring rules file: YAML -> strict pydantic models -> a checked, compiled `RuleSet`.

A rules file says how a helpdesk turns model outputs and ticket metadata into a priority, a team
and deadlines (docs/rules.md explains how to write one; rules.yaml is a worked example).

Loading checks more than the shape of the file. Unknown keys are errors. Every level, team,
skill, plan, calendar and SLA policy a rule names must be defined. Two rules that can match the
same ticket and decide the same thing differently must say which one wins (`order`, smaller
wins). Rules that can never fire, and rules that would let a higher plan or a VIP end up with a
lower priority, are reported as warnings. Every message names the rule.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator

from urgency.calendars import BusinessCalendar, weekly_hours
from urgency.config import HEADS, SENTIMENT_LABELS, URGENCY_LABELS, Strict, read_yaml
from urgency.errors import ParamsError

NAME = r"^[A-Za-z0-9_.-]+$"
FieldKind = Literal["text", "bool", "number"]
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "t"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "f"})
OPERATORS = ("in", "not_in", "gt", "gte", "lt", "lte", "present")


def parse_duration(value: object) -> int:
    """'15m', '4h', '1h30m' -> minutes. Bare numbers are refused: minutes or hours?"""
    match = re.fullmatch(r"\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*", value) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration; write e.g. '30m', '4h' or '1h30m'")
    hours, minutes = match.groups()
    return int(hours or 0) * 60 + int(minutes or 0)


Minutes = Annotated[int, Field(gt=0)]


# ---------------------------------------------------------------------------------------------
# The file's schema


class FieldSpec(Strict):
    """A ticket field the rules read: which input column holds it, and its type."""

    column: str
    type: FieldKind = "text"
    # For text fields: the values a ticket may carry (rules may only name these).
    values: list[str] | None = None
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        # `language: lang` is short for `language: {column: lang}`.
        return {"column": value} if isinstance(value, str) else value


class CreatedAtSpec(Strict):
    column: str = "created_at"
    # For timestamps written without an offset.
    timezone: str = "UTC"


class Level(Strict):
    name: str = Field(pattern=NAME)
    title: str
    definition: str = Field(min_length=1)


class Rule(Strict):
    name: str = Field(pattern=NAME)
    description: str = ""
    # Field -> value, list of values, or {in, not_in, gt, gte, lt, lte, present}. All must hold.
    when: dict[str, Any] = Field(default_factory=dict)
    # When rules can match the same ticket and decide differently, the smaller order wins.
    order: int | None = None


class ImpactRule(Rule):
    impact: str


PRIORITY_ACTIONS = ("raise_by", "lower_by", "at_least", "at_most", "pin")


class PriorityRule(Rule):
    raise_by: int | None = Field(default=None, ge=1)
    lower_by: int | None = Field(default=None, ge=1)
    at_least: str | None = None
    at_most: str | None = None
    pin: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> PriorityRule:
        given = [action for action in PRIORITY_ACTIONS if getattr(self, action) is not None]
        if len(given) != 1:
            raise ValueError(
                f"rule {self.name!r}: give exactly one of {', '.join(PRIORITY_ACTIONS)} "
                f"(got {given or 'none'})"
            )
        return self

    @property
    def action(self) -> tuple[str, Any]:
        return next(
            (name, getattr(self, name)) for name in PRIORITY_ACTIONS if getattr(self, name) is not None
        )


class Team(Strict):
    name: str = Field(pattern=NAME)
    skills: list[str] = Field(default_factory=list)
    description: str = ""


class RoutingRule(Rule):
    # A team, or only the skills needed: then the first listed team that has them all.
    team: str | None = None
    skills: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _team_or_skills(self) -> RoutingRule:
        if self.team is None and not self.skills:
            raise ValueError(f"routing rule {self.name!r}: give a team, skills, or both")
        return self


class CalendarSpec(Strict):
    timezone: str = "UTC"
    # 24/7: the SLA clock never stops.
    always_open: bool = False
    # Day or day range ('mon-fri', 'sat') -> time range(s) in local time ('08:00-18:00').
    hours: dict[str, str | list[str]] = Field(default_factory=dict)
    # 'YYYY-MM-DD' (one day) or 'MM-DD' (that day every year).
    holidays: list[date | str] = Field(default_factory=list)
    description: str = ""


class CalendarRule(Rule):
    calendar: str


class CalendarSelection(Strict):
    default: str
    rules: list[CalendarRule] = Field(default_factory=list)


class SlaTarget(Strict):
    first_response: Minutes | None = None
    resolution: Minutes | None = None
    # Overrides the policy's calendar for this level (e.g. P1 around the clock).
    calendar: str | None = None

    @field_validator("first_response", "resolution", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return None if value is None else parse_duration(value)


class SlaPolicy(Rule):
    # None: the calendar chosen by `calendar_selection` (the customer's service hours).
    calendar: str | None = None
    targets: dict[str, SlaTarget]


class SlaSection(Strict):
    # Used when no policy matches (e.g. a ticket without a plan).
    default_policy: str
    policies: list[SlaPolicy] = Field(min_length=1)


class ImpactSection(Strict):
    levels: list[str] = Field(min_length=1)  # most severe first
    default: str
    rules: list[ImpactRule] = Field(default_factory=list)


class ConfidenceSection(Strict):
    # Per head: a prediction below this confidence is not trusted.
    thresholds: dict[Literal["urgency", "category", "sentiment"], Annotated[float, Field(ge=0, le=1)]] = (
        Field(default_factory=dict)
    )
    # The urgency the matrix uses when the urgency prediction is not trusted.
    rules_only_urgency: Literal["high", "medium", "low"] = "medium"


class RoutingSection(Strict):
    default_team: str
    # Where tickets go that no rule routes and that need a human to triage them.
    triage_team: str | None = None
    rules: list[RoutingRule] = Field(default_factory=list)


class SurgeSection(Strict):
    # off / on / auto: on when at least `min_tickets` were created in the `window_hours` before now.
    mode: Literal["off", "on", "auto"] = "off"
    window_hours: float = Field(default=1.0, gt=0)
    min_tickets: int = Field(default=100, ge=1)


class RulesFile(Strict):
    version: Literal[1] = 1
    description: str = ""
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    created_at: CreatedAtSpec = CreatedAtSpec()
    # Support plans, lowest first: a higher plan must never get a lower priority.
    plans: list[str] = Field(default_factory=list)
    levels: list[Level] = Field(min_length=2)  # most urgent first
    impact: ImpactSection
    # urgency -> impact -> level
    matrix: dict[str, dict[str, str]]
    confidence: ConfidenceSection = ConfidenceSection()
    priority_rules: list[PriorityRule] = Field(default_factory=list)
    teams: list[Team] = Field(min_length=1)
    routing: RoutingSection
    calendars: dict[str, CalendarSpec] = Field(min_length=1)
    calendar_selection: CalendarSelection
    sla: SlaSection
    surge: SurgeSection = SurgeSection()


# ---------------------------------------------------------------------------------------------
# Compiled form: what the engine evaluates


@dataclass(frozen=True)
class FieldInfo:
    name: str
    kind: FieldKind
    values: tuple[str, ...] | None = None  # casefolded; None: any value
    column: str | None = None  # None: built in (model output, derived or context)


_OTHER = object()  # stands for "a text value no rule names" when comparing conditions


@dataclass(frozen=True)
class Matcher:
    field: str
    allowed: frozenset[Any] | None = None
    excluded: frozenset[Any] = frozenset()
    low: float | None = None
    low_inclusive: bool = True
    high: float | None = None
    high_inclusive: bool = True
    present: bool | None = None  # False: matches only a missing value

    def matches(self, value: Any) -> bool:
        if value is None:
            return self.present is False
        if self.present is False:
            return False
        if self.allowed is not None and value not in self.allowed:
            return False
        if value in self.excluded:
            return False
        if self.low is not None and (value < self.low if self.low_inclusive else value <= self.low):
            return False
        return not (
            self.high is not None and (value > self.high if self.high_inclusive else value >= self.high)
        )


@dataclass(frozen=True)
class Condition:
    matchers: tuple[Matcher, ...] = ()

    def matches(self, values: Mapping[str, Any]) -> bool:
        # A plain loop: this runs for every rule and every ticket.
        for matcher in self.matchers:  # noqa: SIM110
            if not matcher.matches(values.get(matcher.field)):
                return False
        return True

    def by_field(self) -> dict[str, Matcher]:
        return {matcher.field: matcher for matcher in self.matchers}


@dataclass(frozen=True)
class CompiledRule:
    name: str
    section: str
    index: int
    order: int | None
    condition: Condition
    action: str
    value: Any
    description: str = ""

    @property
    def precedence(self) -> tuple[float, int]:
        return (self.order if self.order is not None else math.inf, self.index)

    @property
    def label(self) -> str:
        return f"{self.section} rule {self.name!r}"


@dataclass(frozen=True, eq=False)
class RuleSet:
    """A checked rules file, ready for `urgency.scoring.decide`."""

    spec: RulesFile
    source: str
    fields: Mapping[str, FieldInfo]
    levels: tuple[str, ...]
    impact_levels: tuple[str, ...]
    impact_rules: tuple[CompiledRule, ...]
    shifts: tuple[CompiledRule, ...]
    bounds: tuple[CompiledRule, ...]
    pins: tuple[CompiledRule, ...]
    routes: tuple[CompiledRule, ...]
    calendar_rules: tuple[CompiledRule, ...]
    sla_rules: tuple[CompiledRule, ...]
    calendars: Mapping[str, BusinessCalendar]
    team_skills: Mapping[str, tuple[str, ...]]
    warnings: tuple[str, ...]

    # Looked up for every ticket: computed once per rule set.
    @cached_property
    def input_fields(self) -> tuple[FieldInfo, ...]:
        return tuple(info for info in self.fields.values() if info.column is not None)

    @cached_property
    def _ranks(self) -> dict[str, int]:
        return {level: position for position, level in enumerate(self.levels)}

    @cached_property
    def _levels(self) -> dict[str, Level]:
        return {level.name: level for level in self.spec.levels}

    @cached_property
    def _policies(self) -> dict[str, SlaPolicy]:
        return {policy.name: policy for policy in self.spec.sla.policies}

    def rank(self, level: str) -> int:
        return self._ranks[level]

    def level(self, name: str) -> Level:
        return self._levels[name]

    def policy(self, name: str) -> SlaPolicy:
        return self._policies[name]

    def rule_names(self) -> list[str]:
        return [rule.name for rule in _all_rules(self.spec)]

    def without(self, name: str) -> RuleSet:
        """The same rules with one rule removed: what would change without it?"""
        spec = self.spec
        update = {
            "impact": spec.impact.model_copy(
                update={"rules": [r for r in spec.impact.rules if r.name != name]}
            ),
            "priority_rules": [r for r in spec.priority_rules if r.name != name],
            "routing": spec.routing.model_copy(
                update={"rules": [r for r in spec.routing.rules if r.name != name]}
            ),
            "calendar_selection": spec.calendar_selection.model_copy(
                update={"rules": [r for r in spec.calendar_selection.rules if r.name != name]}
            ),
            # The default policy stays: tickets that match no policy still need one.
            "sla": spec.sla.model_copy(
                update={
                    "policies": [
                        p for p in spec.sla.policies if p.name != name or p.name == spec.sla.default_policy
                    ]
                }
            ),
        }
        category = self.fields["category"].values
        return compile_rules(spec.model_copy(update=update), category_labels=category, source=self.source)


def _all_rules(spec: RulesFile) -> list[Rule]:
    return [
        *spec.impact.rules,
        *spec.priority_rules,
        *spec.routing.rules,
        *spec.calendar_selection.rules,
        *spec.sla.policies,
    ]


# ---------------------------------------------------------------------------------------------
# Values: one parser for rule literals and ticket fields, so both compare alike


def is_missing(raw: Any) -> bool:
    return (
        raw is None
        or (isinstance(raw, float) and math.isnan(raw))
        or (isinstance(raw, str) and not raw.strip())
    )


def parse_value(info: FieldInfo, raw: Any) -> tuple[Any, str | None]:
    """A ticket's raw field value -> (comparable value or None, problem or None)."""
    if is_missing(raw):
        return None, None
    if info.kind == "bool":
        if isinstance(raw, bool):
            return raw, None
        word = str(raw).strip().casefold()
        if word in TRUE_WORDS:
            return True, None
        if word in FALSE_WORDS:
            return False, None
        return None, f"{raw!r} is not true/false"
    if info.kind == "number":
        if isinstance(raw, bool):
            return None, f"{raw!r} is not a number"
        try:
            number = float(raw)
        except (TypeError, ValueError):
            return None, f"{raw!r} is not a number"
        return (None, None) if math.isnan(number) else (number, None)
    text = str(raw).strip().casefold()
    if info.values is not None and text not in info.values:
        return None, f"{raw!r} is not one of {', '.join(info.values)}"
    return text, None


def _literal(info: FieldInfo, raw: Any, where: str, problems: list[str]) -> Any:
    if isinstance(raw, dict | list):
        problems.append(f"{where}: {raw!r} is not a single value")
        return None
    if info.kind == "number" and (isinstance(raw, bool) or not isinstance(raw, int | float)):
        problems.append(f"{where}: {raw!r} is not a number ({info.name} is a number field)")
        return None
    value, problem = parse_value(info, raw)
    if problem or value is None:
        what = _noun(info)
        problems.append(
            f"{where}: {raw!r} is not a defined {what}" + (f" ({problem})" if info.values is None else "")
        )
        return None
    return value


def _noun(info: FieldInfo) -> str:
    nouns = {"plan": "plan", "priority": "level", "impact": "impact level", "urgency": "urgency label"}
    noun = nouns.get(info.name, f"value of {info.name}")
    return f"{noun} ({', '.join(info.values)})" if info.values is not None else noun


def _matcher(info: FieldInfo, raw: Any, where: str, problems: list[str]) -> Matcher:
    if isinstance(raw, dict):
        unknown = sorted(set(map(str, raw)) - set(OPERATORS))
        if unknown:
            problems.append(f"{where}: unknown operator(s) {unknown}; use {', '.join(OPERATORS)}")
        spec = raw
    else:
        spec = {"in": raw}
    settings: dict[str, Any] = {}
    for operator in ("in", "not_in"):
        if operator in spec:
            items = spec[operator] if isinstance(spec[operator], list) else [spec[operator]]
            literals = [_literal(info, item, where, problems) for item in items]
            settings["allowed" if operator == "in" else "excluded"] = frozenset(
                v for v in literals if v is not None
            )
    for operator in ("gt", "gte", "lt", "lte"):
        if operator in spec:
            bound = spec[operator]
            if info.kind != "number":
                problems.append(f"{where}: {operator} needs a number field ({info.name} is {info.kind})")
            elif isinstance(bound, bool) or not isinstance(bound, int | float):
                problems.append(f"{where}: {operator}: {bound!r} is not a number")
            elif operator.startswith("g"):
                settings.update(low=float(bound), low_inclusive=operator == "gte")
            else:
                settings.update(high=float(bound), high_inclusive=operator == "lte")
    if "present" in spec:
        if not isinstance(spec["present"], bool):
            problems.append(f"{where}: present must be true or false")
        else:
            settings["present"] = spec["present"]
    return Matcher(field=info.name, **settings)


def _condition(
    rule: Rule, label: str, fields: Mapping[str, FieldInfo], excluded: set[str], problems: list[str]
) -> Condition:
    matchers = []
    for name, raw in rule.when.items():
        where = f"{label}: when.{name}"
        if name in excluded:
            problems.append(f"{where}: {name} is not known yet at this stage (it is decided later)")
            continue
        info = fields.get(name)
        if info is None:
            problems.append(
                f"{where}: unknown field {name!r}; declare it under `fields` (known: {', '.join(fields)})"
            )
            continue
        matchers.append(_matcher(info, raw, where, problems))
    return Condition(tuple(matchers))


# ---------------------------------------------------------------------------------------------
# Comparing conditions: can two rules match the same ticket, does one match all the other does?


def _points(info: FieldInfo, matchers: Iterable[Matcher | None]) -> list[Any]:
    """Values that between them behave like every possible value of the field for these matchers."""
    if info.kind == "bool":
        return [True, False, None]
    if info.values is not None:
        return [*info.values, None]
    literals: set[Any] = set()
    for matcher in matchers:
        if matcher is not None:
            literals |= (matcher.allowed or set()) | matcher.excluded
            literals |= {bound for bound in (matcher.low, matcher.high) if bound is not None}
    if info.kind == "text":
        return [*literals, _OTHER, None]
    numbers = sorted(float(value) for value in literals)
    if not numbers:
        return [0.0, None]
    middles = [(a + b) / 2 for a, b in itertools.pairwise(numbers)]
    return [numbers[0] - 1, *numbers, *middles, numbers[-1] + 1, None]


def _accepts(matcher: Matcher | None, value: Any) -> bool:
    if matcher is None:
        return True
    if value is _OTHER:
        return matcher.present is not False and matcher.allowed is None
    return matcher.matches(value)


def overlap(a: Condition, b: Condition, fields: Mapping[str, FieldInfo]) -> bool:
    ma, mb = a.by_field(), b.by_field()
    for name in set(ma) | set(mb):
        x, y = ma.get(name), mb.get(name)
        if not any(_accepts(x, p) and _accepts(y, p) for p in _points(fields[name], (x, y))):
            return False
    return True


def covers(a: Condition, b: Condition, fields: Mapping[str, FieldInfo]) -> bool:
    """True when every ticket `b` matches is also matched by `a`."""
    ma, mb = a.by_field(), b.by_field()
    for name, x in ma.items():
        y = mb.get(name)
        if any(_accepts(y, p) and not _accepts(x, p) for p in _points(fields[name], (x, y))):
            return False
    return True


def satisfiable(condition: Condition, fields: Mapping[str, FieldInfo]) -> bool:
    return all(any(_accepts(m, p) for p in _points(fields[m.field], (m,))) for m in condition.matchers)


def _explicitly_ordered(a: CompiledRule, b: CompiledRule) -> bool:
    return (a.order is not None or b.order is not None) and a.order != b.order


# ---------------------------------------------------------------------------------------------
# Compiling and checking


def _builtin_fields(spec: RulesFile, category_labels: Sequence[str] | None) -> dict[str, FieldInfo]:
    def text(name: str, values: Iterable[str] | None) -> FieldInfo:
        return FieldInfo(name, "text", None if values is None else tuple(v.casefold() for v in values))

    fields = {
        "urgency": text("urgency", URGENCY_LABELS),
        "category": text("category", category_labels),
        "sentiment": text("sentiment", SENTIMENT_LABELS),
        **{f"{head}_confidence": FieldInfo(f"{head}_confidence", "number") for head in HEADS},
        "surge": FieldInfo("surge", "bool"),
        "age_hours": FieldInfo("age_hours", "number"),
        "impact": text("impact", spec.impact.levels),
        "priority": text("priority", [level.name for level in spec.levels]),
    }
    return fields


def _user_fields(
    spec: RulesFile, builtin: Mapping[str, FieldInfo], problems: list[str]
) -> dict[str, FieldInfo]:
    fields = {}
    for name, field in spec.fields.items():
        where = f"fields.{name}"
        if name in builtin or name == "created_at":
            problems.append(f"{where}: {name!r} is a built-in field; choose another name")
            continue
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            problems.append(f"{where}: field names are lower-case letters, digits and _")
        values = field.values
        if name == "plan" and spec.plans:
            if values is not None and sorted(values) != sorted(spec.plans):
                problems.append(f"{where}: values {values} differ from `plans` {spec.plans}; leave them out")
            values = spec.plans
        if values is not None and field.type != "text":
            problems.append(f"{where}: only text fields take a list of values")
            values = None
        fields[name] = FieldInfo(
            name,
            field.type,
            None if values is None else tuple(str(v).casefold() for v in values),
            field.column,
        )
    if spec.plans and "plan" not in fields:
        problems.append("plans are listed but no field `plan` says which column holds a ticket's plan")
    return fields


def _calendar(name: str, spec: CalendarSpec, problems: list[str]) -> BusinessCalendar | None:
    where = f"calendars.{name}"
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where}: unknown time zone {spec.timezone!r} (use an IANA name like Europe/Berlin)")
        return None
    if spec.always_open:
        if spec.hours or spec.holidays:
            problems.append(f"{where}: an always-open calendar takes no hours or holidays")
        return BusinessCalendar(name, spec.timezone, always_open=True)
    try:
        week = weekly_hours(spec.hours)
    except ValueError as error:
        problems.append(f"{where}.hours: {error}")
        return None
    if not any(week):
        problems.append(f"{where}: no working hours (give `hours`, or `always_open: true` for 24/7)")
        return None
    days: set[date] = set()
    yearly: set[tuple[int, int]] = set()
    for holiday in spec.holidays:
        if isinstance(holiday, date):
            days.add(holiday)
            continue
        text = holiday.strip()
        match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", text)
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                days.add(date.fromisoformat(text))
                continue
            if not match:
                raise ValueError
            month, day = int(match.group(1)), int(match.group(2))
            date(2024, month, day)  # a leap year, so 02-29 is allowed
            yearly.add((month, day))
        except ValueError:
            problems.append(
                f"{where}.holidays: {holiday!r} is not a date (YYYY-MM-DD, or MM-DD for every year)"
            )
    return BusinessCalendar(name, spec.timezone, False, week, frozenset(days), frozenset(yearly))


def _defined(value: str, known: Iterable[str], what: str, where: str, problems: list[str]) -> bool:
    known = list(known)
    if value not in known:
        problems.append(f"{where}: {value!r} is not a defined {what} ({', '.join(known)})")
        return False
    return True


def _check_exclusive(
    rules: Sequence[CompiledRule],
    fields: Mapping[str, FieldInfo],
    decides: str,
    differs: Callable[[CompiledRule, CompiledRule], bool],
    problems: list[str],
    warnings: list[str],
) -> None:
    """First match wins: rules that can match together and disagree need an explicit order;
    a rule that an earlier rule always beats to it can never fire."""
    for position, a in enumerate(rules):
        for b in rules[position + 1 :]:
            if differs(a, b) and not _explicitly_ordered(a, b) and overlap(a.condition, b.condition, fields):
                problems.append(
                    f"{a.label} and {b.label} can match the same ticket and set {decides} differently "
                    f"({_show(a.value)} vs {_show(b.value)}); give one of them an `order` (smaller wins)"
                )
    ranked = sorted(rules, key=lambda rule: rule.precedence)
    for position, later in enumerate(ranked):
        for earlier in ranked[:position]:
            if covers(earlier.condition, later.condition, fields):
                warnings.append(
                    f"{later.label} is unreachable: {earlier.label} comes first and matches "
                    "every ticket it matches"
                )
                break


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        team, skills = value
        return f"team {team}" + (f" with skills {', '.join(skills)}" if skills else "")
    return str(value)


def _check_bounds(
    bounds: Sequence[CompiledRule],
    fields: Mapping[str, FieldInfo],
    rank: Mapping[str, int],
    problems: list[str],
) -> None:
    for floor in (rule for rule in bounds if rule.action == "at_least"):
        for cap in (rule for rule in bounds if rule.action == "at_most"):
            if (
                rank[floor.value] < rank[cap.value]
                and not _explicitly_ordered(floor, cap)
                and overlap(floor.condition, cap.condition, fields)
            ):
                problems.append(
                    f"{floor.label} (at least {floor.value}) and {cap.label} (at most {cap.value}) "
                    "can match the same ticket and contradict each other; "
                    "give one of them an `order` (smaller wins)"
                )


def _check_order_by_plan_and_vip(
    rules: Sequence[CompiledRule], fields: Mapping[str, FieldInfo], plans: Sequence[str], warnings: list[str]
) -> None:
    """A higher plan must never get a lower priority, nor a VIP one below a non-VIP."""
    raising = {"raise_by", "at_least"}
    lowering = {"lower_by", "at_most"}
    for rule in rules:
        matchers = rule.condition.by_field()
        if "plan" in matchers and plans and rule.action in raising | lowering:
            matched = [plan for plan in plans if matchers["plan"].matches(plan.casefold())]
            for plan in matched:
                rank = plans.index(plan)
                others = plans[rank + 1 :] if rule.action in raising else plans[:rank]
                missing = [other for other in others if other not in matched]
                if missing:
                    direction = "raises" if rule.action in raising else "lowers"
                    warnings.append(
                        f"{rule.label} {direction} the priority for plan {plan} "
                        f"but not for {', '.join(missing)}: "
                        "a higher plan could end up with a lower priority"
                    )
                    break
        if "vip" in matchers and fields.get("vip", FieldInfo("vip", "text")).kind == "bool":
            vip, other = matchers["vip"].matches(True), matchers["vip"].matches(False)
            if (rule.action in raising and other and not vip) or (
                rule.action in lowering and vip and not other
            ):
                warnings.append(f"{rule.label} could put a VIP below the same ticket without VIP")


def compile_rules(
    spec: RulesFile, *, category_labels: Sequence[str] | None = None, source: str = "rules"
) -> RuleSet:
    """Check a parsed rules file and compile it; every problem raises at once as `ParamsError`."""
    problems: list[str] = []
    warnings: list[str] = []
    builtin = _builtin_fields(spec, category_labels)
    fields = {**builtin, **_user_fields(spec, builtin, problems)}

    names = [rule.name for rule in _all_rules(spec)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"rule names must be unique across the file, repeated: {', '.join(repeated)}")
    levels = tuple(level.name for level in spec.levels)
    for what, items in (("levels", levels), ("impact.levels", spec.impact.levels), ("plans", spec.plans)):
        if len(set(items)) != len(items):
            problems.append(f"{what}: names must be unique")
    rank = {level: position for position, level in enumerate(levels)}
    try:
        ZoneInfo(spec.created_at.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"created_at.timezone: unknown time zone {spec.created_at.timezone!r}")

    # The ITIL matrix: every urgency x every impact level -> a defined level.
    if sorted(spec.matrix) != sorted(URGENCY_LABELS):
        problems.append(f"matrix: needs one row per urgency {list(URGENCY_LABELS)}, got {list(spec.matrix)}")
    for urgency, row in spec.matrix.items():
        if sorted(row) != sorted(spec.impact.levels):
            problems.append(
                f"matrix.{urgency}: needs one entry per impact level {spec.impact.levels}, got {list(row)}"
            )
        for impact, level in row.items():
            _defined(level, levels, "level", f"matrix.{urgency}.{impact}", problems)
    _defined(spec.impact.default, spec.impact.levels, "impact level", "impact.default", problems)

    def compiled(
        rule: Rule, section: str, index: int, action: str, value: Any, excluded: set[str]
    ) -> CompiledRule:
        label = f"{section} rule {rule.name!r}"
        condition = _condition(rule, label, fields, excluded, problems)
        return CompiledRule(rule.name, section, index, rule.order, condition, action, value, rule.description)

    impact_rules = []
    for index, rule in enumerate(spec.impact.rules):
        _defined(rule.impact, spec.impact.levels, "impact level", f"impact rule {rule.name!r}", problems)
        impact_rules.append(compiled(rule, "impact", index, "impact", rule.impact, {"impact", "priority"}))

    priority_rules = []
    for index, rule in enumerate(spec.priority_rules):
        action, value = rule.action
        if action in ("at_least", "at_most", "pin"):
            _defined(value, levels, "level", f"priority rule {rule.name!r}: {action}", problems)
        priority_rules.append(compiled(rule, "priority", index, action, value, {"priority"}))

    teams = {team.name: tuple(team.skills) for team in spec.teams}
    if len(teams) != len(spec.teams):
        problems.append("teams: names must be unique")
    all_skills = {skill for skills in teams.values() for skill in skills}
    routes = []
    for index, rule in enumerate(spec.routing.rules):
        where = f"routing rule {rule.name!r}"
        unknown = [skill for skill in rule.skills if skill not in all_skills]
        if unknown:
            problems.append(f"{where}: no team has skill(s) {', '.join(unknown)}")
        team = rule.team
        if team is not None:
            if _defined(team, teams, "team", where, problems) and not set(rule.skills) <= set(teams[team]):
                problems.append(
                    f"{where}: team {team} lacks skill(s) {sorted(set(rule.skills) - set(teams[team]))}"
                )
        else:
            team = next((name for name, skills in teams.items() if set(rule.skills) <= set(skills)), None)
            if team is None and not unknown:
                problems.append(f"{where}: no single team has all of {', '.join(rule.skills)}")
        routes.append(compiled(rule, "routing", index, "route", (team, tuple(rule.skills)), set()))
    _defined(spec.routing.default_team, teams, "team", "routing.default_team", problems)
    if spec.routing.triage_team is not None:
        _defined(spec.routing.triage_team, teams, "team", "routing.triage_team", problems)

    calendars = {name: _calendar(name, calendar, problems) for name, calendar in spec.calendars.items()}
    _defined(spec.calendar_selection.default, calendars, "calendar", "calendar_selection.default", problems)
    calendar_rules = []
    for index, rule in enumerate(spec.calendar_selection.rules):
        _defined(rule.calendar, calendars, "calendar", f"calendar rule {rule.name!r}", problems)
        calendar_rules.append(compiled(rule, "calendar", index, "calendar", rule.calendar, set()))

    sla_rules = []
    for index, policy in enumerate(spec.sla.policies):
        where = f"sla policy {policy.name!r}"
        if policy.calendar is not None:
            _defined(policy.calendar, calendars, "calendar", f"{where}: calendar", problems)
        missing = [level for level in levels if level not in policy.targets]
        extra = [level for level in policy.targets if level not in rank]
        if missing:
            problems.append(f"{where}: no target for level(s) {', '.join(missing)}")
        if extra:
            problems.append(
                f"{where}: targets for undefined level(s) {', '.join(extra)} ({', '.join(levels)})"
            )
        for level, target in policy.targets.items():
            if target.calendar is not None:
                _defined(
                    target.calendar, calendars, "calendar", f"{where}: targets.{level}.calendar", problems
                )
            if target.first_response and target.resolution and target.first_response > target.resolution:
                warnings.append(f"{where}: {level} first response is due after resolution")
        sla_rules.append(compiled(policy, "sla", index, "sla", policy.name, set()))
    _defined(
        spec.sla.default_policy,
        [p.name for p in spec.sla.policies],
        "SLA policy",
        "sla.default_policy",
        problems,
    )

    if problems:
        raise ParamsError(f"{source}: {len(problems)} problem(s)\n  - " + "\n  - ".join(problems))

    # Structure is sound: now look at how the rules interact.
    every = [*impact_rules, *priority_rules, *routes, *calendar_rules, *sla_rules]
    for rule in every:
        if not satisfiable(rule.condition, fields):
            warnings.append(f"{rule.label} is unreachable: its `when` admits no ticket")
    shifts = [rule for rule in priority_rules if rule.action in ("raise_by", "lower_by")]
    bounds = [rule for rule in priority_rules if rule.action in ("at_least", "at_most")]
    pins = [rule for rule in priority_rules if rule.action == "pin"]
    for rule in bounds:
        if (rule.action == "at_least" and rule.value == levels[-1]) or (
            rule.action == "at_most" and rule.value == levels[0]
        ):
            warnings.append(f"{rule.label} never changes a priority ({rule.action} {rule.value})")
    _check_bounds(bounds, fields, rank, problems)
    _check_exclusive(pins, fields, "the priority", lambda a, b: a.value != b.value, problems, warnings)
    _check_exclusive(routes, fields, "the team", lambda a, b: a.value != b.value, problems, warnings)
    _check_exclusive(
        calendar_rules, fields, "the calendar", lambda a, b: a.value != b.value, problems, warnings
    )
    _check_exclusive(sla_rules, fields, "the SLA policy", lambda a, b: a.value != b.value, problems, warnings)
    _check_order_by_plan_and_vip(priority_rules, fields, spec.plans, warnings)
    if problems:
        raise ParamsError(f"{source}: {len(problems)} problem(s)\n  - " + "\n  - ".join(problems))

    def ranked(rules: list[CompiledRule]) -> tuple[CompiledRule, ...]:
        return tuple(sorted(rules, key=lambda rule: rule.precedence))

    return RuleSet(
        spec=spec,
        source=source,
        fields=fields,
        levels=levels,
        impact_levels=tuple(spec.impact.levels),
        impact_rules=ranked(impact_rules),
        shifts=ranked(shifts),
        bounds=ranked(bounds),
        pins=ranked(pins),
        routes=ranked(routes),
        calendar_rules=ranked(calendar_rules),
        sla_rules=ranked(sla_rules),
        calendars={name: calendar for name, calendar in calendars.items() if calendar is not None},
        team_skills=teams,
        warnings=tuple(warnings),
    )


def parse_rules(raw: Any, *, category_labels: Sequence[str] | None = None, source: str = "rules") -> RuleSet:
    """A rules mapping (as read from YAML) -> `RuleSet`; problems raise `ParamsError`."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at the top level")
    try:
        spec = RulesFile.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_schema_problems(error, raw, source)) from None
    return compile_rules(spec, category_labels=category_labels, source=source)


def _schema_problems(error: ValidationError, raw: Any, source: str) -> str:
    """Like config.format_validation_error, naming the rule behind a list index:
    `priority_rules.3 (vip-raise).rase_by: unknown key`."""
    lines = [f"{source}: {error.error_count()} problem(s)"]
    for item in error.errors():
        node, parts = raw, []
        for part in item["loc"]:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = None
            named = isinstance(part, int) and isinstance(node, dict) and isinstance(node.get("name"), str)
            parts.append(f"{part} ({node['name']})" if named else str(part))
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"  - {'.'.join(parts) or '(top level)'}: {message}")
    return "\n".join(lines)


def load_rules(path: Path | str, *, category_labels: Sequence[str] | None = None) -> RuleSet:
    """Read and check a rules file. Warnings are on the result (`.warnings`); errors raise."""
    path = Path(path)
    raw = read_yaml(path, "rules")
    return parse_rules(raw, category_labels=category_labels, source=str(path))
