"""Switching models: POST /v1/admin/reload, the periodic alias check, a failed reload."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from serve.app import create_app
from tests.serve_helpers import ALL, TICKET, move_champion, rows, settings
from urgency.store import predictions


def test_reload_swaps_models_atomically_under_load(registry: dict[str, Any], database: str) -> None:
    app = create_app(settings(registry["params"], database))
    old, new = registry["old"], registry["new"]
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
            try:  # a failed assertion must stop the scorers, or leaving the pool waits forever
                for versions in (new, old, new):
                    time.sleep(0.3)
                    move_champion(registry["client"], versions)
                    reloaded = client.post("/v1/admin/reload", headers=ALL)
                    assert reloaded.status_code == 200, reloaded.text
                    assert reloaded.json()["after"] == versions
                    assert reloaded.json()["pid"] == os.getpid()
                    assert "every other worker checks the alias every 10 s" in reloaded.json()["workers"]
                time.sleep(0.3)
            finally:
                stop.set()
        assert failures == []
        # Never a mix: every response came from one whole set of models.
        assert all(versions in (old, new) for versions in seen) and old in seen and new in seen
        assert client.post("/v1/score", json=TICKET, headers=ALL).json()["model_versions"] == new
        info = client.get("/v1/model", headers=ALL).json()
        assert info["versions"] == new and info["pid"] == os.getpid()
        assert {head["head"]: head["version"] for head in info["heads"]} == new
        metric = f'urgency_model_version_info{{head="urgency",version="{new["urgency"]}"}} 1.0'
        assert metric in client.get("/metrics").text
    stored = {row["model_versions"]["urgency"] for row in rows(database, predictions)}
    assert stored == {"1", new["urgency"]}


def test_the_service_follows_the_alias_by_itself(registry: dict[str, Any], database: str) -> None:
    app = create_app(settings(registry["params"], database, model_check_seconds=0.2))
    with TestClient(app) as client:
        assert client.get("/v1/model", headers=ALL).json()["versions"] == registry["old"]
        move_champion(registry["client"], registry["new"])
        deadline = time.monotonic() + 20
        while client.get("/v1/model", headers=ALL).json()["versions"] != registry["new"]:
            assert time.monotonic() < deadline, "the service did not follow the alias"
            time.sleep(0.2)
        answer = client.post("/v1/score", json=TICKET, headers=ALL).json()
        assert answer["model_versions"] == registry["new"]


def test_a_failed_reload_keeps_the_old_models(registry: dict[str, Any], database: str) -> None:
    with TestClient(create_app(settings(registry["params"], database))) as client:
        registry["client"].delete_registered_model_alias("ticket-category", "champion")
        response = client.post("/v1/admin/reload", headers=ALL)
        assert response.status_code == 503 and "still serving the old models" in response.json()["detail"]
        assert client.post("/v1/score", json=TICKET, headers=ALL).status_code == 200


def test_the_alias_is_checked_by_default_unless_serving_a_folder(service_params: Path, database: str) -> None:
    assert settings(service_params, database).check_seconds() == 10
    assert settings(service_params, database, model_check_seconds=0).check_seconds() == 0
    assert settings(service_params, database, model_dir=Path("models")).check_seconds() == 0
