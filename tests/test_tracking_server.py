"""A real `mlflow server` on loopback: training logs and registers through it, and the
champions load back through it (the set-up a team shares)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.conftest import PROJECT, params_dict, write_sources
from urgency.config import HEADS, load_params
from urgency.predict import load_registered_models, predict_proba
from urgency.train import train

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def tracking_server(tmp_path: Path):
    port = _free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "server-artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    previous_tracking, previous_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start:\n" + (tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield url, tmp_path / "server-artifacts"
    finally:
        # Later tests must not inherit this (soon stopped) server as MLflow's global default.
        mlflow.set_tracking_uri(previous_tracking)
        mlflow.set_registry_uri(previous_registry)
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_train_and_load_through_a_tracking_server(tmp_path: Path, tracking_server) -> None:
    url, server_artifacts = tracking_server
    raw = params_dict(write_sources(tmp_path / "data"), tmp_path / "unused")
    raw["mlflow"] = {"tracking_uri": url}
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
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
