"""The service through FastAPI's TestClient: endpoints, the store, auth, limits, reloads."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from serve.app import create_app
from serve.settings import LOCAL_DEV_KEY, ApiKey, hash_key
from tests.serve_helpers import ALL, TICKET, settings
from urgency.errors import UrgencyError
from urgency.store import Store, feedback, make_engine, predictions

SCORER = "scorer-key-0123456789"
AGENT = "agent-key-0123456789"
ADMIN = "admin-key-0123456789"
KEYS = (
    ApiKey(name="helpdesk", sha256=hash_key(SCORER), scopes=("score",)),
    ApiKey(name="agents", sha256=hash_key(AGENT), scopes=("feedback",)),
    ApiKey(name="ops", sha256=hash_key(ADMIN), scopes=("admin", "score")),
)


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture
def client(service_params: Path, database: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings(service_params, database))) as test_client:
        yield test_client


def rows(database: str, table: sa.Table) -> list[dict[str, Any]]:
    engine = make_engine(database)
    try:
        return Store(engine).rows(table)
    finally:
        engine.dispose()


def test_score_returns_the_decision_and_stores_it(client: TestClient, database: str) -> None:
    response = client.post("/v1/score", json=TICKET, headers=ALL)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ticket_id"] == "T-1"
    assert result["urgency"] == "high" and result["urgency_confidence"] > 0.5
    assert set(result["probabilities"]) == {"urgency", "category", "sentiment"}
    assert abs(sum(result["probabilities"]["urgency"].values()) - 1) < 1e-6
    assert result["impact"] == "high"  # the service_down rule
    assert result["priority"] == "P1"
    assert result["first_response_due"] and result["resolution_due"]
    assert {step["stage"] for step in result["explanation"]} >= {"impact", "priority"}
    assert result["model_versions"] == {"urgency": "1", "category": "1", "sentiment": "1"}
    [stored] = rows(database, predictions)
    assert stored["ticket_id"] == "T-1" and stored["body"] == TICKET["body"]
    assert stored["priority"] == "P1" and stored["fields"] == TICKET["fields"]
    assert stored["decision"]["explanation_text"] == result["explanation_text"]


def test_an_unsure_ticket_goes_to_a_person(client: TestClient) -> None:
    result = client.post("/v1/score", json={"ticket_id": "T-9", "body": "zzz qqq"}, headers=ALL).json()
    assert result["needs_human_triage"] and result["team"] == "triage"
    assert "urgency" in result["untrusted_heads"]


def test_batch_scores_in_order_up_to_the_limit(service_params: Path, database: str) -> None:
    app = create_app(settings(service_params, database, max_batch=3))
    with TestClient(app) as client:
        tickets = [{**TICKET, "ticket_id": f"T-{n}"} for n in range(3)]
        tickets[1] = {"ticket_id": "T-1", "body": "question about invoice", "fields": {"plan": "free"}}
        response = client.post("/v1/score/batch", json={"tickets": tickets}, headers=ALL)
        assert response.status_code == 200, response.text
        assert [r["ticket_id"] for r in response.json()["results"]] == ["T-0", "T-1", "T-2"]
        assert response.json()["results"][1]["urgency"] == "low"
        too_many = client.post("/v1/score/batch", json={"tickets": tickets + tickets[:1]}, headers=ALL)
        assert too_many.status_code == 422
        assert too_many.json()["detail"][0]["loc"] == ["body", "tickets"]
        assert "at most 3 tickets" in too_many.json()["detail"][0]["msg"]
    assert len(rows(database, predictions)) == 3  # the refused batch stored nothing


def test_feedback_is_idempotent_and_checked(client: TestClient, database: str) -> None:
    event = {"ticket_id": "T-1", "event_id": "e-1", "urgency": "low", "priority": "P3", "agent": "maria"}
    first = client.post("/v1/feedback", json=event, headers=ALL)
    assert first.status_code == 200 and first.json()["stored"] is True
    retry = client.post("/v1/feedback", json=event, headers=ALL)
    assert retry.status_code == 200 and retry.json()["stored"] is False
    conflict = client.post("/v1/feedback", json={**event, "urgency": "high"}, headers=ALL)
    assert conflict.status_code == 409 and "different content" in conflict.json()["detail"]
    unknown = client.post("/v1/feedback", json={**event, "event_id": "e-2", "urgency": "urgent"}, headers=ALL)
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["body", "urgency"]
    empty = client.post("/v1/feedback", json={"ticket_id": "T-1", "event_id": "e-3"}, headers=ALL)
    assert empty.status_code == 422 and "at least one of" in empty.text
    stored = rows(database, feedback)
    assert [(r["event_id"], r["urgency"], r["priority"]) for r in stored] == [("e-1", "low", "P3")]


def test_keys_and_scopes(service_params: Path, database: str) -> None:
    app = create_app(settings(service_params, database, mode="production", api_keys=KEYS))
    with TestClient(app) as client:
        assert client.post("/v1/score", json=TICKET).status_code == 401
        assert client.post("/v1/score", json=TICKET, headers={"X-API-Key": "nope"}).status_code == 401
        # The local development key means nothing outside local mode.
        assert client.post("/v1/score", json=TICKET, headers={"X-API-Key": LOCAL_DEV_KEY}).status_code == 401
        assert client.post("/v1/score", json=TICKET, headers={"X-API-Key": SCORER}).status_code == 200
        wrong_scope = client.post("/v1/score", json=TICKET, headers={"X-API-Key": AGENT})
        assert wrong_scope.status_code == 403 and "'agents' lacks the 'score' scope" in wrong_scope.text
        event = {"ticket_id": "T-1", "event_id": "e-1", "team": "desk"}
        assert client.post("/v1/feedback", json=event, headers={"X-API-Key": AGENT}).status_code == 200
        assert client.post("/v1/feedback", json=event, headers={"X-API-Key": SCORER}).status_code == 403
        assert client.post("/v1/admin/reload", headers={"X-API-Key": SCORER}).status_code == 403
        assert client.post("/v1/admin/reload", headers={"X-API-Key": ADMIN}).status_code == 200
        assert client.get("/health/live").status_code == 200  # probes need no key


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


def test_model_info_health_and_metrics(client: TestClient) -> None:
    info = client.get("/v1/model", headers=ALL).json()
    heads = {head["head"]: head for head in info["heads"]}
    assert set(heads) == {"urgency", "category", "sentiment"}
    urgency = heads["urgency"]
    assert urgency["registry_name"] == "ticket-urgency" and urgency["version"] == "1"
    assert urgency["alias"] == "champion" and urgency["run_id"]
    assert urgency["training_data_digest"] and urgency["test_metrics"]["test_macro_f1"] > 0
    assert client.get("/health/live").json()["status"] == "ok"
    assert client.get("/health/ready").json() == {
        "status": "ok",
        "models": True,
        "database": True,
        "detail": None,
    }
    client.post("/v1/score", json=TICKET, headers=ALL)
    client.post("/v1/score", json={"ticket_id": "T-9", "body": "zzz qqq"}, headers=ALL)
    text = client.get("/metrics").text
    assert 'urgency_requests_total{method="POST",route="/v1/score",status="200"} 2.0' in text
    assert 'urgency_predictions_total{head="urgency",label="high"}' in text
    assert "urgency_scored_tickets_total 2.0" in text
    assert "urgency_triage_rate 0.5" in text
    assert 'urgency_request_seconds_bucket{le="0.005",route="/v1/score"}' in text
    assert 'urgency_model_version_info{head="urgency",version="1"} 1.0' in text


def test_ready_fails_when_the_database_goes_away(service_params: Path, postgres: Any) -> None:
    import psycopg

    url = postgres.create_database("ready_check")
    with TestClient(create_app(settings(service_params, url))) as client:
        assert client.get("/health/ready").status_code == 200
        with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres", autocommit=True) as conn:
            conn.execute('DROP DATABASE "ready_check" WITH (FORCE)')
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["database"] is False and response.json()["models"] is True


# ---------------------------------------------------------------------------------------------
# Switching models


@pytest.fixture
def registry(trained: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A copy of the trained registry with a version 2 of every head (same artifacts)."""
    store = tmp_path / "mlruns"
    store.mkdir()
    shutil.copy(trained["folder"] / "mlruns" / "mlflow.db", store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    data = yaml.safe_load((trained["params_path"]).read_text())
    data["mlflow"]["tracking_uri"] = uri
    rules = tmp_path / "rules.yaml"
    from tests.conftest import SERVICE_RULES
    from tests.rules_helpers import rules_dict

    rules.write_text(yaml.safe_dump(rules_dict(**SERVICE_RULES)))
    data["scoring"] = {"rules": str(rules)}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for head in ("urgency", "category", "sentiment"):
        first = client.get_model_version(f"ticket-{head}", "1")
        client.create_model_version(f"ticket-{head}", first.source, run_id=first.run_id)
    return {"params": params, "client": client}


def move_champion(client: MlflowClient, version: str) -> None:
    for head in ("urgency", "category", "sentiment"):
        client.set_registered_model_alias(f"ticket-{head}", "champion", version)


def test_reload_swaps_models_atomically_under_load(registry: dict[str, Any], database: str) -> None:
    app = create_app(settings(registry["params"], database))
    failures: list[str] = []
    seen: list[dict[str, str]] = []
    stop = threading.Event()

    with TestClient(app) as client:

        def score_until_stopped(worker: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                response = client.post(
                    "/v1/score", json={**TICKET, "ticket_id": f"w{worker}-{n}"}, headers=ALL
                )
                if response.status_code != 200:
                    failures.append(response.text)
                else:
                    seen.append(response.json()["model_versions"])

        with ThreadPoolExecutor(4) as pool:
            for worker in range(4):
                pool.submit(score_until_stopped, worker)
            for version in ("2", "1", "2"):
                time.sleep(0.3)
                move_champion(registry["client"], version)
                reloaded = client.post("/v1/admin/reload", headers=ALL)
                assert reloaded.status_code == 200 and reloaded.json()["after"]["urgency"] == version
            time.sleep(0.3)
            stop.set()
        assert failures == []
        # Never a mix: every response came from one whole set of models.
        assert {tuple(sorted(set(versions.values()))) for versions in seen} == {("1",), ("2",)}
        assert client.post("/v1/score", json=TICKET, headers=ALL).json()["model_versions"]["urgency"] == "2"
        assert client.get("/v1/model", headers=ALL).json()["heads"][0]["version"] == "2"
        assert 'urgency_model_version_info{head="urgency",version="2"} 1.0' in client.get("/metrics").text
    stored = {row["model_versions"]["urgency"] for row in rows(database, predictions)}
    assert stored == {"1", "2"}


def test_the_service_follows_the_alias_by_itself(registry: dict[str, Any], database: str) -> None:
    app = create_app(settings(registry["params"], database, model_check_seconds=0.2))
    with TestClient(app) as client:
        assert client.get("/v1/model", headers=ALL).json()["heads"][0]["version"] == "1"
        move_champion(registry["client"], "2")
        deadline = time.monotonic() + 20
        while client.get("/v1/model", headers=ALL).json()["heads"][0]["version"] != "2":
            assert time.monotonic() < deadline, "the service did not follow the alias"
            time.sleep(0.2)
        assert client.post("/v1/score", json=TICKET, headers=ALL).json()["model_versions"]["sentiment"] == "2"


def test_a_failed_reload_keeps_the_old_models(registry: dict[str, Any], database: str) -> None:
    with TestClient(create_app(settings(registry["params"], database))) as client:
        registry["client"].delete_registered_model_alias("ticket-category", "champion")
        response = client.post("/v1/admin/reload", headers=ALL)
        assert response.status_code == 503 and "still serving the old models" in response.json()["detail"]
        assert client.post("/v1/score", json=TICKET, headers=ALL).status_code == 200


def test_serves_a_model_folder(
    trained: dict[str, Any], service_params: Path, database: str, tmp_path: Path
) -> None:
    from urgency import tracking

    uri = trained["params"].mlflow.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    names = {head: f"ticket-{head}" for head in ("urgency", "category", "sentiment")}
    tracking.export_models(client, names, "champion", tmp_path / "models")
    app = create_app(settings(service_params, database, model_dir=tmp_path / "models"))
    with TestClient(app) as test_client:
        heads = test_client.get("/v1/model", headers=ALL).json()["heads"]
        assert {head["registry_name"] for head in heads} == {None}
        assert all(head["source"].startswith(str(tmp_path / "models")) for head in heads)
        result = test_client.post("/v1/score", json=TICKET, headers=ALL).json()
        assert result["urgency"] == "high" and result["priority"] == "P1"


def test_api_key_command_prints_a_usable_entry() -> None:
    import json

    from typer.testing import CliRunner

    from serve.settings import ServiceSettings
    from urgency.cli import app as cli

    done = CliRunner().invoke(
        cli, ["api-key", "--name", "helpdesk", "--scope", "score", "--scope", "feedback"]
    )
    assert done.exit_code == 0, done.output
    key = done.output.split("not stored): ")[1].split()[0]
    entry = json.loads(done.output.split("URGENCY_API_KEYS entry: ")[1])
    assert entry["sha256"] == hash_key(key) and entry["scopes"] == ["score", "feedback"]
    assert key not in json.dumps(entry)
    ServiceSettings(mode="production", api_keys=[entry])  # a valid settings entry
    wrong = CliRunner().invoke(cli, ["api-key", "--name", "x", "--scope", "root"])
    assert wrong.exit_code == 2 and "unknown scope" in wrong.output
