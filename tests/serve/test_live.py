"""The service as helpdesks meet it: `urgency serve` (a real uvicorn process) on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve_helpers import ALL, TICKET, move_champion, running_server
from urgency.store import Store, feedback, make_engine, predictions

URGENCY = [str(Path(sys.executable).parent / "urgency")]


def test_serve_scores_and_records_over_http(service_params: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'service.db'}"  # `urgency serve` migrates it
    with running_server(service_params, database) as base:
        # The README's curl, as a helpdesk would send it.
        done = subprocess.run(
            [
                "curl", "-sS", "-X", "POST", f"{base}/v1/score",
                "-H", "X-API-Key: local-dev-key", "-H", "Content-Type: application/json",
                "-d", json.dumps(TICKET),
            ],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(done.stdout)
        assert result["priority"] == "P1" and result["urgency"] == "high"
        event = {"ticket_id": "T-1", "event_id": "e-1", "urgency": "high", "priority": "P2"}
        assert httpx.post(f"{base}/v1/feedback", json=event, headers=ALL).json()["stored"] is True
        assert httpx.get(f"{base}/v1/model", headers=ALL).json()["heads"][0]["alias"] == "champion"
        assert "urgency_scored_tickets_total 1.0" in httpx.get(f"{base}/metrics").text
        assert httpx.post(f"{base}/v1/score", json=TICKET).status_code == 401
    engine = make_engine(database)
    store = Store(engine)
    assert store.count(predictions) == 1 and store.count(feedback) == 1
    engine.dispose()


def test_serve_refuses_bad_settings_with_a_message(service_params: Path, tmp_path: Path) -> None:
    env = {**os.environ, "URGENCY_MODE": "production", "URGENCY_API_KEYS": "[]"}
    database = f"sqlite:///{tmp_path / 'service.db'}"
    args = ["serve", "--params", str(service_params), "--database-url", database, "--port", "1"]
    done = subprocess.run(URGENCY + args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert "refusing to start: mode 'production' needs URGENCY_API_KEYS" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    env["URGENCY_API_KEYS"] = '[{"name": "x", "sha256": "not-a-hash", "scopes": ["score"]}]'
    done = subprocess.run(URGENCY + args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "api_keys.0.sha256" in done.stderr and "Traceback" not in done.stderr
    unreachable = "postgresql+psycopg://nobody:secret@127.0.0.1:1/none"
    done = subprocess.run(
        [*URGENCY, "serve", "--params", str(service_params), "--database-url", unreachable],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 7 and "cannot reach the database" in done.stderr
    assert "secret" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_many_clients_at_once_store_every_row_exactly_once(
    backend: str, service_params: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """20 clients x 500 requests: scores, feedback and retried feedback, all at once."""
    if backend == "sqlite":
        database = f"sqlite:///{tmp_path / 'service.db'}"
    else:
        database = request.getfixturevalue("postgres").create_database(f"load_{uuid.uuid4().hex[:8]}")
    clients, requests_each = 20, 500

    def client_run(client_id: int) -> Counter[str]:
        outcome: Counter[str] = Counter()
        with httpx.Client(headers=ALL, timeout=60) as http:
            for n in range(requests_each):
                if n % 10 == 0:
                    ticket = {**TICKET, "ticket_id": f"c{client_id}-t{n}"}
                    response = http.post(f"{base}/v1/score", json=ticket)
                    kind = "score"
                else:
                    # Every fifth feedback call retries the one before it.
                    event_n = n - 1 if n % 5 == 0 and (n - 1) % 10 else n
                    event = {
                        "ticket_id": f"c{client_id}-t{n // 10}",
                        "event_id": f"e{event_n}",
                        "urgency": "low",
                    }
                    response = http.post(f"{base}/v1/feedback", json=event)
                    kind = "stored" if response.status_code == 200 and response.json()["stored"] else "retry"
                outcome[kind if response.status_code == 200 else f"status {response.status_code}"] += 1
        return outcome

    with running_server(service_params, database) as base, ThreadPoolExecutor(clients) as pool:
        totals = sum(pool.map(client_run, range(clients)), Counter())
    assert not [kind for kind in totals if kind.startswith("status")], totals
    assert sum(totals.values()) == clients * requests_each
    engine = make_engine(database)
    store = Store(engine)
    scored = store.rows(predictions, ["ticket_id"])
    events = store.rows(feedback, ["ticket_id", "event_id"])
    engine.dispose()
    assert len(scored) == totals["score"] == clients * requests_each // 10
    assert len({row["ticket_id"] for row in scored}) == len(scored)
    assert len(events) == totals["stored"] and totals["retry"] > 0
    assert len({(row["ticket_id"], row["event_id"]) for row in events}) == len(events)


@pytest.mark.slow
def test_serve_with_two_workers(service_params: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'service.db'}"
    with (
        running_server(service_params, database, "--workers", "2") as base,
        httpx.Client(headers=ALL) as http,
    ):
        results = [http.post(f"{base}/v1/score", json={**TICKET, "ticket_id": f"T-{n}"}) for n in range(20)]
    assert all(response.status_code == 200 for response in results)
    engine = make_engine(database)
    assert Store(engine).count(predictions) == 20
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# schemathesis: every response of the live server matches the app's own OpenAPI schema


@pytest.mark.slow
def test_api_matches_its_own_schema(service_params: Path, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'service.db'}"
    with running_server(service_params, database) as base:
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"), "run", f"{base}/openapi.json",
                # Every check but one: the schema cannot say that dates must fall in the years
                # 1970-2999 (OpenAPI's date-time has no range), so such requests get a 422.
                "--header", "X-API-Key: local-dev-key", "--checks", "all",
                "--exclude-checks", "positive_data_acceptance",
                "--max-examples", "100", "--seed", "11", "--no-color",
                "--generation-database", "none",
            ],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_every_worker_follows_a_promotion(registry: dict[str, Any], tmp_path: Path) -> None:
    """`urgency serve --workers 2`: a reload switches the worker that receives it; every other
    worker follows the alias by itself within URGENCY_MODEL_CHECK_SECONDS (plus a load)."""
    database = f"sqlite:///{tmp_path / 'service.db'}"
    env = {"URGENCY_MODEL_CHECK_SECONDS": "1"}
    with running_server(registry["params"], database, "--workers", "2", env=env) as base:
        pids: dict[int, dict[str, str]] = {}
        deadline = time.monotonic() + 60
        while len(pids) < 2:  # each new connection goes to either worker
            assert time.monotonic() < deadline, f"only workers {sorted(pids)} answered"
            info = httpx.get(f"{base}/v1/model", headers=ALL).json()
            pids[info["pid"]] = info["versions"]
        assert all(versions == registry["old"] for versions in pids.values())

        new = registry["new"]
        move_champion(registry["client"], new)  # `urgency promote`
        reloaded = httpx.post(f"{base}/v1/admin/reload", headers=ALL, timeout=60).json()
        assert reloaded["changed"] is True and reloaded["pid"] in pids
        assert "checks the alias every 1 s" in reloaded["workers"]

        deadline = time.monotonic() + 30  # the bound (1 s) plus loading, with room for a slow CI
        while True:
            answers = [
                httpx.post(f"{base}/v1/score", json={**TICKET, "ticket_id": f"T-{n}"}, headers=ALL).json()
                for n in range(40)
            ]
            if all(answer["model_versions"] == new for answer in answers):
                break
            assert time.monotonic() < deadline, "a worker still serves the old version"
            time.sleep(0.5)
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while seen != set(pids):
            assert time.monotonic() < deadline, f"only workers {sorted(seen)} answered"
            info = httpx.get(f"{base}/v1/model", headers=ALL).json()
            assert info["versions"] == new, info
            seen.add(info["pid"])
