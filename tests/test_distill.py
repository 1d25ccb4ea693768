"""Distillation (`urgency distill`) and the label-free prior blended into an embedding head, on
tiny frames and the tiny random BERT, through the real CLI and a real SQLite registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from tests.cli import invoke
from tests.conftest import PROJECT, params_dict, write_params, write_sources
from tests.test_label_free import DESCRIPTIONS
from tests.test_transformer import _splits, make_tiny_checkpoint
from urgency.cleaning import Cleaning
from urgency.config import load_params
from urgency.distill import fit_student, soft_targets, unlabelled_tickets
from urgency.errors import ParamsError
from urgency.hand_labelled import text_digest
from urgency.train import train
from urgency.transformer import Prior, blend_linear, fit_embedding
from urgency.transformer_model import softmax

# Support tickets nobody labelled for sentiment; rows 0 and 2 are hand-labelled (the check).
SUPPORT = pd.DataFrame(
    {
        "subject": ["Login fails", "Invoice", "Outage", "Printer", "Export", "Thanks", "VPN", "Disk"],
        "body": [
            "I cannot log in since Monday.",
            "Please send the invoice for May.",
            "This is unacceptable, the shop is down again.",
            "The printer on floor 2 jams.",
            "The export fails since yesterday, please advise.",
            "Thank you, the fix works.",
            "VPN drops every hour.",
            "Disk is full on the build server.",
        ],
    }
)
HAND_LABELLED_ROWS = {0: "neutral", 2: "negative"}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> dict[str, Any]:
    """Baseline (v1) and label-free (v2) sentiment heads, then `urgency distill --teacher 2`."""
    folder = tmp_path_factory.mktemp("distill")
    data = params_dict(write_sources(folder / "data"), folder / "mlruns")
    support = folder / "data" / "support.csv"
    SUPPORT.to_csv(support, index=False)
    data["data"]["sources"].append(
        {
            "name": "support_tickets_synthetic",
            "path": str(support),
            "columns": {"subject": "subject", "body": "body"},
            "constants": {"language": "en"},
        }
    )
    data["heads"]["sentiment"]["descriptions"] = DESCRIPTIONS
    data["training"] = {"label_free": {"checkpoint": str(tiny_checkpoint)}}
    data["distill"] = {"sources": ["support_tickets_synthetic"], "min_probability": 0.0}
    labels_file = folder / "data" / "labelled" / "support_sentiment.csv"
    labels_file.parent.mkdir(parents=True)
    pd.DataFrame(
        {
            "row": list(HAND_LABELLED_ROWS),
            "text_sha256": [text_digest(SUPPORT.subject[r], SUPPORT.body[r]) for r in HAND_LABELLED_ROWS],
            "sentiment": list(HAND_LABELLED_ROWS.values()),
        }
    ).to_csv(labels_file, index=False)
    params_path = write_params(folder, data)
    assert invoke("train", "-p", str(params_path), "--head", "sentiment").exit_code == 0
    label_free = invoke("train", "-p", str(params_path), "--head", "sentiment", "--family", "label-free")
    assert label_free.exit_code == 0, label_free.output
    # The teacher by its family (its newest version, v2); the student judged by the policy,
    # the hand-labelled check included.
    result = invoke(
        "distill",
        "-p",
        str(params_path),
        "--head",
        "sentiment",
        "--teacher",
        "label-free",
        "--promote-if-better",
    )
    assert result.exit_code == 0, result.output
    return {"params": load_params(params_path), "params_path": params_path, "output": result.output}


def test_distill_registers_a_student_version_naming_its_teacher(distilled: dict[str, Any]) -> None:
    params = distilled["params"]
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    version = client.get_model_version("ticket-sentiment", "3")
    assert version.tags["family"] == "student"
    assert version.tags["teacher_model"] == "ticket-sentiment"
    assert version.tags["teacher_version"] == "2" and version.tags["teacher_family"] == "label-free"
    run = client.get_run(version.run_id)
    metrics = run.data.metrics
    assert metrics["test_macro_f1_gap_to_teacher"] == pytest.approx(
        metrics["test_macro_f1"] - metrics["teacher_test_macro_f1"]
    )
    # The teacher's figure is its own run's, on the same test rows (not measured twice).
    teacher_run = client.get_model_version("ticket-sentiment", "2").run_id
    assert metrics["teacher_test_macro_f1"] == client.get_run(teacher_run).data.metrics["test_macro_f1"]
    assert metrics["support_sentiment_gap_to_teacher"] == pytest.approx(
        metrics["support_sentiment_accuracy"] - metrics["teacher_support_sentiment_accuracy"]
    )
    # The labelled train rows plus the 6 support tickets not hand-labelled.
    assert run.data.params["distill.unlabelled_rows_used"] == "6"
    assert int(run.data.params["train_rows"]) == metrics["rows_training"] + 6
    assert metrics["train_seconds"] > 0
    output = " ".join(distilled["output"].split())
    assert "student ticket-sentiment v3 from teacher ticket-sentiment v2 (label-free)" in output
    # The policy judged it on validation and on the hand-labelled set; the alias follows the verdict.
    assert "sentiment: v3 " in output and "support sentiment acc." in output
    champion = client.get_model_version_by_alias("ticket-sentiment", "champion").version
    assert str(champion) == ("3" if "v3 promoted" in output else "1")


def test_the_hand_labelled_tickets_are_not_distilled_on(distilled: dict[str, Any]) -> None:
    params = distilled["params"]
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    parent = client.search_runs(
        [client.get_experiment_by_name(params.mlflow.experiment).experiment_id],
        "attributes.run_name = 'distill'",
    )[0]
    targets = pd.read_csv(download_artifacts(f"runs:/{parent.info.run_id}/unlabelled_soft_targets.csv"))
    ids = set(targets["id"])
    assert ids == {f"support_tickets_synthetic:{row + 1}" for row in range(len(SUPPORT))} - {
        f"support_tickets_synthetic:{row + 1}" for row in HAND_LABELLED_ROWS
    }
    probabilities = targets[["teacher_negative", "teacher_neutral", "teacher_positive"]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0)


def test_compare_shows_the_student_as_its_own_family(distilled: dict[str, Any], tmp_path: Path) -> None:
    output = tmp_path / "comparison.md"
    result = invoke("compare", "-p", str(distilled["params_path"]), "--output", str(output))
    assert result.exit_code == 0, result.output
    rows = [line.split("|") for line in output.read_text().splitlines()[2:]]
    families = {cells[2].strip(): cells for cells in rows if cells[1].strip() == "sentiment"}
    assert set(families) == {"baseline", "label-free", "student"}
    header = [cell.strip() for cell in output.read_text().splitlines()[0].split("|")]
    gap = header.index("test gap to teacher")
    assert families["student"][gap].strip() != "" and families["baseline"][gap].strip() == ""
    assert families["student"][header.index("tickets/s")].strip() != ""


def test_an_unknown_teacher_or_source_is_a_clear_error(distilled: dict[str, Any]) -> None:
    params_path = str(distilled["params_path"])
    missing = invoke("distill", "-p", params_path, "--head", "sentiment", "--teacher", "99")
    assert missing.exit_code != 0 and "no teacher ticket-sentiment v99" in " ".join(missing.output.split())
    unknown = invoke(
        "distill", "-p", params_path, "--head", "sentiment", "--teacher", "2", "--unlabelled", "nope"
    )
    assert unknown.exit_code == 3 and "nope" in unknown.output


def test_unlabelled_tickets_leave_out_hand_labelled_ids_and_texts() -> None:
    tickets = pd.DataFrame(
        {
            "id": ["s:1", "s:2", "s:3", "s:4", "t:1", "s:5"],
            "source": ["s", "s", "s", "s", "t", "s"],
            "subject": ["", "", "", "", "", ""],
            "body": ["one", "two", "three", "four", "five", "one"],
            "sentiment": [None, None, None, None, None, "neutral"],
        }
    )
    frame = unlabelled_tickets(
        tickets,
        "sentiment",
        ["s"],
        rows=10,
        seed=0,
        max_text_chars=100,
        excluded_ids={"s:2"},
        excluded_texts={"three"},
    )
    # s:2 by id, s:3 by its text, t:1 another source, s:5 labelled.
    assert sorted(frame["id"]) == ["s:1", "s:4"]
    assert len(unlabelled_tickets(tickets, "sentiment", ["s"], rows=1, seed=0, max_text_chars=100)) == 1


def test_soft_targets_expand_each_ticket_into_weighted_classes() -> None:
    probabilities = pd.DataFrame([[0.7, 0.295, 0.005], [0.0, 1.0, 0.0]], columns=["neg", "neu", "pos"])
    rows = soft_targets(probabilities, total_weight=4.0, min_probability=0.01)
    assert list(zip(rows["ticket"], rows["label"], strict=True)) == [(0, "neg"), (0, "neu"), (1, "neu")]
    assert rows["weight"].sum() == pytest.approx(4.0)
    # Weights keep the teacher's proportions.
    assert rows["weight"].to_numpy() == pytest.approx(np.array([0.7, 0.295, 1.0]) * 4.0 / 1.995)


def test_the_student_follows_the_teacher_on_the_unlabelled_text() -> None:
    """Labelled rows never show the support words; the teacher's soft targets teach them."""
    from urgency.config import HeadParams

    words = {"negative": "awful", "neutral": "schedule", "positive": "great"}
    train = pd.DataFrame(
        {"text": [f"{w} trip {i}" for i in range(10) for w in words.values()], "label": list(words) * 10}
    )
    unlabelled = pd.Series([f"printer jams on floor {i}" for i in range(30)])
    head = HeadParams(labels=list(words), baseline={"min_df": 1, "calibration": "none"})
    student = {}
    for teacher in ("negative", "positive"):
        probabilities = pd.DataFrame(0.05, index=range(30), columns=list(words))
        probabilities[teacher] = 0.9
        targets = soft_targets(probabilities, total_weight=30.0, min_probability=0.01)
        model = fit_student(train, train, unlabelled, targets, head, Cleaning())
        student[teacher] = model.predict(pd.DataFrame({"text": ["printer jams on floor 99"]}))[0]
    assert student == {"negative": "negative", "positive": "positive"}


def test_the_blend_is_the_normalised_product_of_the_two_heads() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 8))
    trained = (rng.normal(size=(3, 8)), rng.normal(size=3), 0.7)
    prior = (rng.normal(size=(3, 8)), np.zeros(3), 0.04)
    weight = 0.6
    blended_weight, blended_bias = blend_linear(trained, prior, weight)
    blended = softmax(vectors @ blended_weight.T + blended_bias)
    p_trained = softmax((vectors @ trained[0].T + trained[1]) / trained[2])
    p_prior = softmax((vectors @ prior[0].T + prior[1]) / prior[2])
    product = p_trained * p_prior**weight
    assert blended == pytest.approx(product / product.sum(axis=1, keepdims=True))


def test_fit_embedding_blends_a_described_head_and_records_it(tiny_checkpoint: Path) -> None:
    from urgency.config import EmbeddingParams

    params = EmbeddingParams(checkpoint=tiny_checkpoint)
    descriptions = {"high": ["the system is down"], "low": ["a question about an invoice"]}
    plain = fit_embedding(_splits(), params, full_run=True, seed=0)["urgency"]
    prior = Prior(descriptions=descriptions, weight=0.5)
    blended = fit_embedding(_splits(), params, full_run=True, seed=0, priors={"urgency": prior})["urgency"]
    assert blended.params["embedding.prior_weight"] == 0.5
    assert "embedding.prior_temperature" in blended.params
    assert not np.allclose(plain.weight, blended.weight)
    assert blended.predict_proba(["outage 0"]).shape == (1, 2)


def test_prior_weight_needs_descriptions(tmp_path: Path) -> None:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["heads"]["sentiment"]["prior_weight"] = 0.5
    with pytest.raises(ParamsError, match="prior_weight"):
        load_params(write_params(tmp_path, data))


def test_train_embedding_applies_the_prior_weight(tmp_path: Path, tiny_checkpoint: Path) -> None:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["heads"]["sentiment"] |= {"descriptions": DESCRIPTIONS, "prior_weight": 0.3}
    data["training"] = {"embedding": {"checkpoint": str(tiny_checkpoint)}}
    params_path = write_params(tmp_path, data)
    params = load_params(params_path)
    result = train(params, ["sentiment"], params_path=params_path, code_folder=PROJECT, family="embedding")
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    run = client.get_run(result.heads["sentiment"].run_id)
    assert run.data.params["embedding.prior_weight"] == "0.3"
