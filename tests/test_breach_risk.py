"""The breach risk model: history from the incident log and from closed tickets, the queue at
opening, the time split, calibration, the fit, the MLflow registry round trip, the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import SHARED_DATA, params_dict, write_params, write_sources
from urgency.agreement import read_closed_tickets
from urgency.breach_risk import (
    BREACH_FEATURES,
    HISTORY_COLUMNS,
    UNKNOWN,
    best_threshold,
    breach_risk_report,
    calibration_table,
    closed_history,
    evaluate_breach,
    features_at_opening,
    fit_breach_model,
    fit_rules_estimate,
    incident_history,
    load_breach_model,
    log_breach_model,
    missed,
    queue_lengths,
    rules_risk,
    time_split,
)
from urgency.cli import app
from urgency.config import MlflowParams
from urgency.errors import DataValidationError

START = pd.Timestamp("2026-01-05 00:00", tz="UTC")


def brute_force_queue(teams: list[str], opened: np.ndarray, ended: np.ndarray) -> list[int]:
    ended = np.maximum(ended, opened)
    return [
        sum(
            1
            for j in range(len(teams))
            if j != i and teams[j] == teams[i] and opened[j] <= opened[i] < ended[j]
        )
        for i in range(len(teams))
    ]


def test_queue_lengths_count_the_teams_open_tickets() -> None:
    # A and B overlap; C is on another team; D opens exactly when A ends (A no longer counts);
    # E has no duration; F never ends.
    teams = ["x", "x", "y", "x", "x", "x"]
    opened = np.array([0, 5, 6, 10, 12, 1], dtype=float)
    ended = np.array([10, 20, 30, 11, 12, np.inf])
    assert queue_lengths(teams, opened, ended).tolist() == [0, 2, 0, 2, 2, 1]
    assert queue_lengths(teams, opened, ended).tolist() == brute_force_queue(teams, opened, ended)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 40),
            st.one_of(st.integers(-5, 40), st.just(None)),  # None: never ended
        ),
        max_size=40,
    )
)
def test_queue_lengths_equal_a_brute_force_count(rows: list[tuple[str, int, int | None]]) -> None:
    teams = [team for team, _, _ in rows]
    opened = np.array([start for _, start, _ in rows], dtype=float)
    ended = np.array([np.inf if length is None else start + length for _, start, length in rows], dtype=float)
    assert queue_lengths(teams, opened, ended).tolist() == brute_force_queue(teams, opened, ended)


def synthetic_history(n: int = 2400, seed: int = 0) -> pd.DataFrame:
    """Tickets whose breaches depend on what the rules estimate cannot see (category, night
    hours) and a little on priority."""
    rng = np.random.default_rng(seed)
    opened = START + pd.to_timedelta(np.sort(rng.uniform(0, 24 * 70, n)), unit="h")
    team = rng.choice(["A", "B", "C"], n)
    priority = rng.choice(["P1", "P2", "P3", "P4"], n, p=[0.1, 0.2, 0.5, 0.2])
    category = rng.choice(["billing", "access", "outage"], n)
    night = opened.hour < 6
    logit = -1.5 + 2.2 * (category == "outage") + 1.5 * night + 0.6 * (priority == "P1")
    breached = rng.random(n) < 1 / (1 + np.exp(-logit))
    hours = rng.lognormal(np.log(6), 0.5, n) * np.where(breached, 4.0, 1.0)
    resolved = opened + pd.to_timedelta(hours, unit="h")
    history = pd.DataFrame(
        {
            "priority": priority,
            "team": team,
            "queue_length": queue_lengths(list(team), opened.asi8.astype(float), resolved.asi8.astype(float)),
            "hour_of_day": opened.hour,
            "weekday": opened.dayofweek,
            "category": category,
            "plan": rng.choice(["gold", "basic"], n),
            "opened_at": opened,
            "resolved_at": resolved,
            "made_sla": ~breached,
            "agent": rng.choice(["ann", "bob", "cy", "dee"], n),
        }
    )
    return history


def test_time_split_keeps_the_latest_tickets_to_judge() -> None:
    history = synthetic_history(500).sample(frac=1.0, random_state=1)  # any order in
    train, test = time_split(history, 0.2)
    assert (len(train), len(test)) == (400, 100)
    assert train["opened_at"].max() <= test["opened_at"].min()
    assert sorted([*train.index, *test.index]) == sorted(history.index)
    with pytest.raises(ValueError, match="test_share"):
        time_split(history, 1.0)


def test_calibration_table_adds_up() -> None:
    labels = np.array([0, 1, 1, 0, 1, 0, 0])
    risks = np.array([0.0, 0.05, 0.55, 0.59, 1.0, 0.95, 0.3])
    table = calibration_table(labels, risks)
    assert len(table) == 10 and sum(row["count"] for row in table) == len(labels)
    assert table[0] == {"bin": "0.0-0.1", "count": 2, "mean_predicted": pytest.approx(0.025), "observed": 0.5}
    assert table[9]["count"] == 2 and table[9]["observed"] == 0.5  # 1.0 is in the last bin
    assert table[1] == {"bin": "0.1-0.2", "count": 0, "mean_predicted": None, "observed": None}
    assert sum(row["observed"] * row["count"] for row in table if row["count"]) == labels.sum()


def test_best_threshold_finds_the_target() -> None:
    hours = np.array([1, 2, 3, 4, 10, 11, 12, 13], dtype=float)
    made = hours <= 4
    threshold, accuracy = best_threshold(hours, made)
    assert 4 <= threshold < 10 and accuracy == 1.0


def test_rules_estimate_is_rules_risk_with_learned_inputs() -> None:
    train, test = time_split(synthetic_history(800))
    rules = fit_rules_estimate(train)
    assert set(rules.targets) == {"P1", "P2", "P3", "P4"} and set(rules.medians) == {"A", "B", "C"}
    assert rules.agents == {"A": 4, "B": 4, "C": 4}
    risks = rules.risks(test, team_agents=True)
    row = test.iloc[0]
    assert risks[0] == rules_risk(
        rules.targets[row["priority"]], int(row["queue_length"]), rules.medians[row["team"]], 4
    )
    # A ticket's own deadline wins over its priority's target.
    own = test.assign(hours_left=0.0)
    assert (rules.risks(own, team_agents=False) == 1.0).all()


def test_model_beats_random_on_a_synthetic_signal() -> None:
    history = synthetic_history()
    train, test = time_split(history)
    model = fit_breach_model(train)
    assert model.family in {"logistic", "boosting"}
    assert set(model.validation) == {"logistic", "boosting"}
    risk = model.predict_risk(test)
    assert ((risk >= 0) & (risk <= 1)).all()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(missed(test), risk) > 0.75
    # Only the features are read; an unseen team or category is no error.
    unseen = test[list(BREACH_FEATURES)].head(2).assign(team="Z", category="new")
    assert model.predict_risk(unseen).shape == (2,)
    with pytest.raises(DataValidationError, match="queue_length"):
        model.predict_risk(test.drop(columns=["queue_length"]))
    # Open tickets as the backlog has them: created_at, no category or plan.
    open_tickets = pd.DataFrame(
        {"created_at": ["2026-03-02T03:00:00Z"], "priority": ["P1"], "team": ["A"], "queue_length": [4]}
    )
    features = features_at_opening(open_tickets)
    assert features.iloc[0].tolist() == ["P1", "A", 4, 3, 0, UNKNOWN, UNKNOWN]
    assert model.predict_risk(features).shape == (1,)
    with pytest.raises(DataValidationError, match="row 1, column created_at: 'soon'"):
        features_at_opening(open_tickets.assign(created_at="soon"))


def test_evaluation_reports_model_and_rules_on_the_same_tickets() -> None:
    _, report = evaluate_breach(synthetic_history())
    assert (report["train"], report["test"]) == (1920, 480)
    for figures in (report["model"], report["rules"]["agents_one"], report["rules"]["agents_team"]):
        assert sum(row["count"] for row in figures["calibration"]) == 480
        assert 0 <= figures["brier"] <= 1
    # The signal is in what only the model reads.
    assert report["beats_rules"] and report["model"]["auc"] > 0.75


def events_from(history: pd.DataFrame) -> pd.DataFrame:
    """A ServiceNow-style event log: two rows per incident (opened, then resolved), day-first
    dates; the final row has another group for every fifth incident."""
    rows = []

    def day_first(moment: pd.Timestamp) -> str:
        return f"{moment.day}/{moment.month}/{moment.year} {moment:%H:%M}"

    for number, ticket in enumerate(history.itertuples(index=False)):
        first = {
            "number": f"INC{number}",
            "opened_at": day_first(ticket.opened_at),
            "resolved_at": "?",
            "closed_at": "?",
            "priority": f"{ticket.priority[1]} - Level",
            "assignment_group": ticket.team,
            "category": ticket.category,
            "made_sla": "true",
            "impact": "2",
            "urgency": "2",
            "assigned_to": "?",
        }
        last = {
            **first,
            "resolved_at": day_first(ticket.resolved_at),
            "closed_at": day_first(ticket.resolved_at + pd.Timedelta(days=5)),
            "assignment_group": "moved" if number % 5 == 0 else ticket.team,
            "made_sla": str(bool(ticket.made_sla)),
            "assigned_to": ticket.agent,
        }
        rows += [first, last]
    return pd.DataFrame(rows)


def test_incident_history_one_row_per_incident_as_known_at_opening() -> None:
    history = synthetic_history(300).reset_index(drop=True)
    history["opened_at"] = history["opened_at"].dt.floor("min")
    history["resolved_at"] = history["resolved_at"].dt.floor("min")
    events = events_from(history)
    found = incident_history(events)
    assert list(found.columns[: len(HISTORY_COLUMNS)]) == list(HISTORY_COLUMNS)
    assert len(found) == 300 and found["opened_at"].is_monotonic_increasing
    found = found.loc[[f"INC{i}" for i in range(300)]]
    # The first logged group, not the one it ended in.
    assert found["team"].tolist() == history["team"].tolist()
    assert found["priority"].tolist() == history["priority"].tolist()
    assert found["made_sla"].tolist() == history["made_sla"].tolist()
    assert (found["plan"] == UNKNOWN).all()
    assert found["hour_of_day"].tolist() == history["opened_at"].dt.hour.tolist()
    assert found["weekday"].tolist() == history["opened_at"].dt.dayofweek.tolist()
    expected = brute_force_queue(
        history["team"].tolist(),
        ((history["opened_at"] - START) / pd.Timedelta(minutes=1)).to_numpy(),
        ((history["resolved_at"] - START) / pd.Timedelta(minutes=1)).to_numpy(),
    )
    assert found["queue_length"].tolist() == expected


def test_incident_history_falls_back_to_the_close_time() -> None:
    events = pd.DataFrame(
        {
            "number": ["1", "2", "1", "2"],
            "opened_at": ["1/3/2016 09:00", "1/3/2016 10:00", "1/3/2016 09:00", "1/3/2016 10:00"],
            "resolved_at": ["?", "?", "?", "1/3/2016 11:00"],
            "closed_at": ["?", "?", "2/3/2016 09:00", "6/3/2016 09:00"],
            "priority": ["3", "2", "3", "2"],
            "assignment_group": ["g", "?", "g", "g"],
            "category": ["c", "c", "c", "c"],
            "made_sla": ["true", "true", "false", "true"],
        }
    )
    found = incident_history(events).loc[["1", "2"]]
    assert found["team"].tolist() == ["g", UNKNOWN]
    assert found["made_sla"].tolist() == [False, True]
    assert found["resolved_at"].isna().tolist() == [True, False]
    assert found["agent"].tolist() == [UNKNOWN, UNKNOWN]  # no assigned_to column


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.drop(columns=["assignment_group"]), r"log.csv: no column\(s\) \['assignment_group'\]"),
        (
            lambda e: e.assign(opened_at=["2016-03-01 09:00", "x"]),
            r"column opened_at, row 1: '2016-03-01 09:00'",
        ),
        (lambda e: e.assign(made_sla=["true", "maybe"]), r"column made_sla of incident '1': 'maybe'"),
        (lambda e: e.iloc[:0], "no events"),
    ],
)
def test_incident_history_names_the_bad_input(change, message: str) -> None:  # type: ignore[no-untyped-def]
    events = pd.DataFrame(
        {
            "number": ["1", "1"],
            "opened_at": ["1/3/2016 09:00", "1/3/2016 09:00"],
            "resolved_at": ["?", "1/3/2016 10:00"],
            "priority": ["3", "3"],
            "assignment_group": ["g", "g"],
            "category": ["c", "c"],
            "made_sla": ["true", "true"],
        }
    )
    with pytest.raises(DataValidationError, match=message):
        incident_history(change(events), what="log.csv")


CLOSED_CSV = """ticket_id,created_at,priority,team,needs_human_triage,agent_priority,agent_team,plan,\
first_response_due,first_response_at,resolution_due,resolved_at,category,category_confidence,agent_category
T1,2026-03-02T09:00:00,P2,billing,false,,,gold,2026-03-02T10:00:00,2026-03-02T09:30:00,\
2026-03-03T09:00:00,2026-03-02T15:00:00,invoice,0.9,
T2,2026-03-02T09:30:00,P1,billing,false,,,,2026-03-02T09:45:00,2026-03-02T10:00:00,\
2026-03-02T17:30:00,2026-03-02T12:00:00,,,
T3,2026-03-02T11:00:00,P3,billing,false,,,basic,,,2026-03-03T11:00:00,2026-03-04T11:00:00,access,0.7,
T4,2026-03-02T12:00:00,P3,access,false,,,basic,,,9999-12-31T00:00:00,,access,0.8,
"""


def test_closed_history_from_a_closed_tickets_csv(tmp_path: Path) -> None:
    path = tmp_path / "closed.csv"
    path.write_text(CLOSED_CSV, encoding="utf-8")
    history = closed_history(read_closed_tickets(path), what=str(path))
    # T4 has no deadline that can be judged: no label, left out.
    assert history.index.tolist() == [0, 1, 2]
    # T1 met both; T2 answered late; T3 resolved late.
    assert history["made_sla"].tolist() == [True, False, False]
    assert history["plan"].tolist() == ["gold", UNKNOWN, "basic"]
    assert history["category"].tolist() == ["invoice", UNKNOWN, "access"]
    # At 09:30 T1 is open; at 11:00 T1 (until 15:00) and T2 (until 12:00) are.
    assert history["queue_length"].tolist() == [0, 1, 2]
    assert history["hours_left"].tolist() == [24.0, 8.0, 24.0]
    assert set(BREACH_FEATURES) <= set(history.columns)


def test_closed_history_names_the_missing_column() -> None:
    with pytest.raises(DataValidationError, match=r"closed.csv: no column\(s\) \['team'\]"):
        closed_history(pd.DataFrame({"created_at": [], "priority": []}), what="closed.csv")


def mlflow_params(tmp_path: Path) -> MlflowParams:
    return MlflowParams(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_location=(tmp_path / "artifacts").as_uri(),
        experiment="breach",
        model_prefix="test",
    )


def test_the_champion_loads_from_a_real_registry(tmp_path: Path) -> None:
    params = mlflow_params(tmp_path)
    assert load_breach_model(params) is None  # no registry yet
    assert not (tmp_path / "mlflow.db").exists()  # and asking made none
    history = synthetic_history()
    model, report = evaluate_breach(history)
    logged = log_breach_model(model, report, params, example=history, source="synthetic")
    assert logged["version"] == "1" and not logged["champion"]
    assert load_breach_model(params) is None  # registered, but not asked to promote

    result = breach_risk_report(
        {"history": (history, "synthetic")},
        params,
        output=tmp_path / "out" / "breach.json",
        promote_if_better=True,
    )
    registry = result["history"]["mlflow"]
    assert (registry["registered_name"], registry["version"], registry["champion"]) == (
        "test-breach-risk",
        "2",
        True,
    )
    written = json.loads((tmp_path / "out" / "breach.json").read_text())
    assert written["registered"] == "history" and written["history"]["model"]["auc"] > 0.75
    loaded = load_breach_model(params)
    assert loaded is not None and loaded.version == "2" and loaded.family == report["model"]["family"]
    test = time_split(history)[1]
    again, _ = evaluate_breach(history)  # the same data and seed: the same model
    np.testing.assert_allclose(loaded.predict_risk(test), again.predict_risk(test))


def test_breach_risk_command(tmp_path: Path) -> None:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    params = str(write_params(tmp_path, data))
    history = synthetic_history(1500).reset_index(drop=True)
    log = tmp_path / "log.csv.gz"
    events_from(history).to_csv(log, index=False)
    output = tmp_path / "breach.json"
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "breach-risk",
            "--params",
            params,
            "--log",
            str(log),
            "--output",
            str(output),
            "--promote-if-better",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "model (" in done.output and "rules, agents team" in done.output
    assert "ticket-breach-risk v1 registered" in done.output
    report = json.loads(output.read_text())
    assert report["incident_log"]["test"] == 300 and report["incident_log"]["mlflow"]["version"] == "1"

    bad = tmp_path / "bad.csv"
    events_from(history.head(5)).drop(columns=["category"]).to_csv(bad, index=False)
    failed = runner.invoke(app, ["breach-risk", "--params", params, "--log", str(bad)])
    assert failed.exit_code == 4 and "bad.csv: no column(s) ['category']" in failed.output
    neither = runner.invoke(app, ["breach-risk", "--params", params])
    assert neither.exit_code == 2


@pytest.mark.slow
def test_the_model_beats_the_rules_on_the_real_incident_log() -> None:
    path = SHARED_DATA / "incident_event_log.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} is not here")
    from urgency.incidents import read_incident_log

    _, report = evaluate_breach(incident_history(read_incident_log(path)))
    best_rules = report["rules"][report["rules"]["best"]]["auc"]
    assert report["model"]["auc"] > 0.6 and report["model"]["auc"] > best_rules
    assert report["model"]["brier"] < report["brier_base_rate"]


def test_breach_risk_command_on_closed_tickets(tmp_path: Path) -> None:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    params = str(write_params(tmp_path, data))
    history = synthetic_history(1000).reset_index(drop=True)
    # Each ticket's deadline: 10 hours; it is met exactly when the synthetic SLA was.
    due = history["opened_at"] + pd.Timedelta(hours=10)
    resolved = due + np.where(history["made_sla"], -1, 1) * pd.Timedelta(minutes=30)
    closed = pd.DataFrame(
        {
            "ticket_id": [f"T{i}" for i in range(len(history))],
            "created_at": history["opened_at"].dt.strftime("%Y-%m-%dT%H:%M:%S"),
            "priority": history["priority"],
            "team": history["team"],
            "needs_human_triage": "false",
            "agent_priority": "",
            "agent_team": "",
            "plan": history["plan"],
            "resolution_due": due.dt.strftime("%Y-%m-%dT%H:%M:%S"),
            "resolved_at": resolved.dt.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    path = tmp_path / "closed.csv"
    closed.to_csv(path, index=False)
    runner = CliRunner()
    output = tmp_path / "breach.json"
    done = runner.invoke(
        app, ["breach-risk", "--params", params, "--history", str(path), "--output", str(output)]
    )
    assert done.exit_code == 0, done.output
    report = json.loads(output.read_text())
    assert report["registered"] == "history" and report["history"]["test"] == 200
    assert report["history"]["rules"]["hours_left"] == "each ticket's resolution deadline"
    assert "champion: no - not asked" in done.output

    closed.drop(columns=["resolution_due"]).to_csv(path, index=False)
    failed = runner.invoke(app, ["breach-risk", "--params", params, "--history", str(path)])
    assert failed.exit_code == 4 and "closed.csv: no ticket has a deadline" in failed.output
