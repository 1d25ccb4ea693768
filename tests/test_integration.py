"""End to end on a sample of the real shared data: validate, train, register, load the
champion back from the registry and score the demo tickets."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import PROJECT, SHARED_DATA
from urgency.config import HEADS, load_params
from urgency.models import load_registered_models
from urgency.predict import predict_file
from urgency.train import train

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is not next to the project")
def test_train_register_load_predict_on_shared_data(tmp_path: Path) -> None:
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text())
    for source in raw["data"]["sources"]:
        source["path"] = str((PROJECT / source["path"]).resolve())
    raw["data"]["sample_per_source"] = 800
    raw["mlflow"] = {
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "artifact_location": str(tmp_path / "art"),
    }
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
    params = load_params(params_path)

    result = train(params, list(HEADS), params_path=params_path, code_folder=PROJECT)
    for head, outcome in result.heads.items():
        report = outcome.test_report
        assert outcome.champion_set and outcome.version == "1"
        assert report["macro_f1"] > report["majority_macro_f1"] + 0.1, head

    models = load_registered_models(
        list(HEADS),
        tracking_uri=params.mlflow.tracking_uri,
        model_names={head: params.mlflow.model_name(head) for head in HEADS},
        alias="champion",
    )
    assert {model.version for model in models.values()} == {"1"}
    output = tmp_path / "scored.csv"
    stats = predict_file(
        models,
        PROJECT / "data" / "demo_tickets.csv",
        output,
        subject_column="subject",
        body_column="body",
        max_text_chars=params.data.max_text_chars,
        chunk_size=4,
    )
    scored = pd.read_csv(output)
    demo = pd.read_csv(PROJECT / "data" / "demo_tickets.csv")
    assert stats.rows == len(demo) == len(scored)
    assert scored["ticket_id"].tolist() == demo["ticket_id"].tolist()
    assert stats.rows_with_error == 1  # the one ticket with neither subject nor body
    ok = scored[scored["error"].isna()]
    assert ok["urgency"].isin(["high", "medium", "low"]).all()
    assert ok["sentiment"].isin(["negative", "neutral", "positive"]).all()
    thanks = scored.loc[scored["ticket_id"] == "T-1010", "sentiment"].item()
    assert thanks == "positive"
