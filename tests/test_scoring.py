"""Scoring a batch (`urgency.scoring`); one ticket's decision is tested in tests/rules/test_engine.py."""

from __future__ import annotations

import json

import pandas as pd

from tests.rules_helpers import NOW, SLA, make_rules
from urgency.decision import DECISION_COLUMNS
from urgency.scoring import decide_frame, queue_order


def test_queue_is_priority_then_deadline_then_first_come() -> None:
    rules = make_rules(**SLA)
    frame = pd.DataFrame(
        {
            "id": ["late-p3", "early-p3", "p1", "same-time-a", "same-time-b", "free-p3"],
            "urgency": ["high", "high", "high", "low", "low", "high"],
            "urgency_confidence": 0.9,
            "category": "Access",
            "category_confidence": 0.9,
            "sentiment": "neutral",
            "sentiment_confidence": 0.9,
            "plan": ["enterprise", "enterprise", "enterprise", "enterprise", "enterprise", "free"],
            "service_down": ["", "", "true", "", "", ""],
            "created_at": [
                "2026-03-02T10:00:00Z",
                "2026-03-02T08:00:00Z",
                "2026-03-02T11:00:00Z",
                "2026-03-02T09:00:00Z",
                "2026-03-02T09:00:00Z",
                "2026-03-02T07:00:00Z",
            ],
        }
    )
    scored = pd.concat([frame, decide_frame(frame, rules, NOW)], axis=1)
    assert list(decide_frame(frame, rules, NOW).columns) == list(DECISION_COLUMNS)
    queue = queue_order(scored)
    assert queue["id"].tolist() == ["p1", "early-p3", "late-p3", "free-p3", "same-time-a", "same-time-b"]
    explanation = json.loads(queue.iloc[0]["explanation_json"])
    assert [step["rule"] for step in explanation] == ["down", "matrix", "routing.default_team", "enterprise"]
