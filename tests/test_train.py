from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
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
    assert type(raw).__name__ == "Pipeline" and type(calibrated).__name__ == "CalibratedClassifierCV"
    assert (raw.predict(frame[["text"]]) == calibrated.predict(frame[["text"]])).all()
    # Temperature scaling moves the confidences, not the argmax.
    assert not np.allclose(raw.predict_proba(frame[["text"]]), calibrated.predict_proba(frame[["text"]]))


def test_training_registers_and_logs_everything(trained: dict[str, Any]) -> None:
    params, result = trained["params"], trained["result"]
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    assert set(result.heads) == {"urgency", "category", "sentiment"}
    parent = client.get_run(result.parent_run_id)
    # The code's commit (the tests run inside the project's git checkout).
    assert len(parent.data.tags["mlflow.source.git.commit"]) == 40
    assert parent.data.tags["git_dirty"] in {"true", "false"}
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

    # The three heads were fitted side by side; each run has its fit time.
    assert set(result.fit_seconds) == set(result.heads)
    for head, outcome in result.heads.items():
        run = client.get_run(outcome.run_id)
        assert run.data.metrics["train_seconds"] == pytest.approx(result.fit_seconds[head])
        assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
        # Child runs and their artifacts stay in the parent's experiment and store.
        assert run.info.experiment_id == parent.info.experiment_id
        assert run.info.artifact_uri.startswith(params.mlflow.artifact_location)
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
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    assert str(client.get_model_version_by_alias(outcome.registered_name, "champion").version) == "1"


def test_a_head_with_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    from tests.conftest import params_dict, write_params, write_sources
    from urgency.config import load_params
    from urgency.errors import DataValidationError

    paths = write_sources(tmp_path / "data", copies=1)  # 4 texts per label: 1 test, 1 validation each
    frame = pd.read_csv(paths["sentiment"])
    frame[frame["mood"] == "negative"].to_csv(paths["sentiment"], index=False)
    params = load_params(write_params(tmp_path, params_dict(paths, tmp_path / "mlruns")))
    import pytest

    with pytest.raises(
        DataValidationError, match=r"cannot train the sentiment head: it needs at least 2 labels"
    ):
        train(params, ["sentiment"], code_folder=PROJECT)
