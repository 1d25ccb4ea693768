"""The hybrid family (TF-IDF + sentence embedding in one linear model), on the tiny random BERT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.cli import invoke
from tests.conftest import CALM, NORMAL, URGENT, params_dict, write_params, write_sources
from tests.test_transformer import make_tiny_checkpoint
from urgency.cleaning import Cleaning
from urgency.comparison import compare
from urgency.config import BaselineParams, HybridParams, load_params
from urgency.errors import ModelNotFoundError, ParamsError
from urgency.hybrid import fit_hybrid
from urgency.models import DIGEST_FILE, load_model_dir, load_registered_models
from urgency.predict import predict_frame
from urgency.transformer import Split, save_head_model

TINY_TFIDF = BaselineParams(min_df=1, max_features=5000)


def _frame(copies: int) -> pd.DataFrame:
    rows = [
        (f"{phrase} ticket {i}", label)
        for label, phrases in (("high", URGENT), ("medium", NORMAL), ("low", CALM))
        for i in range(copies)
        for phrase in phrases
    ]
    return pd.DataFrame({"text": [text for text, _ in rows], "label": [label for _, label in rows]})


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"))


def test_hybrid_params_are_strict_and_resolve_the_checkpoint(tmp_path: Path) -> None:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["training"] = {"family": "hybrid", "hybrid": {"checkpoint": "models/tiny", "embedding_weight": 3}}
    params = load_params(write_params(tmp_path, data))
    assert params.training.family == "hybrid"
    assert params.training.hybrid.checkpoint == (tmp_path / "models" / "tiny").resolve()
    for wrong, message in (
        ({"hybrid": {"embedding_weight": 0}}, "training.hybrid.embedding_weight"),
        ({"hybrid": {"C": 1.0}}, "training.hybrid.C: unknown key"),
    ):
        data["training"] = wrong
        with pytest.raises(ParamsError, match=message):
            load_params(write_params(tmp_path, data))


def test_hybrid_head_is_saved_loaded_checked_and_predicts_as_in_memory(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    train, validation = _frame(6), _frame(2)
    params = HybridParams(checkpoint=tiny_checkpoint, train_sample=40, validation_sample=20)
    fitted = fit_hybrid(
        {"urgency": Split(train=train, validation=validation)},
        {"urgency": TINY_TFIDF},
        params,
        full_run=False,
        seed=0,
    )["urgency"]
    assert fitted.family == "hybrid" and fitted.labels == ["high", "low", "medium"]
    assert fitted.train_rows == 40 and fitted.sparse is not None
    # The vocabulary is learnt from every train row, the classifier from the sample.
    assert fitted.params["hybrid.vocabulary_rows"] == len(train)
    assert fitted.weight.shape == (3, 32)  # the tiny BERT's 32-wide vectors
    texts = ["server down outage ticket 99", "question about invoice ticket 99", "", "slow page " * 400]
    assert np.abs(fitted.sparse.logits(texts)).max() > 0.1  # the TF-IDF part counts

    folder = tmp_path / "models" / "urgency"
    save_head_model(fitted, folder, pd.DataFrame({"text": texts[:2]}), cleaning=Cleaning())
    assert (folder / "code" / "urgency" / "transformer_model.py").exists()
    requirements = (folder / "requirements.txt").read_text().split()
    assert any(r.startswith("scikit-learn==") for r in requirements), requirements

    models = load_model_dir(tmp_path / "models")
    tickets = pd.DataFrame({"body": texts})
    scored = predict_frame(models, tickets, subject_column=None, body_column="body", max_text_chars=5000)
    columns = [f"urgency_proba_{label}" for label in ("high", "low", "medium")]
    probabilities = scored[columns].to_numpy(dtype=float)
    assert list(models["urgency"].labels) == ["high", "low", "medium"]
    valid = scored["error"].isna().to_numpy()
    assert valid.tolist() == [True, True, False, True]  # the empty ticket is an error row
    np.testing.assert_allclose(probabilities[valid].sum(axis=1), 1.0, atol=1e-6)
    in_memory = fitted.predict_proba([texts[0], texts[1], texts[3]])
    np.testing.assert_allclose(probabilities[valid], in_memory, atol=1e-5)
    assert scored.loc[0, "urgency"] == "high" and scored.loc[1, "urgency"] == "low"

    # The TF-IDF files are digest-checked like every other file of the model.
    weights = next(folder.rglob("weight.npy"))
    assert weights.relative_to(folder).as_posix() in (folder / DIGEST_FILE).read_text()
    np.save(weights, np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ModelNotFoundError, match=r"weight\.npy .* does not match the digest"):
        load_model_dir(tmp_path / "models")


def test_train_family_hybrid_registers_versions_that_predict(tiny_checkpoint: Path, tmp_path: Path) -> None:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["training"] = {"hybrid": {"checkpoint": str(tiny_checkpoint)}}
    params_path = write_params(tmp_path, data)
    params = load_params(params_path)
    result = invoke(
        "train", "-p", str(params_path), "--family", "hybrid", "--head", "urgency", "--head", "sentiment"
    )
    assert result.exit_code == 0, result.output

    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    model_names = {head: params.mlflow.model_name(head) for head in ("urgency", "sentiment")}
    for head, name in model_names.items():
        version = client.get_model_version(name, "1")
        assert version.tags["family"] == "hybrid" and float(version.tags["test_macro_f1"]) > 0
        run = client.get_run(version.run_id)
        assert run.info.run_name == f"{head}-hybrid"
        assert float(run.data.params["hybrid.embedding_weight"]) == params.training.hybrid.embedding_weight
        assert run.data.metrics["test_tickets_per_second"] > 0
    comparison = compare(client, model_names, params.mlflow.champion_alias)
    assert comparison["family"].tolist() == ["hybrid", "hybrid"]
    assert comparison["champion"].all()  # the first version of a head claims the champion alias

    # training.family: hybrid in the params does the same without --family.
    data["training"]["family"] = "hybrid"
    write_params(tmp_path, data)
    assert invoke("train", "-p", str(params_path), "--head", "urgency").exit_code == 0
    assert client.get_model_version(model_names["urgency"], "2").tags["family"] == "hybrid"

    models = load_registered_models(
        ["urgency", "sentiment"],
        tracking_uri=params.mlflow.tracking_uri,
        model_names=model_names,
        alias="champion",
    )
    tickets = pd.DataFrame({"subject": ["server down"], "body": ["production broken critical ticket 3"]})
    scored = predict_frame(models, tickets, subject_column="subject", body_column="body", max_text_chars=5000)
    assert scored.loc[0, "urgency"] in {"high", "medium", "low"} and pd.isna(scored.loc[0, "error"])
    total = scored[[f"sentiment_proba_{label}" for label in models["sentiment"].labels]].sum(axis=1)
    assert total.iloc[0] == pytest.approx(1.0)
