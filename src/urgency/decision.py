"""The decided-ticket record: what `score` (predict, then decide) says about one ticket.

Defined once, here. Everything else derives from it:
- `Decision` is the record in memory (the rules engine, `urgency.rules.engine.decide`, builds it);
- `Decision.to_record()` is its flat, JSON-ready form: the columns of a scored file, in
  `RECORD_FIELDS` order (`DECISION_COLUMNS` are the ones the rules add after the models' columns);
- the service's response (`serve.schemas.ScoreResult`), the store's `predictions` table and the
  closed-tickets CSV (`urgency.agreement`) use these names and descriptions; `tests/test_decision.py`
  fails when one of them disagrees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from urgency.config import HEADS

# The order key's deadline part for a ticket without one (sorts after every real deadline). The
# only spelling of "no deadline": files and the store leave such a deadline empty.
NO_DEADLINE = "9999-12-31T23:59:59Z"


def is_no_deadline(text: Any) -> bool:
    """True for the "no deadline" sentinel (an older file may carry it in a deadline column)."""
    return isinstance(text, str) and text.startswith(NO_DEADLINE[:4])


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


# Field name -> one-line description: the record's documentation, also the service's OpenAPI
# descriptions. Order = the column order of a scored file (model columns come from predict).
RECORD_FIELDS: dict[str, str] = {
    "priority": "The priority level after every rule (e.g. P1).",
    "priority_title": "The priority level's title from the rules file (e.g. Critical).",
    "impact": "The impact level the impact rules gave (else the default).",
    "urgency": "The urgency model's label (null: no usable text, or no urgency model is served).",
    "urgency_confidence": "The urgency model's probability of its label (null when the label is).",
    "urgency_used": "The urgency the rules used (the fallback when the model is not trusted).",
    "category": "The category model's label (null: no usable text, or no category model is served).",
    "category_confidence": "The category model's probability of its label (null when the label is).",
    "sentiment": "The sentiment model's label (null: no usable text, or no sentiment model is served).",
    "sentiment_confidence": "The sentiment model's probability of its label (null when the label is).",
    "text_signals": "The text signals that fired: read from the text by the signals model, with its "
    "confidence (e.g. service_down=0.99).",
    "team": "The team the routing rules chose.",
    "skills": "The skills the routing rule asks for.",
    "sla_policy": "The SLA policy that set the deadlines.",
    "calendar": "The business-hours calendar the deadlines run on.",
    "created_at": "When the ticket was opened (UTC; the moment of scoring when not given).",
    "first_response_due": "First-response deadline (UTC; null: the policy sets none).",
    "resolution_due": "Resolution deadline (UTC; null: the policy sets none).",
    "needs_human_triage": "True when a model's prediction was missing or below its threshold.",
    "untrusted_heads": "The heads whose prediction was set aside (missing or below threshold).",
    "surge": "Whether surge mode was on for this decision.",
    "order_key": "Sorts the work queue: priority, nearest deadline, created time.",
    "explanation": "Every rule that fired, in order, as text.",
    "explanation_json": "Every rule that fired, in order, as JSON (rule, stage, changed, before, after).",
    "notes": "Problems with the ticket's fields that the rules worked around.",
}
# What an agent's final decision can set (the store's feedback, the closed-tickets CSV's
# `agent_<field>` columns, the agreement figures).
AGENT_FIELDS: tuple[str, ...] = (*HEADS, "priority", "team")
# Written by predict (the models' columns), not by the rules: a scored file has them already.
PREDICTION_FIELDS: tuple[str, ...] = tuple(name for head in HEADS for name in (head, f"{head}_confidence"))
# The columns the rules add to a predicted frame (`created_at` is the input's own column).
DECISION_COLUMNS: tuple[str, ...] = tuple(
    name for name in RECORD_FIELDS if name not in PREDICTION_FIELDS and name != "created_at"
)


@dataclass(frozen=True)
class Decision:
    """One decided ticket (see `RECORD_FIELDS` for what each field means)."""

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
    text_signals: tuple[tuple[str, float], ...]  # (signal, confidence) of each that fired
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

    @property
    def text_signals_text(self) -> str:
        """The fired text signals as a file and the store write them: `service_down=0.99;...`."""
        return ";".join(f"{name}={confidence:.2f}" for name, confidence in self.text_signals)

    @property
    def explanation_text(self) -> str:
        return "; ".join(step.text() for step in self.explanation)

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
        """The flat, JSON-ready record (`RECORD_FIELDS`); timestamps as ISO 8601 UTC text."""
        record = {
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
            "text_signals": self.text_signals_text,
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
            "explanation": self.explanation_text,
            "explanation_json": json.dumps([step.__dict__ for step in self.explanation], ensure_ascii=False),
            "notes": "; ".join(self.notes),
        }
        assert list(record) == list(RECORD_FIELDS)  # one definition: a new field is added in both
        return record


def iso(moment: datetime | None) -> str | None:
    """A moment as ISO 8601 UTC text to the second (`2026-11-23T08:05:00Z`)."""
    # isoformat, not strftime: strftime("%Y") does not pad years before 1000 on Linux.
    return (
        None
        if moment is None
        else moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    )
