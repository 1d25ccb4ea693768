"""Agents and assignment in the real service: POST /v1/assign, GET /v1/agents, PUT availability,
reassignments from feedback and helpdesk updates, the assignee written back, and the agents file
read again when it changes on disk (no restart)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from serve.app import create_app
from tests.conftest import write_params
from tests.helpdesk_payloads import SECRETS, signed, zendesk_agent_state, zendesk_event
from tests.serve_helpers import ALL, TICKET, rows, settings
from urgency.store import assignments, outbox

# Every agent works around the clock (calendar `always`): the tests do not depend on the hour.
AGENTS = [
    {"id": "ana", "team": "desk", "calendar": "always", "max_open": 3, "languages": ["en", "de"],
     "helpdesk_ids": {"zendesk": "9001"}},
    {"id": "ben", "team": "desk", "calendar": "always", "max_open": 3, "languages": ["en"],
     "helpdesk_ids": {"zendesk": "9002"}},
    {"id": "tia", "team": "triage", "calendar": "always", "max_open": 50, "languages": ["en", "de"],
     "helpdesk_ids": {"zendesk": "9003"}},
    {"id": "tom", "team": "triage", "calendar": "always", "max_open": 50, "languages": ["en"],
     "helpdesk_ids": {"zendesk": "9004"}},
]  # fmt: skip


def write_agents(path: Path, agents: list[dict[str, Any]], step: int = 0) -> None:
    path.write_text(yaml.safe_dump({"agents": agents}))
    # A new modification time for each version: the watch compares it (and the size) first.
    stamp = 1_700_000_000_000_000_000 + step * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


@pytest.fixture
def agents_file(tmp_path: Path) -> Path:
    path = tmp_path / "agents.yaml"
    write_agents(path, AGENTS)
    return path


@pytest.fixture
def assign_params(service_params: Path, agents_file: Path, tmp_path: Path) -> Path:
    data = yaml.safe_load(service_params.read_text())
    data["operations"] = {"agents": str(agents_file), "assignment_strategy": "least-loaded"}
    data["helpdesks"] = {
        "zendesk": {
            "priorities": {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"},
            "teams": {"desk": "100", "triage": "200"},
            "api_url": "http://127.0.0.1:9/",  # never called: the outbox is not sent in these tests
        }
    }
    return write_params(tmp_path, data)


@pytest.fixture
def app(assign_params: Path, any_database: str) -> Iterator[tuple[TestClient, str]]:
    service = settings(
        assign_params,
        any_database,
        webhook_secrets=SECRETS,
        helpdesk_credentials={"zendesk": "bot@acme.example/token:abc"},
        outbox_seconds=0,
    )
    with TestClient(create_app(service)) as client:
        yield client, any_database


def decided(ticket_id: str, priority: str = "P3", team: str = "desk", **fields: Any) -> dict[str, Any]:
    return {"ticket_id": ticket_id, "priority": priority, "team": team, **fields}


def assign(client: TestClient, **body: Any) -> Any:
    response = client.post("/v1/assign", json=body, headers=ALL)
    assert response.status_code == 200, response.text
    return response.json()["assignments"]


def agents_now(client: TestClient) -> dict[str, Any]:
    response = client.get("/v1/agents", headers=ALL)
    assert response.status_code == 200, response.text
    return response.json()


def test_decided_tickets_are_assigned_most_urgent_first_stored_and_explained(
    app: tuple[TestClient, str],
) -> None:
    client, database = app
    tickets = [decided(f"T-{n}", "P3", order_key=f"02|{n}") for n in range(6)]
    tickets.append(decided("T-urgent", "P1", order_key="00|x", language="de-DE"))
    answer = assign(client, tickets=tickets)
    by_ticket = {one["ticket_id"]: one for one in answer}
    assert [one["ticket_id"] for one in answer] == [t["ticket_id"] for t in tickets]  # as given
    assert by_ticket["T-urgent"]["agent"] == "ana"  # the only German speaker, and first
    assert by_ticket["T-urgent"]["helpdesk_ids"] == {"zendesk": "9001"}
    assert by_ticket["T-urgent"]["explanation"].startswith("least-loaded: ana (load 0: 0 open)")
    assert "ben (does not speak de)" in by_ticket["T-urgent"]["explanation"]
    agents = [one["agent"] for one in answer]
    assert agents.count("ana") == 3 and agents.count("ben") == 3  # max_open 3 each
    waiting = [one for one in answer if one["agent"] is None]
    assert len(waiting) == 1 and waiting[0]["reason"] == "no agent of team desk can take it now"
    assert "ana (at capacity (3/3 open))" in waiting[0]["explanation"]

    stored = rows(database, assignments)
    assert len(stored) == 7 and {row["source"] for row in stored} == {"api"}
    metrics = client.get("/metrics").text
    assert 'urgency_assignments_total{assigned="true",strategy="least-loaded"} 6.0' in metrics
    assert 'urgency_assignments_total{assigned="false",strategy="least-loaded"} 1.0' in metrics
    assert all(not row["reassignment"] and row["strategy"] == "least-loaded" for row in stored)

    state = {agent["id"]: agent for agent in agents_now(client)["agents"]}
    assert state["ana"]["open"] == 3 and state["ana"]["open_by_priority"] == {"P1": 1, "P3": 2}
    assert state["ana"]["load"] == 4 + 2 + 2 and state["ana"]["can_take"] is False
    assert state["tia"]["open"] == 0 and state["tia"]["working_now"] is True and state["tia"]["can_take"]

    # Assigning a ticket again does not count it against the agent who had it.
    again = assign(client, tickets=[decided("T-urgent", "P1", language="de")])
    assert again[0]["agent"] == "ana"


def test_scored_tickets_are_assigned_by_id(app: tuple[TestClient, str]) -> None:
    client, _ = app
    scored = client.post("/v1/score", json=TICKET, headers=ALL)
    assert scored.status_code == 200, scored.text
    team = scored.json()["team"]
    answer = assign(client, ticket_ids=[TICKET["ticket_id"]])
    assert answer[0]["team"] == team and answer[0]["priority"] == scored.json()["priority"]
    assert answer[0]["agent"] in {"ana", "ben", "tia", "tom"}
    unknown = client.post("/v1/assign", json={"ticket_ids": ["T-1", "T-404"]}, headers=ALL)
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "ticket_ids", 1]
    assert "never scored" in unknown.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"tickets": [decided("T-1", "P9")]}, ["body", "tickets", 0, "priority"]),
        ({"tickets": [decided("T-1", team="sales")]}, ["body", "tickets", 0, "team"]),
        ({"tickets": [decided("T-1")], "ticket_ids": ["T-1"]}, ["body"]),
        ({}, ["body"]),
        ({"tickets": [{"ticket_id": "T-1", "team": "desk"}]}, ["body", "tickets", 0, "priority"]),
    ],
)
def test_a_wrong_request_is_a_422_naming_the_field(app: tuple[TestClient, str], body: Any, loc: list) -> None:
    client, database = app
    response = client.post("/v1/assign", json=body, headers=ALL)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == loc, response.text
    assert rows(database, assignments) == []


def test_an_agent_switched_off_gets_no_tickets_until_switched_on(app: tuple[TestClient, str]) -> None:
    client, _ = app
    off = client.put("/v1/agents/ana/availability", json={"available": False}, headers=ALL)
    assert off.status_code == 200 and off.json()["available"] is False and off.json()["source"] == "api"
    answer = assign(client, tickets=[decided("T-1"), decided("T-2")])
    assert [one["agent"] for one in answer] == ["ben", "ben"]
    assert "ana (switched off (api))" in answer[0]["explanation"]
    ana = next(agent for agent in agents_now(client)["agents"] if agent["id"] == "ana")
    assert (ana["available"], ana["availability_source"], ana["can_take"]) == (False, "api", False)
    # The helpdesk's user id names the agent too.
    on = client.put("/v1/agents/9001/availability", json={"available": True}, headers=ALL)
    assert on.status_code == 200 and on.json()["agent"] == "ana"
    assert assign(client, tickets=[decided("T-3")])[0]["agent"] == "ana"
    missing = client.put("/v1/agents/nobody/availability", json={"available": True}, headers=ALL)
    assert missing.status_code == 404 and "no agent 'nobody'" in missing.json()["detail"]
    wrong = client.put("/v1/agents/ana/availability", json={"available": "yes"}, headers=ALL)
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "available"]


def test_a_ticket_moved_by_feedback_is_a_reassignment(app: tuple[TestClient, str]) -> None:
    client, database = app
    first = assign(client, tickets=[decided("T-1")])[0]["agent"]
    other = "ben" if first == "ana" else "ana"

    def feedback(event_id: str, **event: Any) -> None:
        response = client.post(
            "/v1/feedback", json={"ticket_id": "T-1", "event_id": event_id, **event}, headers=ALL
        )
        assert response.status_code == 200, response.text

    feedback("e-1", assignee=first, agent="lead")  # where it already is: no move
    feedback("e-2", assignee=other, agent="lead")
    feedback("e-3", team="triage", agent="lead")
    feedback("e-3", team="triage", agent="lead")  # a retry: stored once, no second move
    stored = rows(database, assignments)
    moves = [(row["previous_agent"], row["agent"], row["previous_team"], row["team"]) for row in stored[1:]]
    assert moves == [(first, other, "desk", "desk"), (other, None, "desk", "triage")]
    assert all(row["reassignment"] and row["source"] == "feedback" for row in stored[1:])
    assert stored[1]["explanation"] == f"reassigned by feedback: agent {first} -> {other}"
    state = {agent["id"]: agent["open"] for agent in agents_now(client)["agents"]}
    assert state[first] == 0 and state[other] == 0  # now waiting in triage's queue


def test_a_created_helpdesk_ticket_is_assigned_and_the_assignee_written_back(
    app: tuple[TestClient, str],
) -> None:
    client, database = app
    body, headers = signed("zendesk", zendesk_event("555"))
    answer = client.post("/v1/webhooks/zendesk", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assignment = result["assignment"]
    assert assignment is not None and assignment["agent"] is not None
    written = {"ana": "9001", "ben": "9002", "tia": "9003", "tom": "9004"}[assignment["agent"]]
    assert result["helpdesk_values"]["assignee"] == written
    assert f"assigned: {assignment['explanation']}" in result["helpdesk_values"]["note"]
    queued = rows(database, outbox)
    assert len(queued) == 1 and queued[0]["values"]["assignee"] == written
    stored = rows(database, assignments)
    assert [(row["ticket_id"], row["agent"], row["source"]) for row in stored] == [
        ("555", assignment["agent"], "zendesk")
    ]

    # An agent hands it to a colleague in Zendesk: a reassignment, read by their Zendesk id.
    colleague = {"9001": "9002", "9002": "9001", "9003": "9004", "9004": "9003"}[written]
    group = {"desk": "100", "triage": "200"}[assignment["team"]]
    update = zendesk_event("555", "ticket.agent_assignment_changed", assignee_id=colleague, group_id=group,
                           actor_id="777")  # fmt: skip
    body, headers = signed("zendesk", update)
    moved = client.post("/v1/webhooks/zendesk", content=body, headers=headers)
    assert moved.status_code == 200, moved.text
    stored = rows(database, assignments)
    assert len(stored) == 2 and stored[1]["reassignment"] and stored[1]["source"] == "zendesk"
    names = {"9001": "ana", "9002": "ben", "9003": "tia", "9004": "tom"}
    assert (stored[1]["previous_agent"], stored[1]["agent"]) == (assignment["agent"], names[colleague])


def test_the_agents_file_is_read_again_when_it_changes_and_a_broken_one_keeps_the_old(
    app: tuple[TestClient, str], agents_file: Path
) -> None:
    client, _ = app
    before = agents_now(client)
    assert [agent["id"] for agent in before["agents"]] == ["ana", "ben", "tia", "tom"] and before[
        "error"
    ] is None

    write_agents(
        agents_file, [*AGENTS, {"id": "cem", "team": "desk", "calendar": "always", "max_open": 9}], 1
    )
    after = agents_now(client)
    assert [agent["id"] for agent in after["agents"]] == ["ana", "ben", "tia", "tom", "cem"]
    assert after["digest"] != before["digest"] and after["error"] is None
    assert assign(client, tickets=[decided("T-1")])[0]["agent"] == "ana"  # ties: the smaller id

    write_agents(agents_file, [{"id": "dora", "team": "sales", "calendar": "always", "max_open": 1}], 2)
    broken = agents_now(client)
    assert [agent["id"] for agent in broken["agents"]] == ["ana", "ben", "tia", "tom", "cem"]
    assert broken["digest"] == after["digest"]
    assert "agents.0 (dora).team: 'sales' is not a team of the rules" in broken["error"]
    assert assign(client, tickets=[decided("T-2")])[0]["agent"] in {"ben", "cem"}  # the old agents

    write_agents(agents_file, AGENTS[:1], 3)
    fixed = agents_now(client)
    assert [agent["id"] for agent in fixed["agents"]] == ["ana"] and fixed["error"] is None


def test_without_agents_assignment_is_a_409_and_scoring_goes_on(client: TestClient) -> None:
    response = client.post("/v1/assign", json={"tickets": [decided("T-1")]}, headers=ALL)
    assert response.status_code == 409 and "operations.agents" in response.json()["detail"]
    listed = agents_now(client)
    assert listed["agents"] == [] and listed["source"] is None
    assert client.post("/v1/score", json=TICKET, headers=ALL).status_code == 200


def test_the_schema_states_the_levels_and_teams_a_decided_ticket_may_name(client: TestClient) -> None:
    components = client.get("/openapi.json").json()["components"]["schemas"]
    decided_ticket = components["DecidedTicket"]["properties"]
    assert decided_ticket["priority"]["enum"] == ["P1", "P2", "P3", "P4"]
    assert decided_ticket["team"]["enum"] == ["desk", "hardware-de", "hardware-en", "triage"]
    assert "assignee" in components["Feedback"]["properties"]


def test_an_agents_file_broken_from_the_start_is_a_409_that_says_why(
    app: tuple[TestClient, str], agents_file: Path
) -> None:
    client, _ = app
    agents_file.write_text("agents: [")
    response = client.post("/v1/assign", json={"tickets": [decided("T-1")]}, headers=ALL)
    assert response.status_code == 409
    assert (
        "no agents file could be read" in response.json()["detail"]
        and "not valid YAML" in response.json()["detail"]
    )
    listed = agents_now(client)
    assert listed["agents"] == [] and "not valid YAML" in listed["error"]
    # Scoring a helpdesk's ticket goes on without an assignment.
    body, headers = signed("zendesk", zendesk_event("556"))
    created = client.post("/v1/webhooks/zendesk", content=body, headers=headers)
    assert created.status_code == 200 and created.json()["assignment"] is None


def test_zendesk_agent_availability_events_switch_agents_off_and_on(app: tuple[TestClient, str]) -> None:
    client, _ = app
    body, headers = signed("zendesk", zendesk_agent_state("9001", "away"))
    away = client.post("/v1/webhooks/zendesk", content=body, headers=headers)
    assert away.status_code == 200, away.text
    assert (away.json()["action"], away.json()["kind"]) == ("availability", "agent_availability")
    agents = {agent["id"]: agent for agent in client.get("/v1/agents", headers=ALL).json()["agents"]}
    assert (agents["ana"]["available"], agents["ana"]["availability_source"]) == (False, "zendesk")
    # Off: a new desk ticket goes to ben.
    decided = {"tickets": [{"ticket_id": "T-9", "priority": "P3", "team": "desk"}]}
    chosen = client.post("/v1/assign", json=decided, headers=ALL).json()["assignments"][0]
    assert chosen["agent"] == "ben"
    body, headers = signed("zendesk", zendesk_agent_state("9001", "online"))
    assert (
        client.post("/v1/webhooks/zendesk", content=body, headers=headers).json()["action"] == "availability"
    )
    agents = {agent["id"]: agent for agent in client.get("/v1/agents", headers=ALL).json()["agents"]}
    assert agents["ana"]["available"] is True
    # A Zendesk user who is no agent of the file: nothing changes, and the answer says why.
    body, headers = signed("zendesk", zendesk_agent_state("1234", "away"))
    unknown = client.post("/v1/webhooks/zendesk", content=body, headers=headers).json()
    assert unknown["action"] == "ignored" and "user id '1234'" in unknown["reason"]


def test_a_ticket_given_twice_is_refused(app: tuple[TestClient, str]) -> None:
    client, _ = app
    ticket = {"ticket_id": "D1", "priority": "P1", "team": "triage"}
    twice = client.post("/v1/assign", json={"tickets": [ticket, {**ticket, "priority": "P4"}]}, headers=ALL)
    assert twice.status_code == 422
    assert twice.json()["detail"][0]["loc"] == ["body", "tickets", 1, "ticket_id"]
    assert "given twice" in twice.json()["detail"][0]["msg"]
