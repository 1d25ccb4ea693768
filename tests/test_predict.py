from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from urgency.errors import InputError
from urgency.predict import (
    EMPTY_TEXT_ERROR,
    output_columns,
    predict_file,
    predict_frame,
    predict_proba,
)

TICKETS = pd.DataFrame(
    {
        "ticket_id": ["a", "b", "c", "d"],
        "subject": ["server down", "", None, "thanks"],
        "body": ["production outage critical", "", "  ", "great help love it"],
        "plan": ["gold", "free", "free", "silver"],
    }
)


def _predict(models: dict[str, Any], frame: pd.DataFrame = TICKETS) -> pd.DataFrame:
    return predict_frame(models, frame, subject_column="subject", body_column="body", max_text_chars=1000)


def test_predict_frame_keeps_input_and_adds_the_stable_columns(models: dict[str, Any]) -> None:
    scored = _predict(models)
    assert list(scored.columns) == list(TICKETS.columns) + output_columns(models)
    assert scored["ticket_id"].tolist() == ["a", "b", "c", "d"]
    assert "urgency_proba_high" in scored and "category_proba_Hardware" in scored
    for head, model in models.items():
        ok = scored["error"].isna()
        proba = scored.loc[ok, [f"{head}_proba_{label}" for label in model.labels]].to_numpy()
        assert np.allclose(proba.sum(axis=1), 1.0)
        assert np.allclose(scored.loc[ok, f"{head}_confidence"], proba.max(axis=1))
        assert scored.loc[ok, head].isin(model.labels).all()
    assert scored.loc[0, "urgency"] == "high"
    assert scored.loc[3, "sentiment"] == "positive"


def test_empty_rows_get_an_error_not_a_crash(models: dict[str, Any]) -> None:
    scored = _predict(models)
    assert scored["error"].tolist()[1:3] == [EMPTY_TEXT_ERROR, EMPTY_TEXT_ERROR]
    assert scored.loc[[1, 2], ["urgency", "category", "sentiment"]].isna().all().all()
    only_empty = _predict(models, TICKETS.iloc[[1, 2]])
    assert only_empty["error"].notna().all()


def test_subject_column_may_be_missing(models: dict[str, Any]) -> None:
    scored = _predict(models, TICKETS.drop(columns=["subject"]))
    assert scored.loc[0, "urgency"] == "high"


def test_missing_body_column_is_an_input_error(models: dict[str, Any]) -> None:
    with pytest.raises(InputError, match="no body column 'body'"):
        _predict(models, TICKETS.drop(columns=["body"]))


def test_predict_proba_order_matches_labels(models: dict[str, Any]) -> None:
    model = models["sentiment"]
    probabilities = predict_proba(model, ["love it thank you", "worst service ever angry"])
    assert list(probabilities.columns) == list(model.labels)
    assert probabilities.idxmax(axis=1).tolist() == ["positive", "negative"]
    assert predict_proba(model, []).empty


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_predict_file_chunked_equals_whole(models: dict[str, Any], tmp_path: Path, suffix: str) -> None:
    tickets = pd.concat([TICKETS] * 5, ignore_index=True).astype(str).replace("None", "")
    source = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        tickets.to_csv(source, index=False)
    elif suffix == ".parquet":
        tickets.to_parquet(source)
    else:
        tickets.to_json(source, orient="records", lines=True)
    outputs = {}
    # Chunks of 3 in one process and in two (forked workers, results in input order).
    for chunk_size, jobs in ((3, 1), (1000, 1), (3, 2)):
        target = tmp_path / f"out{chunk_size}-{jobs}{suffix}"
        stats = predict_file(
            models,
            source,
            target,
            subject_column="subject",
            body_column="body",
            max_text_chars=1000,
            chunk_size=chunk_size,
            jobs=jobs,
        )
        assert (stats.rows, stats.rows_with_error) == (20, 10)
        outputs[chunk_size, jobs] = target
    read = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
    }[suffix]
    pd.testing.assert_frame_equal(read(outputs[3, 1]), read(outputs[1000, 1]))
    pd.testing.assert_frame_equal(read(outputs[3, 2]), read(outputs[1000, 1]))
    assert len(read(outputs[3, 1])) == 20
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_failed_prediction_leaves_old_output_and_no_partial(
    models: dict[str, Any], tmp_path: Path, jobs: int
) -> None:
    source = tmp_path / "in.csv"
    TICKETS.drop(columns=["body"]).to_csv(source, index=False)
    target = tmp_path / "out.csv"
    target.write_text("previous results\n")
    with pytest.raises(InputError):
        predict_file(
            models,
            source,
            target,
            subject_column="subject",
            body_column="body",
            max_text_chars=1000,
            chunk_size=2,
            jobs=jobs,  # with 2, the error is raised in a worker
        )
    assert target.read_text() == "previous results\n"
    assert not list(tmp_path.glob(".*partial"))


def test_input_errors(models: dict[str, Any], tmp_path: Path) -> None:
    kwargs = dict(subject_column="subject", body_column="body", max_text_chars=100, chunk_size=10)
    with pytest.raises(InputError, match="file not found"):
        predict_file(models, tmp_path / "missing.csv", tmp_path / "o.csv", **kwargs)
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match="unknown file type"):
        predict_file(models, tmp_path / "x.xlsx", tmp_path / "o.csv", **kwargs)
    broken = tmp_path / "broken.csv"
    broken.write_text('subject,body\n"a","b"\n"c","d","e","f"\n')
    with pytest.raises(InputError, match="cannot be read as csv"):
        predict_file(models, broken, tmp_path / "o.csv", **kwargs)


def test_predict_file_refuses_to_write_over_its_input(models: dict[str, Any], tmp_path: Path) -> None:
    kwargs = {"subject_column": "subject", "body_column": "body", "max_text_chars": 500, "chunk_size": 2}
    source = tmp_path / "tickets.csv"
    TICKETS.to_csv(source, index=False)
    before = source.read_bytes()
    (tmp_path / "link.csv").symlink_to(source)
    for output in (source, tmp_path / "link.csv", tmp_path / "." / "tickets.csv"):
        with pytest.raises(InputError, match="the output is the input"):
            predict_file(models, source, output, **kwargs)
    assert source.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link.csv", "tickets.csv"]


def test_prediction_never_overwrites_input_columns(models: dict[str, Any]) -> None:
    with pytest.raises(InputError, match=r"already has column\(s\) \['urgency', 'error'\]"):
        _predict(models, TICKETS.assign(urgency="keep me", error="mine"))


def test_json_lines_in_any_key_order_and_types(models: dict[str, Any], tmp_path: Path) -> None:
    import json

    source = tmp_path / "in.jsonl"
    rows = [
        {"id": 1, "subject": "server down", "body": "outage critical"},
        {"body": "love it thanks", "id": "x3", "subject": None},  # other order, other types
        {"id": 570306133677760513, "body": "printer broken", "subject": "hw"},
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for suffix in (".csv", ".parquet"):
        target = tmp_path / f"out{suffix}"
        predict_file(
            models,
            source,
            target,
            subject_column="subject",
            body_column="body",
            max_text_chars=100,
            chunk_size=1,
        )
        scored = pd.read_csv(target, dtype=str) if suffix == ".csv" else pd.read_parquet(target)
        assert scored["id"].tolist() == ["1", "x3", "570306133677760513"]
        assert scored.loc[1, "body"] == "love it thanks" and scored.loc[1, "sentiment"] == "positive"


def test_new_keys_after_the_first_chunk_are_an_error(models: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"body": "a b"}\n{"body": "c d", "extra": 1}\n')
    target = tmp_path / "out.csv"
    with pytest.raises(InputError, match=r"column\(s\) \['extra'\] appear only after row 1"):
        predict_file(
            models, source, target, subject_column=None, body_column="body", max_text_chars=100, chunk_size=1
        )
    assert not target.exists()


def test_gzip_output_is_compressed(models: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    pd.concat([TICKETS] * 3).to_csv(source, index=False)
    target = tmp_path / "out.csv.gz"
    predict_file(
        models, source, target, subject_column="subject", body_column="body", max_text_chars=100, chunk_size=5
    )
    assert target.read_bytes()[:2] == b"\x1f\x8b"
    assert len(pd.read_csv(target)) == 12


def test_parquet_input_saved_with_an_index(models: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    TICKETS.set_index("ticket_id").to_parquet(source)
    target = tmp_path / "out.csv"
    predict_file(
        models, source, target, subject_column="subject", body_column="body", max_text_chars=100, chunk_size=2
    )
    assert pd.read_csv(target)["ticket_id"].tolist() == ["a", "b", "c", "d"]


def test_the_service_does_not_load_training_data_code() -> None:
    import os
    import subprocess
    import sys

    # A fresh interpreter (this session has imported urgency.data long ago), on this checkout.
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(root / "src"), str(root), os.environ.get("PYTHONPATH", "")])
    code = "import sys, serve.app; print('pandera' in sys.modules, 'urgency.data' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": path},
    ).stdout.split()
    assert loaded == ["False", "False"]


def test_a_source_with_its_encoding_reads_an_excel_csv(models: dict[str, Any], tmp_path: Path) -> None:
    from urgency.config import Source
    from urgency.files import NotTextError

    exported = tmp_path / "excel.csv"
    exported.write_bytes("Betreff,Text\nServer down,Größe production outage critical\n".encode("cp1252"))
    kwargs: dict[str, Any] = {"max_text_chars": 1000, "chunk_size": 10}
    with pytest.raises(NotTextError, match=r"excel\.csv: not utf-8 text.*`encoding:`"):
        predict_file(models, exported, tmp_path / "out.csv", **kwargs)
    source = Source(
        name="excel",
        path=exported,
        columns={"subject": "Betreff", "body": "Text"},
        encoding="cp1252",
    )
    predict_file(models, exported, tmp_path / "out.csv", source=source, **kwargs)
    scored = pd.read_csv(tmp_path / "out.csv")
    assert scored.loc[0, "Text"] == "Größe production outage critical"
    assert scored.loc[0, "urgency"] == "high"
