"""The service's store: every scored ticket and every agent decision, in a SQL database.

SQLite (a file) by default, PostgreSQL by URL (`postgresql+psycopg://user@host/db`). The schema
is owned by the Alembic migrations in `urgency/migrations`; `upgrade` applies them and the
service refuses to start on a database that is not at the newest revision.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from urgency.decision import AGENT_FIELDS
from urgency.errors import StoreError, UrgencyError

if TYPE_CHECKING:
    import pandas as pd

FEEDBACK_FIELDS = AGENT_FIELDS  # the agents' decisions are stored field by field
# The decided-ticket record's fields (`urgency.decision`) kept as columns of `predictions`, for
# queries; the whole answer is in its `decision` column.
STORED_DECISION_FIELDS = (
    "urgency",
    "urgency_confidence",
    "category",
    "category_confidence",
    "sentiment",
    "sentiment_confidence",
    "priority",
    "team",
    "needs_human_triage",
    "first_response_due",
    "resolution_due",
    "text_signals",  # the record's text form (`Decision.text_signals_text`), null: none fired
)
FEEDBACK_TIMES = ("first_response_at", "resolved_at")
# What a feedback event can also say about the ticket (operations: docs/operations.md).
FEEDBACK_STATE_KEYS = ("status", "assignee", "csat")

metadata = sa.MetaData()

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.String(200), nullable=False, index=True),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("subject", sa.Text),
    sa.Column("body", sa.Text),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("urgency", sa.String(100)),
    sa.Column("urgency_confidence", sa.Float),
    sa.Column("category", sa.String(100)),
    sa.Column("category_confidence", sa.Float),
    sa.Column("sentiment", sa.String(100)),
    sa.Column("sentiment_confidence", sa.Float),
    sa.Column("priority", sa.String(50), nullable=False),
    sa.Column("team", sa.String(200), nullable=False),
    sa.Column("needs_human_triage", sa.Boolean, nullable=False),
    sa.Column("first_response_due", sa.DateTime(timezone=True)),
    sa.Column("resolution_due", sa.DateTime(timezone=True)),
    sa.Column("decision", sa.JSON, nullable=False),
    sa.Column("text_signals", sa.Text),
    sa.Column("model_versions", sa.JSON, nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.String(200), nullable=False, index=True),
    sa.Column("event_id", sa.String(200), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("agent", sa.String(200)),
    *(sa.Column(name, sa.String(200)) for name in FEEDBACK_FIELDS),
    sa.Column("first_response_at", sa.DateTime(timezone=True)),
    sa.Column("resolved_at", sa.DateTime(timezone=True)),
    # The ticket's status after this event (TICKET_STATUSES), its assignee, and the customer's
    # satisfaction (CSAT, 0..1: a 1-5 score s is (s - 1) / 4, good/bad is 1/0).
    sa.Column("status", sa.String(20)),
    sa.Column("assignee", sa.String(200)),
    sa.Column("csat", sa.Float),
    # Tells a retried event (same content: stored once) from a conflicting one (refused).
    sa.Column("content_digest", sa.String(64), nullable=False),
    sa.UniqueConstraint("ticket_id", "event_id", name="uq_feedback_ticket_event"),
)


# Helpdesk webhook deliveries (`urgency.helpdesks`), one row each: a retried delivery (the same
# helpdesk and delivery id) answers what the first one did and stores nothing again.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("helpdesk", sa.String(20), primary_key=True),
    sa.Column("delivery_id", sa.String(200), primary_key=True),
    sa.Column("ticket_id", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.JSON, nullable=False),  # the answer given (returned again on a retry)
)


# Decisions to write back to a helpdesk (`urgency.writeback`), one per delivery: written in the
# delivery's transaction, sent later with retries, so a helpdesk that is down loses nothing and a
# restarted service resumes. `claimed_until`: a worker process is sending it until then.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("helpdesk", sa.String(20), nullable=False),
    sa.Column("delivery_id", sa.String(200), nullable=False),
    sa.Column("ticket_id", sa.String(200), nullable=False),
    sa.Column("values", sa.JSON, nullable=False),  # helpdesks.helpdesk_values
    sa.Column("status", sa.String(20), nullable=False),  # pending, done, failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("claimed_until", sa.DateTime(timezone=True)),
    sa.Column("done_at", sa.DateTime(timezone=True)),
    sa.Column("last_error", sa.Text),
    sa.UniqueConstraint("helpdesk", "delivery_id", name="uq_outbox_delivery"),
    sa.Index("ix_outbox_status", "status", "next_attempt_at"),
)


# Operations (docs/operations.md). Each ticket's latest known state: open tickets make the
# backlog. Written from feedback status events and the helpdesks' webhooks.
TICKET_STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed")
OPEN_STATUSES = ("new", "open", "pending", "on_hold")
ticket_states = sa.Table(
    "ticket_states",
    metadata,
    sa.Column("ticket_id", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("opened_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("team", sa.String(200)),
    sa.Column("assignee", sa.String(200)),
    sa.Column("source", sa.String(40), nullable=False),  # "feedback", "zendesk", ...
)

# Every assignment of a ticket to an agent (`urgency.assignment`), and every later move to
# another agent or team (`reassignment`: true, with where it came from).
assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ticket_id", sa.String(200), nullable=False, index=True),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("agent", sa.String(200)),  # null: no agent was available (the team's queue)
    sa.Column("team", sa.String(200), nullable=False),
    sa.Column("priority", sa.String(50)),
    sa.Column("strategy", sa.String(40), nullable=False),  # or "helpdesk" / "agent" for a move
    sa.Column("reassignment", sa.Boolean, nullable=False),
    sa.Column("previous_agent", sa.String(200)),
    sa.Column("previous_team", sa.String(200)),
    sa.Column("source", sa.String(40), nullable=False),
    sa.Column("explanation", sa.Text, nullable=False),
)

# Availability set by an API call or a helpdesk, over the agents file's working calendar.
agent_availability = sa.Table(
    "agent_availability",
    metadata,
    sa.Column("agent", sa.String(200), primary_key=True),
    sa.Column("available", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(40), nullable=False),
)


# Similar tickets (issue 19, `urgency.similar`): each scored ticket's sentence vector (float16,
# little-endian bytes) under its encoder scope; the index file beside the store is rebuilt from it.
ticket_vectors = sa.Table(
    "ticket_vectors",
    metadata,
    sa.Column("ticket_id", sa.String(200), primary_key=True),
    sa.Column("scope", sa.String(200), nullable=False),
    sa.Column("vector", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_ticket_vectors_scope", "scope", "stored_at"),
)


# Cluster alerts (issue 19, `urgency.clusters`): one row per alert episode, whichever worker
# process raised it (`Store.record_cluster_alert` merges a second worker's alert of the same
# burst into it), with the parent incident created in the helpdesk (`urgency.writeback`).
cluster_alerts = sa.Table(
    "cluster_alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The burst's time (the tracker's clock: its tickets' created times), first and latest report.
    sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),  # wall clock
    sa.Column("title", sa.String(500), nullable=False),  # the proposed parent incident's
    sa.Column("size", sa.Integer, nullable=False),  # member tickets (len of ticket_ids)
    sa.Column("count", sa.Integer, nullable=False),  # tickets in the burst span (the largest report)
    sa.Column("burst_hours", sa.Float, nullable=False),
    sa.Column("baseline_per_hour", sa.Float, nullable=False),
    sa.Column("expected", sa.Float, nullable=False),
    sa.Column("p_value", sa.Float, nullable=False),
    sa.Column("explanation", sa.Text, nullable=False),
    sa.Column("ticket_ids", sa.JSON, nullable=False),  # every report's members, first seen first
    sa.Column("centroid", sa.LargeBinary),  # the cluster's unit centroid, float16 (the episode rule)
    sa.Column("reports", sa.Integer, nullable=False),  # worker alerts merged into this episode
    # The helpdesk the parent incident is created in, and its id / link there once created.
    sa.Column("helpdesk", sa.String(20)),
    sa.Column("incident_id", sa.String(200)),
    sa.Column("incident_url", sa.Text),
    sa.Index("ix_cluster_alerts_last_seen", "last_seen_at"),
    sa.Index("ix_cluster_alerts_raised", "raised_at"),
)


# The PostgreSQL advisory lock key of assignment rounds (`Store.assignment_lock`): any fixed number.
ASSIGNMENT_LOCK = 0x75726731
# ... and of recording a cluster alert (`Store.record_cluster_alert`).
CLUSTER_ALERT_LOCK = 0x75726732
# The outbox's write that creates a cluster alert's parent incident (`urgency.writeback`).
PARENT_INCIDENT = "parent_incident"
# ... and the one that POSTs a new alert episode to the service's alert webhook (its `helpdesk`).
ALERT_WEBHOOK = "alert_webhook"


class FeedbackConflict(UrgencyError):
    """The same (ticket id, event id) was already stored with different content."""


@dataclass(frozen=True)
class FeedbackResult:
    stored: bool  # False: this event was stored before (a retry); nothing new was written


def sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///"))
    return None


def database_url(override: str | None, params_path: Path) -> str:
    """The store's URL: `override` (a --database-url flag), else $URGENCY_DATABASE_URL, else
    SQLite at data/service.db next to the params file (so each project copy has its own store).
    The service's settings and the batch commands both resolve it here."""
    return (
        override
        or os.environ.get("URGENCY_DATABASE_URL")
        or f"sqlite:///{params_path.resolve().parent}/data/service.db"
    )


def make_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file's folder is created, and SQLite waits for locks
    instead of failing at once when many threads write."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (SQLAlchemyError, ImportError, ValueError) as error:
        raise StoreError(f"cannot use database URL {redact(url)}: {error}") from None


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


# ---------------------------------------------------------------------------------------------
# Migrations


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("urgency") / "migrations"))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))  # type: ignore[arg-type]
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as error:
        raise StoreError(f"cannot reach the database {redact(str(engine.url))}: {_short(error)}") from None


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply every migration not yet applied; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    try:
        command.upgrade(_alembic_config(engine), "head")
    except SQLAlchemyError as error:
        raise StoreError(f"migrating {redact(str(engine.url))} failed: {_short(error)}") from None
    return before, head_revision()


def upgrade_database(url: str) -> tuple[str | None, str]:
    """`upgrade` the database at `url` (created when it is a SQLite file that does not exist)."""
    engine = make_engine(url)
    try:
        return upgrade(engine)
    finally:
        engine.dispose()


def check_schema(engine: Engine) -> None:
    """Refuse a database whose schema is not at this version's newest migration."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise StoreError(
            f"database {redact(str(engine.url))} is at schema revision {current or 'none'}, "
            f"this version needs {head}: run `urgency db upgrade`"
        )


def _short(error: Exception) -> str:
    return str(getattr(error, "orig", error)).strip().splitlines()[0]


# ---------------------------------------------------------------------------------------------
# Reading and writing


def final_decisions(events: pd.DataFrame) -> pd.DataFrame:
    """Feedback events -> one row per ticket: `agent_<field>` is the value of the newest event
    (by `decided_at`, else arrival order) that set the field; `decided_at` is the newest event's."""
    import pandas as pd

    events = events.copy()
    events["_order"] = range(len(events))
    decided = pd.to_datetime(events["decided_at"], utc=True, errors="coerce")
    received = pd.to_datetime(events["received_at"], utc=True, errors="coerce")
    events["_when"] = decided.fillna(received)
    events = events.sort_values(["ticket_id", "_when", "_order"], kind="stable")
    fields = [*FEEDBACK_FIELDS, *FEEDBACK_TIMES, "agent"]
    grouped = events.groupby("ticket_id", sort=True)
    final = grouped[fields].last()  # `last` skips missing values: the newest value set per field
    final.columns = [f"agent_{name}" if name in FEEDBACK_FIELDS else name for name in final.columns]
    final["decided_at"] = grouped["_when"].max()
    final["feedback_events"] = grouped.size()
    return final.reset_index()


def _content_digest(content: Mapping[str, Any]) -> str:
    """What a feedback event says, as a digest: times compare as instants (an offset-aware time
    in UTC), so a retry that writes the same moment with another offset is the same event."""

    def instant(value: Any) -> Any:
        if isinstance(value, datetime) and value.utcoffset() is not None:
            return value.astimezone(UTC)
        return value

    normal = {key: instant(value) for key, value in content.items()}
    return hashlib.sha256(json.dumps(normal, sort_keys=True, default=str).encode()).hexdigest()


def _feedback_row(event: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    content = {key: event.get(key) for key in ("decided_at", "agent", *FEEDBACK_FIELDS, *FEEDBACK_TIMES)}
    # The operations keys join the digest only when set: an event stored before they existed
    # (or one that does not use them) keeps its digest, so its retry is still a retry.
    content |= {key: event[key] for key in FEEDBACK_STATE_KEYS if event.get(key) is not None}
    return {
        "ticket_id": event["ticket_id"],
        "event_id": event["event_id"],
        "received_at": received_at,
        **{key: None for key in FEEDBACK_STATE_KEYS},
        **content,
        "content_digest": _content_digest(content),
    }


# ---------------------------------------------------------------------------------------------
# Operations, backlog part: feedback status / assignee / CSAT, each ticket's state (docs/operations.md)

# The CSAT texts a feedback event may give for a good or bad rating (Zendesk's satisfaction
# rating says `good` / `bad`).
CSAT_WORDS = {"good": 1.0, "bad": 0.0}


def normalise_csat(value: float | int | str) -> float:
    """A customer's satisfaction as 0..1: a number 0..1 as is, a 1-5 score written `"4/5"` as
    (s - 1) / 4, `"good"` / `"bad"` as 1 / 0. ValueError says what is accepted."""
    if isinstance(value, bool):
        raise ValueError('give a number 0..1, a 1-5 score as text ("4/5"), or "good" / "bad"')
    if isinstance(value, int | float):
        if not 0 <= value <= 1:
            raise ValueError('a number must be 0..1; give a 1-5 score as text, e.g. "4/5"')
        return float(value)
    text = value.strip().lower()
    if text in CSAT_WORDS:
        return CSAT_WORDS[text]
    score, slash, scale = text.partition("/")
    if slash and scale.strip() == "5" and score.strip() in ("1", "2", "3", "4", "5"):
        return (int(score) - 1) / 4
    raise ValueError('give a number 0..1, a 1-5 score as text ("4/5"), or "good" / "bad"')


def _utc(moment: datetime | None) -> datetime | None:
    """An instant in UTC (a naive time is UTC): SQLite keeps the wall time only, so every state
    time is written in UTC and compares as an instant on both stores."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.utcoffset() is None else moment.astimezone(UTC)


def _insert(connection: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite and PostgreSQL alike)."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def set_state(
    connection: sa.Connection,
    ticket_id: str,
    *,
    at: datetime,
    source: str,
    status: str | None = None,
    team: str | None = None,
    assignee: str | None = None,
) -> None:
    """The ticket's state as of `at`: an insert or an update in one statement (ON CONFLICT, so
    two writers never both insert). A state newer than `at` is kept (an event that arrives late
    changes nothing); a team or assignee not given keeps the stored one. Without a status, only
    a stored state's team / assignee change (a decision alone opens no ticket)."""
    at = _utc(at)
    assert at is not None
    if status is None:
        if team is None and assignee is None:
            return
        changes = {
            name: value for name, value in (("team", team), ("assignee", assignee)) if value is not None
        }
        connection.execute(
            ticket_states.update()
            .where(ticket_states.c.ticket_id == ticket_id, ticket_states.c.updated_at <= at)
            .values(**changes, updated_at=at, source=source)
        )
        return
    if status not in TICKET_STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(TICKET_STATUSES)}")
    insert = _insert(connection, ticket_states).values(
        ticket_id=ticket_id,
        status=status,
        opened_at=at,
        updated_at=at,
        team=team,
        assignee=assignee,
        source=source,
    )
    new = insert.excluded
    reopened = sa.and_(ticket_states.c.status.not_in(OPEN_STATUSES), new.status.in_(OPEN_STATUSES))
    connection.execute(
        insert.on_conflict_do_update(
            index_elements=[ticket_states.c.ticket_id],
            set_={
                "status": new.status,
                "updated_at": new.updated_at,
                "source": new.source,
                "team": sa.func.coalesce(new.team, ticket_states.c.team),
                "assignee": sa.func.coalesce(new.assignee, ticket_states.c.assignee),
                # A solved ticket that opens again waits from now, not from its first opening.
                "opened_at": sa.case((reopened, new.opened_at), else_=ticket_states.c.opened_at),
            },
            where=ticket_states.c.updated_at <= new.updated_at,
        )
    )


def assign_states(connection: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """The agent each assignment chose as its ticket's state's assignee (and team): the open
    load counts a ticket for the state's assignee first, so an assignee the helpdesk named
    before must not keep carrying a ticket we gave someone else."""
    for row in rows:
        if row.get("agent") is not None:
            set_state(
                connection,
                row["ticket_id"],
                at=row["assigned_at"],
                source=row["source"],
                team=row["team"],
                assignee=row["agent"],
            )


def apply_feedback_state(connection: sa.Connection, row: Mapping[str, Any]) -> None:
    """A stored feedback row's status, team and assignee onto the ticket's state; an event that
    says when the ticket was resolved and gives no status solves it (it is no longer open)."""
    status = row.get("status") or ("solved" if row.get("resolved_at") is not None else None)
    set_state(
        connection,
        row["ticket_id"],
        at=row.get("decided_at") or row["received_at"],
        source="feedback",
        status=status,
        team=row.get("team"),
        assignee=row.get("assignee"),
    )


def open_states(connection: sa.Connection, rows: Sequence[Mapping[str, Any]], source: str = "score") -> None:
    """A `new` state for each scored ticket (`predictions` rows) that has none; a ticket with a
    state keeps it (scoring it again reopens nothing)."""
    states = {
        row["ticket_id"]: {
            "ticket_id": row["ticket_id"],
            "status": "new",
            "opened_at": _utc(row.get("created_at")) or _utc(row["scored_at"]),
            "updated_at": _utc(row["scored_at"]),
            "team": row.get("team"),
            "assignee": None,
            "source": source,
        }
        for row in rows
    }
    if states:
        insert = _insert(connection, ticket_states)
        connection.execute(
            insert.on_conflict_do_nothing(index_elements=[ticket_states.c.ticket_id]), list(states.values())
        )


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def record_predictions(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store scored tickets, all or none (one transaction)."""
        if rows:
            with self.engine.begin() as connection:
                connection.execute(predictions.insert(), [dict(row) for row in rows])
                open_states(connection, rows)

    def record_feedback(
        self, event: Mapping[str, Any], *, received_at: datetime | None = None
    ) -> FeedbackResult:
        """Store an agent's decision once per (ticket id, event id): a retry of the same event
        stores nothing; the same ids with different content raise FeedbackConflict."""
        row = _feedback_row(event, received_at or datetime.now(UTC))
        digest = row["content_digest"]
        try:
            with self.engine.begin() as connection:
                connection.execute(feedback.insert(), [row])
                apply_feedback_state(connection, row)
            return FeedbackResult(stored=True)
        except IntegrityError:
            # The unique constraint, not a read-then-write, decides: safe under concurrency.
            with self.engine.connect() as connection:
                existing = connection.execute(
                    sa.select(feedback.c.content_digest).where(
                        feedback.c.ticket_id == event["ticket_id"], feedback.c.event_id == event["event_id"]
                    )
                ).scalar_one_or_none()
            if existing is None:
                raise
            if existing != digest:
                raise FeedbackConflict(
                    f"event {event['event_id']!r} of ticket {event['ticket_id']!r} was already stored "
                    "with different content; send a new event_id for a new decision"
                ) from None
            return FeedbackResult(stored=False)

    def delivery(self, helpdesk: str, delivery_id: str) -> dict[str, Any] | None:
        """The answer given to a helpdesk delivery already stored, else None."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(webhook_deliveries.c.outcome).where(
                    webhook_deliveries.c.helpdesk == helpdesk, webhook_deliveries.c.delivery_id == delivery_id
                )
            ).scalar_one_or_none()

    def record_delivery(
        self,
        delivery: Mapping[str, Any],
        *,
        predicted: Sequence[Mapping[str, Any]] = (),
        decided: Mapping[str, Any] | None = None,
        write_back: Mapping[str, Any] | None = None,
        assigned: Sequence[Mapping[str, Any]] = (),
        state: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a helpdesk delivery (`webhook_deliveries` columns) with what it caused: the
        prediction rows (opening the ticket's state when it has none), the agent's decision (a
        `record_feedback` event), the ticket's state from the helpdesk (`state`: `set_state`'s
        keyword arguments), the values to write back to the helpdesk (an `outbox` row, pending)
        and the ticket's assignment (`assignments` rows), all or none. False:
        the same delivery was stored first (a retry, or the same delivery arriving twice at once):
        nothing is written."""
        try:
            with self.engine.begin() as connection:
                connection.execute(webhook_deliveries.insert(), [dict(delivery)])
                if predicted:
                    connection.execute(predictions.insert(), [dict(row) for row in predicted])
                    open_states(connection, predicted, source=delivery["helpdesk"])
                if decided is not None:
                    connection.execute(feedback.insert(), [_feedback_row(decided, delivery["received_at"])])
                if assigned:
                    connection.execute(assignments.insert(), [dict(row) for row in assigned])
                    assign_states(connection, assigned)
                if state is not None:
                    set_state(connection, delivery["ticket_id"], **state)
                if write_back is not None:
                    connection.execute(
                        outbox.insert(),
                        [
                            {
                                "helpdesk": delivery["helpdesk"],
                                "delivery_id": delivery["delivery_id"],
                                "ticket_id": delivery["ticket_id"],
                                "values": dict(write_back),
                                "status": "pending",
                                "attempts": 0,
                                "created_at": delivery["received_at"],
                                "next_attempt_at": delivery["received_at"],
                            }
                        ],
                    )
            return True
        except IntegrityError:
            if self.delivery(delivery["helpdesk"], delivery["delivery_id"]) is None:
                raise
            return False

    def last_write_back(self, helpdesk: str, ticket_id: str) -> dict[str, Any] | None:
        """The values last queued to be written onto a ticket (sent or not), else None."""
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(outbox.c["values"])
                .where(
                    outbox.c.helpdesk == helpdesk,
                    outbox.c.ticket_id == ticket_id,
                    outbox.c.status != "failed",
                )
                .order_by(outbox.c.id.desc())
                .limit(1)
            ).scalar_one_or_none()

    def claim_writes(self, now: datetime, lease: timedelta, limit: int = 20) -> list[dict[str, Any]]:
        """Pending writes due by `now`, claimed for `lease` (no other process sends them until
        then; a process killed mid-send leaves them to be claimed again when the lease ends)."""
        due = (
            sa.select(outbox.c.id)
            .where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now)
            .where(sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until <= now))
            .order_by(outbox.c.next_attempt_at, outbox.c.id)
            .limit(limit)
        )
        claimed = []
        with self.engine.begin() as connection:
            for write_id in connection.execute(due).scalars().all():
                # Claimed only if nobody claimed it since the select: safe with several workers.
                taken = connection.execute(
                    outbox.update()
                    .where(outbox.c.id == write_id, outbox.c.status == "pending")
                    .where(sa.or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until <= now))
                    .values(claimed_until=now + lease)
                )
                if taken.rowcount == 1:
                    claimed.append(write_id)
            if not claimed:
                return []
            rows = connection.execute(sa.select(outbox).where(outbox.c.id.in_(claimed)).order_by(outbox.c.id))
            return [dict(row._mapping) for row in rows]

    def finish_write(
        self, write_id: int, now: datetime, *, error: str | None = None, retry_at: datetime | None = None
    ) -> None:
        """A claimed write's outcome: done (no error), pending again at `retry_at`, or failed for
        good (an error and no `retry_at`)."""
        status = "done" if error is None else "pending" if retry_at is not None else "failed"
        with self.engine.begin() as connection:
            connection.execute(
                outbox.update()
                .where(outbox.c.id == write_id)
                .values(
                    status=status,
                    attempts=outbox.c.attempts + 1,
                    claimed_until=None,
                    last_error=error,
                    next_attempt_at=retry_at or now,
                    done_at=now if status == "done" else None,
                )
            )

    def count_created_between(self, start: datetime, end: datetime) -> int:
        """Scored tickets created in [start, end] (surge mode `auto` counts these, see
        `urgency.rules.engine.surge_active`); a ticket scored twice counts once per scoring."""
        with self.engine.connect() as connection:
            query = sa.select(sa.func.count()).where(
                predictions.c.created_at >= start, predictions.c.created_at <= end
            )
            return int(connection.execute(query).scalar_one())

    def decisions(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """Each ticket scored in [since, until) that agents decided on: the latest prediction
        next to the agents' final values (`agent_<field>`).

        The latest decision wins, field by field: the newest event (by `decided_at`, else by
        arrival) that sets a field gives its final value, so an event carrying only a team does
        not erase an earlier urgency."""
        import pandas as pd

        query = sa.select(predictions)
        if since is not None:
            query = query.where(predictions.c.scored_at >= since)
        if until is not None:
            query = query.where(predictions.c.scored_at < until)
        with self.engine.connect() as connection:
            scored = pd.DataFrame(connection.execute(query.order_by(predictions.c.id)).mappings().all())
            events = pd.DataFrame(
                connection.execute(sa.select(feedback).order_by(feedback.c.id)).mappings().all()
            )
        if scored.empty or events.empty:
            return pd.DataFrame()
        latest = scored.drop_duplicates("ticket_id", keep="last").rename(columns={"id": "prediction_id"})
        final = final_decisions(events)
        return latest.merge(final, on="ticket_id", how="inner").reset_index(drop=True)

    # -----------------------------------------------------------------------------------------
    # Similar tickets (issue 19: `urgency.similar`, `urgency.duplicates`)

    def record_ticket_vectors(
        self,
        ticket_ids: Sequence[str],
        scope: str,
        vectors: Any,
        created_at: Sequence[datetime | None],
        *,
        stored_at: datetime | None = None,
    ) -> None:
        """Keep scored tickets' sentence vectors (n x dim, stored as float16), all or none; a
        ticket scored again has its vector replaced (given twice here: the last one is kept)."""
        import numpy as np

        array = np.asarray(vectors, dtype="<f2")
        when = stored_at or datetime.now(UTC)
        rows = [
            {
                "ticket_id": str(ticket_id),
                "scope": scope,
                "vector": array[row].tobytes(),
                "created_at": created_at[row],
                "stored_at": when,
            }
            for row, ticket_id in enumerate(ticket_ids)
        ]
        # One row per ticket (the last), in id order: two workers storing overlapping tickets
        # at once lock them in the same order (no deadlock on PostgreSQL).
        rows = sorted({row["ticket_id"]: row for row in rows}.values(), key=lambda row: row["ticket_id"])
        if not rows:
            return
        with self.engine.begin() as connection:
            # An upsert: the same ticket stored by two requests at once (a helpdesk's retry, two
            # workers) replaces its vector; a delete-then-insert made the second a key violation.
            insert = _insert(connection, ticket_vectors)
            new = insert.excluded
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[ticket_vectors.c.ticket_id],
                    set_={
                        "scope": new.scope,
                        "vector": new.vector,
                        "created_at": new.created_at,
                        "stored_at": new.stored_at,
                    },
                ),
                rows,
            )

    def ticket_vector_batches(
        self, scope: str, *, batch_size: int = 10_000, since: datetime | None = None
    ) -> Iterable[tuple[list[str], Any, list[Any], list[Any]]]:
        """The vectors kept under `scope` (stored at `since` or later, when given) in the order
        stored, in batches of (ticket ids, n x dim float16 array, created_at, stored_at)."""
        import numpy as np

        query = (
            sa.select(
                ticket_vectors.c.ticket_id,
                ticket_vectors.c.vector,
                ticket_vectors.c.created_at,
                ticket_vectors.c.stored_at,
            )
            .where(ticket_vectors.c.scope == scope)
            .order_by(ticket_vectors.c.stored_at, ticket_vectors.c.ticket_id)
        )
        if since is not None:
            query = query.where(ticket_vectors.c.stored_at >= since)
        with self.engine.connect() as connection:
            result = connection.execution_options(yield_per=batch_size).execute(query)
            for rows in result.partitions(batch_size):
                ids = [row.ticket_id for row in rows]
                vectors = np.vstack([np.frombuffer(row.vector, dtype="<f2") for row in rows])
                yield (
                    ids,
                    vectors,
                    [_utc(row.created_at) for row in rows],
                    [_utc(row.stored_at) for row in rows],
                )

    def count_ticket_vectors(self, scope: str) -> int:
        with self.engine.connect() as connection:
            query = sa.select(sa.func.count()).where(ticket_vectors.c.scope == scope)
            return int(connection.execute(query).scalar_one())

    def ticket_vector_ids(self, scope: str) -> list[str]:
        with self.engine.connect() as connection:
            query = sa.select(ticket_vectors.c.ticket_id).where(ticket_vectors.c.scope == scope)
            return list(connection.execute(query).scalars())

    def ticket_facts(self, ticket_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What the store knows of these tickets, by id: the latest prediction's `category`,
        `priority`, `team`, `fields` and `created_at`; the agents' final values (`agent_<field>`,
        newest event per field as in `decisions`) and `resolved_at`; the ticket's `status` and
        `assignee` (`ticket_states`). A ticket the store has never seen is absent."""
        import pandas as pd

        ids = list(dict.fromkeys(str(ticket_id) for ticket_id in ticket_ids))
        facts: dict[str, dict[str, Any]] = {}
        if not ids:
            return facts
        with self.engine.connect() as connection:
            for chunk in _chunks(ids):
                latest = (
                    sa.select(sa.func.max(predictions.c.id))
                    .where(predictions.c.ticket_id.in_(chunk))
                    .group_by(predictions.c.ticket_id)
                )
                for row in connection.execute(
                    sa.select(
                        predictions.c.ticket_id,
                        predictions.c.category,
                        predictions.c.priority,
                        predictions.c.team,
                        predictions.c.fields,
                        predictions.c.created_at,
                    ).where(predictions.c.id.in_(latest))
                ).mappings():
                    facts[row["ticket_id"]] = {**row, "created_at": _utc(row["created_at"])}
                events = pd.DataFrame(
                    connection.execute(
                        sa.select(feedback).where(feedback.c.ticket_id.in_(chunk)).order_by(feedback.c.id)
                    )
                    .mappings()
                    .all()
                )
                if not events.empty:
                    for row in final_decisions(events).to_dict("records"):
                        known = facts.setdefault(row["ticket_id"], {"ticket_id": row["ticket_id"]})
                        for name in FEEDBACK_FIELDS:
                            value = row.get(f"agent_{name}")
                            known[f"agent_{name}"] = None if pd.isna(value) else value
                        resolved = row.get("resolved_at")
                        known["resolved_at"] = (
                            None if pd.isna(resolved) else _utc(pd.Timestamp(resolved).to_pydatetime())
                        )
                for row in connection.execute(
                    sa.select(
                        ticket_states.c.ticket_id, ticket_states.c.status, ticket_states.c.assignee
                    ).where(ticket_states.c.ticket_id.in_(chunk))
                ).mappings():
                    known = facts.setdefault(row["ticket_id"], {"ticket_id": row["ticket_id"]})
                    known["status"], known["assignee"] = row["status"], row["assignee"]
        return facts

    def count(self, table: sa.Table) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def rows(self, table: sa.Table, columns: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every row, in the order stored (by primary key)."""
        selected = [table.c[name] for name in columns] if columns else [table]
        query = sa.select(*selected).order_by(*table.primary_key.columns)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # -----------------------------------------------------------------------------------------
    # Operations: agents and assignment (docs/operations.md "Agents", "Assignment")

    @contextmanager
    def assignment_lock(self) -> Iterator[None]:
        """One assignment round at a time across the service's worker processes: a round reads
        the agents' open load, chooses and stores, and the next round must see what it stored
        (else two workers both give an agent their last free place). SQLite: a lock file beside
        the database (the workers share its host); PostgreSQL: an advisory lock."""
        path = sqlite_path(self.engine.url.render_as_string(hide_password=False))
        if path is not None:
            with open(f"{path}.assign-lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        elif self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": ASSIGNMENT_LOCK})
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ASSIGNMENT_LOCK})
                    connection.commit()
        else:
            yield

    def record_assignments(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store assignments (`assignments` columns), all or none, each agent also the ticket's
        state's assignee (`assign_states`)."""
        if rows:
            with self.engine.begin() as connection:
                connection.execute(assignments.insert(), [dict(row) for row in rows])
                assign_states(connection, rows)

    def last_assignments(self, ticket_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Each ticket's newest assignment row (an assignment or a later move), by ticket id;
        `ticket_ids`: only those."""
        newest = sa.select(sa.func.max(assignments.c.id)).group_by(assignments.c.ticket_id)
        if ticket_ids is not None:
            wanted = list(dict.fromkeys(ticket_ids))
            if not wanted:
                return {}
            newest = newest.where(assignments.c.ticket_id.in_(wanted))
        query = sa.select(assignments).where(assignments.c.id.in_(newest.scalar_subquery()))
        with self.engine.connect() as connection:
            return {row.ticket_id: dict(row._mapping) for row in connection.execute(query)}

    def last_assignment(self, ticket_id: str) -> dict[str, Any] | None:
        return self.last_assignments([ticket_id]).get(ticket_id)

    def last_agents_by_team(self) -> dict[str, str]:
        """Team -> the agent last given one of its tickets by assignment (round-robin goes on
        after them)."""
        newest = (
            sa.select(sa.func.max(assignments.c.id))
            .where(assignments.c.agent.is_not(None), assignments.c.reassignment.is_(False))
            .group_by(assignments.c.team)
        )
        query = sa.select(assignments.c.team, assignments.c.agent).where(
            assignments.c.id.in_(newest.scalar_subquery())
        )
        with self.engine.connect() as connection:
            return {row.team: row.agent for row in connection.execute(query)}

    def open_load(self, exclude: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """Open tickets per assignee and priority: tickets whose state (`ticket_states`) is open,
        by the state's assignee (else the last assignment's agent), plus assigned tickets with no
        state yet (taken as open). The priority is the last assignment's, else the latest
        prediction's, else "unknown". Assignees are as stored (an agent id or a helpdesk's user
        id: `urgency.agents.Agents.agent_id` tells which agent). `exclude`: tickets not counted
        (about to be assigned again)."""
        excluded = set(exclude)
        newest_assignment = (
            sa.select(sa.func.max(assignments.c.id).label("id")).group_by(assignments.c.ticket_id).subquery()
        )
        last = (
            sa.select(assignments.c.ticket_id, assignments.c.agent, assignments.c.priority)
            .join(newest_assignment, assignments.c.id == newest_assignment.c.id)
            .subquery("last_assignment")
        )
        newest_prediction = (
            sa.select(sa.func.max(predictions.c.id).label("id")).group_by(predictions.c.ticket_id).subquery()
        )
        scored = (
            sa.select(predictions.c.ticket_id, predictions.c.priority)
            .join(newest_prediction, predictions.c.id == newest_prediction.c.id)
            .subquery("last_prediction")
        )
        # One query per kind of open ticket, counted in SQL's joins rather than in Python's memory.
        open_states = (
            sa.select(
                ticket_states.c.ticket_id,
                sa.func.coalesce(ticket_states.c.assignee, last.c.agent).label("agent"),
                sa.func.coalesce(last.c.priority, scored.c.priority).label("priority"),
            )
            .select_from(
                ticket_states.outerjoin(last, last.c.ticket_id == ticket_states.c.ticket_id).outerjoin(
                    scored, scored.c.ticket_id == ticket_states.c.ticket_id
                )
            )
            .where(ticket_states.c.status.in_(OPEN_STATUSES))
        )
        assigned_without_state = (
            sa.select(last.c.ticket_id, last.c.agent, last.c.priority)
            .select_from(last.outerjoin(ticket_states, ticket_states.c.ticket_id == last.c.ticket_id))
            .where(ticket_states.c.ticket_id.is_(None), last.c.agent.is_not(None))
        )
        load: dict[str, dict[str, int]] = {}
        with self.engine.connect() as connection:
            for query in (open_states, assigned_without_state):
                for ticket_id, agent, priority in connection.execute(query):
                    if not agent or ticket_id in excluded:
                        continue
                    counts = load.setdefault(agent, {})
                    counts[priority or "unknown"] = counts.get(priority or "unknown", 0) + 1
        return load

    def latest_predictions(self, ticket_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Each ticket's latest prediction row (its `decision` and `fields`), by ticket id."""
        if not ticket_ids:
            return {}
        newest = (
            sa.select(sa.func.max(predictions.c.id))
            .where(predictions.c.ticket_id.in_(list(dict.fromkeys(ticket_ids))))
            .group_by(predictions.c.ticket_id)
        )
        query = sa.select(predictions).where(predictions.c.id.in_(newest.scalar_subquery()))
        with self.engine.connect() as connection:
            return {row.ticket_id: dict(row._mapping) for row in connection.execute(query)}

    def set_availability(self, agent: str, available: bool, *, source: str, at: datetime) -> None:
        """An agent switched on or off (by an API call or a helpdesk: `source`)."""
        values = {"available": available, "updated_at": at, "source": source}
        with self.engine.begin() as connection:
            updated = connection.execute(
                agent_availability.update().where(agent_availability.c.agent == agent).values(**values)
            )
            if updated.rowcount == 0:
                try:
                    with connection.begin_nested():
                        connection.execute(agent_availability.insert(), [{"agent": agent, **values}])
                except IntegrityError:  # set at the same moment by another request: this one wins
                    connection.execute(
                        agent_availability.update()
                        .where(agent_availability.c.agent == agent)
                        .values(**values)
                    )

    def availability(self) -> dict[str, dict[str, Any]]:
        """Agent -> {available, updated_at, source}, for the agents whose availability was set."""
        with self.engine.connect() as connection:
            return {
                row.agent: {"available": row.available, "updated_at": row.updated_at, "source": row.source}
                for row in connection.execute(sa.select(agent_availability))
            }

    def record_move(
        self,
        ticket_id: str,
        *,
        agent: str | None,
        team: str | None,
        at: datetime,
        source: str,
        strategy: str = "agent",
    ) -> dict[str, Any] | None:
        """A ticket moved by people (feedback, a helpdesk's update) after it was assigned: a
        reassignment row when the agent or team differs from its last assignment (None, the
        agent or team not given, keeps that one). Returns the row stored, or None: the ticket
        was never assigned, or nothing changed."""
        last = self.last_assignment(ticket_id)
        if last is None:
            return None
        new_agent = agent if agent is not None else last["agent"]
        new_team = team if team is not None else last["team"]
        if new_agent == last["agent"] and new_team == last["team"]:
            return None
        # A move to another team without naming an agent leaves the ticket in that team's queue.
        if team is not None and team != last["team"] and agent is None:
            new_agent = None
        moved = []
        if new_team != last["team"]:
            moved.append(f"team {last['team']} -> {new_team}")
        if new_agent != last["agent"]:
            moved.append(f"agent {last['agent'] or 'none'} -> {new_agent or 'none'}")
        row = {
            "ticket_id": ticket_id,
            "assigned_at": at,
            "agent": new_agent,
            "team": new_team,
            "priority": last["priority"],
            "strategy": strategy,
            "reassignment": True,
            "previous_agent": last["agent"],
            "previous_team": last["team"],
            "source": source,
            "explanation": f"reassigned by {source}: " + ", ".join(moved),
        }
        self.record_assignments([row])
        return row

    # Operations, backlog part: ticket states, the open backlog, recent response and handling times

    def ticket_state(self, ticket_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(ticket_states).where(ticket_states.c.ticket_id == ticket_id)
            ).first()
        return None if row is None else dict(row._mapping)

    def set_state(self, ticket_id: str, **state: Any) -> None:
        """`set_state` in its own transaction (`at`, `source`, `status`, `team`, `assignee`)."""
        with self.engine.begin() as connection:
            set_state(connection, ticket_id, **state)

    def open_tickets(self) -> pd.DataFrame:
        """Each open ticket (state in OPEN_STATUSES) that was scored: its state (`status`,
        `opened_at`, `updated_at`, `state_team`, `assignee`), its latest prediction (`priority`,
        `team`, `created_at`, `scored_at`, the deadlines, `category`, `fields`) and when it was
        first answered (`first_response_at`, from feedback; none: not yet)."""
        import pandas as pd

        latest = (
            sa.select(predictions.c.ticket_id, sa.func.max(predictions.c.id).label("id"))
            .group_by(predictions.c.ticket_id)
            .subquery()
        )
        answered = (
            sa.select(
                feedback.c.ticket_id, sa.func.min(feedback.c.first_response_at).label("first_response_at")
            )
            .group_by(feedback.c.ticket_id)
            .subquery()
        )
        query = (
            sa.select(
                ticket_states.c.ticket_id,
                ticket_states.c.status,
                ticket_states.c.opened_at,
                ticket_states.c.updated_at,
                ticket_states.c.team.label("state_team"),
                ticket_states.c.assignee,
                predictions.c.priority,
                predictions.c.team,
                predictions.c.created_at,
                predictions.c.scored_at,
                predictions.c.first_response_due,
                predictions.c.resolution_due,
                predictions.c.category,
                predictions.c.fields,
                answered.c.first_response_at,
            )
            .select_from(
                ticket_states.join(latest, latest.c.ticket_id == ticket_states.c.ticket_id)
                .join(predictions, predictions.c.id == latest.c.id)
                .outerjoin(answered, answered.c.ticket_id == ticket_states.c.ticket_id)
            )
            .where(ticket_states.c.status.in_(OPEN_STATUSES))
            .order_by(ticket_states.c.ticket_id)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).mappings().all()
        return pd.DataFrame(found, columns=list(query.selected_columns.keys()))

    def recent_times(self, since: datetime) -> pd.DataFrame:
        """Tickets first answered or resolved since `since` (by feedback): `ticket_id`, `team`
        (the state's, else the latest prediction's), `created_at` (the prediction's, else when
        the state opened), `first_response_at` (the earliest), `resolved_at` (the latest)."""
        import pandas as pd

        since = _utc(since)
        times = (
            sa.select(
                feedback.c.ticket_id,
                sa.func.min(feedback.c.first_response_at).label("first_response_at"),
                sa.func.max(feedback.c.resolved_at).label("resolved_at"),
            )
            .group_by(feedback.c.ticket_id)
            .having(
                sa.or_(
                    sa.func.min(feedback.c.first_response_at) >= since,
                    sa.func.max(feedback.c.resolved_at) >= since,
                )
            )
            .subquery()
        )
        latest = (
            sa.select(predictions.c.ticket_id, sa.func.max(predictions.c.id).label("id"))
            .group_by(predictions.c.ticket_id)
            .subquery()
        )
        query = (
            sa.select(
                times.c.ticket_id,
                sa.func.coalesce(ticket_states.c.team, predictions.c.team).label("team"),
                sa.func.coalesce(predictions.c.created_at, ticket_states.c.opened_at).label("created_at"),
                times.c.first_response_at,
                times.c.resolved_at,
            )
            .select_from(
                times.outerjoin(latest, latest.c.ticket_id == times.c.ticket_id)
                .outerjoin(predictions, predictions.c.id == latest.c.id)
                .outerjoin(ticket_states, ticket_states.c.ticket_id == times.c.ticket_id)
            )
            .order_by(times.c.ticket_id)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).mappings().all()
        return pd.DataFrame(found, columns=list(query.selected_columns.keys()))

    # -----------------------------------------------------------------------------------------
    # Repeat issues: the clusters' refill after a restart (docs/repeat-issues.md "In the service")

    def tickets_created_between(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Each ticket created in [start, end] (else scored then, when it came without a created
        time), once, as last scored: `ticket_id`, `subject`, `body`, `created_at` (the scoring
        time when none), oldest first. What a restarted worker's clusters are refilled with."""
        moment = sa.func.coalesce(predictions.c.created_at, predictions.c.scored_at)
        latest = (
            sa.select(sa.func.max(predictions.c.id).label("id"))
            .where(moment >= start, moment <= end)
            .group_by(predictions.c.ticket_id)
            .subquery()
        )
        query = (
            sa.select(
                predictions.c.ticket_id,
                predictions.c.subject,
                predictions.c.body,
                moment.label("created_at"),
            )
            .join(latest, latest.c.id == predictions.c.id)
            .order_by(moment, predictions.c.id)
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).mappings().all()
        return [{**row, "created_at": _utc(row["created_at"])} for row in found]

    # -----------------------------------------------------------------------------------------
    # Cluster alerts (issue 19): stored once per episode, the parent incident queued for the helpdesk

    @contextmanager
    def _cluster_alert_lock(self) -> Iterator[sa.Connection]:
        """A transaction in which one cluster alert is recorded at a time across the service's
        worker processes (the episode rule reads the recent alerts, then inserts or updates: two
        workers doing that at once would both insert). SQLite: a lock file beside the database
        (its workers share a host), held until the transaction has committed (pysqlite opens the
        write transaction at the first write, so the read under the lock sees every alert stored
        before it); PostgreSQL: a transaction-level advisory lock taken as the transaction's
        first statement, released by its commit."""
        path = sqlite_path(self.engine.url.render_as_string(hide_password=False))
        # _ALERT_THREADS: the threads of this process (an in-memory SQLite has no lock file).
        with _ALERT_THREADS, open(f"{path}.alert-lock", "a") if path is not None else nullcontext() as handle:
            if handle is not None:
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                with self.engine.begin() as connection:
                    if connection.dialect.name == "postgresql":
                        connection.execute(
                            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLUSTER_ALERT_LOCK}
                        )
                    yield connection
            finally:
                if handle is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def record_cluster_alert(
        self,
        alert: Mapping[str, Any],
        *,
        span: timedelta,
        threshold: float,
        now: datetime,
        write_back_to: Sequence[str] = (),
        notify: bool = False,
    ) -> dict[str, Any]:
        """Store a worker's cluster alert (`cluster_alerts` columns: `raised_at`, `title`,
        `count`, `burst_hours`, `baseline_per_hour`, `expected`, `p_value`, `explanation`,
        `ticket_ids`, and `centroid`: the cluster's unit vector or None) as a new episode, or
        merge it into the episode it belongs to. Returns the episode's row with `new` (True: a
        row was added) and `queued` (the helpdesk a parent-incident write was queued for, or None).

        The episode rule. Each worker process clusters only the tickets it scored, so N workers
        see one burst as N alerts whose members are mostly different tickets and whose titles
        may differ by a word. An alert is the same episode as a stored one last seen within
        `span` (the burst span) of it when they share a member ticket, or have the same title,
        or their clusters' centroids have a cosine of at least `threshold` (the clusters' own
        joining threshold: a ticket near one centroid would have joined the other cluster).
        Several stored alerts may match: the one last seen latest takes it. Merged: the members'
        union, the latest `last_seen_at`, the figures of the report with the larger count. Made
        atomic by `_cluster_alert_lock` on SQLite and PostgreSQL alike.

        The parent incident: the first time an episode's members include tickets that came from
        a helpdesk in `write_back_to` (its webhook deliveries say which), a `parent_incident`
        write for that helpdesk (the one most members came from) is queued in the outbox, in
        this transaction; `urgency.writeback.drain` creates it and links the members (those
        stored by then). Members a later report adds after that write was sent get a write of
        their own that links them (`values.members`). `notify`: a new episode is also queued for
        the service's alert webhook (`urgency.writeback.send_alert_webhook`)."""
        import numpy as np

        raised = _utc(alert["raised_at"])
        assert raised is not None
        ids = [str(ticket_id) for ticket_id in alert["ticket_ids"]]
        centroid = alert.get("centroid")
        vector = None if centroid is None else np.asarray(centroid, dtype=np.float32).ravel()
        figures = {
            name: alert[name]
            for name in ("title", "count", "burst_hours", "baseline_per_hour", "expected", "p_value")
        } | {"explanation": alert["explanation"]}
        with self._cluster_alert_lock() as connection:
            recent = (
                connection.execute(
                    sa.select(cluster_alerts)
                    .where(
                        cluster_alerts.c.last_seen_at >= raised - span,
                        cluster_alerts.c.raised_at <= raised + span,
                    )
                    .order_by(cluster_alerts.c.last_seen_at.desc(), cluster_alerts.c.id.desc())
                )
                .mappings()
                .all()
            )
            match = next(
                (row for row in recent if _same_episode(row, ids, figures["title"], vector, threshold)), None
            )
            if match is None:
                values = {
                    **figures,
                    "raised_at": raised,
                    "last_seen_at": raised,
                    "updated_at": now,
                    "size": len(ids),
                    "ticket_ids": ids,
                    "centroid": None if vector is None else vector.astype("<f2").tobytes(),
                    "reports": 1,
                }
                alert_id = connection.execute(cluster_alerts.insert().values(**values)).inserted_primary_key[
                    0
                ]
                row = {"id": alert_id, **values, "helpdesk": None, "incident_id": None, "incident_url": None}
                if notify:  # a new episode for the service's alert webhook (`notify`), once
                    connection.execute(
                        outbox.insert(),
                        [
                            {
                                "helpdesk": "webhook",
                                "delivery_id": f"cluster-alert-{alert_id}",
                                "ticket_id": f"cluster-alert-{alert_id}",
                                "values": {"kind": ALERT_WEBHOOK, "alert_id": alert_id},
                                "status": "pending",
                                "attempts": 0,
                                "created_at": now,
                                "next_attempt_at": now,
                            }
                        ],
                    )
            else:
                known = list(match["ticket_ids"])
                members = known + [ticket_id for ticket_id in ids if ticket_id not in set(known)]
                values = {
                    "last_seen_at": max(_utc(match["last_seen_at"]), raised),
                    "updated_at": now,
                    "size": len(members),
                    "ticket_ids": members,
                    "reports": match["reports"] + 1,
                }
                if figures["count"] > match["count"]:
                    values |= figures
                connection.execute(
                    cluster_alerts.update().where(cluster_alerts.c.id == match["id"]).values(**values)
                )
                row = {**match, **values}
            queued = None
            if row["helpdesk"] is None and write_back_to:
                queued = _queue_parent_incident(connection, row, write_back_to, now)
                if queued is not None:
                    row["helpdesk"] = queued
            elif match is not None and row["helpdesk"] is not None:
                added = [
                    ticket_id for ticket_id in row["ticket_ids"] if ticket_id not in set(match["ticket_ids"])
                ]
                queued = _queue_new_members(connection, row, added, now)
        return {**row, "new": match is None, "queued": queued}

    def cluster_alerts(
        self, since: datetime | None = None, until: datetime | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Stored alert episodes raised in [since, until), newest first (no centroid)."""
        columns = [column for column in cluster_alerts.c if column.name != "centroid"]
        query = sa.select(*columns).order_by(cluster_alerts.c.raised_at.desc(), cluster_alerts.c.id.desc())
        if since is not None:
            query = query.where(cluster_alerts.c.raised_at >= _utc(since))
        if until is not None:
            query = query.where(cluster_alerts.c.raised_at < _utc(until))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            found = connection.execute(query).mappings().all()
        return [
            {
                **row,
                "raised_at": _utc(row["raised_at"]),
                "last_seen_at": _utc(row["last_seen_at"]),
                "updated_at": _utc(row["updated_at"]),
            }
            for row in found
        ]

    def cluster_alert(self, alert_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(cluster_alerts).where(cluster_alerts.c.id == alert_id)).first()
        return None if row is None else dict(row._mapping)

    def helpdesk_tickets(self, helpdesk: str, ticket_ids: Sequence[str]) -> list[str]:
        """Those of `ticket_ids` that came from `helpdesk` (a stored webhook delivery of it),
        in the order given."""
        wanted = list(dict.fromkeys(str(ticket_id) for ticket_id in ticket_ids))
        found: set[str] = set()
        with self.engine.connect() as connection:
            for chunk in _chunks(wanted):
                found.update(
                    connection.execute(
                        sa.select(webhook_deliveries.c.ticket_id)
                        .where(
                            webhook_deliveries.c.helpdesk == helpdesk,
                            webhook_deliveries.c.ticket_id.in_(chunk),
                        )
                        .distinct()
                    ).scalars()
                )
        return [ticket_id for ticket_id in wanted if ticket_id in found]

    def set_alert_incident(self, alert_id: int, incident_id: str, url: str | None, now: datetime) -> None:
        """The parent incident the helpdesk created for an alert episode."""
        with self.engine.begin() as connection:
            connection.execute(
                cluster_alerts.update()
                .where(cluster_alerts.c.id == alert_id)
                .values(incident_id=str(incident_id), incident_url=url, updated_at=now)
            )


# Ids per IN (...) list: far below SQLite's and PostgreSQL's limits on bound parameters.
IN_CHUNK = 500


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), IN_CHUNK):
        yield list(values[start : start + IN_CHUNK])


# ---------------------------------------------------------------------------------------------
# Cluster alerts (issue 19): the episode rule's parts (`Store.record_cluster_alert`)

_ALERT_THREADS = threading.Lock()


def _same_episode(
    row: Mapping[str, Any], ids: Sequence[str], title: str, vector: Any, threshold: float
) -> bool:
    """A stored alert and a new one (already within the burst span of each other) are one
    episode: a shared member ticket, the same title, or centroids at `threshold` or more."""
    import numpy as np

    if set(row["ticket_ids"]) & set(ids) or row["title"] == title:
        return True
    if vector is None or row["centroid"] is None:
        return False
    stored = np.frombuffer(row["centroid"], dtype="<f2").astype(np.float32)
    if stored.shape != vector.shape:
        return False
    norms = float(np.linalg.norm(stored) * np.linalg.norm(vector))
    return norms > 0 and float(stored @ vector) / norms >= threshold


def _queue_new_members(
    connection: sa.Connection, row: Mapping[str, Any], added: Sequence[str], now: datetime
) -> str | None:
    """Members merged into an episode whose parent-incident write was already sent: one more
    write links them (`values.members`). None when there are none, or while a write of the
    episode is still pending (it reads the members when it is sent, these among them)."""
    prefix = f"cluster-alert-{row['id']}"
    pending = connection.execute(
        sa.select(sa.func.count()).where(
            outbox.c.helpdesk == row["helpdesk"],
            outbox.c.status == "pending",
            sa.or_(outbox.c.delivery_id == prefix, outbox.c.delivery_id.like(f"{prefix}-%")),
        )
    ).scalar_one()
    if not added or pending:
        return None
    connection.execute(
        outbox.insert(),
        [
            {
                "helpdesk": row["helpdesk"],
                "delivery_id": f"{prefix}-{row['reports']}",
                "ticket_id": prefix,
                "values": {"kind": PARENT_INCIDENT, "alert_id": row["id"], "members": list(added)},
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
        ],
    )
    return str(row["helpdesk"])


def _queue_parent_incident(
    connection: sa.Connection, row: Mapping[str, Any], helpdesks: Sequence[str], now: datetime
) -> str | None:
    """Queue the episode's parent incident for the helpdesk (of `helpdesks`) most of its members
    came from, and name it on the alert row; None: no member came from one of them."""
    counts: dict[str, int] = {}
    for chunk in _chunks(list(row["ticket_ids"])):
        for helpdesk, count in connection.execute(
            sa.select(
                webhook_deliveries.c.helpdesk, sa.func.count(sa.distinct(webhook_deliveries.c.ticket_id))
            )
            .where(
                webhook_deliveries.c.ticket_id.in_(chunk), webhook_deliveries.c.helpdesk.in_(list(helpdesks))
            )
            .group_by(webhook_deliveries.c.helpdesk)
        ):
            counts[helpdesk] = counts.get(helpdesk, 0) + int(count)
    if not counts:
        return None
    helpdesk = max(sorted(counts), key=lambda name: counts[name])
    connection.execute(
        outbox.insert(),
        [
            {
                "helpdesk": helpdesk,
                "delivery_id": f"cluster-alert-{row['id']}",
                "ticket_id": f"cluster-alert-{row['id']}",
                "values": {"kind": PARENT_INCIDENT, "alert_id": row["id"]},
                "status": "pending",
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
        ],
    )
    connection.execute(
        cluster_alerts.update().where(cluster_alerts.c.id == row["id"]).values(helpdesk=helpdesk)
    )
    return helpdesk
