"""Cluster alerts in the real service: a burst of near-identical helpdesk tickets split over two
service apps on one store (two worker processes, each with its own clusters) raises one stored
alert episode, queues one parent incident, and the outbox creates it in the helpdesk (a real
fake server, `tests.fake_helpdesk`) with every member linked, and posts it once to the alert
webhook; GET /v1/clusters lists the episode with the incident's id (docs/repeat-issues.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from serve.app import create_app
from tests.conftest import write_params
from tests.helpdesk_payloads import SECRETS, signed, zendesk_event
from tests.serve.test_helpdesk_live import CREDENTIALS, fake_helpdesk, wait_for
from tests.serve.test_knowledge_service import BACKGROUND, service_with
from tests.serve_helpers import ALL, settings
from urgency.store import Store, cluster_alerts, make_engine, outbox

BURST = [
    "VPN is down, cannot connect from home",
    "Cannot connect to the VPN since 9am",
    "VPN connection fails for everyone working remotely",
    "Is the VPN down? Remote access not working",
    "VPN not connecting, GlobalProtect error",
    "Nobody can connect to the VPN this morning",
    "The VPN keeps failing to connect today",
    "VPN down again, cannot reach the network remotely",
    "GlobalProtect VPN will not connect from home",
    "Remote VPN access is not working for our team",
]


def deliver(client: TestClient, ticket_id: str, text: str, at: datetime) -> dict[str, Any]:
    payload = zendesk_event(ticket_id, subject="", description=f"<p>{text}</p>", created_at=at.isoformat())
    body, headers = signed("zendesk", payload)
    answer = client.post("/v1/webhooks/zendesk", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.slow
def test_a_burst_split_over_two_workers_is_one_alert_and_one_parent_incident(
    service_params: Path, tmp_path: Path
) -> None:
    params = service_with(
        service_params,
        tmp_path,
        clusters={"window_days": 7, "threshold": 0.6, "burst": "2h", "min_count": 5},
    )
    database = f"sqlite:///{tmp_path / 'service.db'}"
    now = datetime.now(UTC).replace(microsecond=0)
    background = [
        {
            "ticket_id": f"T-{n}",
            "subject": "",
            "body": BACKGROUND[n % len(BACKGROUND)] + f" (case {n})",
            "created_at": (now - timedelta(hours=50 - n * 2)).isoformat(),
        }
        for n in range(24)
    ]
    with fake_helpdesk() as fake:
        data = yaml.safe_load(params.read_text())
        data["helpdesks"] = {"zendesk": {"api_url": fake, "bot_user": "urgency-bot", "teams": {"desk": "12"}}}
        params = write_params(tmp_path, data)
        options = {
            "webhook_secrets": SECRETS,
            "helpdesk_credentials": CREDENTIALS,
            "outbox_seconds": 0.2,
            "alert_webhook_url": f"{fake}/_hook",
            "alert_webhook_secret": "s3cret",
        }
        with TestClient(create_app(settings(params, database, **options))) as first:
            answer = first.post("/v1/score/batch", json={"tickets": background}, headers=ALL)
            assert answer.status_code == 200, answer.text
            # A second worker started now refills its clusters from the store's window.
            with TestClient(create_app(settings(params, database, **options))) as second:
                assert second.get("/v1/clusters", headers=ALL).json()["tickets"] == len(background)
                burst_and_parent(first, second, fake, database, now)


def burst_and_parent(first: TestClient, second: TestClient, fake: str, database: str, now: datetime) -> None:
    # The burst, every other ticket to each worker: each sees 5 (its min_count).
    for n, text in enumerate(BURST):
        worker = first if n % 2 == 0 else second
        result = deliver(worker, str(7001 + n), text, now - timedelta(minutes=60 - n * 5))
        assert result["action"] == "scored"
    alerted = [client.get("/v1/clusters", headers=ALL).json()["alerts"] for client in (first, second)]
    assert all(len(alerts) == 1 for alerts in alerted)  # each worker alerted on its half
    assert set(alerted[0][0]["ticket_ids"]).isdisjoint(alerted[1][0]["ticket_ids"])
    engine = make_engine(database)
    store = Store(engine)
    [episode] = store.rows(cluster_alerts)
    assert episode["reports"] == 2 and set(episode["ticket_ids"]) == {str(7001 + n) for n in range(10)}
    # One write creates the parent; when it was sent before the second worker's half merged, one
    # more links the late members (`_queue_new_members`): how the outbox's timing falls.
    writes = [row for row in store.rows(outbox) if row["values"].get("kind") == "parent_incident"]
    creates_parent = [row for row in writes if row["delivery_id"] == f"cluster-alert-{episode['id']}"]
    assert len(creates_parent) == 1 and {row["helpdesk"] for row in writes} == {"zendesk"}
    assert len(writes) <= 2
    # The outbox (both apps drain it) creates the parent once and links every member.
    wait_for(lambda: store.cluster_alert(episode["id"])["incident_id"], "the parent incident")

    def members_linked() -> list[dict[str, Any]]:
        calls = [c for c in httpx.get(f"{fake}/_calls").json() if "update_many" in c["path"]]
        return calls if len(calls) == len(writes) else []  # one per write

    made = wait_for(members_linked, "the members linked")
    calls = httpx.get(f"{fake}/_calls").json()
    creates = [c for c in calls if c["path"] == "/api/v2/tickets.json"]
    assert len(creates) == 1 and creates[0]["json"]["ticket"]["type"] == "problem"
    incident = store.cluster_alert(episode["id"])["incident_id"]
    assert made[0]["json"] == {"ticket": {"type": "incident", "problem_id": int(incident)}}
    # The alert webhook got the episode once, signed.
    [hook] = wait_for(
        lambda: [c for c in httpx.get(f"{fake}/_calls").json() if c["path"] == "/_hook"], "the alert webhook"
    )
    assert hook["headers"]["x-urgency-signature"].startswith("sha256=")
    listed = first.get("/v1/clusters", headers=ALL).json()["stored_alerts"]
    assert [(row["id"], row["incident_id"], row["reports"]) for row in listed] == [
        (episode["id"], incident, 2)
    ]
    engine.dispose()
