"""API keys and scopes (`serve.deps`), and the `urgency api-key` command that makes them."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from serve.app import create_app
from serve.settings import LOCAL_DEV_KEY, ApiKey, hash_key
from tests.serve_helpers import TICKET, settings

SCORER = "scorer-key-0123456789"
AGENT = "agent-key-0123456789"
ADMIN = "admin-key-0123456789"
KEYS = (
    ApiKey(name="helpdesk", sha256=hash_key(SCORER), scopes=("score",)),
    ApiKey(name="agents", sha256=hash_key(AGENT), scopes=("feedback",)),
    ApiKey(name="ops", sha256=hash_key(ADMIN), scopes=("admin", "score")),
)


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


def test_api_key_command_refuses_a_name_the_service_would_reject() -> None:
    from typer.testing import CliRunner

    from urgency.cli import app as cli

    for name in ("", "   "):
        done = CliRunner().invoke(cli, ["api-key", "--name", name, "--scope", "score"])
        assert done.exit_code == 2 and "name" in done.output and "URGENCY_API_KEYS" not in done.output
