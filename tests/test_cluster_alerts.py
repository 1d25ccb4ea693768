"""Repeat-issue cluster alerts in the store (one row per episode, whichever worker process
raised it; atomic on SQLite and on a real PostgreSQL server) and the parent incident each
helpdesk gets through the outbox (sent by `drain` to `tests.fake_helpdesk`, a real server)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.serve.test_helpdesk_live import CREDENTIALS, fake_helpdesk
from urgency.store import Store, cluster_alerts, make_engine, outbox, upgrade
from urgency.writeback import drain, incident_create

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SPAN = timedelta(hours=2)
RNG = np.random.default_rng(7)
VPN = RNG.normal(size=384)
OTHER = RNG.normal(size=384)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"alerts_{uuid.uuid4().hex[:12]}")
    engine = make_engine(url)
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


def alert(
    ids: list[str], *, at: datetime = T0, title: str = "vpn connect", centroid: Any = VPN, count: int = 5
) -> dict[str, Any]:
    return {
        "raised_at": at,
        "title": title,
        "count": count,
        "burst_hours": 2.0,
        "baseline_per_hour": 0.02,
        "expected": 0.04,
        "p_value": 1e-9,
        "explanation": f"cluster '{title}' {count} tickets in 2 h, baseline 0.02/h: alert",
        "ticket_ids": ids,
        "centroid": None if centroid is None else centroid / np.linalg.norm(centroid),
    }


def record(store: Store, found: dict[str, Any], **options: Any) -> dict[str, Any]:
    return store.record_cluster_alert(found, span=SPAN, threshold=0.6, now=T0, **options)


def near(vector: np.ndarray, noise: float = 0.2) -> np.ndarray:
    return vector + noise * np.linalg.norm(vector) / np.sqrt(vector.size) * RNG.normal(size=vector.size)


# ---------------------------------------------------------------------------------------------
# The episode rule


def test_two_workers_alerts_of_one_burst_are_one_episode(store: Store) -> None:
    first = record(store, alert(["1", "3", "5", "7", "9"]))
    assert first["new"] and first["reports"] == 1
    # Another worker's tickets of the same burst: no member in common, another title, a close
    # centroid, 20 minutes later.
    second = record(
        store,
        alert(
            ["2", "4", "6", "8", "10", "12"],
            at=T0 + timedelta(minutes=20),
            title="vpn down",
            centroid=near(VPN),
            count=6,
        ),
    )
    assert not second["new"] and second["id"] == first["id"]
    [row] = store.cluster_alerts()
    assert row["reports"] == 2 and row["size"] == 11
    assert row["ticket_ids"][:5] == ["1", "3", "5", "7", "9"] and "12" in row["ticket_ids"]
    assert row["count"] == 6 and row["title"] == "vpn down"  # the larger report's figures
    assert row["raised_at"] == T0 and row["last_seen_at"] == T0 + timedelta(minutes=20)


def test_a_shared_member_or_the_same_title_is_the_same_episode(store: Store) -> None:
    record(store, alert(["1", "2", "3", "4", "5"], centroid=None))
    assert not record(
        store, alert(["5", "6"], title="other words", centroid=OTHER, at=T0 + timedelta(hours=1))
    )["new"]
    assert not record(store, alert(["7"], centroid=None, at=T0 + timedelta(hours=2)))["new"]
    assert len(store.cluster_alerts()) == 1


def test_another_issue_or_a_later_burst_is_a_new_episode(store: Store) -> None:
    record(store, alert(["1", "2", "3", "4", "5"]))
    # Another issue at the same time: other members, title and centroid.
    assert record(store, alert(["a", "b", "c", "d", "e"], title="printer jam", centroid=OTHER))["new"]
    # The same issue again, more than a burst span after it was last seen: a new episode.
    assert record(store, alert(["x", "y", "z", "v", "w"], at=T0 + SPAN + timedelta(minutes=1)))["new"]
    assert [row["title"] for row in store.cluster_alerts()] == ["vpn connect", "printer jam", "vpn connect"]
    assert len(store.cluster_alerts(since=T0 + timedelta(minutes=1))) == 1


def test_workers_alerting_at_once_store_one_episode(store: Store) -> None:
    """Eight workers report the same burst at the same moment (threads on one store: the
    lock file / advisory lock is what serialises worker processes too)."""
    barrier = threading.Barrier(8)
    results: list[dict[str, Any]] = []

    def worker(n: int) -> None:
        barrier.wait()
        results.append(record(store, alert([f"w{n}-{k}" for k in range(5)], centroid=near(VPN))))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(result["new"] for result in results) == [False] * 7 + [True]
    [row] = store.cluster_alerts()
    assert row["reports"] == 8 and row["size"] == 40


# ---------------------------------------------------------------------------------------------
# The parent incident: queued once, for the helpdesk the members came from


def delivered(store: Store, helpdesk: str, *ticket_ids: str) -> None:
    for ticket_id in ticket_ids:
        assert store.record_delivery(
            {
                "helpdesk": helpdesk,
                "delivery_id": f"d-{helpdesk}-{ticket_id}",
                "ticket_id": ticket_id,
                "kind": "created",
                "received_at": T0,
                "outcome": {},
            }
        )


def test_the_parent_incident_is_queued_once_for_the_members_helpdesk(store: Store) -> None:
    delivered(store, "zendesk", "101", "102", "103")
    delivered(store, "jira", "SUP-1")
    # No helpdesk with write-back: nothing queued.
    assert record(store, alert(["api-1"], title="t0", centroid=OTHER))["queued"] is None
    first = record(store, alert(["101", "102", "103", "SUP-1", "api-9"]), write_back_to=["zendesk", "jira"])
    assert first["queued"] == "zendesk" and first["helpdesk"] == "zendesk"
    again = record(store, alert(["104"], centroid=near(VPN)), write_back_to=["zendesk", "jira"])
    assert again["queued"] is None and again["helpdesk"] == "zendesk"
    [write] = store.rows(outbox)
    assert (write["helpdesk"], write["values"]) == (
        "zendesk",
        {"kind": "parent_incident", "alert_id": first["id"]},
    )
    assert store.helpdesk_tickets("zendesk", ["api-9", "103", "101", "SUP-1"]) == ["103", "101"]


# ---------------------------------------------------------------------------------------------
# Each helpdesk's parent incident, sent by drain to the fake helpdesk

FIELDS = {
    "freshdesk": {"email": "ops@acme.example"},
    "zammad": {"group": "Support", "customer": "ops@acme.example"},
    "jira": {"issuetype": "Problem"},
}
MEMBERS = {
    "zendesk": ["101", "102", "103"],
    "freshdesk": ["201", "202", "203"],
    "zammad": ["301", "302", "303"],
    "jira": ["SUP-1", "SUP-2", "SUP-3"],
}


def calls(fake: str) -> list[dict[str, Any]]:
    return httpx.get(f"{fake}/_calls").json()


@pytest.mark.parametrize("helpdesk", list(MEMBERS))
def test_each_helpdesk_gets_its_parent_incident_and_the_members_linked(helpdesk: str, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    store = Store(engine)
    members = MEMBERS[helpdesk]
    delivered(store, helpdesk, *members)
    stored = record(store, alert([*members, "api-1"]), write_back_to=[helpdesk])
    with fake_helpdesk() as fake, httpx.Client() as client:
        assert drain(store, client, {helpdesk: fake}, CREDENTIALS, T0, incident_fields=FIELDS) == {
            "done": 1,
            "retry": 0,
            "failed": 0,
        }
        made = calls(fake)
    create, links = made[0], made[1:]
    row = store.cluster_alert(stored["id"])
    assert row is not None and row["incident_id"] and row["incident_url"].startswith(fake)
    assert "api-1" not in str(made)  # only the helpdesk's own tickets are linked
    if helpdesk == "zendesk":
        ticket = create["json"]["ticket"]
        assert create["path"] == "/api/v2/tickets.json" and ticket["type"] == "problem"
        assert ticket["subject"] == "vpn connect" and ticket["comment"]["public"] is False
        assert "101, 102, 103" in ticket["comment"]["body"] and "baseline" in ticket["comment"]["body"]
        [update] = links
        assert update["path"] == "/api/v2/tickets/update_many.json" and update["method"] == "PUT"
        assert update["json"] == {"ticket": {"type": "incident", "problem_id": int(row["incident_id"])}}
        assert row["incident_url"].endswith(f"/agent/tickets/{row['incident_id']}")
    elif helpdesk == "freshdesk":
        assert create["path"] == "/api/v2/tickets" and create["json"]["related_ticket_ids"] == [201, 202, 203]
        assert create["json"]["email"] == "ops@acme.example" and links == []
    elif helpdesk == "zammad":
        assert create["json"]["group"] == "Support" and create["json"]["article"]["internal"] is True
        assert [link["json"]["link_object_target_value"] for link in links] == [301, 302, 303]
        assert {link["json"]["link_type"] for link in links} == {"parent"}
        assert {link["json"]["link_object_source_number"] for link in links} == {
            str(31000 + int(row["incident_id"]))
        }
    else:
        fields = create["json"]["fields"]
        assert fields["project"] == {"key": "SUP"} and fields["issuetype"] == {"name": "Problem"}
        assert fields["description"]["type"] == "doc"
        assert [link["json"]["inwardIssue"]["key"] for link in links] == members
        assert {link["json"]["outwardIssue"]["key"] for link in links} == {row["incident_id"]}
    engine.dispose()


def test_a_failed_link_is_retried_without_creating_the_parent_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    store = Store(engine)
    delivered(store, "zammad", "301", "302")
    stored = record(store, alert(["301", "302"]), write_back_to=["zammad"])
    with fake_helpdesk() as fake, httpx.Client() as client:
        # Without a customer Zammad refuses the ticket (422): given up, nothing created.
        assert drain(store, client, {"zammad": fake}, CREDENTIALS, T0)["failed"] == 1
        assert store.cluster_alert(stored["id"])["incident_id"] is None
        # Queued again (a new alert id), the helpdesk down after it created the parent.
        stored = record(
            store, alert(["301", "302"], title="again", at=T0 + timedelta(hours=5)), write_back_to=["zammad"]
        )
        assert stored["new"] and stored["queued"] == "zammad"
        fields = {"zammad": FIELDS["zammad"]}
        parent = incident_create(
            "zammad", store.cluster_alert(stored["id"]), ["301", "302"], FIELDS["zammad"]
        )
        assert parent.path == "/api/v1/tickets"
        created = httpx.post(
            f"{fake}{parent.path}", json=parent.json, headers={"Authorization": "Token token=zm-token"}
        )
        store.set_alert_incident(stored["id"], str(created.json()["id"]), None, T0)
        httpx.post(f"{fake}/_down", json={"down": True})
        assert drain(store, client, {"zammad": fake}, CREDENTIALS, T0, incident_fields=fields)["retry"] == 1
        httpx.post(f"{fake}/_down", json={"down": False})
        later = T0 + timedelta(minutes=5)
        assert drain(store, client, {"zammad": fake}, CREDENTIALS, later, incident_fields=fields)["done"] == 1
        made = calls(fake)
    creates = [call for call in made if call["method"] == "POST" and call["path"] == "/api/v1/tickets"]
    assert len(creates) == 2  # the refused one, and the one made before the retry: never again
    assert [call["method"] for call in made[-3:]] == ["GET", "POST", "POST"]  # its number read back, 2 links
    assert [row["status"] for row in store.rows(outbox)] == ["failed", "done"]
    assert store.count(cluster_alerts) == 2
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# The operations report's "Repeat-issue clusters" section


def test_the_operations_report_lists_the_period_s_alerts_with_their_parent_incident(tmp_path: Path) -> None:
    from tests.test_operations import SETTINGS, closed_frame, no_backlog
    from urgency.operations import operations_figures
    from urgency.operations_report import render_html
    from urgency.report import to_json

    closed = closed_frame(["2026-03-02T10:00:00Z", "2026-03-09T10:00:00Z"])
    alerts = [
        {
            **alert(["1", "2", "3"]),
            "id": 1,
            "size": 3,
            "reports": 2,
            "helpdesk": "zendesk",
            "incident_id": "9001",
            "incident_url": "https://acme.zendesk.com/agent/tickets/9001",
        },
        {
            **alert(["4"], title="printer jam", at=T0 + timedelta(days=3)),
            "id": 2,
            "size": 1,
            "reports": 1,
            "helpdesk": None,
            "incident_id": None,
            "incident_url": "javascript:alert(1)",
        },
        {
            **alert(["5"], title="outside", at=T0 - timedelta(days=30)),
            "id": 3,
            "size": 1,
            "reports": 1,
            "helpdesk": None,
            "incident_id": None,
            "incident_url": None,
        },
    ]
    since, until = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 15, tzinfo=UTC)
    figures = operations_figures(
        closed, no_backlog(), settings=SETTINGS, since=since, until=until, cluster_alerts=alerts
    )
    section = figures["clusters"]
    assert [row["title"] for row in section["alerts"]] == ["vpn connect", "printer jam"]
    assert section["episodes"] == 2 and section["with_incident"] == 1
    first = section["alerts"][0]
    assert first["raised_at"] == T0.isoformat() and first["ticket_ids"] == ["1", "2", "3"]
    assert first["incident_url"] == "https://acme.zendesk.com/agent/tickets/9001"
    assert section["alerts"][1]["incident_url"] is None  # not a web link: never shown as one
    assert json.loads(to_json(figures))["clusters"]["episodes"] == 2
    page = render_html(
        {**figures, "title": "t", "source": "s", "period": "p", "as_of": "a", "generated_at": "g"}
    )
    assert 'id="clusters"' in page and "Repeat-issue clusters" in page
    assert '<a href="https://acme.zendesk.com/agent/tickets/9001">zendesk 9001</a>' in page
    assert "javascript:" not in page
    # No alert: the section says why it is empty.
    empty = operations_figures(closed, no_backlog(), settings=SETTINGS)["clusters"]
    assert empty["empty_reason"] == "no cluster alert in the period"


def test_the_report_over_the_store_reads_the_alerts(store: Store) -> None:
    from tests.test_operations import SETTINGS
    from tests.test_store_states import prediction
    from urgency.operations_report import figures_from_frames, frames_from_store

    store.record_predictions([prediction("T-1", at=T0)])  # one open ticket: something to report
    record(store, alert(["T-1", "T-2"]))
    frames = frames_from_store(store)
    figures = figures_from_frames(frames, SETTINGS, source="store", now=T0 + timedelta(days=1))
    [row] = figures["clusters"]["alerts"]
    assert row["title"] == "vpn connect" and row["size"] == 2 and row["incident_id"] is None


def test_members_merged_after_the_parent_was_sent_are_linked_by_a_write_of_their_own(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    store = Store(engine)
    delivered(store, "zendesk", "101", "102", "103", "104", "105")
    first = record(store, alert(["101", "102", "103"]), write_back_to=["zendesk"])
    with fake_helpdesk() as fake, httpx.Client() as client:
        assert drain(store, client, {"zendesk": fake}, CREDENTIALS, T0)["done"] == 1
        # Another worker's report of the same burst, after the parent was created.
        merged = record(store, alert(["104", "105"], centroid=near(VPN)), write_back_to=["zendesk"])
        assert not merged["new"] and merged["queued"] == "zendesk"
        assert drain(store, client, {"zendesk": fake}, CREDENTIALS, T0)["done"] == 1
        made = calls(fake)
    assert [call["path"] for call in made].count("/api/v2/tickets.json") == 1
    links = [call for call in made if "update_many" in call["path"]]
    assert len(links) == 2  # the first members, then the two merged later
    assert links[0]["json"] == links[1]["json"]
    assert store.cluster_alert(first["id"])["size"] == 5
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# The service's plain alert webhook (URGENCY_ALERT_WEBHOOK_URL), signed when a secret is set


def test_a_new_episode_is_posted_once_to_the_alert_webhook_signed(tmp_path: Path) -> None:
    import hashlib
    import hmac

    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(engine)
    store = Store(engine)
    first = record(store, alert(["1", "2", "3"]), notify=True)
    record(store, alert(["4", "5"], centroid=near(VPN)), notify=True)  # merged: not posted again
    with fake_helpdesk() as fake, httpx.Client() as client:
        hook = (f"{fake}/_hook", "s3cret")
        httpx.post(f"{fake}/_down", json={"down": True})
        assert drain(store, client, {}, {}, T0, alert_webhook=hook) == {"done": 0, "retry": 1, "failed": 0}
        httpx.post(f"{fake}/_down", json={"down": False})
        assert drain(store, client, {}, {}, T0 + timedelta(minutes=1), alert_webhook=hook)["done"] == 1
        [posted] = [call for call in calls(fake) if call["path"] == "/_hook"]
    body, headers = posted["body"], posted["headers"]
    sent = json.loads(body)
    assert sent["event"] == "cluster_alert" and sent["alert"]["id"] == first["id"]
    assert sent["alert"]["title"] == "vpn connect" and sent["alert"]["raised_at"] == T0.isoformat()
    assert headers["x-urgency-delivery"] == f"cluster-alert-{first['id']}"
    signed = headers["x-urgency-timestamp"].encode() + b"." + body.encode()
    expected = "sha256=" + hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-urgency-signature"], expected)
    # Without a webhook configured the write waits (not sent, not lost).
    record(store, alert(["x"], title="printer jam", centroid=OTHER), notify=True)
    with httpx.Client() as client:
        assert drain(store, client, {}, {}, T0 + timedelta(minutes=2))["retry"] == 1
    engine.dispose()
