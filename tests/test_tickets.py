"""One description of an export (`urgency.tickets`): mapped for every command, and no input
column ever overwritten by predict or score."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.rules_helpers import make_rules, rules_dict
from urgency.cli import app
from urgency.config import Columns, LabelSource, Source
from urgency.errors import InputError, ParamsError
from urgency.files import read_table
from urgency.predict import predict_file, predict_frame
from urgency.scoring import score_file, score_frame
from urgency.tickets import choose_source, map_tickets, source_for_file

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
runner = CliRunner()

# A Zendesk-like export: its own names for everything, and its own `priority` (the agents' value).
EXPORT = pd.DataFrame(
    {
        "ticket_id": ["1001", "1002", "1003", "1004"],
        "title": ["server down", "", "question", "invoice"],
        "description": [
            "production broken critical outage",
            "cannot work system crashed",
            "question about invoice ticket",
            "thanks for help",
        ],
        "priority": ["urgent", "high", "normal", "low"],
        "group": ["Ops", "Ops", "Billing", "Billing"],
        "created_at": ["2026-03-02T10:00:00Z"] * 4,
        "organization_plan": ["enterprise", "free", "free", "free"],
        "locale": ["en-US", "en_us", "de-DE", "EN"],
    }
)
ZENDESK = Source(
    name="zendesk",
    path=Path("export.jsonl"),
    columns=Columns(
        id="ticket_id",
        subject="title",
        body="description",
        language="locale",
        created_at="created_at",
        meta={"plan": "organization_plan", "team_group": "group"},
    ),
    labels={
        "urgency": LabelSource(
            column="priority", mapping={"urgent": "high", "high": "high", "normal": "medium", "low": "low"}
        )
    },
)
# A rule on a meta field: it can fire only when the rules see `plan` (the source's name for it).
RULE_SECTIONS: dict[str, Any] = {
    "priority_rules": [{"name": "enterprise-first", "when": {"plan": "enterprise"}, "at_least": "P1"}],
    "routing": {"default_team": "desk", "triage_team": "triage", "rules": []},
}
RULES = make_rules(**RULE_SECTIONS)


def test_map_tickets_gives_canonical_fields_and_keeps_the_input() -> None:
    mapped = map_tickets(EXPORT, ZENDESK)
    assert mapped["id"].tolist() == ["zendesk:1001", "zendesk:1002", "zendesk:1003", "zendesk:1004"]
    assert mapped["subject"].tolist()[:2] == ["server down", ""]
    assert mapped["body"].iloc[0] == "production broken critical outage"
    assert mapped["language"].tolist() == ["en", "en", "de", "en"]
    assert mapped["plan"].tolist() == EXPORT["organization_plan"].tolist()
    assert mapped["urgency"].tolist() == ["high", "high", "medium", "low"]
    assert mapped["category"].isna().all() and mapped["sentiment"].isna().all()
    # Every input column is there, as read (none is named like a canonical field here but
    # created_at, which is the source's created_at column itself).
    for column in EXPORT.columns:
        assert mapped[column].astype(str).tolist() == EXPORT[column].astype(str).tolist()
    assert EXPORT["priority"].tolist() == ["urgent", "high", "normal", "low"]  # raw untouched


def test_map_tickets_without_optional_columns_and_without_body() -> None:
    bare = EXPORT[["description"]]
    mapped = map_tickets(bare, ZENDESK)
    assert mapped["subject"].eq("").all() and mapped["plan"].isna().all() and mapped["urgency"].isna().all()
    assert mapped["id"].tolist() == [f"zendesk:{row}" for row in range(1, 5)]
    with pytest.raises(InputError, match=r"no body column 'description'.*zendesk"):
        map_tickets(EXPORT.drop(columns=["description"]), ZENDESK)


def test_choose_source() -> None:
    other = ZENDESK.model_copy(update={"name": "other"})
    assert choose_source([ZENDESK], None) is ZENDESK
    assert choose_source([ZENDESK, other], None) is None
    assert choose_source([ZENDESK, other], "other") is other
    with pytest.raises(ParamsError, match=r"no source 'nope'.*zendesk, other"):
        choose_source([ZENDESK, other], "nope")
    moved = source_for_file(ZENDESK, Path("/tmp/history.parquet"))
    assert moved.file_format == "parquet" and moved.columns == ZENDESK.columns


def test_predict_and_score_do_not_load_the_training_data_code() -> None:
    code = (
        "import sys, urgency.tickets, urgency.predict, urgency.scoring; "
        "print(sorted(m for m in sys.modules if m == 'urgency.data' or m.startswith('pandera')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_clash_is_refused_naming_the_columns_and_the_option(models: dict[str, Any]) -> None:
    with pytest.raises(InputError, match=r"\['priority'\].*--output-prefix"):
        score_frame(models, EXPORT, RULES, now=NOW, max_text_chars=1000, source=ZENDESK).frame()
    clashing = EXPORT.assign(urgency="x")
    with pytest.raises(InputError, match=r"\['urgency'\].*--output-prefix"):
        predict_frame(models, clashing, max_text_chars=1000, source=ZENDESK)
    with pytest.raises(InputError, match="another --output-prefix"):
        predict_frame(models, EXPORT.assign(m_urgency="x"), max_text_chars=1000, source=ZENDESK, prefix="m_")


def test_score_reads_meta_fields_by_the_source_names(models: dict[str, Any]) -> None:
    scored = score_frame(models, EXPORT, RULES, now=NOW, max_text_chars=1000, source=ZENDESK, prefix="model_")
    frame = scored.frame()
    assert frame["model_priority"].iloc[0] == "P1"  # plan: enterprise, read from organization_plan
    assert "enterprise-first" not in " ".join(frame["model_explanation"].iloc[1:].astype(str))
    assert frame["priority"].tolist() == EXPORT["priority"].tolist()  # the agents' value kept
    assert "plan" not in frame.columns  # the rules' view is not written out


def _write(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", lines=True)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_every_input_column_survives_predict_and_score(
    models: dict[str, Any], tmp_path: Path, suffix: str
) -> None:
    # Extra input columns named like canonical fields and like the unprefixed outputs.
    export = EXPORT.assign(urgency=["u1", "u2", "u3", "u4"], error="", body="not the body", notes="x")
    path = tmp_path / f"export{suffix}"
    _write(export, path)
    given = read_table(path)
    options: dict[str, Any] = {"max_text_chars": 1000, "chunk_size": 3, "source": ZENDESK, "prefix": "model_"}

    predicted_path = tmp_path / f"predicted{suffix}"
    predict_file(models, path, predicted_path, **options)
    predicted = read_table(predicted_path)
    assert list(predicted.columns[: len(given.columns)]) == list(given.columns)
    pd.testing.assert_frame_equal(predicted[list(given.columns)], given)
    # The text came from title/description (not the `body` column): urgent texts read urgent.
    assert predicted["model_urgency"].iloc[0] == "high" and predicted["model_error"].isna().all()

    scored_path = tmp_path / f"scored{suffix}"
    stats = score_file(models, RULES, path, scored_path, now=NOW, **options)
    scored = read_table(scored_path)
    assert stats.rows == 4 and sum(stats.by_priority.values()) == 4
    assert list(scored.columns[: len(given.columns)]) == list(given.columns)
    # The queue is sorted: compare the input rows by their ticket id.
    by_id = scored.set_index("ticket_id").loc[given["ticket_id"]].reset_index()
    pd.testing.assert_frame_equal(by_id[list(given.columns)], given)
    assert scored["model_priority"].iloc[0] == "P1" and "model_order_key" in scored.columns


def test_predict_and_score_commands_read_the_one_source(trained: dict[str, Any], tmp_path: Path) -> None:
    """A params file that describes one export: `predict --input export.jsonl` needs no column
    options; with several sources `--source NAME` picks one; a clash names --output-prefix."""
    export = tmp_path / "export.jsonl"
    _write(EXPORT, export)
    data = yaml.safe_load(Path(trained["params_path"]).read_text())
    zendesk = ZENDESK.model_dump(mode="json", exclude_defaults=True)
    one = {**data, "data": {"sources": [{**zendesk, "path": str(export)}]}}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(one, sort_keys=False))
    output = tmp_path / "out.csv"
    done = runner.invoke(app, ["predict", "-p", str(params), "--input", str(export), "--output", str(output)])
    assert done.exit_code == 0, done.output
    predicted = pd.read_csv(output, dtype=str, keep_default_na=False)
    assert list(predicted.columns[: len(EXPORT.columns)]) == list(EXPORT.columns)
    assert (predicted["error"] == "").all() and predicted["urgency"].iloc[0] == "high"

    several = {**data, "data": {"sources": [*data["data"]["sources"], {**zendesk, "path": str(export)}]}}
    params.write_text(yaml.safe_dump(several, sort_keys=False))
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rules_dict(**RULE_SECTIONS)))
    score = [
        "score",
        "-p",
        str(params),
        "--rules",
        str(rules),
        "-i",
        str(export),
        "-o",
        str(tmp_path / "q.csv"),
    ]
    # Several sources and none named: the canonical columns, which this export does not have.
    canonical = runner.invoke(app, score)
    assert canonical.exit_code == 6 and "no body column 'body'" in canonical.output
    assert "--source NAME" in canonical.output
    clash = runner.invoke(app, [*score, "--source", "zendesk"])
    assert clash.exit_code == 6 and "['priority']" in clash.output and "--output-prefix" in clash.output
    done = runner.invoke(app, [*score, "--source", "zendesk", "--output-prefix", "model_"])
    assert done.exit_code == 0, done.output
    queue = pd.read_csv(tmp_path / "q.csv", dtype=str, keep_default_na=False)
    assert queue["model_priority"].iloc[0] == "P1" and queue["ticket_id"].iloc[0] == "1001"
    assert sorted(queue["priority"]) == sorted(EXPORT["priority"])
    # The manager's report: the export's own `priority` is the agents' urgency (value map).
    html = tmp_path / "report.html"
    report = ["report", "agreement", "-p", str(params), "--rules", str(rules), "-i", str(tmp_path / "q.csv")]
    done = runner.invoke(app, [*report, "--source", "zendesk", "--output-prefix", "model_", "-o", str(html)])
    assert done.exit_code == 0, done.output
    figures = json.loads(html.with_suffix(".json").read_text())
    assert figures["tickets"] == 4 and figures["fields"]["urgency"]["used"] == 4


def test_load_export_reads_another_file_of_a_source(tmp_path: Path) -> None:
    from urgency.data import load_export

    path = tmp_path / "labelled.jsonl"
    _write(EXPORT, path)
    tickets = load_export(path, ZENDESK).tickets
    assert tickets["urgency"].tolist() == ["high", "high", "medium", "low"]
    assert tickets["plan"].tolist() == EXPORT["organization_plan"].tolist()
    assert tickets["created_at"].notna().all() and set(tickets["language"]) == {"en", "de"}


def test_a_mapped_label_never_passes_for_a_prediction(models: dict[str, Any]) -> None:
    # No urgency model: the export's urgency label (the agents' value) must not reach the rules
    # as if a model had said it.
    without = {head: model for head, model in models.items() if head != "urgency"}
    with_labels = score_frame(
        without, EXPORT, RULES, now=NOW, max_text_chars=1000, source=ZENDESK, prefix="m_"
    )
    bare = score_frame(
        without, EXPORT.drop(columns=["priority"]), RULES, now=NOW, max_text_chars=1000, source=ZENDESK
    )
    assert [d.to_record() for d in with_labels.decisions] == [d.to_record() for d in bare.decisions]
    assert "m_urgency" not in with_labels.frame().columns


def test_many_files_are_read_through_the_source_with_the_prefix(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """`score 'exports/*.jsonl' --source zendesk --output-prefix model_` (no cluster: this
    process): every part keeps its file's columns and the rules read `plan`."""
    from urgency.distributed import FileOptions, score_files
    from urgency.models import resolve

    params = trained["params"]
    heads = ["urgency", "category", "sentiment"]
    models = resolve(
        heads,
        model_dir=None,
        tracking_uri=params.mlflow.tracking_uri,
        model_names={head: params.mlflow.model_name(head) for head in heads},
        alias="champion",
    )
    folder = tmp_path / "exports"
    folder.mkdir()
    _write(EXPORT.iloc[:2], folder / "a.jsonl")
    _write(EXPORT.iloc[2:], folder / "b.jsonl")
    options = FileOptions("subject", "body", 1000, 10, source=ZENDESK, prefix="model_")
    result = score_files(
        str(folder / "*.jsonl"), tmp_path / "out", models, options, rules=RULES, now=NOW, surge=False
    )
    assert result.rows == 4
    parts = pd.concat([pd.read_parquet(path) for path in sorted((tmp_path / "out").glob("*.parquet"))])
    assert list(parts.columns[: len(EXPORT.columns)]) == list(EXPORT.columns)
    assert parts["priority"].tolist() == EXPORT["priority"].tolist()
    assert parts["model_priority"].iloc[0] == "P1"
