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
from urgency.models import DIGEST_TAG, artifact_digests, digests_json
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


def test_a_corrupt_model_fails_the_reload_with_503(
    registry: dict[str, Any], database: str, tmp_path: Path
) -> None:
    """A champion whose model.pkl is truncated: 503, and the old models keep serving (was 500)."""
    from urgency.tracking import export_models

    client = registry["client"]
    names = {head: f"ticket-{head}" for head in ("urgency", "category", "sentiment")}
    export_models(client, names, "champion", tmp_path / "exported")
    for pickle in (tmp_path / "exported" / "category").rglob("*.pkl"):
        pickle.write_bytes(pickle.read_bytes()[: pickle.stat().st_size // 2])
    first = client.get_model_version("ticket-category", "1")
    folder = tmp_path / "exported" / "category"
    # Registered as it is now (its digests match): damaged, or saved by other code, not tampered.
    broken = client.create_model_version(
        "ticket-category",
        str(folder),
        run_id=first.run_id,
        tags={DIGEST_TAG: digests_json(artifact_digests(folder))},
    )
    with TestClient(create_app(settings(registry["params"], database))) as service:
        client.set_registered_model_alias("ticket-category", "champion", broken.version)
        response = service.post("/v1/admin/reload", headers=ALL)
        assert response.status_code == 503, response.text
        assert "still serving the old models" in response.json()["detail"]
        assert "cannot load model" in response.json()["detail"]
        answer = service.post("/v1/score", json=TICKET, headers=ALL)
        assert answer.status_code == 200 and answer.json()["model_versions"]["category"] == "1"


def test_the_alias_is_checked_by_default_unless_serving_a_folder(service_params: Path, database: str) -> None:
    assert settings(service_params, database).check_seconds() == 10
    assert settings(service_params, database, model_check_seconds=0).check_seconds() == 0
    assert settings(service_params, database, model_dir=Path("models")).check_seconds() == 0
