"""Self-service answers and repeat-issue clusters in the real service (rules `knowledge_base`,
`clusters`): the score answer's articles and auto-reply, GET /v1/clusters, the clusters refilled
from the store after a restart, an alert driving surge mode, and one encoder pass per ticket."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from serve.app import create_app
from tests.conftest import SERVICE_RULES, write_params
from tests.rules_helpers import rules_dict
from tests.serve_helpers import ALL, settings

ARTICLES = {
    "vpn-connect": "# VPN does not connect\nIf the VPN client does not connect, restart GlobalProtect, "
    "check your internet connection and sign in again with your VPN password.",
    "password-reset": "# Reset your password\nForgot your password? Use the self-service password "
    "reset page, answer your security questions and choose a new password.",
    "printer": "# Printer not printing\nIf the office printer shows an error or prints nothing, "
    "switch it off and on and clear the print queue.",
}
VPN = {
    "ticket_id": "T-vpn",
    "subject": "VPN not connecting",
    "body": "My VPN client does not connect since this morning, GlobalProtect keeps failing.",
    "created_at": "2026-03-02T09:00:00Z",
}


def knowledge_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in ARTICLES.items():
        (folder / f"{name}.md").write_text(text)
    return folder


def service_with(service_params: Path, folder: Path, **sections: Any) -> Path:
    """The service tests' params with a rules file that has `sections` (its knowledge base in
    `folder/kb`, named relative to the rules file)."""
    knowledge_folder(folder / "kb")
    rules = folder / "rules.yaml"
    rules.write_text(yaml.safe_dump(rules_dict(**SERVICE_RULES, **sections)))
    data = yaml.safe_load(service_params.read_text())
    data["scoring"] = {"rules": str(rules)}
    return write_params(folder, data)


@pytest.fixture
def bm25_client(service_params: Path, tmp_path: Path) -> Iterator[TestClient]:
    params = service_with(
        service_params,
        tmp_path,
        knowledge_base={"folder": "kb", "method": "bm25", "k": 2, "base_url": "https://kb.example/"},
    )
    with TestClient(create_app(settings(params, f"sqlite:///{tmp_path / 'service.db'}"))) as client:
        yield client


def test_the_score_answer_carries_the_articles_and_why(bm25_client: TestClient) -> None:
    answer = bm25_client.post("/v1/score", json=VPN, headers=ALL)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    articles = result["articles"]
    assert [article["id"] for article in articles][:1] == ["vpn-connect"]
    assert len(articles) <= 2
    best = articles[0]
    assert best["url"] == "https://kb.example/vpn-connect"
    assert best["title"] == "VPN does not connect"
    assert "words" in best["why"] and "vpn" in best["why"]
    # BM25's lead is on its own scale: far above the hybrid's margin, so the auto-reply has it.
    assert [article["id"] for article in result["auto_reply_articles"]] == ["vpn-connect"]
    # No clusters section: no cluster, and the endpoint says it is off.
    assert result["cluster"] is None
    clusters = bm25_client.get("/v1/clusters", headers=ALL).json()
    assert clusters["enabled"] is False


def test_a_batch_answers_each_ticket_and_a_text_without_a_match_gets_none(bm25_client: TestClient) -> None:
    tickets = [
        VPN,
        {**VPN, "ticket_id": "T-pw", "subject": "password", "body": "I forgot my password, please reset it"},
        {**VPN, "ticket_id": "T-none", "subject": "Hello", "body": "zebra giraffe"},
    ]
    answer = bm25_client.post("/v1/score/batch", json={"tickets": tickets}, headers=ALL)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert results[0]["articles"][0]["id"] == "vpn-connect"
    assert results[1]["articles"][0]["id"] == "password-reset"
    assert results[2]["articles"] == [] and results[2]["auto_reply_articles"] == []


def test_a_missing_knowledge_base_folder_refuses_to_start_naming_the_key(
    service_params: Path, tmp_path: Path
) -> None:
    params = service_with(service_params, tmp_path, knowledge_base={"folder": "nowhere", "method": "bm25"})
    app = create_app(settings(params, f"sqlite:///{tmp_path / 'service.db'}"))
    with pytest.raises(Exception, match=r"knowledge_base\.folder.*nowhere"), TestClient(app):
        pass


# ---------------------------------------------------------------------------------------------
# Clusters (the packaged MiniLM embeds: the service tests' models are the baseline family)

BACKGROUND = [
    "Invoice for March is missing the discount",
    "Please add a new starter to the payroll",
    "Laptop screen flickers when docked",
    "How do I book annual leave",
    "Printer on floor 3 jams every morning",
    "Expense claim rejected without a reason",
    "Need access to the finance SharePoint site",
    "Outlook keeps asking for my password",
]
BURST = [
    "VPN is down, cannot connect from home",
    "Cannot connect to the VPN since 9am",
    "VPN connection fails for everyone working remotely",
    "Is the VPN down? Remote access not working",
    "VPN not connecting, GlobalProtect error",
    "Nobody can connect to the VPN this morning",
]


def _ticket(n: int, text: str, at: datetime) -> dict[str, Any]:
    return {"ticket_id": f"T-{n}", "subject": "", "body": text, "created_at": at.isoformat()}


@pytest.mark.slow
def test_clusters_alert_drive_surge_and_come_back_after_a_restart(
    service_params: Path, tmp_path: Path
) -> None:
    params = service_with(
        service_params,
        tmp_path,
        knowledge_base={"folder": "kb", "method": "hybrid", "k": 2},
        clusters={"window_days": 7, "threshold": 0.6, "burst": "2h", "min_count": 5, "surge": True},
    )
    database = f"sqlite:///{tmp_path / 'service.db'}"
    now = datetime.now(UTC).replace(microsecond=0)
    # Two quiet days of varied tickets (the baseline), then six VPN tickets within an hour.
    background = [
        _ticket(n, BACKGROUND[n % len(BACKGROUND)] + f" (case {n})", now - timedelta(hours=50 - n * 2))
        for n in range(24)
    ]
    burst = [_ticket(100 + n, text, now - timedelta(minutes=60 - n * 10)) for n, text in enumerate(BURST)]
    with TestClient(create_app(settings(params, database))) as client:
        answer = client.post("/v1/score/batch", json={"tickets": background + burst}, headers=ALL)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        # Articles by meaning and words, and every ticket in a cluster.
        assert results[-1]["articles"][0]["id"] == "vpn-connect"
        assert "meaning" in results[-1]["articles"][0]["why"]
        vpn_clusters = {result["cluster"]["cluster_id"] for result in results[-len(BURST) :]}
        assert len(vpn_clusters) == 1
        alerts = [result["cluster"]["alert"] for result in results if result["cluster"]["alert"]]
        assert len(alerts) == 1 and "tickets in 2 h" in alerts[0]
        listed = client.get("/v1/clusters", headers=ALL).json()
        assert listed["enabled"] is True and listed["surge"] is True
        [alert] = listed["alerts"]
        assert set(alert["ticket_ids"]) >= {f"T-{100 + n}" for n in range(len(BURST))}
        assert "vpn" in alert["title"]
        assert alert["explanation"].startswith(f"cluster '{alert['title']}'")
        assert listed["clusters"][0]["size"] >= len(BURST)
        # The alert drives surge mode for the next ticket scored (clusters.surge).
        later = client.post("/v1/score", json=_ticket(200, "Question about my invoice", now), headers=ALL)
        assert later.json()["surge"] is True
        assert client.get("/v1/clusters").status_code == 401
    # A restarted worker refills its clusters from the store's tickets of the window.
    with TestClient(create_app(settings(params, database))) as client:
        listed = client.get("/v1/clusters", headers=ALL).json()
        assert listed["tickets"] == len(background) + len(burst) + 1
        assert [alert["cluster_id"] for alert in listed["alerts"]] and listed["surge"] is True


# ---------------------------------------------------------------------------------------------
# One encoder pass per ticket: heads, articles and clusters share it


@pytest.mark.slow
def test_the_heads_the_articles_and_the_clusters_share_one_encoder_pass(
    service_params: Path, tmp_path: Path
) -> None:
    """Served MiniLM heads (the tiny random BERT, as `--model-dir` reads them): scoring a ticket
    encodes it once, though the knowledge base ranks it by meaning and the clusters take its
    vector too (both read the heads' vector from the memo)."""
    from tests.test_shared_encoder import _save_heads, encoded_rows
    from tests.test_transformer import make_tiny_checkpoint
    from urgency.transformer_model import VECTORS

    checkpoint = make_tiny_checkpoint(tmp_path / "tiny-bert")
    model_dir = _save_heads(tmp_path / "models", checkpoint, checkpoint)
    params = service_with(
        service_params,
        tmp_path,
        knowledge_base={"folder": "kb", "method": "hybrid", "k": 2},
        clusters={"window_days": 7},
    )
    app = create_app(settings(params, f"sqlite:///{tmp_path / 'service.db'}", model_dir=model_dir))
    with TestClient(app) as client:
        runtime = app.state.service.runtime
        assert runtime.vectors.source in {"urgency", "category", "sentiment"}
        VECTORS.clear()
        with encoded_rows() as rows:
            answer = client.post("/v1/score", json=VPN, headers=ALL)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert len(result["articles"]) == 2 and "meaning" in result["articles"][0]["why"]
        assert result["cluster"]["size"] == 1
        assert sum(rows) == 1  # one text, one row encoded, for everything
        # A batch of three tickets, one repeated: two rows.
        tickets = [
            {**VPN, "ticket_id": f"T-{n}", "body": body} for n, body in enumerate(["a b", "c d", "a b"])
        ]
        with encoded_rows() as rows:
            assert client.post("/v1/score/batch", json={"tickets": tickets}, headers=ALL).status_code == 200
        assert sum(rows) == 2


# ---------------------------------------------------------------------------------------------
# A helpdesk's created ticket: the note and the write-back carry the articles


def test_a_helpdesk_ticket_gets_the_articles_in_its_note_and_write_back(
    service_params: Path, tmp_path: Path
) -> None:
    from tests.helpdesk_payloads import SECRETS, signed, zendesk_event
    from tests.serve_helpers import rows
    from urgency.store import outbox

    params = service_with(
        service_params,
        tmp_path,
        knowledge_base={"folder": "kb", "method": "bm25", "k": 2, "base_url": "https://kb.example/"},
    )
    data = yaml.safe_load(params.read_text())
    data["helpdesks"] = {
        "zendesk": {
            "priorities": {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"},
            "api_url": "http://127.0.0.1:9/",  # never called: the outbox is not sent here
            "articles_field": "360009876544",
        }
    }
    params = write_params(tmp_path, data)
    database = f"sqlite:///{tmp_path / 'service.db'}"
    service = settings(
        params,
        database,
        webhook_secrets=SECRETS,
        helpdesk_credentials={"zendesk": "bot@acme.example/token:abc"},
        outbox_seconds=0,
    )
    payload = zendesk_event(subject="VPN not connecting", description="<p>" + VPN["body"] + "</p>")
    with TestClient(create_app(service)) as client:
        body, headers = signed("zendesk", payload)
        answer = client.post("/v1/webhooks/zendesk", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    values = answer.json()["helpdesk_values"]
    assert "article 1: VPN does not connect https://kb.example/vpn-connect (score" in values["note"]
    quoted = {"id": "vpn-connect", "title": "VPN does not connect", "url": "https://kb.example/vpn-connect"}
    assert values["auto_reply_articles"] == [quoted]
    assert values["fields"] == {"360009876544": "VPN does not connect - https://kb.example/vpn-connect"}
    [write] = rows(database, outbox)
    assert write["values"]["auto_reply_articles"] == [quoted]
    assert write["values"]["fields"]["360009876544"].endswith("vpn-connect")
