"""The compiler's first pass: each section of a validated `RulesFile` compiled on its own.

Every level, impact level, team, skill, calendar and SLA policy a section names must be defined,
and every field a rule's `when` reads must exist and be known at that rule's stage. Problems are
collected, not raised, so that a file's author sees them all at once; `urgency.rules.compiler`
raises them, then checks how the compiled rules interact.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from urgency.calendars import BusinessCalendar, weekly_hours
from urgency.config import URGENCY_LABELS
from urgency.rules.conditions import Condition, compile_condition
from urgency.rules.schema import CalendarSpec, Rule, RulesFile, SlaPolicy
from urgency.rules.values import FieldInfo


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


@dataclass(frozen=True)
class Sections:
    """Every section's rules compiled, in file order (the `RuleSet` ranks them by precedence)."""

    impact_rules: list[CompiledRule]
    priority_rules: list[CompiledRule]
    routes: list[CompiledRule]
    calendar_rules: list[CompiledRule]
    sla_rules: list[CompiledRule]
    # None: a calendar with problems (they are reported and the load fails).
    calendars: dict[str, BusinessCalendar | None]
    team_skills: dict[str, tuple[str, ...]]

    @property
    def every_rule(self) -> list[CompiledRule]:
        return [*self.impact_rules, *self.priority_rules, *self.routes, *self.calendar_rules, *self.sla_rules]

    @property
    def shifts(self) -> list[CompiledRule]:
        return [rule for rule in self.priority_rules if rule.action in ("raise_by", "lower_by")]

    @property
    def bounds(self) -> list[CompiledRule]:
        return [rule for rule in self.priority_rules if rule.action in ("at_least", "at_most")]

    @property
    def pins(self) -> list[CompiledRule]:
        return [rule for rule in self.priority_rules if rule.action == "pin"]


def compile_sections(
    spec: RulesFile,
    fields: Mapping[str, FieldInfo],
    problems: list[str],
    warnings: list[str],
) -> Sections:
    """Compile every section; problems and warnings are appended in the order the file reads."""
    levels = tuple(level.name for level in spec.levels)
    _check_names(spec, levels, problems)
    _check_matrix(spec, levels, problems)
    impact_rules = _impact_rules(spec, fields, problems)
    priority_rules = _priority_rules(spec, fields, levels, problems)
    team_skills = _team_skills(spec, problems)
    routes = _routes(spec, fields, team_skills, problems)
    calendars = {name: _calendar(name, calendar, problems) for name, calendar in spec.calendars.items()}
    calendar_rules = _calendar_rules(spec, fields, calendars, problems)
    sla_rules = _sla_rules(spec, fields, levels, calendars, problems, warnings)
    return Sections(impact_rules, priority_rules, routes, calendar_rules, sla_rules, calendars, team_skills)


def _defined(value: str, known: Iterable[str], what: str, where: str, problems: list[str]) -> bool:
    known = list(known)
    if value not in known:
        problems.append(f"{where}: {value!r} is not a defined {what} ({', '.join(known)})")
        return False
    return True


def _compile_rule(
    rule: Rule,
    section: str,
    index: int,
    decision: tuple[str, Any],
    *,
    fields: Mapping[str, FieldInfo],
    decided_later: Iterable[str] = (),
    problems: list[str],
) -> CompiledRule:
    """`decision`: (action, value). `decided_later`: fields this section's rules may not read,
    because the engine decides them at a later stage."""
    label = f"{section} rule {rule.name!r}"
    condition = compile_condition(rule.when, label, fields, set(decided_later), problems)
    action, value = decision
    return CompiledRule(rule.name, section, index, rule.order, condition, action, value, rule.description)


def _check_names(spec: RulesFile, levels: tuple[str, ...], problems: list[str]) -> None:
    names = [rule.name for rule in spec.all_rules()]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        problems.append(f"rule names must be unique across the file, repeated: {', '.join(repeated)}")
    for what, items in (("levels", levels), ("impact.levels", spec.impact.levels), ("plans", spec.plans)):
        if len(set(items)) != len(items):
            problems.append(f"{what}: names must be unique")
    try:
        ZoneInfo(spec.created_at.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"created_at.timezone: unknown time zone {spec.created_at.timezone!r}")


def _check_matrix(spec: RulesFile, levels: tuple[str, ...], problems: list[str]) -> None:
    """The ITIL matrix: every urgency x every impact level -> a defined level."""
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


def _impact_rules(
    spec: RulesFile, fields: Mapping[str, FieldInfo], problems: list[str]
) -> list[CompiledRule]:
    compiled = []
    for index, rule in enumerate(spec.impact.rules):
        _defined(rule.impact, spec.impact.levels, "impact level", f"impact rule {rule.name!r}", problems)
        compiled.append(
            _compile_rule(
                rule,
                "impact",
                index,
                ("impact", rule.impact),
                fields=fields,
                decided_later={"impact", "priority"},
                problems=problems,
            )
        )
    return compiled


def _priority_rules(
    spec: RulesFile, fields: Mapping[str, FieldInfo], levels: tuple[str, ...], problems: list[str]
) -> list[CompiledRule]:
    compiled = []
    for index, rule in enumerate(spec.priority_rules):
        action, value = rule.action
        if action in ("at_least", "at_most", "pin"):
            _defined(value, levels, "level", f"priority rule {rule.name!r}: {action}", problems)
        compiled.append(
            _compile_rule(
                rule,
                "priority",
                index,
                (action, value),
                fields=fields,
                decided_later={"priority"},
                problems=problems,
            )
        )
    return compiled


def _team_skills(spec: RulesFile, problems: list[str]) -> dict[str, tuple[str, ...]]:
    teams = {team.name: tuple(team.skills) for team in spec.teams}
    if len(teams) != len(spec.teams):
        problems.append("teams: names must be unique")
    return teams


def _routes(
    spec: RulesFile,
    fields: Mapping[str, FieldInfo],
    teams: Mapping[str, tuple[str, ...]],
    problems: list[str],
) -> list[CompiledRule]:
    """Routing rules; a rule that names only skills goes to the first listed team that has them all."""
    all_skills = {skill for skills in teams.values() for skill in skills}
    compiled = []
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
        route = ("route", (team, tuple(rule.skills)))
        compiled.append(_compile_rule(rule, "routing", index, route, fields=fields, problems=problems))
    _defined(spec.routing.default_team, teams, "team", "routing.default_team", problems)
    if spec.routing.triage_team is not None:
        _defined(spec.routing.triage_team, teams, "team", "routing.triage_team", problems)
    return compiled


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
    days, yearly = _holidays(where, spec.holidays, problems)
    return BusinessCalendar(name, spec.timezone, False, week, frozenset(days), frozenset(yearly))


def _holidays(
    where: str, holidays: Iterable[date | str], problems: list[str]
) -> tuple[set[date], set[tuple[int, int]]]:
    """-> (single days, (month, day) every year)."""
    days: set[date] = set()
    yearly: set[tuple[int, int]] = set()
    for holiday in holidays:
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
    return days, yearly


def _calendar_rules(
    spec: RulesFile,
    fields: Mapping[str, FieldInfo],
    calendars: Mapping[str, BusinessCalendar | None],
    problems: list[str],
) -> list[CompiledRule]:
    selection = spec.calendar_selection
    _defined(selection.default, calendars, "calendar", "calendar_selection.default", problems)
    compiled = []
    for index, rule in enumerate(selection.rules):
        _defined(rule.calendar, calendars, "calendar", f"calendar rule {rule.name!r}", problems)
        decision = ("calendar", rule.calendar)
        compiled.append(_compile_rule(rule, "calendar", index, decision, fields=fields, problems=problems))
    return compiled


def _sla_rules(
    spec: RulesFile,
    fields: Mapping[str, FieldInfo],
    levels: tuple[str, ...],
    calendars: Mapping[str, BusinessCalendar | None],
    problems: list[str],
    warnings: list[str],
) -> list[CompiledRule]:
    compiled = []
    for index, policy in enumerate(spec.sla.policies):
        _check_policy(policy, levels, calendars, problems, warnings)
        decision = ("sla", policy.name)
        compiled.append(_compile_rule(policy, "sla", index, decision, fields=fields, problems=problems))
    policies = [policy.name for policy in spec.sla.policies]
    _defined(spec.sla.default_policy, policies, "SLA policy", "sla.default_policy", problems)
    return compiled


def _check_policy(
    policy: SlaPolicy,
    levels: tuple[str, ...],
    calendars: Mapping[str, BusinessCalendar | None],
    problems: list[str],
    warnings: list[str],
) -> None:
    """One target per level, and every calendar a policy or target names defined."""
    where = f"sla policy {policy.name!r}"
    if policy.calendar is not None:
        _defined(policy.calendar, calendars, "calendar", f"{where}: calendar", problems)
    missing = [level for level in levels if level not in policy.targets]
    extra = [level for level in policy.targets if level not in levels]
    if missing:
        problems.append(f"{where}: no target for level(s) {', '.join(missing)}")
    if extra:
        problems.append(f"{where}: targets for undefined level(s) {', '.join(extra)} ({', '.join(levels)})")
    for level, target in policy.targets.items():
        if target.calendar is not None:
            _defined(target.calendar, calendars, "calendar", f"{where}: targets.{level}.calendar", problems)
        if target.first_response and target.resolution and target.first_response > target.resolution:
            warnings.append(f"{where}: {level} first response is due after resolution")
