"""Request and response bodies of the service (the OpenAPI schema is generated from these).

Field limits are part of the contract: an over-long field is a 422 that names the field.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from urgency.decision import AGENT_FIELDS, RECORD_FIELDS
from urgency.store import TICKET_STATUSES, normalise_csat


# Every text is stored: no NUL character (PostgreSQL cannot keep one, in text or in JSON), and no
# lone surrogate (no store can encode one). Refused here, so both stores take the same requests
# and the 422 names the field.
def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("NUL characters (\\u0000) are not allowed")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError("unpaired surrogates (\\ud800-\\udfff) are not allowed") from None
    return text


Text = Annotated[str, AfterValidator(_storable)]
Id = Annotated[Text, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Short = Annotated[Text, StringConstraints(min_length=1, max_length=200)]
FieldName = Annotated[Text, StringConstraints(min_length=1, max_length=64)]


# NaN and the infinities (also 1e400, read as infinity) are no ticket's metadata, and PostgreSQL's
# JSON cannot keep them. Checked before the union below, so the 422 is one error naming the field.
def _storable_value(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("give a finite number (NaN and infinities are not allowed)")
    return _storable(value) if isinstance(value, str) else value


FieldValue = Annotated[
    Annotated[str, StringConstraints(max_length=1_000)] | StrictBool | StrictInt | StrictFloat | None,
    BeforeValidator(_storable_value),
]


# Text only (no Unix seconds), and years a helpdesk can have: deadlines stay computable.
def _text_only(value: object) -> object:
    if isinstance(value, int | float):
        raise ValueError("give an ISO 8601 date-time text, not a number")
    return value


Moment = Annotated[datetime, BeforeValidator(_text_only)]
EARLIEST, LATEST = 1970, 2999


def moment_field(description: str) -> Any:
    """A date-time field, its year range stated in the schema: in words, and as `x-years`."""
    return Field(
        default=None,
        description=f"{description} ISO 8601 text, in the years {EARLIEST} to {LATEST}.",
        json_schema_extra={"x-years": {"minimum": EARLIEST, "maximum": LATEST}},
    )


# What a feedback event can tell (at least one of them): decisions, times, and the ticket's
# operations values (status, assignee, the customer's satisfaction).
DECIDED = (*AGENT_FIELDS, "first_response_at", "resolved_at")
OPERATIONS = ("status", "assignee", "csat")


def _csat(value: object) -> object:
    """A CSAT as 0..1 (`urgency.store.normalise_csat`); None stays None."""
    if value is None:
        return None
    if not isinstance(value, int | float | str):
        raise ValueError('give a number 0..1, a 1-5 score as text ("4/5"), or "good" / "bad"')
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("give a finite number (NaN and infinities are not allowed)")
    return normalise_csat(value)


# How far ahead of this server's clock a feedback time may be (the sender's clock drifts).
FUTURE_SKEW = timedelta(minutes=15)


def _plausible(moment: datetime | None, name: str) -> datetime | None:
    if moment is not None and not EARLIEST <= moment.year <= LATEST:
        raise ValueError(f"{name} must be between the years {EARLIEST} and {LATEST}")
    return moment


EXAMPLE_TICKET = {
    "ticket_id": "T-1001",
    "subject": "Production outage - payments failing",
    "body": "Since 07:50 every payment in our production shop fails with error 502. "
    "Customers cannot check out. Please call us immediately.",
    "created_at": "2026-11-23T08:05:00Z",
    "fields": {
        "plan": "enterprise",
        "vip": True,
        "channel": "email",
        "region": "emea",
        "language": "en",
        "users_affected": 2000,
        "service_down": True,
        "request_type": "incident",
        "account_type": "business",
    },
}


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Ticket(StrictBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_TICKET]})

    ticket_id: Id = Field(description="The helpdesk's id of the ticket (feedback refers to it).")
    subject: Annotated[Text, StringConstraints(max_length=1_000)] | None = None
    body: Annotated[Text, StringConstraints(min_length=1, max_length=20_000)]
    created_at: Moment | None = moment_field("When the ticket was opened (no offset: the rules' time zone).")
    fields: dict[FieldName, FieldValue] = Field(
        default_factory=dict,
        max_length=50,
        description="Ticket metadata the rules read, keyed by column name (plan, vip, channel, ...).",
    )

    @field_validator("created_at")
    @classmethod
    def _created_at(cls, moment: datetime | None) -> datetime | None:
        return _plausible(moment, "created_at")


class TicketBatch(StrictBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tickets": [EXAMPLE_TICKET]}]})

    tickets: list[Ticket] = Field(min_length=1, max_length=1_000)


class ExplanationStep(BaseModel):
    rule: str
    stage: str
    changed: str
    before: str | None
    after: str | None
    detail: str


def _doc(name: str) -> str:
    return RECORD_FIELDS[name]


class ArticleResult(BaseModel):
    """A knowledge-base article for the ticket (`urgency.knowledge`), explained like a rule."""

    id: str = Field(description="The article's id (its file name, or the export's number).")
    title: str
    url: str = Field(description="Its URL (the rules file's `knowledge_base.base_url` + id, or its own).")
    score: float = Field(description="How well it matches, on the method's scale (higher is closer).")
    why: str = Field(
        description="Why: the words shared and the meaning's similarity, e.g. \"words vpn, "
        'connect (BM25 2.6); meaning 0.59".'
    )


class TicketCluster(BaseModel):
    """The repeat-issue cluster the ticket joined (`urgency.clusters`; this worker's clusters)."""

    cluster_id: int
    title: str = Field(description="The cluster's most telling words.")
    size: int = Field(description="Its tickets in the window (this one included).")
    similarity: float | None = Field(
        description="Cosine to the cluster's centroid; null: it started the cluster."
    )
    alert: str | None = Field(
        default=None, description="The alert this ticket raised, explained; null: none."
    )


class SimilarTicketResult(BaseModel):
    """An earlier ticket like this one (`urgency.similar`) and what became of it."""

    ticket_id: str
    similarity: float = Field(description="Cosine similarity of the two tickets' sentence vectors.")
    category: str | None = Field(
        description="Its final category: the agents' when they set one, else the model's."
    )
    priority: str | None = Field(description="Its final priority (the agents', else the rules').")
    status: str | None = Field(
        description="Its latest state (new, open, pending, on_hold, solved, closed); null: unknown."
    )
    resolved_at: str | None = Field(description="When it was resolved (ISO 8601 UTC); null: not known to be.")
    decided_by: str = Field(
        description='"agent": category / priority are the agents\' final values; "model"; "none".'
    )


class DuplicateResult(BaseModel):
    """The open ticket this one probably duplicates (`urgency.duplicates`), explained."""

    ticket_id: str
    similarity: float
    same: str = Field(description="The field both share (rules `duplicates.same_fields`), e.g. requester.")
    status: str = Field(description='The open ticket\'s status ("unknown": scored, no state known).')
    explanation: str = Field(description='e.g. "duplicate of T-12 (0.93, same requester, open)".')
    assignee: str | None = Field(default=None, description="The open ticket's agent, when one has it.")


class ScoreResult(BaseModel):
    """The decided-ticket record (`urgency.decision`) as the service answers it: lists for the
    skills, heads and explanation steps, plus the ticket id, the probabilities and the versions."""

    ticket_id: str = Field(description="The ticket's id, as sent.")
    priority: str = Field(description=_doc("priority"))
    priority_title: str = Field(description=_doc("priority_title"))
    urgency: str | None = Field(description=_doc("urgency"))
    urgency_confidence: float | None = Field(description=_doc("urgency_confidence"))
    urgency_used: str = Field(description=_doc("urgency_used"))
    category: str | None = Field(description=_doc("category"))
    category_confidence: float | None = Field(description=_doc("category_confidence"))
    sentiment: str | None = Field(description=_doc("sentiment"))
    sentiment_confidence: float | None = Field(description=_doc("sentiment_confidence"))
    text_signals: dict[str, float] = Field(description=_doc("text_signals"))
    probabilities: dict[str, dict[str, float]] = Field(description="head -> label -> probability")
    impact: str = Field(description=_doc("impact"))
    team: str = Field(description=_doc("team"))
    skills: list[str] = Field(description=_doc("skills"))
    sla_policy: str = Field(description=_doc("sla_policy"))
    calendar: str = Field(description=_doc("calendar"))
    created_at: str | None = Field(description=_doc("created_at"))
    first_response_due: str | None = Field(description=_doc("first_response_due"))
    resolution_due: str | None = Field(description=_doc("resolution_due"))
    needs_human_triage: bool = Field(description=_doc("needs_human_triage"))
    untrusted_heads: list[str] = Field(description=_doc("untrusted_heads"))
    surge: bool = Field(description=_doc("surge"))
    explanation: list[ExplanationStep] = Field(description=_doc("explanation_json"))
    explanation_text: str = Field(description=_doc("explanation"))
    notes: list[str] = Field(description=_doc("notes"))
    error: str | None = Field(description="Why the models gave no prediction (e.g. empty text).")
    model_versions: dict[str, str] = Field(description="head -> the model version that answered")
    # What the customer is told (`urgency.backlog.expected_first_response`): from the store's
    # queue, so not part of the decided-ticket record (a scored file has no queue).
    expected_first_response_at: str | None = Field(
        default=None,
        description="When the customer can expect the first answer (ISO 8601 UTC): now plus the "
        "team's median first-response time for each ticket ahead of it in the team's open queue "
        "(shared among the team's agents) and for itself. The queue's estimate, also when it is "
        "later than the first-response deadline (then at_risk is true).",
    )
    expected_first_response: str | None = Field(
        default=None,
        description="The same as a sentence for the customer (an auto-reply can quote it), e.g. "
        '"We expect to reply within about 3 hours (by 14:30 UTC on 1 December 2026)."',
    )
    at_risk: bool | None = Field(
        default=None,
        description="true: the expected first response is later than first_response_due.",
    )
    # Self-service and repeat issues (docs/repeat-issues.md "In the service"): from the rules
    # file's `knowledge_base` and `clusters` sections; empty / null without them.
    articles: list[ArticleResult] = Field(
        default_factory=list,
        description="The knowledge base's best articles for the ticket (rules `knowledge_base.k`), "
        "best first, each with its score and why: for the agent.",
    )
    auto_reply_articles: list[ArticleResult] = Field(
        default_factory=list,
        description="The article a customer-facing auto-reply may carry: the best one when its lead "
        "over the second reaches `knowledge_base.auto_reply_margin` (measured for precision 0.9), "
        "else none.",
    )
    cluster: TicketCluster | None = Field(
        default=None, description="The repeat-issue cluster the ticket joined (rules `clusters`)."
    )
    similar_tickets: list[SimilarTicketResult] = Field(
        default_factory=list,
        description="The earlier tickets most like this one (rules `similar_tickets.k`), most similar "
        "first, with their final category, priority and resolution.",
    )
    duplicate_of: DuplicateResult | None = Field(
        default=None,
        description="The open ticket of the same requester or organisation this one probably "
        "duplicates (rules `duplicates`; its rules read `duplicate`); null: none found, or no check.",
    )


class ScoreBatchResult(BaseModel):
    results: list[ScoreResult]


class Feedback(StrictBody):
    """What an agent finally decided for a ticket: any subset of the five fields."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # At least one decision (the validator below says the same in words).
            "anyOf": [
                *({"required": [name], "properties": {name: {"type": "string"}}} for name in DECIDED),
                *({"required": [name]} for name in OPERATIONS),
            ],
            "examples": [
                {
                    "ticket_id": "T-1001",
                    "event_id": "evt-8f2c",
                    "decided_at": "2026-11-23T08:20:00Z",
                    "agent": "maria",
                    "urgency": "high",
                    "priority": "P1",
                    "team": "incident-response",
                }
            ],
        },
    )

    ticket_id: Id
    event_id: Id = Field(
        description="Unique per decision: a retried call with the same id stores nothing twice."
    )
    decided_at: Moment | None = moment_field("When the agent decided.")
    agent: Short | None = None
    assignee: Short | None = Field(
        default=None,
        description="Who the ticket is assigned to now (an agent id, email or helpdesk user id): "
        "a change from its assignment is recorded as a reassignment.",
    )
    urgency: Short | None = None
    category: Short | None = None
    sentiment: Short | None = None
    priority: Short | None = None
    team: Short | None = None
    first_response_at: Moment | None = moment_field("When the customer was first answered.")
    resolved_at: Moment | None = moment_field("When the ticket was resolved.")
    status: Literal[TICKET_STATUSES] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="The ticket's status after this event: new, open, pending and on_hold are open "
        "(the backlog lists them), solved and closed are not.",
    )
    csat: Annotated[float | None, BeforeValidator(_csat)] = Field(
        default=None,
        description='The customer\'s satisfaction: a number 0..1, a 1-5 score as text ("4/5" is '
        '0.75: (score - 1) / 4), or "good" (1) / "bad" (0). Stored as 0..1.',
        json_schema_extra={
            "anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, {"type": "string"}, {"type": "null"}]
        },
    )

    @field_validator("decided_at", "first_response_at", "resolved_at")
    @classmethod
    def _moments(cls, moment: datetime | None, info: ValidationInfo) -> datetime | None:
        moment = _plausible(moment, str(info.field_name))
        # A decision from the future would outrank every real later one (the ticket's state
        # keeps the newest event), freezing it: a clock a few minutes fast is let through.
        if moment is not None:
            aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
            if aware > datetime.now(UTC) + FUTURE_SKEW:
                raise ValueError(f"{info.field_name} is in the future (more than {FUTURE_SKEW} ahead)")
        return moment

    @model_validator(mode="after")
    def _decides_something(self) -> Feedback:
        if all(getattr(self, name) is None for name in (*DECIDED, *OPERATIONS)):
            raise ValueError(f"give at least one of {', '.join((*DECIDED, *OPERATIONS))}")
        return self


class FeedbackAck(BaseModel):
    ticket_id: str
    event_id: str
    stored: bool = Field(
        description="false: this event was stored before (a retry); nothing new was written."
    )


class HeadModelInfo(BaseModel):
    head: str
    registry_name: str | None
    version: str | None
    alias: str | None
    source: str
    run_id: str | None
    labels: list[str]
    training_data_digest: str | None
    test_metrics: dict[str, float]


class ModelInfo(BaseModel):
    heads: list[HeadModelInfo]
    rules: str = Field(description="The rules file's name (not its path).")
    rules_sha256: str = Field(description="The SHA-256 digest of the rules file's content.")
    loaded_at: str
    # Head -> version (or folder) this worker serves, as every score's `model_versions` says.
    versions: dict[str, str] = Field(default_factory=dict)
    # The worker process that answered (with `urgency serve --workers N`, each has its own).
    pid: int | None = None


class Health(BaseModel):
    status: str
    models: bool | None = None
    database: bool | None = None
    detail: str | None = None


class ReloadResult(BaseModel):
    changed: bool
    before: dict[str, str]
    after: dict[str, str]
    # The worker that reloaded; the others follow by their own alias check (`workers` says when).
    pid: int
    workers: str


class Problem(BaseModel):
    """Every error response: a message, never a stack trace."""

    detail: str


class HelpdeskValues(BaseModel):
    """The decision in the helpdesk's own terms (params `helpdesks.<name>`): what a helpdesk
    that uses the webhook's answer writes onto the ticket."""

    priority: str | None = Field(description="The helpdesk's priority for ours (none: not mapped).")
    group: str | None = Field(description="The helpdesk's group for our team (none: not mapped).")
    tags: list[str] = Field(description="Tags to add: the priority, the team, `urgency-triage` if unsure.")
    note: str = Field(description="An internal note: the decision, its deadlines and why.")
    assignee: str | None = Field(
        default=None,
        description="The helpdesk's user id of the agent assigned (agents file `helpdesk_ids`; none: "
        "no agent, or no id for this helpdesk).",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Ticket fields to set: the expected first response in the field params "
        "`helpdesks.<name>.expected_reply_field` names (docs/helpdesks.md).",
    )
    expected_first_response: str | None = Field(
        default=None,
        description="The customer's expected first response, as a sentence (docs/helpdesks.md: "
        "the ticket field an auto-reply quotes).",
    )
    expected_first_response_at: str | None = Field(default=None, description="The same time, ISO 8601 UTC.")
    auto_reply_articles: list[dict[str, str]] = Field(
        default_factory=list,
        description="The knowledge-base article(s) a customer-facing reply may quote ({id, title, url}); "
        "also in the field params `helpdesks.<name>.articles_field` names (docs/helpdesks.md).",
    )


class WebhookResult(BaseModel):
    """What a helpdesk delivery caused. A retried delivery gets the first answer again, with
    `duplicate: true`, and nothing is stored twice."""

    helpdesk: str
    delivery_id: str
    ticket_id: str | None = Field(default=None, description="The ticket (none for an agent event).")
    kind: str = Field(
        description="created, updated or solved (the helpdesk's ticket event), or agent_availability"
    )
    action: str = Field(
        description="scored (created), feedback (updated/solved), availability (an agent switched "
        "on or off), or ignored"
    )
    duplicate: bool = False
    reason: str | None = Field(default=None, description="Why nothing was scored or recorded.")
    result: ScoreResult | None = None
    helpdesk_values: HelpdeskValues | None = None
    feedback: dict[str, str | None] | None = Field(
        default=None, description="The agents' decision recorded as feedback (our terms)."
    )
    ticket_status: str | None = Field(
        default=None,
        description="The ticket's state recorded from the helpdesk's status (new, open, pending, "
        "on_hold, solved, closed; docs/operations.md), for an update or a solved ticket.",
    )
    write_back: bool = Field(
        default=False, description="true: the decision is queued to be written onto the ticket."
    )
    assignment: AssignmentResult | None = Field(
        default=None, description="The agent chosen for a created ticket (when agents are configured)."
    )


# ---------------------------------------------------------------------------------------------
# Operations: agents and assignment (docs/operations.md)


class DecidedTicket(StrictBody):
    """A decided ticket to assign, as `/v1/score` answered it (the fields assignment reads)."""

    ticket_id: Id
    priority: Short = Field(description="The ticket's priority level (one of the rules' levels).")
    team: Short = Field(description="The ticket's team (one of the rules' teams).")
    order_key: Short | None = Field(
        default=None, description="The queue's sort key from the score (none: by priority only)."
    )
    skills: list[Short] = Field(default_factory=list, max_length=50, description=_doc("skills"))
    language: Short | None = Field(default=None, description="The ticket's language (e.g. de), if known.")


class AssignRequest(StrictBody):
    """Tickets to assign: ids of tickets already scored (their latest score in the store), or
    decided tickets in full. Most urgent first; each assignment is stored."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ticket_ids": ["T-1001", "T-1002"]}]}
    )

    ticket_ids: list[Id] | None = Field(default=None, min_length=1, max_length=1_000)
    tickets: list[DecidedTicket] | None = Field(default=None, min_length=1, max_length=1_000)
    now: Moment | None = moment_field("Assign as of this moment (default: now).")

    @model_validator(mode="after")
    def _one_way(self) -> AssignRequest:
        if (self.ticket_ids is None) == (self.tickets is None):
            raise ValueError("give ticket_ids or tickets (one of them)")
        return self


class AssignmentResult(BaseModel):
    ticket_id: str
    team: str
    priority: str
    agent: str | None = Field(description="The agent chosen; null: no agent can take it now (team queue).")
    strategy: str
    explanation: str = Field(
        description="The strategy, the agent chosen and their load, who was skipped and why."
    )
    reason: str | None = Field(default=None, description="Why no agent was chosen.")
    helpdesk_ids: dict[str, str] = Field(
        default_factory=dict, description="The agent's user id per helpdesk (for writing the assignee)."
    )


class AssignResult(BaseModel):
    assignments: list[AssignmentResult]


class AgentState(BaseModel):
    id: str
    name: str
    teams: list[str]
    skills: list[str]
    languages: list[str]
    calendar: str
    max_open: int
    weight: float
    open: int = Field(description="Open tickets assigned to the agent now.")
    open_by_priority: dict[str, int]
    load: float = Field(description="Open tickets weighted by priority, divided by the weight.")
    available: bool = Field(description="false: switched off by an API call or a helpdesk.")
    availability_source: str | None = Field(description="Who set the availability (api, a helpdesk).")
    working_now: bool = Field(description="Inside working hours on the agent's calendar now.")
    can_take: bool = Field(description="Available, working now and below max_open.")


class AgentsResult(BaseModel):
    strategy: str
    source: str | None = Field(description="The agents file in use (none: no agents configured).")
    digest: str | None = Field(description="The SHA-256 of the agents file in use.")
    error: str | None = Field(
        description="Why the agents file on disk is not the one in use (the one read before stays)."
    )
    agents: list[AgentState]


class AvailabilityChange(StrictBody):
    available: StrictBool


class AvailabilityAck(BaseModel):
    agent: str
    available: bool
    source: str
    updated_at: datetime


WebhookResult.model_rebuild()


class BacklogTicket(BaseModel):
    """One open ticket of the backlog (`urgency.backlog.BACKLOG_COLUMNS`); times ISO 8601 UTC."""

    ticket_id: str
    status: str = Field(description="new, open, pending or on_hold")
    priority: str | None
    team: str | None = Field(description="The team it is with (agents' or helpdesk's, else ours).")
    assignee: str | None
    created_at: str | None
    first_response_due: str | None
    resolution_due: str | None
    first_response_hours_left: float | None = Field(
        description="Hours to the first-response deadline (negative: breached; null: none, or answered)."
    )
    resolution_hours_left: float | None = Field(description="Hours to the resolution deadline.")
    next_deadline: str | None = Field(description="first_response, resolution, or null (none unmet).")
    hours_left: float | None = Field(description="Hours to the nearest unmet deadline.")
    queue_ahead: int = Field(description="The team's open tickets before it in the queue's order.")
    agents: int = Field(description="The team's agents (the agents file; 1 without one).")
    median_handling_hours: float = Field(description="The team's median created -> resolved hours.")
    handling_from: str = Field(description="history (recent closed tickets) or default (params).")
    expected_done_hours: float = Field(
        description="median handling x (queue ahead / agents + 1): the median time until done."
    )
    breach_risk: float | None = Field(
        description="Rules-based: P(log-normal wait around expected_done_hours > hours_left); "
        "1 once breached, null without an unmet deadline."
    )
    breach_risk_model: float | None = Field(description="The breach model's risk (null: no model fitted).")


class BacklogSummary(BaseModel):
    priority: str | None
    team: str | None
    tickets: int
    breached: int = Field(description="Tickets past their nearest unmet deadline.")
    at_risk: int = Field(description="Tickets with breach_risk >= 0.5 (breached ones included).")


class Backlog(BaseModel):
    """The open backlog (docs/operations.md)."""

    generated_at: str
    open_tickets: int = Field(description="Open tickets the filters keep (all listed in summary).")
    breach_model: bool = Field(description="true: breach_risk_model is the breach model's risk.")
    summary: list[BacklogSummary]
    tickets: list[BacklogTicket]


class ClusterAlertResult(BaseModel):
    cluster_id: int
    title: str = Field(description="The proposed parent incident's title (the cluster's telling words).")
    explanation: str
    count: int = Field(description="Tickets in the burst span.")
    burst_hours: float
    baseline_per_hour: float
    expected: float
    p_value: float
    at: str = Field(description="When the burst was found (ISO 8601).")
    ticket_ids: list[str] = Field(description="Every member in the window: the parent incident's children.")


class ClusterSummary(BaseModel):
    cluster_id: int
    title: str
    size: int
    ticket_ids: list[str] = Field(description="Its newest tickets (at most 20), oldest first.")


class StoredClusterAlert(BaseModel):
    """An alert episode as the store keeps it: every worker's alerts of one burst merged
    (docs/repeat-issues.md "Clusters")."""

    id: int
    raised_at: str = Field(description="The burst's time when first alerted (the tickets' clock, ISO 8601).")
    last_seen_at: str = Field(description="The latest worker alert merged into this episode.")
    title: str = Field(description="The proposed parent incident's title.")
    size: int = Field(description="Member tickets (every worker's).")
    count: int = Field(description="Tickets in the burst span (the largest report).")
    burst_hours: float
    baseline_per_hour: float
    expected: float
    p_value: float
    explanation: str
    ticket_ids: list[str]
    reports: int = Field(description="Worker alerts merged into this episode.")
    helpdesk: str | None = Field(description="The helpdesk the parent incident goes to (null: none).")
    incident_id: str | None = Field(description="The parent incident's id there, once created.")
    incident_url: str | None = None


class Clusters(BaseModel):
    """This worker's repeat-issue clusters and alerts (with several workers, each sees the
    tickets it scored), and the alert episodes the store keeps (every worker's)."""

    enabled: bool = Field(description="false: the rules file has no `clusters` section.")
    pid: int = Field(description="The worker that answered.")
    window_days: float | None = None
    tickets: int = Field(description="Tickets in this worker's window.")
    surge: bool = Field(description="true: `clusters.surge` is set and an alert is active (surge mode on).")
    alerts: list[ClusterAlertResult]
    clusters: list[ClusterSummary] = Field(description="The largest clusters (at least `min_size` tickets).")
    stored_alerts: list[StoredClusterAlert] = Field(
        default=[],
        description="Every worker's alert episodes of the window, newest first (the store's).",
    )
