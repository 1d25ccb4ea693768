"""Similar tickets and probable duplicates in the real service (rules `similar_tickets`,
`duplicates`): the score answer lists the earlier tickets most like this one and the open ticket
of the same requester it probably duplicates; the rules lower its priority; the helpdesk note and
assignment follow; the index survives a restart (its file) and is rebuilt when the file is gone.
The service tests' models are the baseline family: the packaged MiniLM embeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from serve.app import create_app
from serve.routes.assign import ticket_from_score
from tests.rules_helpers import BASE, rule
from tests.serve.test_knowledge_service import service_with
from tests.serve_helpers import ALL, migrated, rows, running_server, settings
from urgency.store import Store, make_engine, ticket_vectors

SECTIONS: dict[str, Any] = {
    "fields": {**BASE["fields"], "requester": "requester"},
    "similar_tickets": {"k": 3, "window_days": 30},
    "duplicates": {"same_fields": ["requester"], "threshold": 0.87},
    "priority_rules": [rule("probable-duplicate", {"duplicate": True}, lower_by=1)],
}
VPN = "My VPN client does not connect since this morning, GlobalProtect keeps failing with an error."


def ticket(ticket_id: str, requester: str, body: str = VPN, **extra: Any) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "subject": "VPN not connecting",
        "body": body,
        "created_at": "2026-11-30T09:00:00Z",
        "fields": {"requester": requester},
        **extra,
    }


def score(client: TestClient, one: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/v1/score", json=one, headers=ALL)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.slow
def test_similar_tickets_and_duplicates_in_the_score_answer(service_params: Path, tmp_path: Path) -> None:
    params = service_with(service_params, tmp_path, **SECTIONS)
    database = f"sqlite:///{tmp_path / 'service.db'}"
    with TestClient(create_app(settings(params, database))) as client:
        first = score(client, ticket("T-1", "ana@example.com"))
        assert first["similar_tickets"] == [] and first["duplicate_of"] is None
        # Another requester's ticket: similar, not a duplicate.
        other = score(client, ticket("T-2", "ben@example.com", VPN.replace("morning", "morning!")))
        assert other["duplicate_of"] is None
        [similar] = other["similar_tickets"]
        assert similar["ticket_id"] == "T-1" and similar["similarity"] >= 0.87
        assert similar["priority"] == first["priority"] and similar["status"] == "new"
        assert similar["decided_by"] == "model"
        # The same requester again: a probable duplicate of T-1, lowered one level by the rule.
        again = score(client, ticket("T-3", "ANA@example.com ", VPN + " Please help."))
        duplicate = again["duplicate_of"]
        assert duplicate["ticket_id"] == "T-1" and duplicate["same"] == "requester"
        assert duplicate["status"] == "new" and duplicate["similarity"] >= 0.87
        assert duplicate["explanation"].startswith("duplicate of T-1 (")
        assert "duplicates: duplicate_of T-1" in again["explanation_text"]
        assert "probable-duplicate" in again["explanation_text"]
        levels = ["P1", "P2", "P3", "P4"]
        assert levels.index(again["priority"]) == min(levels.index(other["priority"]) + 1, 3)
        assert [found["ticket_id"] for found in again["similar_tickets"]][:2] in (
            ["T-1", "T-2"],
            ["T-2", "T-1"],
        )
        # Unrelated text of the same requester: no duplicate.
        unrelated = score(
            client, ticket("T-4", "ana@example.com", "Please send me last month's invoice as a PDF.")
        )
        assert unrelated["duplicate_of"] is None
        # T-1 solved: the next copy duplicates the open T-3 instead.
        solved = {"ticket_id": "T-1", "event_id": "s1", "status": "solved"}
        assert client.post("/v1/feedback", json=solved, headers=ALL).status_code == 200
        fourth = score(client, ticket("T-5", "ana@example.com", VPN + " Still broken."))
        assert fourth["duplicate_of"]["ticket_id"] == "T-3"
        # The answer is stored as scored: assignment reads the duplicate's agent from it.
        stored = Store(make_engine(database)).latest_predictions(["T-5"])["T-5"]["decision"]
        assert stored["duplicate_of"]["ticket_id"] == "T-3"
        to_assign = ticket_from_score(
            "T-5",
            {**stored, "duplicate_of": {**stored["duplicate_of"], "assignee": "ana"}},
            None,
            same_agent=True,
        )
        assert (to_assign.duplicate_of, to_assign.duplicate_agent) == ("T-3", "ana")
    index_file = tmp_path / "similar.index"
    assert index_file.exists()  # saved at shutdown, beside the SQLite store
    # A restarted service reads the file; without it, it rebuilds the index from the store.
    for attempt in ("file", "rebuilt"):
        if attempt == "rebuilt":
            index_file.unlink()
        with TestClient(create_app(settings(params, database))) as client:
            again = score(client, ticket(f"T-{attempt}", "ana@example.com", VPN + " Again."))
            # An open copy of ana's (T-3, T-5, or the first attempt's).
            assert again["duplicate_of"]["ticket_id"] in {"T-3", "T-5", "T-file"}, attempt


@pytest.mark.slow
def test_a_live_server_answers_with_similar_tickets_and_the_duplicate(
    service_params: Path, tmp_path: Path
) -> None:
    params = service_with(service_params, tmp_path, **SECTIONS)
    with running_server(params, migrated(f"sqlite:///{tmp_path / 'live.db'}")) as base:
        one = ticket("L-1", "cy@example.com")
        first = httpx.post(f"{base}/v1/score", json=one, headers=ALL, timeout=60)
        assert first.status_code == 200, first.text
        batch = {
            "tickets": [ticket("L-2", "cy@example.com", VPN + " Urgent."), ticket("L-3", "dee@example.com")]
        }
        answer = httpx.post(f"{base}/v1/score/batch", json=batch, headers=ALL, timeout=60)
        assert answer.status_code == 200, answer.text
        duplicate, other = answer.json()["results"]
        assert duplicate["duplicate_of"]["ticket_id"] == "L-1"
        assert other["duplicate_of"] is None
        assert other["similar_tickets"][0]["ticket_id"] == "L-1"


@pytest.mark.slow
def test_a_copy_sent_to_another_worker_at_once_is_a_duplicate(
    service_params: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers (two apps on one store): the original scored by one, its copy by the other
    a moment later, long before the other's periodic catch-up (made an hour here, so the test
    does not depend on the machine's speed): the duplicate check reads the store's newest
    vectors first."""
    monkeypatch.setattr("serve.state.SIMILAR_CATCH_UP_SECONDS", 3600.0)
    params = service_with(service_params, tmp_path, **SECTIONS)
    database = f"sqlite:///{tmp_path / 'service.db'}"
    with (
        TestClient(create_app(settings(params, database))) as one,
        TestClient(create_app(settings(params, database))) as two,
    ):
        score(one, ticket("W-1", "eve@example.com"))
        copy = score(two, ticket("W-2", "eve@example.com", VPN + " Please help."))
        assert copy["duplicate_of"] is not None and copy["duplicate_of"]["ticket_id"] == "W-1"
        # And the other way round, with the index of `one` holding W-1 already.
        back = score(one, ticket("W-3", "fay@example.com"))
        assert back["duplicate_of"] is None
        again = score(two, ticket("W-4", "fay@example.com", VPN + " Still."))
        assert again["duplicate_of"]["ticket_id"] in {"W-3"}


@pytest.mark.slow
def test_an_index_path_that_cannot_be_written_loses_nothing(
    service_params: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Params `similar.index` where nothing can be written (a read-only folder or a full disk;
    here under a file, which fails for root too): the service starts, answers, stops, and logs
    why the file is missing; the store keeps every vector and the next start rebuilds from it."""
    import yaml

    params = service_with(service_params, tmp_path, **SECTIONS)
    (tmp_path / "not-a-folder").write_text("a file")
    data = yaml.safe_load(params.read_text())
    data["similar"] = {"index": str(tmp_path / "not-a-folder" / "similar.index")}
    params.write_text(yaml.safe_dump(data))
    database = f"sqlite:///{tmp_path / 'service.db'}"
    for run in ("first", "second"):
        with (
            caplog.at_level("ERROR", logger="urgency.similar"),
            TestClient(create_app(settings(params, database))) as client,
        ):
            answer = score(client, ticket(f"R-{run}", "gil@example.com"))
        if run == "second":  # the first run's ticket is found after a restart without a file
            assert answer["duplicate_of"]["ticket_id"] == "R-first"
        assert "cannot write" in caplog.text
        caplog.clear()
    assert sorted(row["ticket_id"] for row in rows(database, ticket_vectors)) == ["R-first", "R-second"]


@pytest.mark.slow
def test_a_ticket_whose_answer_was_not_stored_leaves_no_vector(service_params: Path, tmp_path: Path) -> None:
    """The vector is kept after the prediction is stored: a request that fails to store (here a
    real failing insert: a trigger, as a full disk would) is not listed as a similar ticket later
    (it was, without category or priority, and stayed in the store's vectors)."""
    import sqlalchemy as sa

    params = service_with(service_params, tmp_path, **SECTIONS)
    database = f"sqlite:///{tmp_path / 'service.db'}"
    engine = make_engine(migrated(database))
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TRIGGER refuse BEFORE INSERT ON predictions WHEN NEW.ticket_id = 'X-1' "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        )
    with TestClient(create_app(settings(params, database)), raise_server_exceptions=False) as client:
        failed = client.post("/v1/score", json=ticket("X-1", "hal@example.com"), headers=ALL)
        assert failed.status_code == 500
        copy = score(client, ticket("X-2", "hal@example.com", VPN + " Please."))
        assert copy["similar_tickets"] == [] and copy["duplicate_of"] is None
    assert [row["ticket_id"] for row in rows(database, ticket_vectors)] == ["X-2"]


@pytest.mark.slow
def test_a_duplicate_is_assigned_to_the_agent_who_has_the_original(
    service_params: Path, tmp_path: Path
) -> None:
    from tests.conftest import write_params
    from tests.serve.test_assign import AGENTS, write_agents

    params = service_with(service_params, tmp_path, **SECTIONS)
    agents = tmp_path / "agents.yaml"
    write_agents(agents, AGENTS)
    data = yaml.safe_load(params.read_text())
    data["operations"] = {"agents": str(agents), "assignment_strategy": "least-loaded"}
    params = write_params(tmp_path, data)
    with TestClient(create_app(settings(params, f"sqlite:///{tmp_path / 'service.db'}"))) as client:
        score(client, ticket("A-1", "ana@example.com"))
        first = client.post("/v1/assign", json={"ticket_ids": ["A-1"]}, headers=ALL).json()["assignments"][0]
        assert first["agent"] is not None
        # The copy: least-loaded alone would choose the other agent of the team (no load yet).
        copy = score(client, ticket("A-2", "ana@example.com", VPN + " Any news?"))
        assert copy["duplicate_of"]["ticket_id"] == "A-1"
        assert copy["duplicate_of"]["assignee"] == first["agent"]
        second = client.post("/v1/assign", json={"ticket_ids": ["A-2"]}, headers=ALL).json()["assignments"][0]
        assert second["agent"] == first["agent"]
        assert "the agent of A-1, which it probably duplicates" in second["explanation"]
        # Another customer's similar ticket is no duplicate: the strategy chooses (the idle agent).
        score(client, ticket("A-3", "bo@example.com"))
        third = client.post("/v1/assign", json={"ticket_ids": ["A-3"]}, headers=ALL).json()["assignments"][0]
        assert third["agent"] not in (None, first["agent"]) and "duplicates" not in third["explanation"]


@pytest.mark.slow
def test_concurrent_requests_scored_together_are_each_answered_stored_and_checked(
    service_params: Path, tmp_path: Path
) -> None:
    """16 requests at once to a live server (one worker): it scores them in fewer calls than
    requests (`serve.coalesce`), every answer is its own ticket's and is stored, and a copy
    arriving together with its original is still found (`duplicates_in_batch`)."""
    from concurrent.futures import ThreadPoolExecutor

    params = service_with(service_params, tmp_path, **SECTIONS)
    database = migrated(f"sqlite:///{tmp_path / 'together.db'}")
    bodies = [f"Printer number {n} on floor {n % 4} shows paper jam error {n * 7}." for n in range(14)]
    sent = [ticket(f"C-{n}", f"user{n}@example.com", body) for n, body in enumerate(bodies)]
    sent += [ticket("C-vpn", "eve@example.com"), ticket("C-vpn-again", "eve@example.com", VPN + " Help.")]
    with running_server(params, database) as base, httpx.Client(timeout=120) as client:

        def post(one: dict[str, Any]) -> dict[str, Any]:
            answer = client.post(f"{base}/v1/score", json=one, headers=ALL)
            assert answer.status_code == 200, answer.text
            return answer.json()

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(post, sent))
        metrics = client.get(f"{base}/metrics").text
    assert [answer["ticket_id"] for answer in answers] == [one["ticket_id"] for one in sent]
    calls = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("urgency_scoring_call_tickets_count")
    )
    assert 1 <= calls < len(sent)  # some were scored together
    stored = Store(make_engine(database)).latest_predictions([one["ticket_id"] for one in sent])
    assert set(stored) == {one["ticket_id"] for one in sent}
    assert all(stored[a["ticket_id"]]["priority"] == a["priority"] for a in answers)
    # Which of the two VPN tickets counts as the copy depends on the arrival order.
    vpn = {answer["ticket_id"]: answer["duplicate_of"] for answer in answers[-2:]}
    assert sorted((found or {}).get("ticket_id", "-") for found in vpn.values()) in (
        ["-", "C-vpn"],
        ["-", "C-vpn-again"],
    )
