"""Self-service answers over real HTTP: `urgency serve` (a real uvicorn on loopback) with a rules
file naming a knowledge base answers /v1/score with the ticket's articles."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.serve.test_knowledge_service import VPN, service_with
from tests.serve_helpers import ALL, migrated, running_server


def test_a_live_server_answers_with_the_articles(service_params: Path, tmp_path: Path) -> None:
    params = service_with(
        service_params,
        tmp_path,
        knowledge_base={"folder": "kb", "method": "bm25", "k": 2, "base_url": "https://kb.example/"},
    )
    with running_server(params, migrated(f"sqlite:///{tmp_path / 'live.db'}")) as base:
        answer = httpx.post(f"{base}/v1/score", json=VPN, headers=ALL, timeout=60)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["articles"][0] == {
            **result["articles"][0],
            "id": "vpn-connect",
            "url": "https://kb.example/vpn-connect",
        }
        assert result["articles"][0]["why"].startswith("words ")
        assert [article["id"] for article in result["auto_reply_articles"]] == ["vpn-connect"]
        clusters = httpx.get(f"{base}/v1/clusters", headers=ALL, timeout=30).json()
        assert clusters["enabled"] is False
