from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import params_dict, write_params
from urgency.config import load_params
from urgency.data import assign_splits, dedup_key, head_dataset, load_tickets
from urgency.errors import DataValidationError


def _load(tmp_path: Path, sources: dict[str, Path], **source_overrides: object):
    data = params_dict(sources, tmp_path / "mlruns")
    data["data"]["sources"][0].update(source_overrides)
    return load_tickets(load_params(write_params(tmp_path, data)).data.sources)


def test_canonical_record_from_three_sources(tmp_path: Path, sources: dict[str, Path]) -> None:
    result = _load(tmp_path, sources)
    tickets = result.tickets
    assert {
        "id",
        "source",
        "subject",
        "body",
        "language",
        "created_at",
        "urgency",
        "category",
        "sentiment",
    } <= set(tickets.columns)
    assert tickets["id"].is_unique
    by_source = tickets.groupby("source")
    assert by_source["urgency"].count().to_dict() == {"tickets": 72, "topics": 0, "tweets": 0}
    assert by_source["category"].count()["topics"] == 54
    assert set(tickets["urgency"].dropna()) == {"high", "medium", "low"}
    assert tickets.loc[tickets["source"] == "tickets", "id"].iloc[0] == "tickets:T-0"
    # A source without an id column numbers its data rows from 1.
    assert tickets.loc[tickets["source"] == "topics", "id"].iloc[0] == "topics:1"
    assert tickets.loc[tickets["source"] == "tickets", "created_at"].notna().all()
    assert [r.rows_kept for r in result.reports] == [72, 54, 54]


def _corrupt(path: Path) -> None:
    frame = pd.read_csv(path, dtype=str)
    frame.loc[2, ["title", "description"]] = ""  # empty text, data row 3
    frame.loc[4, "prio"] = "P9"  # unmapped label, row 5
    frame.loc[6, "prio"] = "P9"  # and row 7
    frame.loc[9, "key"] = frame.loc[8, "key"]  # repeated id, row 10
    frame.loc[11, "opened"] = "not a date"  # wrong type, row 12
    frame.to_csv(path, index=False)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path, sources: dict[str, Path]) -> None:
    _corrupt(sources["urgency"])
    with pytest.raises(DataValidationError) as error:
        _load(tmp_path, sources)
    message = str(error.value)
    assert "tickets" in message and str(sources["urgency"]) in message
    assert "4 problem(s)" in message
    assert "title/description (text): empty text" in message and "rows 3" in message
    assert "prio (urgency label): value not in labels.urgency.mapping: 2 row(s), e.g. rows 5, 7" in message
    assert "['P9']" in message
    assert "id (key): repeated id: 1 row(s), e.g. rows 10; values ['T-8']" in message
    assert "opened (created_at): not a date-time: 1 row(s), e.g. rows 12" in message


def test_drop_policy_counts_what_it_drops(tmp_path: Path, sources: dict[str, Path], caplog) -> None:
    _corrupt(sources["urgency"])
    result = _load(tmp_path, sources, invalid_rows="drop")
    report = result.reports[0]
    assert (report.rows_read, report.rows_kept, report.rows_dropped) == (72, 67, 5)
    assert "dropped 5 of 72 rows" in caplog.text
    kept = result.tickets[result.tickets["source"] == "tickets"]
    # The first occurrence of a repeated id is kept, the repeat dropped.
    assert (kept["id"] == "tickets:T-8").sum() == 1


def test_missing_columns_stop_even_with_drop_policy(tmp_path: Path, sources: dict[str, Path]) -> None:
    pd.read_csv(sources["urgency"]).drop(columns=["prio", "title"]).to_csv(sources["urgency"], index=False)
    with pytest.raises(DataValidationError, match=r"missing column\(s\) title, prio"):
        _load(tmp_path, sources, invalid_rows="drop")


def test_problems_in_several_files_are_all_reported(tmp_path: Path, sources: dict[str, Path]) -> None:
    _corrupt(sources["urgency"])
    sources["sentiment"].unlink()
    with pytest.raises(DataValidationError) as error:
        _load(tmp_path, sources)
    assert "tweets:" in str(error.value) and "file not found" in str(error.value)
    assert "tickets (" in str(error.value)


def test_unreadable_file_is_a_clear_error(tmp_path: Path, sources: dict[str, Path]) -> None:
    sources["urgency"].write_bytes(b'key,title\n"unclosed,quote\n')
    with pytest.raises(DataValidationError, match="cannot be read as csv"):
        _load(tmp_path, sources)


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_parquet_and_json_lines_sources(tmp_path: Path, sources: dict[str, Path], kind: str) -> None:
    frame = pd.read_csv(sources["urgency"])
    target = tmp_path / f"urgency.{kind}"
    if kind == "parquet":
        frame.to_parquet(target)
    else:
        frame.to_json(target, orient="records", lines=True)
    result = _load(tmp_path, sources, path=str(target))
    assert result.tickets["urgency"].count() == 72


def test_numeric_label_codes_map_as_text(tmp_path: Path, sources: dict[str, Path]) -> None:
    frame = pd.read_csv(sources["urgency"])
    frame["prio"] = frame["prio"].map({"P1": 0, "P2": 2, "P3": 3}).astype(float)  # e.g. 0.0 in parquet
    target = tmp_path / "coded.parquet"
    frame.to_parquet(target)
    labels = {"urgency": {"column": "prio", "mapping": {0: "high", 2: "medium", 3: "low"}}}
    result = _load(tmp_path, sources, path=str(target), labels=labels)
    assert result.tickets["urgency"].value_counts().to_dict() == {"high": 24, "medium": 24, "low": 24}


def test_missing_label_means_no_label_not_an_error(tmp_path: Path, sources: dict[str, Path]) -> None:
    frame = pd.read_csv(sources["urgency"])
    frame.loc[:9, "prio"] = None
    frame.to_csv(sources["urgency"], index=False)
    result = _load(tmp_path, sources)
    assert result.reports[0].labelled == {"urgency": 62}


def test_sample_per_source(tmp_path: Path, sources: dict[str, Path]) -> None:
    params = load_params(write_params(tmp_path, params_dict(sources, tmp_path / "mlruns")))
    first = load_tickets(params.data.sources, sample_per_source=20, sample_seed=1).tickets
    again = load_tickets(params.data.sources, sample_per_source=20, sample_seed=1).tickets
    assert len(first) == 60
    pd.testing.assert_frame_equal(first, again)


def test_dedup_key_ignores_case_and_spacing() -> None:
    keys = dedup_key(pd.Series(["Server  DOWN", "server down", "server up"]))
    assert keys[0] == keys[1] != keys[2]


def _split(labels: list[str], texts: list[str], seed: int = 7) -> pd.Series:
    return assign_splits(
        pd.Series(labels), dedup_key(pd.Series(texts)), seed=seed, validation_fraction=0.2, test_fraction=0.2
    )


def test_splits_are_stratified_grouped_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    labels = ["a"] * 300 + ["b"] * 100
    texts = [f"text {i % 250}" for i in range(300)] + [f"other {i}" for i in range(100)]  # 50 repeats
    splits = _split(labels, texts)
    frame = pd.DataFrame({"label": labels, "text": texts, "split": splits})
    # Duplicates never straddle two splits.
    assert (frame.groupby("text")["split"].nunique() == 1).all()
    # Each class is held out in (about) the configured share.
    shares = frame.groupby("label")["split"].value_counts(normalize=True).unstack()
    assert np.allclose(shares["test"], 0.2, atol=0.03) and np.allclose(shares["validation"], 0.2, atol=0.03)
    # Same seed, same split, whatever the row order; another seed, another split.
    order = rng.permutation(400)
    shuffled = _split([labels[i] for i in order], [texts[i] for i in order])
    assert (shuffled.to_numpy() == splits.to_numpy()[order]).all()
    assert not (_split(labels, texts, seed=8) == splits).all()


def test_tiny_classes_stay_in_train() -> None:
    splits = _split(["a"] * 20 + ["b"] * 2, [f"t{i}" for i in range(22)])
    assert splits.iloc[-2:].tolist() == ["train", "train"]


def test_head_dataset(tmp_path: Path, sources: dict[str, Path]) -> None:
    tickets = _load(tmp_path, sources).tickets
    dataset = head_dataset(
        tickets, "sentiment", max_text_chars=50, seed=1, validation_fraction=0.2, test_fraction=0.2
    )
    assert list(dataset.columns) == ["id", "source", "text", "label", "split"]
    assert len(dataset) == 54 and set(dataset["source"]) == {"tweets"}
    assert set(dataset["split"]) == {"train", "validation", "test"}


def test_empty_id_is_a_missing_value(tmp_path: Path, sources: dict[str, Path]) -> None:
    frame = pd.read_csv(sources["urgency"], dtype=str)
    frame.loc[3, "key"] = None
    frame.to_csv(sources["urgency"], index=False)
    with pytest.raises(DataValidationError, match=r"id \(key\): missing value: 1 row\(s\), e.g. rows 4"):
        _load(tmp_path, sources)


def test_json_lines_values_stay_as_written(tmp_path: Path, sources: dict[str, Path]) -> None:
    import json

    frame = pd.read_csv(sources["urgency"], dtype=str)
    target = tmp_path / "tickets.jsonl"
    with target.open("w", encoding="utf-8-sig") as out:  # with a byte-order mark
        for position, row in enumerate(frame.to_dict("records")):
            record = dict(reversed(list(row.items()))) if position % 2 else row  # keys in any order
            record["key"] = 570306133677760513 + position if position else None  # large ints, a null
            out.write(json.dumps(record) + "\n")
    data = params_dict(sources, tmp_path / "mlruns")
    data["data"]["sources"][0].update(path=str(target), invalid_rows="drop")
    result = load_tickets(load_params(write_params(tmp_path, data)).data.sources)
    ids = result.tickets.loc[result.tickets["source"] == "tickets", "id"]
    assert ids.iloc[0] == "tickets:570306133677760514"  # exact, not a float
    assert result.reports[0].rows_dropped == 1  # the null id, reported not silently lost


def test_parquet_saved_with_an_index(tmp_path: Path, sources: dict[str, Path]) -> None:
    frame = pd.read_csv(sources["urgency"], dtype=str).set_index("key")
    target = tmp_path / "indexed.parquet"
    frame.to_parquet(target)  # the id lives in the index
    result = _load(tmp_path, sources, path=str(target))
    assert result.tickets["id"].iloc[0] == "tickets:T-0"


def test_wrong_encoding_names_the_setting(tmp_path: Path, sources: dict[str, Path]) -> None:
    pd.read_csv(sources["urgency"]).assign(description="Größe kaputt").to_csv(
        sources["urgency"], index=False, encoding="latin-1"
    )
    with pytest.raises(DataValidationError, match=r"not utf-8 text .*set `encoding:`"):
        _load(tmp_path, sources)
    result = _load(tmp_path, sources, encoding="latin-1")
    assert result.tickets["body"].iloc[0] == "Größe kaputt"


def test_missing_column_message_is_complete(tmp_path: Path, sources: dict[str, Path]) -> None:
    pd.read_csv(sources["urgency"]).drop(columns=["prio"]).to_csv(sources["urgency"], index=False)
    with pytest.raises(DataValidationError) as error:
        _load(tmp_path, sources)
    assert "  - missing column(s) prio\n" in str(error.value) + "\n"


def test_splits_barely_move_when_data_grows() -> None:
    labels = ["a"] * 700 + ["b"] * 300
    texts = [f"ticket {i}" for i in range(1000)]
    before = _split(labels, texts)
    after = _split([*labels, "a"], [*texts, "one more ticket"]).iloc[:1000]
    assert (before != after).sum() <= 4  # only groups at the cut points
