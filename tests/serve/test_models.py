"""GET /v1/model: what the service serves with, from the registry or from a model folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from mlflow import MlflowClient

from serve.app import create_app
from tests.serve_helpers import ALL, TICKET, settings


def test_model_info(client: TestClient) -> None:
    info = client.get("/v1/model", headers=ALL).json()
    heads = {head["head"]: head for head in info["heads"]}
    assert set(heads) == {"urgency", "category", "sentiment"}
    urgency = heads["urgency"]
    assert urgency["registry_name"] == "ticket-urgency" and urgency["version"] == "1"
    assert urgency["alias"] == "champion" and urgency["run_id"]
    assert urgency["training_data_digest"] and urgency["test_metrics"]["test_macro_f1"] > 0


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


def test_model_info_shows_the_rules_file_name_not_its_path(client: TestClient, service_params: Path) -> None:
    info = client.get("/v1/model", headers=ALL).json()
    assert info["rules"] == "rules.yaml" and str(service_params.parent) not in str(info)
    digest = hashlib.sha256((service_params.parent / "rules.yaml").read_bytes()).hexdigest()
    assert info["rules_sha256"] == digest
