"""A real `mlflow server` on loopback: training logs and registers through it, and the
champions load back through it (the set-up a team shares)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PROJECT, write_server_params
from tests.mlflow_server import running_mlflow_server
from urgency.config import HEADS, load_params
from urgency.models import load_registered_models
from urgency.predict import predict_proba
from urgency.train import train

pytestmark = pytest.mark.slow


@pytest.fixture
def tracking_server(tmp_path: Path):
    artifacts = tmp_path / "server-artifacts"
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    with running_mlflow_server(backend, artifacts, tmp_path / "server.log") as url:
        yield url, artifacts


def test_train_and_load_through_a_tracking_server(tmp_path: Path, tracking_server) -> None:
    url, server_artifacts = tracking_server
    params_path = write_server_params(tmp_path, url)
    params = load_params(params_path)

    result = train(params, list(HEADS), params_path=params_path, code_folder=PROJECT)
    assert all(outcome.champion_set for outcome in result.heads.values())
    # Artifacts went to the server's store, not to a local folder.
    assert any(server_artifacts.rglob("MLmodel"))
    assert not (tmp_path / "unused").exists()

    models = load_registered_models(
        list(HEADS),
        tracking_uri=url,
        model_names={head: params.mlflow.model_name(head) for head in HEADS},
        alias="champion",
    )
    probabilities = predict_proba(models["urgency"], ["server down outage ticket 99"])
    assert probabilities.idxmax(axis=1).item() == "high"
