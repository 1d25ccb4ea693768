"""Ticket fields and their values: which fields a rule may name, and one parser for both a ticket's
values and the literals in a rule's `when`, so that the two compare alike.

A field is built in (a model's output and confidence, a text signal the file lists under
`text_signals`, `surge`, `age_hours`, `duplicate` and `duplicate_similarity` (with a
`duplicates` section), and the `impact` and `priority` the engine decides on the
way) or declared under the file's `fields` (a column of the
ticket's metadata). Text compares casefolded; `yes`/`no`, `1`/`0` and the like are booleans.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from urgency.config import HEADS, SENTIMENT_LABELS, URGENCY_LABELS, signal_column
from urgency.rules.schema import FieldKind, RulesFile

TRUE_WORDS = frozenset({"true", "yes", "y", "1", "t"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "f"})


@dataclass(frozen=True)
class FieldInfo:
    name: str
    kind: FieldKind
    values: tuple[str, ...] | None = None  # casefolded; None: any value
    column: str | None = None  # None: built in (model output, derived or context)


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
            return None, f"{_shown(raw)} is not a number"
        except OverflowError:  # an integer too large for a float
            return None, f"{_shown(raw)} is not a readable number (too large)"
        if math.isnan(number):
            return None, None
        if math.isinf(number):
            return None, f"{_shown(raw)} is not a readable number (too large)"
        return number, None
    text = str(raw).strip().casefold()
    if info.values is not None and text not in info.values:
        return None, f"{raw!r} is not one of {', '.join(info.values)}"
    return text, None


def _shown(raw: Any) -> str:
    """A value for a note: its repr, cut short (a note must not repeat a huge input)."""
    text = repr(raw)
    return text if len(text) <= 40 else f"{text[:30]}... ({len(text)} characters)"


def parse_literal(info: FieldInfo, raw: Any, where: str, problems: list[str]) -> Any:
    """One value a rule's `when` names -> the comparable value, or None with the problem appended.
    Stricter than `parse_value`: a rule must name a defined value, and a number as a number."""
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


# The duplicate check's answer, as the ticket's columns the service writes before the rules run
# (`urgency.duplicates.duplicate_of`): the open ticket it probably duplicates, their similarity,
# why, and the field they share. Absent: no check was made (`engine._duplicate`).
DUPLICATE_COLUMNS = ("duplicate_of", "duplicate_similarity", "duplicate_why", "duplicate_same")


def rule_fields(
    spec: RulesFile, category_labels: Sequence[str] | None, problems: list[str]
) -> dict[str, FieldInfo]:
    """Every field a rule may name: the built-in ones, then those the file declares."""
    builtin = _builtin_fields(spec, category_labels)
    return {**builtin, **_user_fields(spec, builtin, problems)}


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
    if spec.duplicates is not None:  # what the duplicate check found (`engine._duplicate`)
        fields["duplicate"] = FieldInfo("duplicate", "bool")
        fields["duplicate_similarity"] = FieldInfo("duplicate_similarity", "number")
        # Which of `same_fields` the two tickets share (a rule can treat the same person and the
        # same organisation differently).
        fields["duplicate_same"] = text("duplicate_same", spec.duplicates.same_fields)
    for name in spec.text_signals:
        fields[signal_column(name)] = FieldInfo(signal_column(name), "bool")
        fields[f"{signal_column(name)}_confidence"] = FieldInfo(f"{signal_column(name)}_confidence", "number")
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
