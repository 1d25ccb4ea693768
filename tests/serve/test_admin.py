"""Switching models: POST /v1/admin/reload, the periodic alias check, a failed reload."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from serve.app import create_app
from tests.serve_helpers import ALL, TICKET, rows, settings
from urgency.store import predictions


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
    from tests.conftest import SERVICE_RULES, copy_version
    from tests.rules_helpers import rules_dict

    rules.write_text(yaml.safe_dump(rules_dict(**SERVICE_RULES)))
    data["scoring"] = {"rules": str(rules)}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(data))
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for head in ("urgency", "category", "sentiment"):
        copy_version(client, f"ticket-{head}")
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
