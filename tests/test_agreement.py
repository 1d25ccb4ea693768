"""Agreement figures against cases worked out by hand, and reading closed tickets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from urgency.agreement import (
    EmptyReport,
    agreement_figures,
    by_slice,
    closed_tickets_from_store,
    cohen_kappa,
    compare_field,
    confusion_matrix,
    in_period,
    read_closed_tickets,
    sla_attainment,
    top_disagreements,
    week_start,
)
from urgency.errors import DataValidationError, InputError
from urgency.store import Store, make_engine, upgrade

LEVELS = ["high", "medium", "low"]


def pairs(matrix: list[list[int]], labels: list[str]) -> tuple[list[str], list[str]]:
    """(model, agent) value lists whose confusion matrix (rows agent, columns model) is `matrix`."""
    model, agent = [], []
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            agent += [labels[i]] * count
            model += [labels[j]] * count
    return model, agent


# Rows: the agents' urgency; columns: the model's. 15 tickets, 11 on the diagonal, every miss one
# step off, each side gives every label 5 times.
#                 model: high medium low
MATRIX = [[4, 1, 0],  # agent high
          [1, 3, 1],  # agent medium
          [0, 1, 4]]  # agent low  # fmt: skip


def test_kappa_by_hand_unweighted() -> None:
    # observed agreement po = 11/15; chance pe = 3 * (5/15 * 5/15) = 1/3;
    # kappa = (po - pe) / (1 - pe) = (11/15 - 5/15) / (10/15) = 0.6
    model, agent = pairs(MATRIX, LEVELS)
    assert confusion_matrix(model, agent, LEVELS).tolist() == MATRIX
    assert cohen_kappa(model, agent, LEVELS) == pytest.approx(0.6)


def test_kappa_by_hand_quadratic() -> None:
    # cost: one step off 1/4, two steps 1. Observed weighted disagreement: 4 cells one step off,
    # 1 ticket each: 4 * 1/4 / 15 = 1/15. Expected: every cell 1/9 of the tickets, the costs
    # over all cells sum to 4 * 1/4 + 2 * 1 = 3, so 3/9 = 1/3. kappa = 1 - (1/15) / (1/3) = 0.8
    model, agent = pairs(MATRIX, LEVELS)
    assert cohen_kappa(model, agent, LEVELS, "quadratic") == pytest.approx(0.8)
    # A two-step miss costs more than a one-step one: swap one one-step miss for a two-step one.
    worse = [[4, 0, 1], [1, 3, 1], [0, 1, 4]]
    model_w, agent_w = pairs(worse, LEVELS)
    assert cohen_kappa(model_w, agent_w, LEVELS, "quadratic") < 0.8
    assert cohen_kappa(model_w, agent_w, LEVELS) == pytest.approx(cohen_kappa(model, agent, LEVELS))


def test_kappa_by_hand_with_unequal_shares() -> None:
    # agent yes 25 / no 25; model yes 30 / no 20. po = 35/50 = 0.7;
    # pe = 25/50 * 30/50 + 25/50 * 20/50 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    model, agent = pairs([[20, 5], [10, 15]], ["yes", "no"])
    assert cohen_kappa(model, agent, ["yes", "no"]) == pytest.approx(0.4)


@pytest.mark.parametrize("weights", [None, "quadratic"])
def test_kappa_matches_scikit_learn(weights: Any) -> None:
    model, agent = pairs([[7, 2, 1], [3, 5, 2], [0, 4, 9]], LEVELS)
    expected = cohen_kappa_score(agent, model, labels=LEVELS, weights=weights)
    assert cohen_kappa(model, agent, LEVELS, weights) == pytest.approx(expected)


def test_kappa_undefined_cases() -> None:
    assert cohen_kappa([], [], LEVELS) is None
    # Both sides always say "low": agreement is perfect, but nothing beyond chance to measure.
    assert cohen_kappa(["low"] * 4, ["low"] * 4, LEVELS) is None
    assert cohen_kappa(["low", "high"], ["high", "low"], LEVELS) == pytest.approx(-1.0)


def closed(**columns: Any) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base: dict[str, Any] = {
        "ticket_id": [f"T-{i}" for i in range(n)],
        "created_at": pd.to_datetime(["2026-03-02T09:00:00Z"] * n, utc=True),
        "needs_human_triage": [False] * n,
    }
    for name in ("urgency", "category", "sentiment", "priority", "team"):
        base[name] = [None] * n
        base[f"agent_{name}"] = [None] * n
    for head in ("urgency", "category", "sentiment"):
        base[f"{head}_confidence"] = [None] * n
    base.update(columns)
    return pd.DataFrame(base)


def test_compare_field_counts_precision_and_coverage_by_hand() -> None:
    frame = closed(
        urgency=["high", "high", "low", "medium", "low", None],
        urgency_confidence=[0.9, 0.8, 0.5, 0.3, 0.7, None],
        agent_urgency=["high", "low", "low", "high", None, "low"],
    )
    figures = compare_field(frame, "urgency", LEVELS, threshold=0.6)
    # used: the first 4 (the 5th has no agent value, the 6th no model value)
    assert (figures["used"], figures["without_agent_value"], figures["without_model_value"]) == (4, 1, 1)
    assert figures["agreement"] == pytest.approx(2 / 4)  # rows 1 and 3
    # decided alone (confidence >= 0.6): rows 1 and 2, of which row 1 is right
    assert figures["decided_alone"] == 2
    assert figures["coverage"] == pytest.approx(2 / 4)
    assert figures["precision"] == pytest.approx(1 / 2)
    # (model, agent): (high, high), (high, low), (low, low), (medium, high); rows are the agent's
    assert figures["confusion"] == [[1, 1, 0], [0, 0, 0], [1, 0, 1]]
    assert figures["kappa_weights"] == "quadratic"


def test_priority_coverage_is_the_share_not_sent_to_triage() -> None:
    frame = closed(
        priority=["P1", "P2", "P3", "P4"],
        agent_priority=["P1", "P3", "P3", "P4"],
        needs_human_triage=[False, False, True, True],
    )
    figures = compare_field(frame, "priority", ["P1", "P2", "P3", "P4"])
    assert figures["agreement"] == pytest.approx(3 / 4)
    assert figures["coverage"] == pytest.approx(2 / 4)
    assert figures["precision"] == pytest.approx(1 / 2)  # P1 right, P2 wrong


def test_values_outside_the_configured_labels_are_kept() -> None:
    frame = closed(sentiment=["angry", "neutral"], agent_sentiment=["negative", "neutral"])
    figures = compare_field(frame, "sentiment", ["negative", "neutral", "positive"])
    assert figures["labels"] == ["negative", "neutral", "positive", "angry"]
    assert sum(map(sum, figures["confusion"])) == 2


def test_week_slices_and_trend() -> None:
    created = pd.to_datetime(
        ["2026-03-02T01:00:00Z", "2026-03-08T23:00:00Z", "2026-03-09T00:00:00Z", None], utc=True
    )
    frame = closed(
        created_at=created,
        urgency=["high", "low", "low", "low"],
        agent_urgency=["high", "high", "low", None],
        plan=["free", "free", "enterprise", None],
        needs_human_triage=[True, False, False, False],
    )
    assert week_start(frame["created_at"]).tolist() == ["2026-03-02", "2026-03-02", "2026-03-09", "(none)"]
    weeks = by_slice(frame, "week")
    assert [(w["value"], w["tickets"], w["urgency_used"], w["urgency_agreement"]) for w in weeks] == [
        ("2026-03-02", 2, 2, 0.5),
        ("2026-03-09", 1, 1, 1.0),
        ("(none)", 1, 0, None),
    ]
    plans = by_slice(frame, "plan")
    assert [(p["value"], p["tickets"], p["coverage"]) for p in plans] == [
        ("free", 2, 0.5),
        ("(none)", 1, 1.0),
        ("enterprise", 1, 1.0),
    ]
    assert by_slice(frame, "channel") is None  # no such column


def test_team_and_category_slices_use_the_agents_value_first() -> None:
    frame = closed(team=["desk", "desk", "triage"], agent_team=["hardware", None, None])
    assert [(row["value"], row["tickets"]) for row in by_slice(frame, "team")] == [
        ("desk", 1),
        ("hardware", 1),
        ("triage", 1),
    ]


def test_sla_attainment_by_hand() -> None:
    due = pd.to_datetime(["2026-03-02T10:00:00Z"] * 5, utc=True)
    frame = closed(
        priority=["P1", "P1", "P1", "P2", "P2"],
        first_response_due=due,
        first_response_at=pd.to_datetime(
            [
                "2026-03-02T09:30:00Z",
                "2026-03-02T10:00:00Z",
                "2026-03-02T11:00:00Z",
                None,
                "2026-03-02T12:00:00Z",
            ],
            utc=True,
        ),
        resolution_due=pd.to_datetime([None] * 5, utc=True),
        resolved_at=pd.to_datetime(["2026-03-03T00:00:00Z"] * 5, utc=True),
    )
    rows = {row["priority"]: row for row in sla_attainment(frame, ["P1", "P2", "P3"])}
    # P1: on time, exactly at the deadline (counts as met), late -> 2 of 3
    assert (rows["P1"]["first_response_with_times"], rows["P1"]["first_response_met"]) == (3, 2)
    assert rows["P1"]["first_response_attainment"] == pytest.approx(2 / 3)
    # P2: one ticket has no response time: judged on 1 of 2, which was late
    assert rows["P2"]["first_response_share_with_times"] == pytest.approx(0.5)
    assert rows["P2"]["first_response_attainment"] == 0.0
    # No resolution deadline: nothing to judge
    assert rows["P1"]["resolution_with_times"] == 0 and rows["P1"]["resolution_attainment"] is None
    assert rows["P3"]["tickets"] == 0


def test_top_disagreements_most_confident_first() -> None:
    frame = closed(
        urgency=["high", "low", "medium", "low"],
        urgency_confidence=[0.95, 0.6, 0.8, 0.99],
        agent_urgency=["low", "high", "medium", "low"],
        sentiment=["positive", None, None, None],
        sentiment_confidence=[0.7, None, None, None],
        agent_sentiment=["negative", None, None, None],
        subject=["printer on fire", None, None, None],
    )
    found = top_disagreements(frame, top=2)
    assert [(f["ticket_id"], f["head"], f["confidence"]) for f in found] == [
        ("T-0", "urgency", 0.95),
        ("T-0", "sentiment", 0.7),
    ]
    assert found[0]["text"] == "printer on fire" and found[0]["agent"] == "low"
    assert len(top_disagreements(frame, top=10)) == 3


def test_in_period_is_half_open() -> None:
    frame = closed(
        urgency=["low"] * 3,
        created_at=pd.to_datetime(["2026-01-01T00:00Z", "2026-01-31T23:59Z", "2026-02-01T00:00Z"], utc=True),
    )
    kept = in_period(frame, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    assert kept["ticket_id"].tolist() == ["T-0", "T-1"]


def test_figures_of_an_empty_period_are_refused() -> None:
    with pytest.raises(EmptyReport, match="no decided tickets"):
        agreement_figures(pd.DataFrame(), labels={}, levels=["P1"], thresholds={})


# ---------------------------------------------------------------------------------------------
# Reading


GOOD_CSV = """ticket_id,created_at,urgency,urgency_confidence,category,category_confidence,sentiment,sentiment_confidence,priority,team,needs_human_triage,first_response_due,resolution_due,agent_urgency,agent_category,agent_sentiment,agent_priority,agent_team,first_response_at,resolved_at,plan
A-1,2026-03-02T09:00:00Z,high,0.9,Access,0.8,negative,0.7,P1,desk,false,2026-03-02T10:00:00Z,9999-12-31T23:59:59Z,high,Access,,P1,desk,2026-03-02T09:20:00Z,,enterprise
A-2,2026-03-03 10:00,low,0.4,Hardware,0.9,neutral,0.6,P4,triage,TRUE,,,medium,,neutral,P3,desk,,,free
"""  # noqa: E501


def test_read_a_closed_tickets_csv(tmp_path: Path) -> None:
    path = tmp_path / "closed.csv"
    path.write_text(GOOD_CSV)
    frame = read_closed_tickets(path, labels={"urgency": LEVELS}, levels=["P1", "P2", "P3", "P4"])
    assert frame["needs_human_triage"].tolist() == [False, True]
    assert frame["created_at"].tolist() == [
        pd.Timestamp("2026-03-02T09:00:00Z"),
        pd.Timestamp("2026-03-03T10:00:00Z"),  # no offset: UTC
    ]
    assert frame["resolution_due"].isna().all()  # 9999: no deadline
    assert frame["agent_sentiment"].tolist() == [None, "neutral"]
    assert frame["urgency_confidence"].tolist() == [0.9, 0.4]


def test_bad_csv_names_file_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "closed.csv"
    bad = (
        GOOD_CSV.replace("high,0.9,Access", "high,1.7,Access")
        .replace("2026-03-03 10:00", "yesterday")
        .replace("TRUE", "maybe")
        .replace("P3,desk", "P9,desk")
        .replace("A-2", "A-1")
    )
    path.write_text(bad)
    with pytest.raises(DataValidationError) as error:
        read_closed_tickets(path, labels={"urgency": LEVELS}, levels=["P1", "P2", "P3", "P4"])
    message = str(error.value)
    assert str(path) in message and "5 problem(s)" in message
    assert "row 2, column ticket_id: 'A-1' appears more than once" in message
    assert "row 1, column urgency_confidence: '1.7' is not a number from 0 to 1" in message
    assert "row 2, column created_at: 'yesterday' is not an ISO 8601 timestamp" in message
    assert "row 2, column needs_human_triage: 'maybe' is not true or false" in message
    assert "row 2, column agent_priority: 'P9' is not one of ['P1', 'P2', 'P3', 'P4']" in message


def test_missing_columns_and_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "closed.csv"
    path.write_text("ticket_id,created_at,urgency\nA-1,2026-03-02,high\n")
    # urgency is there, so its columns are required; category and sentiment are left out whole
    # (heads with no model), so theirs are not.
    with pytest.raises(DataValidationError, match=r"missing column\(s\) urgency_confidence, priority, team,"):
        read_closed_tickets(path)
    with pytest.raises(InputError, match="does not exist"):
        read_closed_tickets(tmp_path / "nope.csv")


def test_closed_tickets_from_the_store(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    upgrade(engine)
    store = Store(engine)
    scored = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    store.record_predictions(
        [
            {
                "ticket_id": ticket,
                "scored_at": scored,
                "created_at": scored,
                "subject": "vpn down",
                "body": "cannot connect",
                "fields": {"plan": "enterprise", "channel": "chat", "language": "de"},
                "urgency": "high",
                "urgency_confidence": 0.9,
                "category": "Access",
                "category_confidence": 0.8,
                "sentiment": "negative",
                "sentiment_confidence": 0.7,
                "priority": "P1",
                "team": "desk",
                "needs_human_triage": False,
                "first_response_due": datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
                "resolution_due": None,
                "decision": {},
                "model_versions": {"urgency": "1"},
            }
            for ticket in ("S-1", "S-2")
        ]
    )
    store.record_feedback(
        {"ticket_id": "S-1", "event_id": "e1", "urgency": "medium", "first_response_at": scored}
    )
    frame = closed_tickets_from_store(store.decisions())
    engine.dispose()
    assert frame["ticket_id"].tolist() == ["S-1"]  # S-2 was never decided
    assert (frame.loc[0, "plan"], frame.loc[0, "channel"], frame.loc[0, "language"]) == (
        "enterprise",
        "chat",
        "de",
    )
    assert frame.loc[0, "agent_urgency"] == "medium" and frame.loc[0, "agent_category"] is None
    figures = agreement_figures(
        frame, labels={"urgency": LEVELS}, levels=["P1", "P2", "P3", "P4"], thresholds={"urgency": 0.5}
    )
    assert figures["fields"]["urgency"]["used"] == 1 and figures["fields"]["urgency"]["agreement"] == 0.0
    assert figures["fields"]["category"]["used"] == 0
    assert figures["sla"][0]["first_response_met"] == 1
    assert {"plan", "channel", "language", "week", "team", "category"} == set(figures["slices"])
