"""The compiler: a rules file -> a checked `RuleSet` the engine evaluates (`load_rules`).

Loading checks more than the shape of the file (`urgency.rules.schema`). First each section is
compiled on its own (`urgency.rules.sections`): every level, team, skill, plan, calendar and SLA
policy a rule names must be defined. Then, here, how the rules interact: two rules that can match
the same ticket and decide the same thing differently must say which one wins (`order`, smaller
wins). Rules that can never fire, and rules that would let a higher plan or a VIP end up with a
lower priority, are reported as warnings. Every message names the rule, and all problems of a pass
are reported at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from urgency.calendars import BusinessCalendar
from urgency.config import read_yaml
from urgency.errors import ParamsError
from urgency.rules.conditions import covers, overlap, satisfiable
from urgency.rules.schema import Level, RulesFile, SlaPolicy, validate_rules_file
from urgency.rules.sections import CompiledRule, Sections, compile_sections
from urgency.rules.values import DUPLICATE_COLUMNS, FieldInfo, rule_fields


@dataclass(frozen=True, eq=False)
class RuleSet:
    """A checked rules file, ready for `urgency.rules.engine.decide`."""

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

    @cached_property
    def readers(self) -> dict[str, tuple[str, ...]]:
        """Field name -> the rules whose `when` reads it, in file order: what a decision
        explains when a head has no model (those rules see no value)."""
        found: dict[str, list[str]] = {}
        for section in (
            self.impact_rules,
            self.shifts,
            self.bounds,
            self.pins,
            self.routes,
            self.calendar_rules,
            self.sla_rules,
        ):
            for rule in section:
                for name in rule.condition.by_field():
                    found.setdefault(name, []).append(rule.name)
        return {name: tuple(dict.fromkeys(names)) for name, names in found.items()}

    def rank(self, level: str) -> int:
        return self._ranks[level]

    def level(self, name: str) -> Level:
        return self._levels[name]

    def policy(self, name: str) -> SlaPolicy:
        return self._policies[name]

    def rule_names(self) -> list[str]:
        return [rule.name for rule in self.spec.all_rules()]

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


def parse_rules(raw: Any, *, category_labels: Sequence[str] | None = None, source: str = "rules") -> RuleSet:
    """A rules mapping (as read from YAML) -> `RuleSet`; problems raise `ParamsError`."""
    spec = validate_rules_file(raw, source)
    return compile_rules(spec, category_labels=category_labels, source=source)


def load_rules(path: Path | str, *, category_labels: Sequence[str] | None = None) -> RuleSet:
    """Read and check a rules file. Warnings are on the result (`.warnings`); errors raise."""
    path = Path(path)
    raw = read_yaml(path, "rules")
    return parse_rules(raw, category_labels=category_labels, source=str(path))


# ---------------------------------------------------------------------------------------------
# Compiling: each section on its own first, then how the rules interact


@dataclass
class _Findings:
    """What compiling found so far: problems stop the load, warnings ride along on the `RuleSet`."""

    source: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def raise_problems(self) -> None:
        if self.problems:
            raise ParamsError(
                f"{self.source}: {len(self.problems)} problem(s)\n  - " + "\n  - ".join(self.problems)
            )


def compile_rules(
    spec: RulesFile, *, category_labels: Sequence[str] | None = None, source: str = "rules"
) -> RuleSet:
    """Check a parsed rules file and compile it; every problem raises at once as `ParamsError`."""
    findings = _Findings(source)
    fields = rule_fields(spec, category_labels, findings.problems)
    sections = compile_sections(spec, fields, findings.problems, findings.warnings)
    _check_same_fields(spec, fields, findings.problems)
    findings.raise_problems()
    # Structure is sound: now look at how the rules interact.
    _check_interactions(spec, sections, fields, findings)
    findings.raise_problems()
    return _rule_set(spec, source, fields, sections, findings.warnings)


def _check_same_fields(spec: RulesFile, fields: Mapping[str, FieldInfo], problems: list[str]) -> None:
    """`duplicates.same_fields` must name declared ticket fields (a typo would never match), and
    no declared field may be read from a column the duplicate check writes."""
    if spec.duplicates is None:
        return
    for name, declared in spec.fields.items():
        column = declared.column or name
        if column in DUPLICATE_COLUMNS:  # a ticket field there would be overwritten
            problems.append(
                f"fields.{name}: column {column!r} is written by the duplicate check (rules "
                "`duplicates`); choose another name"
            )
    for position, name in enumerate(spec.duplicates.same_fields):
        if name not in spec.fields:
            declared = ", ".join(sorted(spec.fields)) or "none"
            problems.append(
                f"duplicates.same_fields[{position}]: {name!r} is not a field in `fields` "
                f"(declared: {declared})"
            )


def _rule_set(
    spec: RulesFile,
    source: str,
    fields: dict[str, FieldInfo],
    sections: Sections,
    warnings: list[str],
) -> RuleSet:
    def ranked(rules: list[CompiledRule]) -> tuple[CompiledRule, ...]:
        return tuple(sorted(rules, key=lambda rule: rule.precedence))

    return RuleSet(
        spec=spec,
        source=source,
        fields=fields,
        levels=tuple(level.name for level in spec.levels),
        impact_levels=tuple(spec.impact.levels),
        impact_rules=ranked(sections.impact_rules),
        shifts=ranked(sections.shifts),
        bounds=ranked(sections.bounds),
        pins=ranked(sections.pins),
        routes=ranked(sections.routes),
        calendar_rules=ranked(sections.calendar_rules),
        sla_rules=ranked(sections.sla_rules),
        calendars={name: calendar for name, calendar in sections.calendars.items() if calendar is not None},
        team_skills=sections.team_skills,
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------------------------------------
# How the rules interact: conflicts that need an order, rules that can never fire, and rules
# that break the plan and VIP ordering


def _check_interactions(
    spec: RulesFile, sections: Sections, fields: Mapping[str, FieldInfo], findings: _Findings
) -> None:
    problems, warnings = findings.problems, findings.warnings
    levels = tuple(level.name for level in spec.levels)
    for rule in sections.every_rule:
        if not satisfiable(rule.condition, fields):
            warnings.append(f"{rule.label} is unreachable: its `when` admits no ticket")
    for rule in sections.bounds:
        if (rule.action == "at_least" and rule.value == levels[-1]) or (
            rule.action == "at_most" and rule.value == levels[0]
        ):
            warnings.append(f"{rule.label} never changes a priority ({rule.action} {rule.value})")
    _check_bounds(sections.bounds, fields, levels, problems)

    def differ(a: CompiledRule, b: CompiledRule) -> bool:
        return a.value != b.value

    _check_exclusive(sections.pins, fields, "the priority", differ, problems, warnings)
    _check_exclusive(sections.routes, fields, "the team", differ, problems, warnings)
    _check_exclusive(sections.calendar_rules, fields, "the calendar", differ, problems, warnings)
    _check_exclusive(sections.sla_rules, fields, "the SLA policy", differ, problems, warnings)
    _check_order_by_plan_and_vip(sections.priority_rules, fields, spec.plans, warnings)


def _explicitly_ordered(a: CompiledRule, b: CompiledRule) -> bool:
    return (a.order is not None or b.order is not None) and a.order != b.order


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        team, skills = value
        return f"team {team}" + (f" with skills {', '.join(skills)}" if skills else "")
    return str(value)


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


def _check_bounds(
    bounds: Sequence[CompiledRule],
    fields: Mapping[str, FieldInfo],
    levels: Sequence[str],
    problems: list[str],
) -> None:
    """A floor above a cap that can match the same ticket: which one wins must be explicit."""
    rank = {level: position for position, level in enumerate(levels)}
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
