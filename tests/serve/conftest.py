"""Fixtures of the service tests: a store per test and a client of an app over it."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from serve.app import create_app
from tests.serve_helpers import settings
from urgency.config import HEADS


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture
def client(service_params: Path, database: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings(service_params, database))) as test_client:
        yield test_client


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store in turn: what one accepts, the other must accept too."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    return request.getfixturevalue("postgres").create_database(f"serve_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def any_client(service_params: Path, any_database: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings(service_params, any_database))) as test_client:
        yield test_client


@pytest.fixture
def registry(trained: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A copy of the trained registry with a new version of every head (same artifacts):
    `old` and `new` map each head to a version."""
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
    # A new version's source (`models:/m-...`, a logged model) is looked up in MLflow's global
    # tracking store: point it at the copy, or an earlier module's store (or ./mlflow.db) is asked.
    import mlflow

    mlflow.set_tracking_uri(uri)
    # Head -> the new version: 2, unless versions were made (and deleted) in the session's
    # registry before it was copied (a deleted version keeps its number).
    new = {head: str(copy_version(client, f"ticket-{head}").version) for head in HEADS}
    return {"params": params, "client": client, "old": dict.fromkeys(HEADS, "1"), "new": new}
