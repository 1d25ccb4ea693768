"""Conditions: a rule's `when` compiled to matchers, and how two conditions relate.

A `Condition` holds one `Matcher` per field it names, all of which must hold. The compiler asks
whether two conditions can match the same ticket (`overlap`: rules that disagree then need an
explicit order), whether one matches every ticket the other does (`covers`: the later rule is then
unreachable), and whether a condition admits any ticket at all (`satisfiable`). The answers are
exact: each field is probed at a few values that between them behave like every possible value.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from urgency.rules.values import FieldInfo, parse_literal

OPERATORS = ("in", "not_in", "gt", "gte", "lt", "lte", "present")

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


# ---------------------------------------------------------------------------------------------
# Compiling a rule's `when`


def compile_condition(
    when: Mapping[str, Any],
    label: str,
    fields: Mapping[str, FieldInfo],
    excluded: set[str],
    problems: list[str],
) -> Condition:
    """A rule's `when` -> `Condition`; problems are appended, naming the rule (`label`).
    `excluded`: fields this rule's section may not read because they are decided later."""
    matchers = []
    for name, raw in when.items():
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
            literals = [parse_literal(info, item, where, problems) for item in items]
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
