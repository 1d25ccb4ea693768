"""The retraining loop: history validation, the corrections merge rule, the gate (promotes,
refuses on macro-F1 and on a class's recall), rollback, and the records of every alias move in
MLflow. Tiny urgency models in temporary MLflow stores."""

from __future__ import annotations

import copy
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from tests.conftest import PROJECT, URGENT, params_dict, write_params, write_sources
from tests.serve_helpers import migrated
from urgency.cli import app
from urgency.config import load_params
from urgency.errors import DataValidationError
from urgency.history import apply_corrections, corrections_frame, history_source, load_history, read_decisions
from urgency.promote import AliasLog, alias_moves
from urgency.retrain import drift_reference, newest_slice, retrain_with_corrections
from urgency.store import Store, StoreError, make_engine
from urgency.train import train

runner = CliRunner()

# Phrases the champion never saw; the history teaches them.
NEW = {
    "high": [
        "fire alarm rings in the office",
        "payment gateway rejects every card",
        "vpn outage for all staff",
    ],
    "medium": ["dashboard shows stale numbers", "export takes an hour", "calendar invites arrive late"],
    "low": ["please add a dark theme", "typo on the pricing page", "request a training session"],
}


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The urgency head trained once (v1, champion) on the tiny sources."""
    folder = tmp_path_factory.mktemp("retrain")
    data = params_dict(write_sources(folder / "data"), folder / "mlruns")
    train(load_params(write_params(folder, data)), ["urgency"], code_folder=PROJECT)
    return {"data": data, "db": folder / "mlruns" / "mlflow.db"}


@pytest.fixture
def setup(champion: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A private copy of the registry (v1 champion) and a params file for one test."""
    db = tmp_path / "mlflow.db"
    shutil.copy(champion["db"], db)
    data = copy.deepcopy(champion["data"])
    data["mlflow"]["tracking_uri"] = f"sqlite:///{db}"
    return {"data": data, "folder": tmp_path}


def _params(setup: dict[str, Any], promotion: dict[str, float] | None = None, **retrain: Any) -> Path:
    data = copy.deepcopy(setup["data"])
    data["retrain"] = retrain
    data["promotion"] = promotion or {}
    return write_params(setup["folder"], data)


def _client(params_path: Path) -> MlflowClient:
    uri = load_params(params_path).mlflow.tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _champion(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias("ticket-urgency", "champion").version)


def history_rows(
    phrases: dict[str, list[str]], copies: int, start: datetime, prefix: str = "H", first: int = 0
) -> pd.DataFrame:
    """One ticket per phrase and copy, a day apart per copy (the last copies are the newest);
    copies are numbered from `first` in their text."""
    rows = []
    for copy_number in range(first, first + copies):
        for label, texts in phrases.items():
            for text in texts:
                rows.append(
                    {
                        "id": f"{prefix}-{len(rows) + 1}",
                        "subject": "",
                        "body": f"{text} case {copy_number}",
                        "language": "en",
                        "created_at": (start + timedelta(days=copy_number - first)).isoformat(),
                        "urgency": label,
                    }
                )
    return pd.DataFrame(rows)


def write_history(folder: Path, frame: pd.DataFrame, name: str = "history.csv") -> Path:
    path = folder / name
    frame.to_csv(path, index=False)
    return path


START = datetime(2026, 2, 1, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# The held-out slice


def test_newest_slice_is_a_point_in_time() -> None:
    days = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-03", "2026-01-02", "2026-01-03", "2026-01-04"]))
    assert list(newest_slice(days, 0.2)) == [False, False, False, False, True]
    # The 40% cut lands inside 2026-01-03: both tickets of that day are held out.
    assert list(newest_slice(days, 0.4)) == [False, True, False, True, True]


# ---------------------------------------------------------------------------------------------
# History validation


def test_a_bad_history_file_is_reported_by_file_row_and_column(setup: dict[str, Any]) -> None:
    params_path = _params(setup)
    frame = history_rows(NEW, 2, START)
    frame.loc[2, "urgency"] = "urgent"
    frame.loc[4, "created_at"] = "yesterday"
    frame.loc[6, "body"] = ""
    bad = write_history(setup["folder"], frame, "bad.csv")
    no_body = write_history(setup["folder"], frame.drop(columns=["body"]), "no_body.csv")
    result = runner.invoke(
        app, ["retrain", "-p", str(params_path), "--history", str(bad), "--history", str(no_body)]
    )
    assert result.exit_code == 4, result.output
    output = result.output
    assert "Traceback" not in output
    assert f"{bad}: 3 problem(s)" in output
    assert (
        "urgency (urgency label): value not in heads.urgency.labels ['high', 'medium', 'low']: "
        "1 row(s), e.g. rows 3; values ['urgent']"
    ) in output
    assert "created_at (created_at): not a date-time: 1 row(s), e.g. rows 5; values ['yesterday']" in output
    assert "empty text" in output and "rows 7" in output
    assert f"{no_body}: missing column(s) body; a history file has the columns" in output
    # Nothing was trained or registered.
    versions = _client(params_path).search_model_versions("name = 'ticket-urgency'")
    assert [str(v.version) for v in versions] == ["1"]


def test_a_history_is_read_through_its_source_and_label_maps(setup: dict[str, Any]) -> None:
    raw = {"high": "urgent", "medium": "normal", "low": "low"}
    frame = history_rows(NEW, 1, START).rename(
        columns={"id": "key", "body": "description", "language": "locale", "created_at": "opened"}
    )
    frame["prio"] = frame.pop("urgency").map(raw)
    frame["locale"] = "en-US"
    path = write_history(setup["folder"], frame)
    data = copy.deepcopy(setup["data"])
    data["data"]["sources"].append(
        {
            "name": "export",
            "path": str(path),
            "columns": {"id": "key", "body": "description", "language": "locale", "created_at": "opened"},
            "labels": {
                "urgency": {"column": "prio", "mapping": {value: head for head, value in raw.items()}}
            },
        }
    )
    params = load_params(write_params(setup["folder"], data))
    export = params.data.sources[-1]
    history, sources = load_history([path], params, export)
    assert history.tickets["urgency"].tolist() == history_rows(NEW, 1, START)["urgency"].tolist()
    assert set(history.tickets["language"]) == {"en"}  # en-US normalised
    assert sources[0].name == "history-history" and sources[0].columns.body == "description"
    assert history.tickets["ticket_id"].tolist()[:2] == ["H-1", "H-2"]
    # Drift compares the history with the source that describes it, else with the sources like it.
    assert drift_reference(params.data.sources, history.tickets, sources, export) == ["export"]
    canonical = history_source(path, ["id", "body", "created_at", "urgency"], params, "h")
    assert drift_reference(params.data.sources[:3], history.tickets, [canonical], None) == ["tickets"]
    # Without the source, the file is not in the canonical layout: the error says what to do.
    with pytest.raises(DataValidationError, match=r"missing column.*body.*--source NAME"):
        load_history([path], params)
    frame.loc[0, "opened"] = None
    write_history(setup["folder"], frame)
    with pytest.raises(
        DataValidationError, match=r"opened \(created_at\): missing value: 1 row\(s\), e.g. rows 1"
    ):
        load_history([path], params, export)
    frame.loc[0, "opened"] = START.isoformat()
    frame.loc[1, "prio"] = "critical"
    write_history(setup["folder"], frame)
    with pytest.raises(DataValidationError, match=r"prio \(urgency label\).*critical"):
        load_history([path], params, export)


# ---------------------------------------------------------------------------------------------
# Corrections from the store


def _prediction(ticket_id: str, body: str, language: str = "en", subject: str = "") -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "scored_at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        "created_at": datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
        "subject": subject,
        "body": body,
        "fields": {"plan": "free", "language": language},
        "urgency": "low",
        "priority": "P3",
        "team": "desk",
        "needs_human_triage": False,
        "decision": {"priority": "P3"},
        "model_versions": {"urgency": "1"},
    }


def corrections_store(url: str) -> str:
    """Four decided tickets: one of the history by id, one of the configured data by text, one
    known nowhere, one with a category the heads do not have."""
    store = Store(make_engine(migrated(url)))
    store.record_predictions(
        [
            _prediction("H-1", "text the store has, not the file"),
            # The first ticket of the configured urgency source (tests/conftest.py), by its text.
            _prediction("S-1", f"{URGENT[0]} ticket 0", subject="subject 0"),
            _prediction("S-2", "brand new ticket about a broken badge reader", "de"),
            _prediction("S-3", "what category is this"),
        ]
    )
    at = lambda hour: datetime(2026, 3, 2, hour, 0, tzinfo=UTC)  # noqa: E731
    # H-1: the later decision wins (high), whatever the order of arrival.
    store.record_feedback({"ticket_id": "H-1", "event_id": "b", "urgency": "high", "decided_at": at(12)})
    store.record_feedback({"ticket_id": "H-1", "event_id": "a", "urgency": "medium", "decided_at": at(11)})
    store.record_feedback({"ticket_id": "S-1", "event_id": "a", "urgency": "low", "decided_at": at(11)})
    store.record_feedback({"ticket_id": "S-2", "event_id": "a", "urgency": "medium", "decided_at": at(11)})
    store.record_feedback({"ticket_id": "S-3", "event_id": "a", "category": "Nonsense", "decided_at": at(11)})
    return url


def test_corrections_replace_labels_by_id_or_text(setup: dict[str, Any]) -> None:
    params = load_params(_params(setup))
    url = corrections_store(f"sqlite:///{setup['folder'] / 'service.db'}")
    corrections, ignored = corrections_frame(read_decisions(url), params)
    assert ignored == 1  # S-3's category is not one of the heads' labels: S-3 has no label left
    assert sorted(corrections["ticket_id"]) == ["H-1", "S-1", "S-2"]
    assert corrections.set_index("ticket_id").loc["S-2", "language"] == "de"

    history, _ = load_history([write_history(setup["folder"], history_rows(NEW, 1, START))], params)
    assert history.tickets.loc[0, ["ticket_id", "urgency"]].tolist() == ["H-1", "high"]
    history.tickets.loc[0, "urgency"] = "low"
    from urgency.data import load_configured

    previous = load_configured(params.data).tickets
    merged = apply_corrections(previous, history.tickets, corrections, max_text_chars=5000)
    # H-1 matched by id (its text differs), S-1 by text in the configured data, S-2 is new.
    assert merged.history.loc[0, "urgency"] == "high"
    assert merged.history["urgency"].tolist()[1:] == history.tickets["urgency"].tolist()[1:]
    changed = previous["body"] == f"{URGENT[0]} ticket 0"
    assert previous.loc[changed, "urgency"].tolist() == ["high"]
    assert merged.previous.loc[changed, "urgency"].tolist() == ["low"]
    assert (
        merged.previous.loc[~changed, "urgency"].fillna("-") == previous.loc[~changed, "urgency"].fillna("-")
    ).all()
    assert merged.matched == 2 and merged.relabelled == {"urgency": 2, "category": 0, "sentiment": 0}
    assert merged.extra["ticket_id"].tolist() == ["S-2"] and merged.extra.loc[0, "urgency"] == "medium"
    assert merged.extra.loc[0, "source"] == "corrections"


# ---------------------------------------------------------------------------------------------
# The whole loop through the command line


def _retrain(params_path: Path, *args: str) -> Any:
    result = runner.invoke(app, ["retrain", "-p", str(params_path), *args])
    assert result.exit_code == 0, result.output
    return result


def test_retrain_promotes_through_the_gate_and_rollback_restores(setup: dict[str, Any]) -> None:
    params_path = _params(setup)
    history = write_history(setup["folder"], history_rows(NEW, 10, START))
    url = corrections_store(f"sqlite:///{setup['folder'] / 'service.db'}")
    output = setup["folder"] / "report"
    result = _retrain(
        params_path, "--history", str(history), "--database-url", url, "--output", str(output), "--by", "ana"
    )
    client = _client(params_path)
    assert _champion(client) == "2", result.output
    assert "urgency: challenger v2 vs champion v1 on 18 held-out tickets: promoted" in result.output
    assert "add the history to data.sources" in result.output

    summary = json.loads((output / "retrain.json").read_text())
    head = summary["heads"]["urgency"]
    assert head["promoted"] and head["holdout_rows"] == 18  # the newest 2 of 10 days, 9 tickets a day
    assert head["challenger_macro_f1"] >= head["champion_macro_f1"] + 0.01
    assert summary["counts"]["corrections_matched"] == 2 and summary["counts"]["corrections_added"] == 1
    drift = json.loads((output / "drift.json").read_text())
    assert "vocabulary" in drift["drifted"]  # the new phrases
    assert {"drift.md", "retrain.md"} <= {p.name for p in output.iterdir()}

    # The retrain run carries the drift report, the held-out figures and the gate's verdict.
    run = client.get_run(summary["run_id"])
    assert run.info.run_name == "retrain" and run.data.tags["promoted.urgency"] == "true"
    assert run.data.metrics["urgency.challenger_macro_f1"] == pytest.approx(head["challenger_macro_f1"])
    artifacts = {f.path for f in client.list_artifacts(summary["run_id"], "retrain")}
    assert artifacts == {f"retrain/{n}" for n in ("drift.json", "drift.md", "retrain.json", "retrain.md")}
    version = client.get_model_version("ticket-urgency", "2")
    assert version.tags["promoted_by"] == "ana" and version.tags["replaced_version"] == "1"
    assert version.tags["promotion_action"] == "retrain"
    assert float(version.tags["promotion_challenger_macro_f1"]) == pytest.approx(
        head["challenger_macro_f1"], abs=1e-4
    )

    # The move is an MLflow run of its own, with who, why and the gate's figures.
    log = AliasLog.of(load_params(params_path).mlflow)
    moves = alias_moves(client, log, "ticket-urgency")
    assert len(moves) == 1
    move = moves.iloc[0]
    assert (move["action"], move["from"], move["to"], move["by"]) == ("retrain", "1", "2", "ana")
    assert "retrain gate passed" in move["reason"]
    assert move["challenger_macro_f1"] == pytest.approx(head["challenger_macro_f1"])
    assert move["to_validation_macro_f1"] == pytest.approx(float(version.tags["validation_macro_f1"]))

    back = runner.invoke(
        app, ["rollback", "-p", str(params_path), "--head", "urgency", "--reason", "complaints", "--by", "bo"]
    )
    assert back.exit_code == 0, back.output
    assert "ticket-urgency@champion -> v1 (was v2)" in back.output
    assert _champion(client) == "1"
    moves = alias_moves(client, log, "ticket-urgency")
    assert list(moves["action"]) == ["rollback", "retrain"]
    newest = moves.iloc[0]
    assert (newest["from"], newest["to"], newest["by"], newest["reason"]) == ("2", "1", "bo", "complaints")
    assert newest["from_test_macro_f1"] == pytest.approx(float(version.tags["test_macro_f1"]))
    assert client.get_model_version("ticket-urgency", "1").tags["promotion_action"] == "rollback"

    # Explicit target, and the clear errors.
    again = runner.invoke(
        app, ["rollback", "-p", str(params_path), "--head", "urgency", "--to", "2", "--reason", "x"]
    )
    assert again.exit_code == 0 and _champion(client) == "2"
    same = runner.invoke(
        app, ["rollback", "-p", str(params_path), "--head", "urgency", "--to", "2", "--reason", "x"]
    )
    assert same.exit_code == 11 and "already the champion" in same.output
    missing = runner.invoke(
        app, ["rollback", "-p", str(params_path), "--head", "urgency", "--to", "9", "--reason", "x"]
    )
    assert missing.exit_code == 5 and "ticket-urgency v9" in missing.output


def test_retrain_refuses_on_macro_f1(setup: dict[str, Any]) -> None:
    params_path = _params(setup, promotion={"min_macro_f1_gain": 1.0})
    history = write_history(setup["folder"], history_rows(NEW, 10, START))
    result = _retrain(params_path, "--history", str(history))
    assert "no service store" in result.output  # the default store does not exist
    assert "champion kept" in result.output and "below the required +1.0000" in result.output
    client = _client(params_path)
    assert _champion(client) == "1"
    assert "refused" in client.get_model_version("ticket-urgency", "2").tags["retrain_gate"]
    assert alias_moves(client, AliasLog.of(load_params(params_path).mlflow)).empty


def test_retrain_refuses_when_a_class_loses_recall(setup: dict[str, Any]) -> None:
    """The held-out slice has the old urgent tickets, which the champion gets right, next to new
    medium and low ones; the new history taught the challenger to call the old urgent phrases
    medium. Macro-F1 rises on the new phrases, but high's recall falls: refused."""
    # Made-up words the champion has never read (so it cannot know them) and the new history
    # teaches: the challenger's macro-F1 gain does not depend on how far the champion generalises.
    calm = {
        "medium": ["zorblat quenfix vantre", "mibrelostan kewpo", "dravix ulmond tesk"],
        "low": ["pelquor fanstri obel", "yurnak sivdel mott", "crempa loxitor vend"],
    }
    frame = pd.concat(
        [
            history_rows(NEW, 8, START),
            history_rows(calm, 8, START, prefix="C"),
            history_rows({"medium": URGENT}, 20, START, prefix="R"),
            # The held-out slice: the newest days.
            history_rows(calm, 2, START + timedelta(days=30), "N", first=100),
            history_rows({"high": URGENT}, 1, START + timedelta(days=30), "O", first=100),
        ],
        ignore_index=True,
    )
    frame["id"] = [f"T-{i}" for i in range(len(frame))]
    params_path = _params(setup, {"min_macro_f1_gain": 0.0}, holdout_fraction=16 / len(frame))
    result = _retrain(params_path, "--history", str(write_history(setup["folder"], frame)))
    assert "on 16 held-out tickets: champion kept" in result.output, result.output
    assert "meets the required +0.0000" in result.output, result.output
    assert (
        "recall of high 1.0000 -> " in result.output and "drops more than the allowed 0.0500" in result.output
    )
    assert _champion(_client(params_path)) == "1"


def test_retrain_needs_held_out_labels_and_a_champion(setup: dict[str, Any], tmp_path: Path) -> None:
    history = write_history(setup["folder"], history_rows(NEW, 5, START))
    no_labels = runner.invoke(
        app, ["retrain", "-p", str(_params(setup)), "--history", str(history), "--head", "category"]
    )
    assert no_labels.exit_code == 4 and "carries no category label" in no_labels.output
    data = copy.deepcopy(setup["data"])
    data["mlflow"]["tracking_uri"] = f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}"
    empty = write_params(tmp_path, data)
    no_champion = runner.invoke(app, ["retrain", "-p", str(empty), "--history", str(history)])
    assert no_champion.exit_code == 5 and "no model version ticket-urgency@champion" in no_champion.output
    assert _client(empty).search_model_versions("name = 'ticket-urgency'") == []


def test_retrain_with_corrections_reads_the_store_first(setup: dict[str, Any]) -> None:
    params_path = _params(setup, use_corrections=True)
    params = load_params(params_path)
    frame = history_rows(NEW, 2, START)
    frame.loc[2, "urgency"] = "urgent"  # an invalid history: stops before any training
    bad = write_history(setup["folder"], frame)
    stages: list[str] = []
    with pytest.raises(DataValidationError, match="new history is not valid"):
        retrain_with_corrections(params, [bad], params_path=params_path, on_stage=stages.append)
    # The default store may be missing (no service ran yet): then there is nothing to merge.
    default_store = params_path.parent / "data" / "service.db"
    assert stages == [
        f"no service store at {default_store}: no agents' corrections to merge",
        "validating 1 history file(s)",
    ]
    # A store named explicitly must be a migrated store.
    with pytest.raises(StoreError, match="schema revision none"):
        retrain_with_corrections(
            params, [bad], params_path=params_path, database_url=f"sqlite:///{setup['folder'] / 'x.db'}"
        )
