"""The rules file's schema: strict pydantic models of the YAML, one per section.

Only the shape is checked here (unknown keys, types, one action per priority rule, durations);
whether the names a rule uses are defined, and how rules interact, is `urgency.rules.compiler`'s
job. docs/rules.md describes the file for the people who write one.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from urgency.config import Strict, located_problems
from urgency.errors import ParamsError

NAME = r"^[A-Za-z0-9_.-]+$"
FieldKind = Literal["text", "bool", "number"]


# A duration is short ("1h30m"); a longer text is refused before any matching.
_MAX_DURATION_LENGTH = 32
# Linear: the text is stripped first, and no two neighbouring parts can match the same characters.
_DURATION = re.compile(r"(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?")


def parse_duration(value: object) -> int:
    """'15m', '4h', '1h30m' -> minutes. Bare numbers are refused: minutes or hours?"""
    text = value.strip() if isinstance(value, str) else None
    if text is not None and len(text) > _MAX_DURATION_LENGTH:
        raise ValueError(
            f"{text[:_MAX_DURATION_LENGTH]!r}... is not a duration (longer than {_MAX_DURATION_LENGTH} "
            "characters); write e.g. '30m', '4h' or '1h30m'"
        )
    match = _DURATION.fullmatch(text) if text is not None else None
    if not match or not any(match.groups()):
        shown = text if text is not None else value
        raise ValueError(f"{shown!r} is not a duration; write e.g. '30m', '4h' or '1h30m'")
    hours, minutes = match.groups()
    return int(hours or 0) * 60 + int(minutes or 0)


Minutes = Annotated[int, Field(gt=0)]


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


class KnowledgeBaseSection(Strict):
    """Self-service answers (`urgency.knowledge`, docs/repeat-issues.md): the articles every
    scored ticket is matched with."""

    # The articles' folder, relative to the rules file (Markdown, HTML, a Zendesk export).
    folder: str = Field(min_length=1)
    method: Literal["bm25", "embedding", "hybrid"] = "hybrid"
    # Articles in every answer and in the agent's internal note.
    k: int = Field(default=3, ge=1, le=20)
    # Prefix of a Markdown or HTML article's URL (its id appended) when it names none itself.
    base_url: str = ""
    # The best article's lead over the second at or above which it goes into the customer-facing
    # auto-reply (`knowledge.AUTO_REPLY_MARGIN`, measured for precision 0.9 with the hybrid).
    auto_reply_margin: float = Field(default=0.193, ge=0)


class ClustersSection(Strict):
    """Repeat-issue clusters (`urgency.clusters`, docs/repeat-issues.md): every scored ticket's
    sentence vector in online clusters, and an alert when one grows faster than its baseline."""

    window_days: float = Field(default=7.0, gt=0, le=60)
    # The cosine to a cluster's centroid at which a ticket joins it.
    threshold: float = Field(default=0.6, gt=0, le=1)
    # The span whose count is compared with the baseline ('2h', '90m').
    burst: Minutes = 120
    min_count: int = Field(default=5, ge=1)
    alpha: float = Field(default=1e-4, gt=0, lt=1)
    # true: surge mode (`surge`) is on while a cluster alert is active, whatever `surge.mode` says.
    surge: bool = False

    @field_validator("burst", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value)

    @model_validator(mode="after")
    def _burst_in_window(self) -> ClustersSection:
        if self.burst >= self.window_days * 24 * 60:
            raise ValueError(
                f"burst ({self.burst} minutes) must be shorter than window_days ({self.window_days:g})"
            )
        return self


class SimilarTicketsSection(Strict):
    """Similar tickets (`urgency.similar`, docs/repeat-issues.md): the earlier tickets most like
    each scored one, listed in the score answer with what became of them."""

    k: int = Field(default=5, ge=1, le=50)
    # Only tickets created this many days before the scored one are listed.
    window_days: float = Field(default=30, gt=0)


class DuplicatesSection(Strict):
    """Probable duplicates (`urgency.duplicates`, docs/repeat-issues.md): a ticket that reads like
    an open ticket of the same requester or organisation. Rules read `duplicate` (true / false)
    and `duplicate_similarity` in their `when`; the answer links the ticket it duplicates."""

    # The cosine similarity at or above which a ticket is a probable duplicate: chosen on the
    # labelled pairs (data/labelled/duplicate_pairs.csv) for precision 0.9 (bench_duplicates.py).
    threshold: float = Field(default=0.87, gt=0, le=1)
    # Only open tickets created this many days before the new one are candidates.
    window_days: float = Field(default=30, gt=0)
    # Fields (names in `fields`) whose equal value makes "the same requester or organisation";
    # the first that matches is named in the explanation.
    same_fields: list[str] = Field(default_factory=lambda: ["requester", "organization"], min_length=1)
    # Nearest neighbours examined (the same requester's ticket may not be among the closest few).
    candidates: int = Field(default=50, ge=1, le=1000)
    # Assignment gives a duplicate to the agent of the ticket it duplicates when they can take it.
    same_agent: bool = True


SignalName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class RulesFile(Strict):
    version: Literal[1] = 1
    description: str = ""
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    # Text signals the rules read (params `signals`, the signals model): name -> the confidence
    # at or above which it counts. A rule's `when` reads `text_<name>` (true / false) and
    # `text_<name>_confidence`; without a signals model both are missing.
    text_signals: dict[SignalName, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
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
    # Optional (absent: no articles, no clusters, no similar tickets, no duplicate check).
    knowledge_base: KnowledgeBaseSection | None = None
    clusters: ClustersSection | None = None
    similar_tickets: SimilarTicketsSection | None = None
    duplicates: DuplicatesSection | None = None

    def all_rules(self) -> list[Rule]:
        """Every named rule in the file, section by section (rule names are unique across them)."""
        return [
            *self.impact.rules,
            *self.priority_rules,
            *self.routing.rules,
            *self.calendar_selection.rules,
            *self.sla.policies,
        ]


def validate_rules_file(raw: Any, source: str) -> RulesFile:
    """A rules mapping (as read from YAML) -> `RulesFile`; a wrong shape raises `ParamsError`."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections at the top level")
    try:
        return RulesFile.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(located_problems(error, raw, source, "name")) from None
