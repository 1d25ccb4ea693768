"""Leave-one-source-out on a tiny three-source dataset made here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from tests.conftest import CALM, NORMAL, URGENT, params_dict, write_params, write_sources
from urgency.config import load_params
from urgency.data import head_dataset
from urgency.errors import DataValidationError
from urgency.source_holdout import holdout_markdown, leave_one_source_out, leave_one_source_out_heads

LABELS = ["high", "medium", "low"]


def tickets(sources: tuple[str, ...] = ("alpha", "beta", "gamma"), copies: int = 5) -> pd.DataFrame:
    """The same three kinds of ticket in every source, each source with its own word."""
    rows = []
    for source in sources:
        for label, phrases in (("high", URGENT), ("medium", NORMAL), ("low", CALM)):
            for i in range(copies):
                for phrase in phrases:
                    rows.append(
                        {
                            "id": f"{source}:{len(rows)}",
                            "source": source,
                            "subject": f"{source} ticket {i}",
                            "body": phrase,
                            "urgency": label,
                        }
                    )
    return pd.DataFrame(rows)


def dataset(frame: pd.DataFrame) -> pd.DataFrame:
    return head_dataset(
        frame, "urgency", max_text_chars=500, seed=1, validation_fraction=0.2, test_fraction=0.2
    )


def _frame_split(texts: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and validation rows for a direct fit: the three kinds of ticket and `texts`."""
    rows = [
        (phrase, label)
        for label, phrases in (("high", URGENT), ("medium", NORMAL), ("low", CALM))
        for phrase in phrases
    ]
    frame = pd.DataFrame({"text": [t for t, _ in rows], "label": [lb for _, lb in rows]})
    extra = pd.DataFrame({"text": texts, "label": ["high", "medium", "low"]})
    return pd.concat([frame, extra], ignore_index=True), frame


class Recorder:
    """A fitter that remembers which sources each fit saw."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def __call__(self, train: pd.DataFrame, validation: pd.DataFrame) -> Any:
        self.seen.append(set(train["source"]) | set(validation["source"]))
        features = ColumnTransformer([("word", TfidfVectorizer(), "text")])
        return Pipeline([("features", features), ("classifier", LogisticRegression(max_iter=500))]).fit(
            train[["text"]], train["label"]
        )


def test_each_source_is_held_out_once_and_never_trained_on() -> None:
    data = dataset(tickets())
    fit = Recorder()
    table = leave_one_source_out(data, "urgency", LABELS, fit)
    assert list(table["held-out source"]) == ["alpha", "beta", "gamma"]
    # The first fit is the in-split one (every source); then one per held-out source, without it.
    assert fit.seen[0] == {"alpha", "beta", "gamma"}
    for source, seen in zip(table["held-out source"], fit.seen[1:], strict=True):
        assert source not in seen and len(seen) == 2
    for _, row in table.iterrows():
        assert row["held-out rows"] == (data["source"] == row["held-out source"]).sum()  # every labelled row
        assert (
            row["in-split rows"]
            == ((data["source"] == row["held-out source"]) & (data["split"] == "test")).sum()
        )
        assert (
            row["train rows"]
            == ((data["source"] != row["held-out source"]) & (data["split"] == "train")).sum()
        )
        for column in ("held-out macro-F1", "held-out accuracy", "in-split macro-F1", "in-split accuracy"):
            assert 0.0 <= row[column] <= 1.0
    # The ticket kinds are the same everywhere: a source never seen is still read well.
    assert (table["held-out accuracy"] > 0.8).all()
    markdown = holdout_markdown(table)
    assert "| urgency | baseline | alpha" in markdown.replace("  ", " ").replace("  ", " ")
    assert "report" not in markdown


def test_a_label_the_other_sources_lack_is_reported_not_a_crash() -> None:
    frame = tickets()
    # Only gamma has low tickets: trained without gamma, the model cannot say low.
    frame = frame[(frame["urgency"] != "low") | (frame["source"] == "gamma")]
    table = leave_one_source_out(dataset(frame), "urgency", LABELS, Recorder())
    gamma = table.set_index("held-out source").loc["gamma"]
    assert gamma["report"]["per_class"]["low"]["recall"] == 0.0
    assert 0.0 <= gamma["held-out macro-F1"] < 1.0


def test_one_source_is_nothing_to_hold_out() -> None:
    with pytest.raises(DataValidationError, match="needs at least two"):
        leave_one_source_out(dataset(tickets(("alpha",))), "urgency", LABELS, Recorder())


def test_configured_heads_with_the_baseline_family(tmp_path: Path) -> None:
    """Through params: the baseline fitter, and only heads with several sources by default."""
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    second = dict(data["data"]["sources"][0], name="tickets_copy")
    data["data"]["sources"].append(second)
    params = load_params(write_params(tmp_path, data))
    table = leave_one_source_out_heads(params)
    assert set(table["head"]) == {"urgency"}  # category and sentiment have one source each
    assert list(table["held-out source"]) == ["tickets", "tickets_copy"]
    assert (table["held-out accuracy"] > 0.8).all()
    with pytest.raises(DataValidationError, match="baseline, embedding, hybrid families only"):
        leave_one_source_out_heads(params, family="finetune")


def test_evaluate_leave_one_source_out_prints_and_logs(tmp_path: Path) -> None:
    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from urgency.cli import app

    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["data"]["sources"].append(dict(data["data"]["sources"][0], name="tickets_copy"))
    params_path = write_params(tmp_path, data)
    output = tmp_path / "holdout.json"
    result = CliRunner().invoke(
        app, ["evaluate", "-p", str(params_path), "--leave-one-source-out", "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert "held-out macro-F1" in result.output and "tickets_copy" in result.output
    assert len(json.loads(output.read_text())) == 2
    params = load_params(params_path)
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(params.mlflow.experiment).experiment_id
    parent = client.search_runs([experiment], "attributes.run_name = 'leave-one-source-out'")[0]
    children = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert {run.data.params["held_out_source"] for run in children} == {"tickets", "tickets_copy"}
    for run in children:
        assert run.data.params["head"] == "urgency" and run.data.params["family"] == "baseline"
        assert 0.0 <= run.data.metrics["held_out_macro_f1"] <= 1.0
        assert "in_split_macro_f1" in run.data.metrics


def test_leave_one_source_out_takes_no_model_or_input(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from urgency.cli import app

    params_path = write_params(tmp_path, params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns"))
    result = CliRunner().invoke(
        app, ["evaluate", "-p", str(params_path), "--leave-one-source-out", "--model-dir", str(tmp_path)]
    )
    assert result.exit_code == 2 and "no --input or --model-dir" in result.output
    single = CliRunner().invoke(app, ["evaluate", "-p", str(params_path), "--leave-one-source-out"])
    assert single.exit_code == 4 and "two or more sources" in single.output
    alone = CliRunner().invoke(app, ["evaluate", "-p", str(params_path), "--family", "hybrid"])
    assert alone.exit_code == 2 and "only with --leave-one-source-out" in alone.output
    unknown = CliRunner().invoke(
        app, ["evaluate", "-p", str(params_path), "--leave-one-source-out", "--family", "finetune"]
    )
    assert unknown.exit_code == 4 and "families only (asked: finetune)" in unknown.output


def test_hybrid_family_on_the_tiny_bert_reads_vectors_from_the_cache(tmp_path: Path) -> None:
    """Through params with `--family hybrid`: one row per held-out source, and the adapter's
    probabilities (sentence vectors from the cache) are the fitted head's own."""
    from tests.test_transformer import make_tiny_checkpoint
    from urgency.source_holdout import hybrid_fitter

    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["data"]["sources"].append(dict(data["data"]["sources"][0], name="tickets_copy"))
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny-bert")
    cache = tmp_path / "cache"
    data["training"] = {
        "embedding_cache": str(cache),
        "hybrid": {"checkpoint": str(checkpoint), "train_sample": 60, "validation_sample": 30},
    }
    params = load_params(write_params(tmp_path, data))
    table = leave_one_source_out_heads(params, ["urgency"], family="hybrid")
    assert list(table["held-out source"]) == ["tickets", "tickets_copy"]
    assert set(table["family"]) == {"hybrid"}
    for column in ("held-out macro-F1", "held-out accuracy", "in-split macro-F1"):
        assert table[column].between(0.0, 1.0).all()
    assert list(cache.rglob("part-*.npz"))  # the fits' and the held-out rows' vectors are kept

    texts = ["server down outage now", "question about an invoice", "thanks, all good"]
    model = hybrid_fitter(params, "urgency")(*(_frame_split(texts)))
    expected = model.head.predict_proba(texts)  # embedded afresh by the encoder
    got = model.predict_proba(pd.DataFrame({"text": texts}))
    assert model.classes_ == ["high", "low", "medium"]
    assert np.allclose(got, expected, atol=1e-5)


def test_embedding_family_on_the_tiny_bert(tmp_path: Path) -> None:
    from tests.test_transformer import make_tiny_checkpoint

    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["data"]["sources"].append(dict(data["data"]["sources"][0], name="tickets_copy"))
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny-bert")
    data["training"] = {
        "embedding_cache": str(tmp_path / "cache"),
        "embedding": {"checkpoint": str(checkpoint), "train_sample": 60, "validation_sample": 30},
    }
    table = leave_one_source_out_heads(load_params(write_params(tmp_path, data)), family="embedding")
    assert list(table["held-out source"]) == ["tickets", "tickets_copy"]
    assert set(table["family"]) == {"embedding"}
    assert table["held-out macro-F1"].between(0.0, 1.0).all()
