"""Input a store cannot keep (NUL characters, non-finite and huge numbers): the same answer on
both stores, a 422 that names the field (or a 200), never a 500 that loses the batch."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.serve_helpers import ALL, TICKET

NUL = "a\u0000b"


def _raw(client: TestClient, path: str, text: str) -> Any:
    """POST a JSON text as is (NaN, Infinity and 1e400 are not JSON Python would write)."""
    return client.post(path, content=text, headers={**ALL, "Content-Type": "application/json"})


@pytest.mark.parametrize("name", ["ticket_id", "subject", "body"])
def test_nul_characters_in_a_ticket_are_a_422_naming_the_field(any_client: TestClient, name: str) -> None:
    response = any_client.post(
        "/v1/score/batch", json={"tickets": [TICKET, {**TICKET, name: NUL}]}, headers=ALL
    )
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "tickets", 1, name] and "NUL" in error["msg"]
    assert any_client.post("/v1/score", json=TICKET, headers=ALL).status_code == 200  # nothing broken


def test_nul_characters_in_metadata_are_a_422(any_client: TestClient) -> None:
    value = any_client.post("/v1/score", json={**TICKET, "fields": {"plan": NUL}}, headers=ALL)
    assert value.status_code == 422 and value.json()["detail"][0]["loc"] == ["body", "fields", "plan"]
    key = any_client.post("/v1/score", json={**TICKET, "fields": {NUL: "x"}}, headers=ALL)
    assert key.status_code == 422, key.text
    assert key.json()["detail"][0]["loc"][:2] == ["body", "fields"]


@pytest.mark.parametrize("name", ["agent", "ticket_id", "event_id", "team"])
def test_nul_characters_in_feedback_are_a_422(any_client: TestClient, name: str) -> None:
    event = {"ticket_id": "T-1", "event_id": "e-1", "agent": "maria", "team": "desk"}
    response = any_client.post("/v1/feedback", json={**event, name: NUL}, headers=ALL)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", name]
    assert any_client.post("/v1/feedback", json=event, headers=ALL).json()["stored"] is True


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_a_422_naming_the_field(any_client: TestClient, number: str) -> None:
    text = '{"ticket_id": "T-1", "body": "server down", "fields": {"a": NUMBER}}'.replace("NUMBER", number)
    response = _raw(any_client, "/v1/score", text)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "fields", "a"] and "finite" in error["msg"]


def test_a_number_too_large_for_a_float_is_not_a_500(any_client: TestClient) -> None:
    huge = "9" * 400
    text = '{"ticket_id": "T-1", "body": "server down", "fields": {"users_affected": HUGE}}'
    text = text.replace("HUGE", huge)
    response = _raw(any_client, "/v1/score", text)
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["detail"][0]["loc"] == ["body", "fields", "users_affected"]
    else:
        assert huge not in response.text  # a note, not the number echoed back


def test_unpaired_surrogates_are_a_422(any_client: TestClient) -> None:
    response = _raw(any_client, "/v1/score", '{"ticket_id": "T-1", "body": "a\\ud800b"}')
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "body"]
