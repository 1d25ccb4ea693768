"""Label-free heads: a head defined by sentences describing its labels, on the tiny random BERT
(the real checkpoint only in the one slow test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import PROJECT, params_dict, write_params, write_sources
from tests.test_transformer import make_tiny_checkpoint
from urgency.config import HEADS, load_params
from urgency.errors import ParamsError
from urgency.models import load_model_dir, load_registered_models, resolve
from urgency.predict import predict_frame, predict_proba
from urgency.train import train

DESCRIPTIONS = {
    "negative": ["The customer is angry and complains.", "This is unacceptable, I am very disappointed."],
    "neutral": ["The customer asks a factual question.", "Please update the billing address."],
    "positive": ["Thank you, the team was great.", "I love how quickly this was solved."],
}


def _registry(params: Any) -> dict[str, Any]:
    return {
        "tracking_uri": params.mlflow.tracking_uri,
        "model_names": {head: params.mlflow.model_name(head) for head in HEADS},
        "alias": params.mlflow.champion_alias,
    }


@pytest.fixture(scope="module")
def label_free_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny sources without the sentiment one; sentiment described instead of labelled."""
    folder = tmp_path_factory.mktemp("label-free")
    checkpoint = make_tiny_checkpoint(folder / "tiny-bert")
    data = params_dict(write_sources(folder / "data"), folder / "mlruns")
    data["data"]["sources"] = [s for s in data["data"]["sources"] if s["name"] != "tweets"]
    data["heads"]["sentiment"]["descriptions"] = DESCRIPTIONS
    data["training"] = {"label_free": {"checkpoint": str(checkpoint)}}
    params_path = write_params(folder, data)
    params = load_params(params_path)
    result = train(params, None, params_path=params_path, code_folder=PROJECT)
    return {"params": params, "result": result, "folder": folder, "data": data}


def test_descriptions_must_describe_every_label(tmp_path: Path) -> None:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["heads"]["sentiment"]["descriptions"] = {"negative": ["angry"], "neutral": ["a question"]}
    with pytest.raises(ParamsError, match="descriptions"):
        load_params(write_params(tmp_path, data))


def test_train_registers_a_label_free_head_for_a_described_head_without_labels(
    label_free_store: dict[str, Any],
) -> None:
    params, result = label_free_store["params"], label_free_store["result"]
    assert set(result.heads) == {"urgency", "category", "sentiment"}
    sentiment = result.heads["sentiment"]
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    version = client.get_model_version(sentiment.registered_name, sentiment.version)
    assert version.tags["family"] == "label-free"
    assert "test_macro_f1" not in version.tags  # nothing labelled to measure it on
    assert sentiment.champion_set
    assert client.get_model_version(result.heads["urgency"].registered_name, "1").tags["family"] == "baseline"
    # No labelled row: the documented default temperature.
    run = client.get_run(sentiment.run_id)
    assert run.data.metrics["temperature"] == pytest.approx(params.training.label_free.default_temperature)


def test_label_free_head_loads_digest_checked_and_predicts_probabilities(
    label_free_store: dict[str, Any],
) -> None:
    params = label_free_store["params"]
    source = resolve(None, model_dir=None, **_registry(params))
    assert "sentiment" in {ref.head for ref in source.heads}
    models = load_registered_models(["sentiment"], **_registry(params))
    model = models["sentiment"]
    assert list(model.labels) == ["negative", "neutral", "positive"]
    texts = pd.Series(["I am furious, this is the third time it broke", "How do I reset my password?"])
    probabilities = predict_proba(model, texts)
    assert probabilities.shape == (2, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    frame = predict_frame(
        models, pd.DataFrame({"subject": ["Broken"], "body": ["It fails again"]}), max_text_chars=500
    )
    assert frame.loc[0, "sentiment"] in DESCRIPTIONS


def test_label_free_head_weights_are_its_description_vectors(label_free_store: dict[str, Any]) -> None:
    """The saved head embeds only the ticket: a description predicts its own label most."""
    import json

    from mlflow.artifacts import download_artifacts

    result = label_free_store["result"]
    folder = Path(download_artifacts(result.heads["sentiment"].model_uri))
    head = json.loads(next(folder.rglob("head.json")).read_text())
    assert head["labels"] == list(DESCRIPTIONS) and np.allclose(head["bias"], 0)
    assert np.asarray(head["weight"]).shape == (3, 32)


def test_a_tampered_label_free_head_is_refused(label_free_store: dict[str, Any], tmp_path: Path) -> None:
    from urgency.models import registry_client
    from urgency.tracking import export_models

    params = label_free_store["params"]
    exported = tmp_path / "models"
    names = {"sentiment": params.mlflow.model_name("sentiment")}
    export_models(registry_client(params.mlflow.tracking_uri), names, "champion", exported)
    assert set(load_model_dir(exported, ["sentiment"])) == {"sentiment"}
    head_file = next((exported / "sentiment").rglob("head.json"))
    head_file.write_text(head_file.read_text().replace("0.", "1.", 1))
    with pytest.raises(Exception, match=r"(?i)digest|changed|match"):
        load_model_dir(exported, ["sentiment"])


def test_family_label_free_with_labels_fits_the_temperature(tmp_path: Path) -> None:
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny-bert")
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["heads"]["sentiment"]["descriptions"] = DESCRIPTIONS
    data["training"] = {"label_free": {"checkpoint": str(checkpoint)}}
    params_path = write_params(tmp_path, data)
    params = load_params(params_path)
    with pytest.raises(ParamsError, match="descriptions"):
        train(params, ["urgency"], params_path=params_path, code_folder=PROJECT, family="label-free")
    result = train(params, None, params_path=params_path, code_folder=PROJECT, family="label-free")
    assert list(result.heads) == ["sentiment"]  # the only described head
    sentiment = result.heads["sentiment"]
    assert sentiment.test_report["n"] > 0  # evaluated on the labelled test rows
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    run = client.get_run(sentiment.run_id)
    assert run.data.params["label_free.temperature_fitted_on"] != "0"


@pytest.mark.slow
def test_params_descriptions_read_support_tickets_with_the_real_minilm() -> None:
    """The demo's sentiment descriptions on the packaged MiniLM, default temperature: an upset
    customer is negative, a polite outage report is not (the guideline's borderline rule 1)."""
    from urgency.config import LabelFreeParams
    from urgency.label_free import fit_label_free

    params = load_params(PROJECT / "params.yaml")
    head = params.heads.sentiment
    described = {"sentiment": {label: head.descriptions[label] for label in head.labels}}
    fitted = fit_label_free(described, {}, LabelFreeParams(), seed=0)["sentiment"]
    probabilities = fitted.predict_proba(
        [
            "This is the third time I write and nobody answers. I am extremely disappointed.",
            "Production outage - payments failing\nSince 07:50 every payment in our shop fails with "
            "error 502. Customers cannot check out.",
        ]
    )
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    predicted = [fitted.labels[i] for i in probabilities.argmax(axis=1)]
    assert predicted[0] == "negative" and predicted[1] != "negative"
