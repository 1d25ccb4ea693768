"""The store on SQLite and on a real PostgreSQL server: migrations, idempotent feedback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from urgency.store import (
    FeedbackConflict,
    Store,
    StoreError,
    check_schema,
    current_revision,
    feedback,
    head_revision,
    make_engine,
    predictions,
    upgrade,
    upgrade_database,
    webhook_deliveries,
)
from urgency.store import database_url as resolve_database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nested' / 'store.db'}"
    else:
        yield request.getfixturevalue("postgres").create_database(f"store_{uuid.uuid4().hex[:12]}")


def _prediction(ticket_id: str) -> dict:
    return {
        "ticket_id": ticket_id,
        "scored_at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        "created_at": datetime(2026, 3, 2, 8, 30, tzinfo=UTC),
        "fields": {"plan": "free"},
        "priority": "P3",
        "team": "desk",
        "needs_human_triage": False,
        "decision": {"priority": "P3"},
        "model_versions": {"urgency": "1"},
    }


def test_upgrade_creates_the_schema_once(database_url: str) -> None:
    engine = make_engine(database_url)
    with pytest.raises(StoreError, match="urgency db upgrade"):
        check_schema(engine)
    assert upgrade(engine) == (None, head_revision())
    assert upgrade(engine) == (head_revision(), head_revision())  # a second run changes nothing
    check_schema(engine)
    assert current_revision(engine) == head_revision()
    assert {"predictions", "feedback", "alembic_version"} <= set(sa.inspect(engine).get_table_names())


def test_feedback_is_stored_once_per_event(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    store = Store(engine)
    event = {"ticket_id": "T-1", "event_id": "e-1", "urgency": "high", "agent": "maria"}
    assert store.record_feedback(event).stored
    assert not store.record_feedback(dict(event)).stored  # the retry
    assert store.record_feedback({**event, "event_id": "e-2", "urgency": "low"}).stored
    with pytest.raises(FeedbackConflict, match="already stored with different content"):
        store.record_feedback({**event, "urgency": "medium"})
    rows = store.rows(feedback, ["ticket_id", "event_id", "urgency"])
    assert rows == [
        {"ticket_id": "T-1", "event_id": "e-1", "urgency": "high"},
        {"ticket_id": "T-1", "event_id": "e-2", "urgency": "low"},
    ]


def test_a_delivery_is_stored_once_with_what_it_caused(database_url: str) -> None:
    """A helpdesk delivery, its prediction and its feedback: all in one transaction, and the same
    delivery again (a retry, or the same one twice at once) writes nothing."""
    engine = make_engine(database_url)
    upgrade(engine)
    store = Store(engine)
    received = datetime(2026, 3, 2, 9, 1, tzinfo=UTC)
    delivery = {"helpdesk": "zammad", "delivery_id": "d-1", "ticket_id": "T-1", "kind": "created"}
    delivery |= {"received_at": received, "outcome": {"action": "scored"}}
    assert store.delivery("zammad", "d-1") is None
    assert store.record_delivery(delivery, predicted=[_prediction("T-1")])
    assert not store.record_delivery(delivery, predicted=[_prediction("T-1")])
    assert store.delivery("zammad", "d-1") == {"action": "scored"}
    assert store.count(predictions) == 1 and store.count(webhook_deliveries) == 1
    # Another helpdesk's delivery with the same id is another delivery; its feedback is stored.
    event = {"ticket_id": "T-1", "event_id": "jira:d-1", "priority": "P2"}
    assert store.record_delivery({**delivery, "helpdesk": "jira", "kind": "updated"}, decided=event)
    assert store.rows(feedback, ["event_id", "priority"]) == [{"event_id": "jira:d-1", "priority": "P2"}]
    # A delivery whose prediction cannot be stored leaves no delivery behind: the retry scores it.
    broken = {**_prediction("T-2"), "priority": None}
    with pytest.raises(sa.exc.IntegrityError):
        store.record_delivery({**delivery, "delivery_id": "d-2"}, predicted=[broken])
    assert store.delivery("zammad", "d-2") is None and store.count(predictions) == 1


def test_a_failed_batch_stores_nothing(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    store = Store(engine)
    store.record_predictions([_prediction("T-0")])
    broken = {**_prediction("T-2"), "priority": None}  # NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        store.record_predictions([_prediction("T-1"), broken])
    assert [row["ticket_id"] for row in store.rows(predictions, ["ticket_id"])] == ["T-0"]
    nine = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert store.count_created_between(datetime(2026, 3, 2, 8, 0, tzinfo=UTC), nine) == 1
    assert store.count_created_between(datetime(2026, 3, 2, 8, 45, tzinfo=UTC), nine) == 0


def test_an_unreachable_database_is_a_clear_error() -> None:
    engine = make_engine("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(StoreError) as error:
        check_schema(engine)
    assert "cannot reach the database" in str(error.value)
    assert "secret" not in str(error.value)
    assert not Store(engine).ping()


def test_the_migrations_build_exactly_the_tables_the_code_uses(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from urgency.store import metadata

    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_the_latest_decision_wins_field_by_field(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    store = Store(engine)
    store.record_predictions(
        [{**_prediction("T-1"), "urgency": "low"}, {**_prediction("T-2"), "urgency": "high"}]
    )
    store.record_predictions([{**_prediction("T-1"), "urgency": "medium"}])  # scored again: this one counts
    store.record_predictions([_prediction("T-3")])  # never decided: not in the frame
    at = lambda hour: datetime(2026, 3, 2, hour, 0, tzinfo=UTC)  # noqa: E731
    # Arrives last but was decided first: the 11:00 decision still wins for urgency.
    store.record_feedback({"ticket_id": "T-1", "event_id": "a", "urgency": "high", "decided_at": at(11)})
    store.record_feedback({"ticket_id": "T-1", "event_id": "b", "team": "desk", "decided_at": at(12)})
    store.record_feedback({"ticket_id": "T-1", "event_id": "c", "urgency": "low", "decided_at": at(10)})
    store.record_feedback({"ticket_id": "T-2", "event_id": "a", "urgency": "medium", "priority": "P2"})
    store.record_feedback({"ticket_id": "T-2", "event_id": "b", "priority": "P1"})
    frame = store.decisions().set_index("ticket_id")
    assert sorted(frame.index) == ["T-1", "T-2"]
    assert frame.loc["T-1", "urgency"] == "medium"  # the latest prediction
    assert frame.loc["T-1", "agent_urgency"] == "high" and frame.loc["T-1", "agent_team"] == "desk"
    assert frame.loc["T-1", "feedback_events"] == 3
    assert frame.loc["T-2", "agent_urgency"] == "medium" and frame.loc["T-2", "agent_priority"] == "P1"
    assert store.decisions(since=datetime(2026, 3, 3, tzinfo=UTC)).empty


def test_db_upgrade_command(params_file: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from urgency.cli import app

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    done = CliRunner().invoke(app, ["db", "upgrade", "--params", str(params_file), "--database-url", url])
    assert done.exit_code == 0, done.output
    assert f"at revision {head_revision()} (was empty)" in done.output
    assert current_revision(make_engine(url)) == head_revision()
    default = CliRunner().invoke(app, ["db", "upgrade", "--params", str(params_file)])
    assert default.exit_code == 0 and (params_file.parent / "data" / "service.db").exists()
    bad = CliRunner().invoke(
        app, ["db", "upgrade", "--params", str(params_file), "--database-url", "nosuch://x"]
    )
    assert bad.exit_code == 7 and "nosuch" in bad.output and "Traceback" not in bad.output


def test_the_url_is_the_flag_else_the_variable_else_sqlite_beside_the_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tmp_path / "project" / "params.yaml"
    monkeypatch.delenv("URGENCY_DATABASE_URL", raising=False)
    assert resolve_database_url(None, params) == f"sqlite:///{tmp_path}/project/data/service.db"
    monkeypatch.setenv("URGENCY_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert resolve_database_url(None, params) == "postgresql+psycopg://u@h/db"
    assert resolve_database_url("sqlite:///flag.db", params) == "sqlite:///flag.db"


def test_upgrade_database_migrates_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'store.db'}"
    assert upgrade_database(url) == (None, head_revision())
    assert upgrade_database(url) == (head_revision(), head_revision())


def test_feedback_for_the_same_instant_in_another_offset_is_the_same_event(database_url: str) -> None:
    from datetime import timedelta, timezone

    engine = make_engine(database_url)
    upgrade(engine)
    store = Store(engine)
    berlin = timezone(timedelta(hours=2))
    event = {"ticket_id": "T-1", "event_id": "e-1", "urgency": "high"}
    assert store.record_feedback({**event, "decided_at": datetime(2026, 6, 1, 10, 0, tzinfo=berlin)}).stored
    retry = {**event, "decided_at": datetime(2026, 6, 1, 8, 0, tzinfo=UTC)}
    assert not store.record_feedback(retry).stored  # the same instant: a retry, not a conflict
    with pytest.raises(FeedbackConflict):
        store.record_feedback({**event, "decided_at": datetime(2026, 6, 1, 10, 0, tzinfo=UTC)})
    engine.dispose()


def test_a_store_from_before_text_signals_keeps_its_rows_readable(tmp_path: Path) -> None:
    """Migration 0003 adds `predictions.text_signals`: older rows read as null, new rows keep it."""
    from importlib import resources

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from urgency.store import predictions

    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    config = Config()
    config.set_main_option("script_location", str(resources.files("urgency") / "migrations"))
    config.attributes["engine"] = engine
    command.upgrade(config, "0002")
    old = {key: value for key, value in _prediction("T-old").items() if key != "fields"}
    with engine.begin() as connection:
        columns = {column["name"] for column in sa.inspect(connection).get_columns("predictions")}
        assert "text_signals" not in columns
        old_table = sa.Table("predictions", sa.MetaData(), autoload_with=connection)
        connection.execute(old_table.insert(), [{**old, "fields": {"plan": "free"}}])
    assert upgrade(engine) == ("0002", head_revision())
    Store(engine).record_predictions([{**_prediction("T-new"), "text_signals": "security=1.00"}])
    with engine.connect() as connection:
        rows = connection.execute(sa.select(predictions.c.ticket_id, predictions.c.text_signals)).all()
    assert sorted(rows) == [("T-new", "security=1.00"), ("T-old", None)]
