from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient

from tests.conftest import PROJECT
from urgency.config import BaselineParams
from urgency.train import build_pipeline, fit_baseline, train


def test_pipeline_carries_its_preprocessing() -> None:
    frame = pd.DataFrame({"text": ["server down now", "thanks a lot", "server crashed", "thanks again"]})
    pipeline = build_pipeline(BaselineParams(min_df=1)).fit(frame, ["high", "low", "high", "low"])
    assert list(pipeline.predict(pd.DataFrame({"text": ["the server is down"]}))) == ["high"]


def test_calibration_keeps_predictions(sources: Any) -> None:
    texts = [f"{word} {i}" for i in range(10) for word in ("outage", "question", "invoice", "crash")]
    labels = ["high" if t.startswith(("outage", "crash")) else "low" for t in texts]
    frame = pd.DataFrame({"text": texts, "label": labels})
    params = BaselineParams(min_df=1)
    raw = fit_baseline(frame, frame.iloc[0:0], params)  # no validation rows: no calibration
    calibrated = fit_baseline(frame, frame.iloc[:20], params)
    assert (raw.predict(frame[["text"]]) == calibrated.predict(frame[["text"]])).all()


def test_training_registers_and_logs_everything(trained: dict[str, Any]) -> None:
    params, result = trained["params"], trained["result"]
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    assert set(result.heads) == {"urgency", "category", "sentiment"}
    parent = client.get_run(result.parent_run_id)
    commit = parent.data.tags.get("mlflow.source.git.commit")
    assert commit is None or len(commit) == 40
    parent_files = {f.path for f in client.list_artifacts(result.parent_run_id)}
    assert {"data_report.json", "params", "quality.md"} <= parent_files
    data_report = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=result.parent_run_id,
                artifact_path="data_report.json",
                tracking_uri=params.mlflow.tracking_uri,
            )
        ).read_text()
    )
    assert [r["rows_read"] for r in data_report] == [72, 54, 54]

    for head, outcome in result.heads.items():
        run = client.get_run(outcome.run_id)
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        assert run.data.params["baseline.C"] == "3.0"
        for name in (
            "test_accuracy",
            "test_macro_f1",
            "test_ece",
            "test_majority_macro_f1",
            "validation_macro_f1",
        ):
            assert name in run.data.metrics
        contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
        assert contexts == {"training", "validation", "testing"}
        assert all(i.dataset.digest for i in run.inputs.dataset_inputs)
        files = {f.path for f in client.list_artifacts(outcome.run_id)}
        assert {
            f"confusion_matrix_{head}.csv",
            f"confusion_matrix_{head}.png",
            f"evaluation_{head}.json",
        } <= files
        version = client.get_model_version(outcome.registered_name, outcome.version)
        assert version.run_id == outcome.run_id
        assert (
            str(client.get_model_version_by_alias(outcome.registered_name, "champion").version)
            == outcome.version
        )
        # The tiny data is easy: the model must beat the majority baseline.
        assert outcome.test_report["macro_f1"] > outcome.test_report["majority_macro_f1"]


def test_logged_model_has_signature_example_and_pinned_requirements(trained: dict[str, Any]) -> None:
    params, outcome = trained["params"], trained["result"].heads["urgency"]
    mlflow.set_tracking_uri(params.mlflow.tracking_uri)
    info = mlflow.models.get_model_info(outcome.model_uri)
    assert info.signature.inputs.input_names() == ["text"]
    assert info.metadata["labels"] == sorted(["high", "medium", "low"])
    folder = Path(mlflow.artifacts.download_artifacts(outcome.model_uri))
    requirements = (folder / "requirements.txt").read_text().split()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert (folder / "input_example.json").exists()


def test_second_training_keeps_the_champion(trained: dict[str, Any]) -> None:
    params = trained["params"]
    again = train(params, ["sentiment"], code_folder=PROJECT)
    outcome = again.heads["sentiment"]
    assert outcome.version == "2" and not outcome.champion_set
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    assert str(client.get_model_version_by_alias(outcome.registered_name, "champion").version) == "1"
