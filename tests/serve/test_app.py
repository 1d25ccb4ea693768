"""The app as a whole (`serve.app`, `serve.errors`, `serve.middleware`): start-up checks, body and
field limits, errors without internals."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from serve.app import create_app
from serve.settings import LOCAL_DEV_KEY, ApiKey, hash_key
from tests.serve_helpers import ALL, TICKET, rows, settings
from urgency.errors import UrgencyError
from urgency.store import make_engine, predictions


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ((), "needs URGENCY_API_KEYS"),
        ((ApiKey(name="dev", sha256=hash_key(LOCAL_DEV_KEY), scopes=("score",)),), "local development key"),
        ((ApiKey(name="blank", sha256=hash_key(""), scopes=("score",)),), "'blank' is the empty key"),
    ],
)
def test_refuses_to_start_outside_local_mode_without_real_keys(
    service_params: Path, database: str, keys: tuple[ApiKey, ...], message: str
) -> None:
    app = create_app(settings(service_params, database, mode="production", api_keys=keys))
    with pytest.raises(UrgencyError, match=message), TestClient(app):
        pass


def test_body_and_field_limits(service_params: Path, database: str) -> None:
    app = create_app(settings(service_params, database, max_body_bytes=2_000))
    with TestClient(app) as client:
        big = {**TICKET, "body": "x" * 3_000}
        assert client.post("/v1/score", json=big, headers=ALL).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
            yield b'{"ticket_id": "T-1", "body": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        chunked = client.post(
            "/v1/score", content=chunks(), headers={**ALL, "Content-Type": "application/json"}
        )
        assert chunked.status_code == 413 and "over 2000 bytes" in chunked.json()["detail"]
        long_subject = client.post("/v1/score", json={**TICKET, "subject": "s" * 1_001}, headers=ALL)
        assert long_subject.status_code == 422
        assert long_subject.json()["detail"][0]["loc"] == ["body", "subject"]
        assert "sss" not in long_subject.text  # the input is not echoed back
        reserved = client.post("/v1/score", json={**TICKET, "fields": {"urgency": "high"}}, headers=ALL)
        assert reserved.status_code == 422
        assert reserved.json()["detail"][0]["loc"] == ["body", "fields", "urgency"]
    assert rows(database, predictions) == []


def test_internal_errors_are_a_message_not_a_trace(service_params: Path, database: str) -> None:
    app = create_app(settings(service_params, database))
    with TestClient(app, raise_server_exceptions=False) as client:
        engine = make_engine(database)
        with engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE feedback"))
        engine.dispose()
        event = {"ticket_id": "T-1", "event_id": "e-1", "team": "desk"}
        response = client.post("/v1/feedback", json=event, headers=ALL)
        assert response.status_code == 500
        assert response.json() == {"detail": "internal error; the service log has the details"}
        assert response.headers["connection"] == "close"  # the server drops the connection next


def test_the_state_is_one_typed_object(client: TestClient) -> None:
    from serve.state import ServiceState

    service = client.app.state.service  # type: ignore[attr-defined]
    assert isinstance(service, ServiceState)
    assert service.runtime is not None and service.store is not None and service.api_keys
    # A reload when the alias has not moved: the same versions, a new runtime.
    before = service.runtime
    reloaded = client.post("/v1/admin/reload", headers=ALL).json()
    assert reloaded.pop("pid") == os.getpid() and "this worker" in reloaded.pop("workers")
    assert reloaded == {"changed": False, "before": before.versions, "after": before.versions}
    assert service.runtime is not before


def test_a_body_that_stops_arriving_is_a_408() -> None:
    import asyncio
    import json

    from serve.middleware import BodyLimit

    reached = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        reached.append(scope)

    async def receive() -> dict:
        if not parts:
            await asyncio.Event().wait()  # the client said 500 bytes and sent 4
        return {"type": "http.request", "body": parts.pop(), "more_body": True}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    parts = [b"abcd"]
    scope = {"type": "http", "method": "POST", "path": "/v1/score", "headers": [(b"content-length", b"500")]}
    started = time.monotonic()
    asyncio.run(BodyLimit(app, max_bytes=1000, read_timeout=0.3)(scope, receive, send))
    assert time.monotonic() - started < 5 and reached == []
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert "0.3 seconds" in json.loads(sent[1]["body"])["detail"]


def test_the_body_timeout_is_a_setting(service_params: Path, database: str) -> None:
    assert settings(service_params, database).body_timeout_seconds == 15
    app = create_app(settings(service_params, database, body_timeout_seconds=2.5))
    with TestClient(app) as client:
        assert client.post("/v1/score", json=TICKET, headers=ALL).status_code == 200
