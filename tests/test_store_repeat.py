"""The store's tickets of a window (a restarted worker's clusters are refilled with them), on
SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from datetime import timedelta

from tests.test_store_states import T0, prediction, store  # noqa: F401 (the fixture)
from urgency.store import Store


def test_the_window_s_tickets_once_each_as_last_scored_oldest_first(store: Store) -> None:  # noqa: F811
    store.record_predictions(
        [
            {
                **prediction("old", at=T0),
                "created_at": T0 - timedelta(days=9),
                "subject": None,
                "body": "old",
            },
            # Every row with the same keys: one executemany takes its columns from the first.
            {
                **prediction("a", at=T0),
                "created_at": T0 - timedelta(hours=2),
                "subject": None,
                "body": "first",
            },
            {**prediction("b", at=T0), "created_at": T0 - timedelta(hours=3), "subject": "s", "body": "b"},
            # No created time: its scoring time counts.
            {**prediction("c", at=T0 - timedelta(hours=1)), "created_at": None, "subject": None, "body": "c"},
        ]
    )
    # "a" scored again: its latest text is the one refilled.
    store.record_predictions(
        [{**prediction("a", at=T0), "created_at": T0 - timedelta(hours=2), "body": "again"}]
    )
    found = store.tickets_created_between(T0 - timedelta(days=7), T0)
    assert [(t["ticket_id"], t["body"]) for t in found] == [("b", "b"), ("a", "again"), ("c", "c")]
    assert found[0]["subject"] == "s"
    assert found[0]["created_at"] == T0 - timedelta(hours=3)
    assert found[2]["created_at"] == T0 - timedelta(hours=1)
    assert store.tickets_created_between(T0 + timedelta(hours=1), T0 + timedelta(days=1)) == []
